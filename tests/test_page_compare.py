"""The Compare page through Streamlit's AppTest, on tiny-model runs of the three methods."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_method_runs
from streamlit.testing.v1 import AppTest

from actscale.runs.store import RunStore
from actscale.views.analysis import flips_text, floor_result

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "app_pages" / "3_Compare.py")
SITES = ("attn_out", "mlp_out", "head")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_llama):
    """One tiny run per method (made once for the module), in a store of their own."""
    root = tmp_path_factory.mktemp("compare") / "runs"
    return root, make_method_runs(root, tiny_llama, SITES)


@pytest.fixture(autouse=True)
def env(runs, monkeypatch, inline_jobs):
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
    # the two runs share their prompts and split: one logit-bias floor beside them, from the first one's Δ
    first = next(i for i in table["run_id"] if not i.endswith(":floor"))
    assert sorted(table["run_id"].unique()) == sorted([*two, f"{first}:floor"])
    assert set(table["split"]) == {"train", "val", "test"} and len(table) == 9
    floor = table[table["method"] == "logit-bias floor"].set_index("split")
    expected = floor_result(runs[1]["activscalar"])
    for split in ("train", "val", "test"):
        assert floor.loc[split, "flip_acc_neg"] == expected["splits"][split]["flip_acc_neg"]
        assert (floor.loc[split, "n_params"], floor.loc[split, "faithfulness_kl"]) == (1, 0.0)
    methods = chart(at, "methods")
    # train and test side by side, each flip rate next to the unmodified model's
    assert {t["name"] for t in methods["data"]} == {"train", "test", "unmodified (train)", "unmodified (test)"}
    assert len(methods["data"]) == 12  # (4 panels + 2 base-rate markers) × 2 splits
    assert methods["data"][0]["x"][-1] == f"logit-bias<br>floor<br>{first[:6]}"
    (said,) = [c.value for c in at.caption if c.value.startswith("The **logit-bias floor** adds ±")]
    # its test rates after their base, with their intervals and n, as every run's are
    test = expected["splits"]["test"]
    assert test["n_groups"] == 2 and f"Its {flips_text('test', test)} (unmodified → steered" in said
    assert f"β = −1 {1 - test['acc_base']:.2f} → {test['flip_acc_neg']:.2f} [" in said
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
    text_input(at, "Margin m").set_value("1, 2, 3, 4")
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
    launch_button(at).click().run()  # the sweep runs inside this run (inline_jobs), then the page reruns
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
    from actscale.ui.actions import parse_values

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


# ---------------------------------------------------------------- the default comparison and its link
def listing(run_id: str, method: str, **config):
    from actscale.engine.config import TrainConfig
    from actscale.runs.bundle import RunListing
    from actscale.runs.records import ModelShape, Provenance, RunRecord

    base = {"task": "ioi", "model": "m", "method": method, "seed": 0, "n_prompts": 48, "n_test": 200}
    train_config = TrainConfig(**{**base, **config})
    provenance = Provenance(run_id, "", 16, ModelShape(2, 64, 4, 16))
    record = RunRecord(train_config, provenance, {})
    return RunListing(run_id, Path("/nowhere") / run_id, True, config=train_config.to_record(), record=record)


def test_default_comparison_is_the_latest_run_of_each_method():
    from actscale.views.analysis import default_comparison

    rows = [  # newest first
        listing("a" * 16, "dynscalar"),  # the newest: task ioi, model m, seed 0
        listing("b" * 16, "activscalar", seed=1),  # latest activscalar, but another seed
        listing("c" * 16, "activscalar", n_prompts=20),  # same seed, another split
        listing("d" * 16, "activscalar"),  # same split and seed: chosen
        listing("e" * 16, "steervec", task="ccc"),  # another task
        listing("f" * 16, "steervec", model="other"),  # another model
        listing("0" * 16, "steervec", seed=3, n_prompts=20),  # neither, but the only one: chosen
        listing("1" * 16, "dynscalar"),  # an older dynscalar: the newer one is kept
    ]
    assert default_comparison(rows) == ["a" * 16, "d" * 16, "0" * 16]
    # split before seed: with no run on both, a run on the same split (data seed 0) wins over one
    # on the same seed
    rows = [
        listing("a" * 16, "dynscalar"),
        listing("b" * 16, "steervec", seed=1, data_seed=0),
        listing("c" * 16, "steervec", n_test=9),
    ]
    assert default_comparison(rows) == ["a" * 16, "b" * 16]
    # data_seed unset reads as the seed
    rows = [listing("a" * 16, "dynscalar", data_seed=None), listing("b" * 16, "steervec", data_seed=0)]
    assert default_comparison(rows) == ["a" * 16, "b" * 16]
    assert default_comparison([]) == []


def param(at: AppTest, name: str) -> str:
    """A query parameter as the page left it (AppTest gives a list for a value the page wrote)."""
    value = at.query_params[name]
    return value[-1] if isinstance(value, list) else value


def test_the_default_selection_goes_into_the_link(runs):
    from actscale.views.analysis import default_comparison

    at = open_page()
    chosen = at.multiselect(key="compare_pick").value
    # default_comparison's choice (tested above): here one run of each method (other tests of
    # this module may have added sweep runs), and the link says it
    listed = {r.run_id: r.config["method"] for r in RunStore(runs[0]).list()}
    assert chosen == default_comparison(RunStore(runs[0]).list())
    assert sorted(listed[i] for i in chosen) == ["activscalar", "dynscalar", "steervec"]
    assert param(at, "runs") == ",".join(chosen)
    ids = [b.run_id for b in runs[1].values()]
    assert any(
        c.value.startswith("The latest run of each method on **ioi** with model `tiny-llama`") for c in at.caption
    )
    at.multiselect(key="compare_pick").set_value(ids[:1]).run()
    assert param(at, "runs") == ids[0]
    assert not any(c.value.startswith("The latest run of each method") for c in at.caption)


def open_link(runs_param: str) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["runs"] = runs_param
    return at.run()


def test_a_link_reproduces_the_selection(runs):
    two = [runs[1]["steervec"].run_id, runs[1]["activscalar"].run_id]
    at = open_link(",".join(two))
    assert not at.exception and not at.error and not at.warning
    assert at.multiselect(key="compare_pick").value == two
    table = comparison_table(at)
    assert sorted(table[table["method"] != "logit-bias floor"]["run_id"].unique()) == sorted(two)
    assert param(at, "runs") == ",".join(two)


def test_bad_links_are_one_warning_and_ignored(runs):
    from actscale.views.analysis import default_comparison

    ids = [b.run_id for b in runs[1].values()]
    at = open_link(f"{ids[0]},0123456789abcdef")
    assert not at.exception and not at.error
    assert [w.value for w in at.warning] == [
        "Runs not in this store (or broken), left out of the comparison: 0123456789abcdef"
    ]
    assert at.multiselect(key="compare_pick").value == [ids[0]]
    for bad, reason in (("../../etc", "invalid run id"), ("0123456789abcdef", "none of these runs is in this store")):
        at = open_link(bad)
        assert not at.exception and not at.error
        assert len(at.warning) == 1
        assert (
            at.warning[0].value.startswith(f"Ignored ?runs={bad!r} from the link: ") and reason in at.warning[0].value
        )
        assert at.multiselect(key="compare_pick").value == default_comparison(RunStore(runs[0]).list())


def test_a_report_of_the_selection_with_its_size(runs):
    from actscale.views.report import human_size, render_comparison_report

    two = [runs[1]["steervec"].run_id, runs[1]["dynscalar"].run_id]
    at = open_link(",".join(two))
    labels = [d.proto.label for d in at.get("download_button")]
    assert "Download the report of these runs (HTML)" not in labels  # made on request only
    next(b for b in at.button if b.label == "Make an HTML report of these runs").click().run()
    assert not at.exception and not at.error
    store = RunStore(runs[0])
    size = len(render_comparison_report([store.load(i) for i in two]).encode())
    assert f"{human_size(size)}: 2 runs in one HTML file, plotly.js included once" in [c.value for c in at.caption]
    assert "Download the report of these runs (HTML)" in [d.proto.label for d in at.get("download_button")]
    # another selection needs its own report
    at.multiselect(key="compare_pick").set_value(two[:1]).run()
    assert "Download the report of these runs (HTML)" not in [d.proto.label for d in at.get("download_button")]


def test_map_checks_are_compared(runs, tiny_llama):
    from actscale.checks import CheckOptions, run_checks

    pick = [runs[1]["activscalar"].run_id, runs[1]["steervec"].run_id]
    at = open_page()
    at.multiselect(key="compare_pick").set_value(pick).run()
    if runs[1]["activscalar"].checks() is None and runs[1]["steervec"].checks() is None:
        assert any("None of these runs has its map checks yet" in c.value for c in at.caption)
        assert "sufficiency-compared" not in chart_keys(at)
    out = run_checks(tiny_llama, runs[1]["activscalar"], CheckOptions(prompts=8, draws=5, precision="float32"))
    at = open_page()
    at.multiselect(key="compare_pick").set_value(pick).run()
    assert not at.exception and not at.error
    (table,) = [d.value for d in at.dataframe if "k90" in d.value.columns]
    assert list(table["run_id"]) == [runs[1]["activscalar"].run_id]
    # The tiny run moves neither direction beyond its interval: no k90, no random control.
    assert out["map"]["k90"] is None and table["k90"].isna().all()
    assert int(table["of components"].iloc[0]) == out["map"]["n_components"]
    overlay = chart(at, "sufficiency-compared")
    assert [t["name"] for t in overlay["data"]] == [f"activscalar {runs[1]['activscalar'].run_id[:8]} top-k"]


def test_sweep_on_a_ray_cluster_gives_the_runs_a_local_sweep_would(runs, tiny_llama, tmp_path):
    """The launcher's Ray choice (a local cluster, 'auto'): the same run ids as the same grid
    trained in this process, stored in the page's store."""
    pytest.importorskip("ray")
    from actscale.runs.executors import run_configs
    from actscale.runs.sweeps import base_examples, sweep_configs

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
    grid = sweep_configs(
        base.record.config, [0.002, 0.02], [base.record.config.lambda_f], [base.record.config.margin], steps=2
    )
    local = run_configs(grid, store=tmp_path, examples=base_examples(base.dataset), model=tiny_llama)
    assert new == sorted(b.run_id for b in local)
