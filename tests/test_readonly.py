"""A read-only deployment (``ACTSCALE_READONLY=1``, `actscale.ui.deployment`): every page through
AppTest shows the store and offers no way to write to it, the store refuses writes itself, and
its bytes and mtimes are the same after every page was visited with every write-looking query
parameter. The browser half is in test_e2e_readonly.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import make_method_runs, store_snapshot
from streamlit.testing.v1 import AppTest

from actscale.errors import ActscaleError
from actscale.runs.bundle import BundleContents
from actscale.runs.store import RunStore
from actscale.ui import deployment, navigation

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
SITES = ("attn_out", "head")
SIDEBAR_NO_MODEL = (
    "Read-only deployment: runs can be viewed and downloaded, not trained, deleted or uploaded; no model is loaded."
)
SIDEBAR_MODEL = (
    "Read-only deployment: runs can be viewed and downloaded, not trained, deleted or uploaded; "
    "the Playground loads a model."
)
# Query parameters a visitor might try, on every page: none may write anything.
WRITE_PARAMS = {"delete": "", "upload": "1", "train": "1", "sweep": "1", "method": "activscalar", "confirm": "1"}
# Controls that write (or start something that writes) in a normal deployment.
WRITE_LABELS = {"Train", "Delete", "Launch sweep", "Cancel", "Cancel sweep"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_llama):
    root = tmp_path_factory.mktemp("readonly") / "runs"
    return root, make_method_runs(root, tiny_llama, SITES)


@pytest.fixture
def readonly(runs, monkeypatch):
    """A read-only deployment of the module's store, with no model allowed."""
    monkeypatch.setenv("ACTSCALE_STORE", str(runs[0]))
    monkeypatch.setenv("ACTSCALE_MODEL", "tiny-llama")
    monkeypatch.setenv("ACTSCALE_READONLY", "1")
    monkeypatch.delenv("ACTSCALE_READONLY_MODEL", raising=False)
    monkeypatch.chdir(ROOT)
    return runs[0]


@pytest.fixture
def no_model_loads(monkeypatch):
    """Any attempt to load a model fails the test."""
    from actscale.engine import models
    from actscale.ui import common

    def refuse(*args, **kwargs):
        raise AssertionError("a read-only deployment without a model must not load one")

    monkeypatch.setattr(common, "load_model", refuse)
    monkeypatch.setattr(models, "load_model", refuse)
    saved = dict(common._RESIDENT)
    common._RESIDENT.clear()
    yield
    common._RESIDENT.update(saved)


# ---------------------------------------------------------------- the settings
@pytest.mark.parametrize(
    ("readonly", "model", "is_readonly", "allowed", "n_problems"),
    [
        (None, None, False, True, 0),
        ("0", "1", False, True, 0),
        ("1", None, True, False, 0),
        ("yes", "no", True, False, 0),
        ("1", "1", True, True, 0),
        ("true", "ON", True, True, 0),
        ("ture", None, True, False, 1),  # unreadable: read-only, the safe reading
        ("1", "maybe", True, False, 1),  # unreadable: no model
    ],
)
def test_settings(monkeypatch, readonly, model, is_readonly, allowed, n_problems):
    for name, value in (("ACTSCALE_READONLY", readonly), ("ACTSCALE_READONLY_MODEL", model)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert deployment.readonly() is is_readonly
    assert deployment.model_allowed() is allowed
    assert len(deployment.problems()) == n_problems
    served = {p.title for p in deployment.pages()}
    all_titles = {p.title for p in navigation.PAGES}
    expected = all_titles - ({"Train"} if is_readonly else set()) - (set() if allowed else {"Playground"})
    assert served == expected
    assert deployment.describe() == ("" if not is_readonly else SIDEBAR_MODEL if allowed else SIDEBAR_NO_MODEL)


def test_unreadable_setting_is_named(monkeypatch):
    monkeypatch.setenv("ACTSCALE_READONLY", "ture")
    monkeypatch.delenv("ACTSCALE_READONLY_MODEL", raising=False)
    assert deployment.problems() == ["ACTSCALE_READONLY='ture' is not 1 or 0: read as read-only (the safe reading)."]
    with pytest.raises(ActscaleError, match=r"^Training is not possible here: this deployment serves its run store"):
        deployment.check_writable("Training")
    with pytest.raises(ActscaleError, match=r"ACTSCALE_READONLY_MODEL=1 allows one\)$"):
        deployment.check_model_allowed("The Playground")


def test_a_store_that_cannot_hold_runs_is_named_in_the_sidebar(monkeypatch, tmp_path):
    """ACTSCALE_STORE naming a file (or a path under one) had shown "No runs in the store yet" on
    every page, unsaid until a Train click failed."""
    (notes := tmp_path / "notes.txt").write_text("x")
    monkeypatch.delenv("ACTSCALE_READONLY", raising=False)
    monkeypatch.delenv("ACTSCALE_READONLY_MODEL", raising=False)
    monkeypatch.setenv("ACTSCALE_STORE", str(notes / "runs"))
    assert deployment.problems() == [
        f"No run trained here can be saved (the run store {notes / 'runs'} cannot be a folder: {notes} is a file); "
        "set ACTSCALE_STORE to a folder."
    ]
    monkeypatch.setenv("ACTSCALE_READONLY", "1")  # served read-only: nothing is saved anyway
    assert deployment.problems() == []
    monkeypatch.setenv("ACTSCALE_READONLY", "0")
    monkeypatch.setenv("ACTSCALE_STORE", str(tmp_path / "new" / "runs"))  # made at the first save
    assert deployment.problems() == []


# ---------------------------------------------------------------- the store itself
def test_readonly_store_refuses_every_write(runs, tiny_llama, monkeypatch):
    root, bundles = runs
    before = store_snapshot(root)
    store = RunStore(root, readonly=True)
    bundle = bundles["activscalar"]
    message = f"^the run store {root} is read-only$"
    with pytest.raises(ActscaleError, match=message):
        store.delete(bundle.run_id)
    with pytest.raises(ActscaleError, match=message):
        store.import_zip(RunStore(root).export_zip(bundle.run_id))
    with pytest.raises(ActscaleError, match=message):
        store.save(BundleContents(bundle.config, bundle.params, bundle.metrics, bundle.history, bundle.dataset))

    # A configuration already stored is a read; a new one is refused before any training.
    from actscale.engine.config import TrainConfig
    from actscale.runs import api

    def no_training(*args, **kwargs):
        raise AssertionError("a read-only store must refuse before training")

    monkeypatch.setattr(api, "train", no_training)
    config = TrainConfig.from_dict(bundle.config)
    assert api.train_run(config, tiny_llama, store=store).run_id == bundle.run_id
    with pytest.raises(ActscaleError, match=message):
        api.train_run(dataclasses.replace(config, steps=config.steps + 1), tiny_llama, store=store)
    assert store_snapshot(root) == before


# ---------------------------------------------------------------- the pages
def labels(at: AppTest) -> set[str]:
    """Every button, form button and checkbox label on the page."""
    return {b.label for b in at.button} | {c.label for c in at.checkbox}


def assert_nothing_writes(at: AppTest, sidebar: str = SIDEBAR_NO_MODEL) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert [i.value for i in at.sidebar.info] == [sidebar]
    assert not labels(at) & WRITE_LABELS, labels(at)
    assert not any(label.startswith("Yes, delete") for label in labels(at))
    assert at.get("file_uploader") == []


def app_at(page: str, params: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    if page != navigation.HOME.path:
        at.switch_page(page)
    for key, value in (params or {}).items():
        at.query_params[key] = value
    return at.run()


def test_train_and_playground_are_not_served(readonly, no_model_loads):
    at = AppTest.from_file(APP, default_timeout=60).run()
    for page in (navigation.TRAIN, navigation.PLAYGROUND):
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(page.path)


def test_home(readonly, no_model_loads, runs):
    before = store_snapshot(readonly)
    at = app_at(navigation.HOME.path, WRITE_PARAMS)
    assert_nothing_writes(at)
    assert at.title[0].value == "actscale"
    assert at.info[0].value == "No model loaded: this read-only deployment shows stored runs, which need none."
    links = [p.label for p in at.get("page_link")]
    assert [label for label in links if not label.startswith("Open run")] == ["Explore", "Compare", "Runs"]
    assert any("This deployment shows a store of runs read-only" in m.value for m in at.markdown)
    assert store_snapshot(readonly) == before


def test_explore(readonly, no_model_loads, runs):
    before = store_snapshot(readonly)
    run_id = runs[1]["steervec"].run_id
    at = app_at(navigation.EXPLORE.path, {**WRITE_PARAMS, "run": run_id})
    assert_nothing_writes(at)
    assert [t.value for t in at.title] == ["Explore a run"]
    assert at.selectbox(key="explore_run").value == run_id
    # SteerVec's norm ratio and direction for its three sites and the training curves, as SVG images
    assert len(at.get("image")) == 7 and at.get("plotly_chart") == []
    assert store_snapshot(readonly) == before


def test_compare(readonly, no_model_loads, runs):
    before = store_snapshot(readonly)
    at = app_at(navigation.COMPARE.path, WRITE_PARAMS)
    assert_nothing_writes(at)
    assert set(at.multiselect(key="compare_pick").value) == {b.run_id for b in runs[1].values()}
    assert "Sweeps train new runs: not available in this read-only deployment." in [c.value for c in at.caption]
    assert not [t for t in at.text_input if t.label.startswith("λ_")]
    assert store_snapshot(readonly) == before


def test_runs(readonly, no_model_loads, runs):
    before = store_snapshot(readonly)
    run_id = runs[1]["dynscalar"].run_id
    at = app_at(navigation.RUNS.path, {**WRITE_PARAMS, "run": run_id, "delete": run_id})
    assert_nothing_writes(at)
    assert at.selectbox(key="runs_pick").value == run_id
    assert [d.label for d in at.get("download_button")] == [
        "Download table (CSV)",
        "Download the bundle (.zip)",
        "Download the HTML report",
    ]
    assert "This deployment serves its store read-only: runs cannot be deleted or uploaded here." in [
        c.value for c in at.caption
    ]
    assert not any(s.value == "Upload a bundle" for s in at.subheader)
    assert store_snapshot(readonly) == before


def test_train_page_on_its_own_refuses(readonly, no_model_loads):
    before = store_snapshot(readonly)
    at = AppTest.from_file(str(ROOT / navigation.TRAIN.path), default_timeout=60).run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "Training is not possible here: this deployment serves its run store read-only"
    ]
    assert labels(at) == set() and at.get("selectbox") == []
    assert store_snapshot(readonly) == before


def test_playground_on_its_own_loads_no_model(readonly, no_model_loads, runs):
    before = store_snapshot(readonly)
    at = AppTest.from_file(str(ROOT / navigation.PLAYGROUND.path), default_timeout=60)
    at.query_params["run"] = runs[1]["activscalar"].run_id
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "Loading a model is not possible here: this read-only deployment loads no model "
        "(ACTSCALE_READONLY_MODEL=1 allows one)"
    ]
    assert len(at.metric) == 0  # nothing was steered
    # the per-example table comes from the bundle and needs no model
    assert any("delta_base" in d.value.columns for d in at.dataframe)
    assert store_snapshot(readonly) == before


def test_playground_when_the_deployment_allows_a_model(readonly, runs, monkeypatch):
    monkeypatch.setenv("ACTSCALE_READONLY_MODEL", "1")
    before = store_snapshot(readonly)
    run_id = runs[1]["dynscalar"].run_id
    at = app_at(navigation.PLAYGROUND.path, {**WRITE_PARAMS, "run": run_id})
    assert_nothing_writes(at, sidebar=SIDEBAR_MODEL)
    assert [t.value for t in at.title] == ["Playground"]
    assert {m.label for m in at.metric} == {"Δ = logit(a+) − logit(a−)", "p(a+)", "p(a−)"}
    # Train is still not served
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(navigation.TRAIN.path)
    assert store_snapshot(readonly) == before


def test_a_normal_deployment_says_nothing_of_it(runs, monkeypatch):
    monkeypatch.setenv("ACTSCALE_STORE", str(runs[0]))
    monkeypatch.setenv("ACTSCALE_MODEL", "tiny-llama")
    monkeypatch.delenv("ACTSCALE_READONLY", raising=False)
    monkeypatch.chdir(ROOT)
    at = app_at(navigation.RUNS.path)
    assert not at.exception and not at.error
    assert [i.value for i in at.sidebar.info] == []
    assert "Delete" in labels(at) and len(at.get("file_uploader")) == 1
