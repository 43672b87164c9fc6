"""Home page (app.py) through Streamlit's AppTest, on the tiny test model."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from actscale.engine.training import TrainConfig
from actscale.runs.api import train_run
from actscale.runs.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")


@pytest.fixture
def ui_store(tmp_path, monkeypatch) -> RunStore:
    monkeypatch.setenv("ACTSCALE_MODEL", "tiny-llama")
    monkeypatch.setenv("ACTSCALE_STORE", str(tmp_path / "runs"))
    monkeypatch.chdir(ROOT)
    return RunStore(tmp_path / "runs")


@pytest.fixture(scope="module")
def source_runs(tiny_llama, tmp_path_factory):
    """Two tiny runs (ActivScalar, then DynScalar), trained once for the module."""
    store = RunStore(tmp_path_factory.mktemp("home-src") / "runs")
    older = train_run(TrainConfig(model="tiny-llama", steps=3, n_prompts=16, seed=1), tiny_llama, store=store)
    newer = train_run(
        TrainConfig(model="tiny-llama", method="dynscalar", steps=3, n_prompts=16, seed=2), tiny_llama, store=store
    )
    return store, older, newer


def copy_runs(source_runs, store: RunStore):
    src, older, newer = source_runs
    for bundle in (older, newer):
        store.import_zip(src.export_zip(bundle.run_id))
    return older, newer


def home() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["model_name"] = "tiny-llama"
    return at.run()


def test_home_smoke_empty_store_and_no_model(ui_store):
    from actscale.ui import common

    saved = dict(common._RESIDENT)
    common._RESIDENT.clear()  # as in a fresh server: nothing loaded yet
    try:
        at = home()
        assert not at.exception
        assert at.title[0].value == "actscale"
        assert "No model loaded" in at.info[0].value
        assert not common._RESIDENT, "the Home page must never load a model"
    finally:
        common._RESIDENT.update(saved)
    assert any("No runs yet" in m.value for m in at.markdown)
    assert any("Start on **Train**" in m.value for m in at.markdown)
    labels = [p.value for p in at.get("page_link")]
    assert "Train" in labels and "Runs" in labels


def test_home_lists_recent_runs_with_headline_metrics(ui_store, source_runs):
    older, newer = copy_runs(source_runs, ui_store)
    (ui_store.root / "0123456789abcdef").mkdir()  # a broken folder never breaks Home
    at = home()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert set(table["run"]) == {older.run_id, newer.run_id}
    assert {
        "test flip β=+1 (unmodified → steered)",
        "test flip β=−1 (unmodified → steered)",
        "faithfulness KL",
        "effective / components",
    } <= set(table.columns)
    n = newer.metrics["test"]
    row = table.set_index("run").loc[newer.run_id]
    assert row["effective / components"] == f"{n['n_effective']} / {n['n_components']}"
    assert row["test flip β=+1 (unmodified → steered)"].startswith(f"{n['acc_base']:.2f} → {n['flip_acc_pos']:.2f} [")
    # counted in words ("2 run(s)", "1 broken bundle(s) are" before)
    assert [c.value for c in at.caption if "broken" in c.value] == [
        f"2 runs in {ui_store.root}; 1 broken bundle is listed on **Runs**."
    ]


def test_home_run_picker_links_to_the_chosen_run(ui_store, source_runs):
    a, b = copy_runs(source_runs, ui_store)
    at = home()
    picker = at.selectbox(key="home_run")
    assert len(picker.options) == 2 and all(" · " in o for o in picker.options)  # labelled runs
    picker.set_value(a.run_id).run()
    assert not at.exception
    assert f"Open run {a.run_id} on Explore" in [p.value for p in at.get("page_link")]
    picker.set_value(b.run_id).run()
    assert f"Open run {b.run_id} on Explore" in [p.value for p in at.get("page_link")]


def test_home_shows_the_loaded_model(ui_store, tiny_llama):
    at = home()
    at.switch_page("app_pages/1_Train.py").run()  # the Train page loads the session's model
    assert not at.exception
    at.switch_page("app_pages/0_Home.py").run()
    assert "Loaded model: tiny-llama" in at.info[0].value


def test_every_page_runs_in_the_frame_with_the_sidebar(ui_store):
    """app.py declares the pages (st.navigation); each one runs inside it, under one sidebar."""
    from actscale.ui import common, navigation

    saved = dict(common._RESIDENT)
    common._RESIDENT.clear()
    try:
        at = home()
        assert [c.value for c in at.sidebar.caption] == ["No model loaded (viewer mode)", f"Runs in `{ui_store.root}`"]
        titles = {}
        for info in navigation.PAGES:
            at.switch_page(info.path).run()
            assert not at.exception, info.path
            titles[info.title] = at.title[0].value
            assert len(at.sidebar.caption) == 2
    finally:
        common._RESIDENT.update(saved)
    assert titles == {
        "Home": "actscale",
        "Train": "Train",
        "Explore": "Explore a run",
        "Compare": "Compare runs",
        "Playground": "Playground",
        "Runs": "Runs",
    }
    at.switch_page(navigation.TRAIN.path).run()  # the Train page loads the session's model
    at.switch_page(navigation.HOME.path).run()
    assert at.sidebar.caption[0].value.startswith("Model: tiny-llama (")


def test_the_sidebar_names_the_model_the_page_loaded_on_the_same_run(ui_store):
    """The sidebar is drawn before the page; a page that loads the model (Train) has it named
    when it is done, not on the next run."""
    from actscale.ui import common, navigation

    saved = dict(common._RESIDENT)
    common._resident_model.clear()  # so that the page loads it (and not the cache's copy)
    common._RESIDENT.clear()
    try:
        at = home()
        assert at.sidebar.caption[0].value == "No model loaded (viewer mode)"
        at.switch_page(navigation.TRAIN.path).run()
        assert not at.exception
        assert at.sidebar.caption[0].value.startswith("Model: tiny-llama (")
        assert [c.value for c in at.sidebar.caption][1:] == [f"Runs in `{ui_store.root}`"]
    finally:
        common._resident_model.clear()
        common._RESIDENT.clear()
        common._RESIDENT.update(saved)


def test_page_config_is_set_once_in_app_py():
    sources = {p.name: p.read_text() for p in [ROOT / "app.py", *sorted((ROOT / "app_pages").glob("*.py"))]}
    assert [name for name, text in sources.items() if "set_page_config" in text] == ["app.py"]
    from actscale.ui import navigation

    assert sorted(info.path for info in navigation.PAGES) == sorted(f"app_pages/{n}" for n in sources if n != "app.py")
