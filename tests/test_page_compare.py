"""The Compare page through Streamlit's AppTest, on tiny-model runs of the three methods."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_method_runs
from streamlit.testing.v1 import AppTest

from actscale.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "app_pages" / "3_Compare.py")
SITES = ("attn_out", "mlp_out", "head")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_llama):
    """One tiny run per method (made once for the module), in a store of their own."""
    root = tmp_path_factory.mktemp("compare") / "runs"
    return root, make_method_runs(root, tiny_llama, SITES)


@pytest.fixture(autouse=True)
def env(runs, monkeypatch, sync_jobs):
    monkeypatch.setenv("ACTSCALE_STORE", str(runs[0]))
    monkeypatch.setenv("ACTSCALE_MODEL", "tiny-llama")


def open_page() -> AppTest:
    return AppTest.from_file(PAGE, default_timeout=60).run()


def chart_keys(at: AppTest) -> list[str]:
    return [c.proto.id.split("-fig-", 1)[1] for c in at.get("plotly_chart")]


def chart(at: AppTest, prefix: str) -> dict:
    found = [c for c in at.get("plotly_chart") if c.proto.id.split("-fig-", 1)[1].startswith(prefix)]
    assert len(found) == 1
    return json.loads(found[0].proto.spec)


def comparison_table(at: AppTest):
    tables = [d.value for d in at.dataframe if "faithfulness_kl" in d.value.columns]
    assert len(tables) == 1
    return tables[0]


def test_smoke_default_selection(runs):
    at = open_page()
    assert not at.exception and not at.error
    # DynScalar keeps prompts of all lengths, so no run shares the newest run's dataset hash:
    # the default falls back to the runs on the same task, model and seed, i.e. all three.
    assert set(at.multiselect(key="compare_pick").value) == {b.run_id for b in runs[1].values()}
    assert {"methods", "params", "tradeoff-min-0", "tradeoff-faith-0"} <= set(chart_keys(at))
    assert chart(at, "params")["layout"]["yaxis"]["type"] == "log"


def test_selecting_runs_shows_their_comparison(runs):
    at = open_page()
    two = [runs[1]["activscalar"].run_id, runs[1]["steervec"].run_id]
    at.multiselect(key="compare_pick").set_value(two).run()
    assert not at.exception and not at.error
    table = comparison_table(at)
    assert sorted(table["run_id"].unique()) == sorted(two)
    assert set(table["split"]) == {"train", "val", "test"} and len(table) == 6
    methods = chart(at, "methods")
    # train and test side by side, each flip rate next to the unmodified model's
    assert {t["name"] for t in methods["data"]} == {"train", "test", "unmodified (train)", "unmodified (test)"}
    assert len(methods["data"]) == 12  # (4 panels + 2 base-rate markers) × 2 splits
    assert set(table["β = −1"].str.extract(r"^(\d\.\d\d) → ")[0].notna()) == {True}
    # every trade-off point carries its run id for click-through
    points = chart(at, "tradeoff-faith")
    ids = {row[0] for trace in points["data"] for row in trace["customdata"]}
    assert ids == set(two)

    at.multiselect(key="compare_pick").set_value([]).run()
    assert not at.exception and "Choose at least one run." in [i.value for i in at.info]


def test_tradeoff_controls(runs):
    at = open_page()
    at.selectbox(key="compare_minimality").set_value("effective_frac").run()
    at.selectbox(key="compare_colour").set_value("lambda_m").run()
    at.radio(key="compare_split").set_value("train").run()
    assert not at.exception and not at.error
    spec = chart(at, "tradeoff-min")
    assert spec["layout"]["xaxis"]["title"]["text"] == "minimality: fraction of effective components"
    assert all(t["name"].startswith("λ_M = ") for t in spec["data"])


def text_input(at: AppTest, label: str):
    return next(t for t in at.text_input if t.label == label)


def launch_button(at: AppTest):
    return next(b for b in at.button if b.label == "Launch sweep")


def test_bad_sweep_values_are_one_error(runs):
    at = open_page()
    text_input(at, "λ_M (minimality)").set_value("0.01, lots")
    launch_button(at).click().run()
    assert not at.exception
    assert len(at.error) == 1 and "λ_M" in at.error[0].value and "not a number" in at.error[0].value
    text_input(at, "λ_M (minimality)").set_value("0.01")
    text_input(at, "m (margin)").set_value("1, 2, 3, 4")
    text_input(at, "λ_F (faithfulness)").set_value("0, 0.5, 1, 2")
    text_input(at, "λ_M (minimality)").set_value("0.001, 0.01")
    launch_button(at).click().run()
    assert not at.exception
    assert len(at.error) == 1 and "32 runs" in at.error[0].value


def test_sweep_creates_runs(runs):
    root, bundles = runs
    before = {r.run_id for r in RunStore(root).list()}
    base = bundles["activscalar"]
    at = open_page()
    at.selectbox(key="sweep_base").set_value(base.run_id).run()
    text_input(at, "λ_M (minimality)").set_value("0.02, 0.2")
    next(n for n in at.number_input if n.label == "Steps per run").set_value(2)
    launch_button(at).click().run()  # the sweep runs inside this run (sync_jobs), then the page reruns
    assert not at.exception and not at.error
    assert any("The last sweep finished: 2 runs (2 new)" in s.value for s in at.success)
    new = [r for r in RunStore(root).list() if r.run_id not in before]
    assert len(new) == 2
    assert sorted(r.config["lambda_m"] for r in new) == [0.02, 0.2]
    for r in new:
        # the base run's configuration, prompts and split, with only the swept values changed
        assert r.config["steps"] == 2 and r.config["method"] == "activscalar"
        assert r.config["dataset_hash"] == base.config["dataset_hash"]
        assert r.config["lambda_f"] == base.config["lambda_f"] and r.config["margin"] == base.config["margin"]
    # the finished sweep joins the comparison
    assert {r.run_id for r in new} <= set(at.multiselect(key="compare_pick").value)
    assert {r.run_id for r in new} <= set(comparison_table(at)["run_id"])


def test_open_run_without_the_app_keeps_the_choice(runs):
    at = open_page()
    at.multiselect(key="compare_pick").set_value([b.run_id for b in runs[1].values()]).run()
    target = runs[1]["steervec"].run_id
    at.selectbox(key="compare_open").set_value(target)
    next(b for b in at.button if b.label == "Open on Explore").click().run()
    assert not at.exception and not at.error
    assert at.query_params["run"] == target
    assert any(target in i.value for i in at.info)


@pytest.mark.skipif(not (ROOT / "app.py").exists(), reason="needs the Home page (app.py)")
def test_open_run_switches_to_explore(runs):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("app_pages/3_Compare.py").run()
    assert not at.exception
    at.multiselect(key="compare_pick").set_value([b.run_id for b in runs[1].values()]).run()
    target = runs[1]["dynscalar"].run_id
    at.selectbox(key="compare_open").set_value(target)
    next(b for b in at.button if b.label == "Open on Explore").click().run()
    assert not at.exception and not at.error
    assert [t.value for t in at.title] == ["Explore a run"]
    assert at.selectbox(key="explore_run").value == target
    assert at.query_params["run"] == target


def test_selected_customdata():
    from actscale.ui.common import selected_customdata

    event = {"selection": {"points": [{"customdata": ["abc"], "x": 1}, {"customdata": "def"}, {"x": 2}]}}
    assert selected_customdata(event) == ["abc", "def"]
    assert selected_customdata(None) == [] and selected_customdata({"selection": {}}) == []


def test_parse_values():
    from actscale.errors import ActscaleError
    from actscale.ui.common import parse_values

    assert parse_values(" 0.1, 1e-3 ,0.1,", "x") == [0.1, 0.001]
    for bad in ("", " , ", "a", "-1", "nan", "inf"):
        with pytest.raises(ActscaleError):
            parse_values(bad, "x")


def test_broken_bundles_never_break_the_page(runs):
    """A folder of garbage, and a run whose metrics.json was edited into nonsense: the page
    still draws, with at most one error line."""
    import shutil

    root, bundles = runs
    garbage = root / "aaaaaaaaaaaaaaaa"
    garbage.mkdir()
    (garbage / "config.json").write_bytes(b"\xff\xfe not json")
    edited = root / "bbbbbbbbbbbbbbbb"
    shutil.copytree(root / bundles["steervec"].run_id, edited)
    config = json.loads((edited / "config.json").read_text())
    config["run_id"] = "bbbbbbbbbbbbbbbb"
    config["created"] = "9999-01-01T00:00:00+00:00"  # the newest: chosen by default
    (edited / "config.json").write_text(json.dumps(config))
    (edited / "metrics.json").write_text(json.dumps({"test": {"flip_acc_pos": "lots", "n_params": None}}))
    try:
        at = open_page()
        assert not at.exception
        assert len(at.error) <= 1
        assert not any("aaaaaaaaaaaaaaaa" in o for o in at.multiselect(key="compare_pick").options)
        at.multiselect(key="compare_pick").set_value([bundles["activscalar"].run_id]).run()
        assert not at.exception and not at.error
    finally:
        shutil.rmtree(garbage)
        shutil.rmtree(edited)


def test_sweep_on_a_ray_cluster_gives_the_runs_a_local_sweep_would(runs, tiny_llama, tmp_path):
    """The launcher's Ray choice (a local cluster, 'auto'): the same run ids as the same grid
    trained in this process, stored in the page's store."""
    pytest.importorskip("ray")
    from actscale.executors import run_configs
    from actscale.sweeps import base_examples, sweep_configs

    root, bundles = runs
    base = bundles["steervec"]
    before = {r.run_id for r in RunStore(root).list()}
    at = open_page()
    at.selectbox(key="sweep_base").set_value(base.run_id).run()
    text_input(at, "λ_M (minimality)").set_value("0.002, 0.02")
    next(n for n in at.number_input if n.label == "Steps per run").set_value(2)
    at.radio(key="sweep_executor").set_value("Ray cluster")
    text_input(at, "Ray address").set_value("auto")
    launch_button(at).click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("The last sweep finished: 2 runs (2 new)" in s.value for s in at.success)
    new = sorted(r.run_id for r in RunStore(root).list() if r.run_id not in before)
    grid = sweep_configs(base.config, [0.002, 0.02], [base.config["lambda_f"]], [base.config["margin"]], steps=2)
    local = run_configs(grid, store=tmp_path, examples=base_examples(base.dataset), model=tiny_llama)
    assert new == sorted(b.run_id for b in local)
