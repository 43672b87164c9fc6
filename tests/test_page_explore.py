"""The Explore page through Streamlit's AppTest, on tiny-model runs of the three methods (its
links: test_page_explore_links; the parts below the maps: test_page_explore_tabs).

Explore is viewer mode: no test here may need a model on the page, and none is loaded."""

from __future__ import annotations

import shutil

import pytest
import torch
from explore_page_helpers import METHODS, chart, chart_keys, copy_run, open_link, open_page
from safetensors.torch import save_file

pytestmark = pytest.mark.usefixtures("explore_env")

SITES = ("attn_out", "mlp_out", "head")


@pytest.mark.parametrize("method", METHODS)
def test_query_param_opens_that_run(explore_runs, method):
    run_id = explore_runs[1][method].run_id
    at = open_page(run_id)
    assert not at.exception and not at.error
    assert at.selectbox(key="explore_run").value == run_id
    assert at.query_params["run"] == run_id
    keys = chart_keys(at)
    assert "history" in keys
    if method == "activscalar":
        assert {"alpha-attn_out", "alpha-mlp_out", "alpha-head", "head-position", "head-sum"} <= set(keys)
        heat = chart(at, "alpha-attn_out")["data"][0]
        assert heat["type"] == "heatmap" and heat["zmid"] == 0  # diverging, centred on "no change"
        assert heat["x"] == explore_runs[1][method].info["position_labels"]  # token strings on the position axis
    elif method == "steervec":
        assert {"ratio-attn_out", "cos-attn_out", "ratio-head", "cos-head", "head-position"} <= set(keys)
        assert chart(at, "cos-mlp_out")["data"][0]["zmin"] == -1
    else:
        assert {"dyn-norms", "head-dyn", "dyn-prompt-attn_out", "dyn-lengths"} <= set(keys)
        # the lengths' bars (six a length) across the page, the per-site maps two to a row
        in_columns = {c.proto.id.split("-fig-", 1)[1] for col in at.columns for c in col.get("plotly_chart")}
        assert "dyn-prompt-attn_out" in in_columns and "dyn-lengths" not in in_columns
    # the top-components table, the metrics table, and a model never loaded
    assert len(at.dataframe) >= 2
    assert any("Download table (CSV)" == b.proto.label for b in at.get("download_button"))


def test_invalid_query_param_is_one_error_line(explore_runs):
    at = open_page("../../etc")
    assert not at.exception
    assert len(at.error) == 1 and "invalid run id" in at.error[0].value
    # and the page still shows a run (the newest)
    assert at.selectbox(key="explore_run").value in {b.run_id for b in explore_runs[1].values()}


def test_unknown_run_id_is_a_warning(explore_runs):
    at = open_page("0123456789abcdef")
    assert not at.exception and not at.error
    assert len(at.warning) == 1 and "0123456789abcdef" in at.warning[0].value


def test_head_position_select_changes_the_figure(explore_runs):
    at = open_page(explore_runs[1]["activscalar"].run_id)
    slider = at.select_slider(key="explore_head_position")
    n_pos = explore_runs[1]["activscalar"].config["n_pos"]
    assert slider.value == n_pos - 1  # the last position (where the answer is read) by default
    before = chart(at, "head-position")
    summed = chart(at, "head-sum")
    at.select_slider(key="explore_head_position").set_value(n_pos - 2).run()
    assert not at.exception and not at.error
    after = chart(at, "head-position")
    assert after["data"][0]["z"] != before["data"][0]["z"]
    assert explore_runs[1]["activscalar"].info["position_labels"][n_pos - 2] in after["layout"]["title"]["text"]
    assert chart(at, "head-sum")["data"][0]["z"] == summed["data"][0]["z"]  # not tied to the position


def test_dyn_prompt_select_changes_the_scalars(explore_runs):
    bundle = explore_runs[1]["dynscalar"]
    at = open_page(bundle.run_id)
    before = chart(at, "dyn-prompt-mlp_out")
    lengths = [len(t) for t in bundle.info["str_tokens"]]
    other = next(i for i, n in enumerate(lengths) if n != lengths[0])
    at.selectbox(key="explore_dyn_prompt").set_value(other).run()
    assert not at.exception and not at.error
    after = chart(at, "dyn-prompt-mlp_out")
    assert len(after["data"][0]["x"]) == lengths[other] != len(before["data"][0]["x"])


def test_top_components_count(explore_runs):
    at = open_link(run=explore_runs[1]["activscalar"].run_id, tab="top")
    at.number_input(key="explore_top_k").set_value(7).run()
    assert not at.exception
    tables = [d.value for d in at.dataframe if "abs" in d.value.columns]
    assert len(tables) == 1 and len(tables[0]) == 7
    assert list(tables[0]["abs"]) == sorted(tables[0]["abs"], reverse=True)


BROKEN_FIGURES = [  # one line per figure drawn from the broken arrays (the top components' tab is closed)
    "this run's analysis arrays lack magnitude.head (the mean |α(h)| DynScalar applied)",
    "The per-prompt scalars failed: IndexError: too many indices for tensor of dimension 1",
]


def test_broken_bundles_never_break_the_page(explore_runs):
    root, bundles = explore_runs
    garbage = root / "aaaaaaaaaaaaaaaa"
    garbage.mkdir()
    (garbage / "config.json").write_text("{not json")
    unreadable = copy_run(root, bundles["activscalar"].run_id, "bbbbbbbbbbbbbbbb")
    (unreadable / "params.safetensors").write_bytes(b"\x00garbage")
    # readable, but its analysis arrays hold only per-prompt scalars of the wrong shape: each figure drawn from
    # them (the scalars, and the mean |α(h)| the maps show) fails as one line
    misshapen = copy_run(root, bundles["dynscalar"].run_id, "cccccccccccccccc")
    n = len(bundles["dynscalar"].dataset)
    save_file({f"dynalpha.{s}": torch.zeros(n, 1) for s in SITES}, str(misshapen / "analysis.safetensors"))
    try:
        at = open_page()
        assert not at.exception
        for run_id in ("aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"):
            at = open_page(run_id)
            # the page says the run cannot be read and shows the newest readable one: the misshapen run below
            assert [e.value for e in at.error] == BROKEN_FIGURES
            assert not at.exception
        at = open_page("cccccccccccccccc")
        assert not at.exception
        assert [e.value for e in at.error] == BROKEN_FIGURES
        assert "history" in chart_keys(at)  # the rest of the page is drawn
        at = open_link(run="cccccccccccccccc", tab="top")  # the top components rank by the missing arrays too
        assert [e.value for e in at.error] == [
            *BROKEN_FIGURES,
            "this run's analysis arrays lack magnitude.attn_out (the mean |α(h)| DynScalar applied)",
        ]
        at = open_page(bundles["steervec"].run_id)
        assert not at.exception and not at.error
    finally:
        for path in (garbage, unreadable, misshapen):
            shutil.rmtree(path)


@pytest.mark.parametrize("method", METHODS)
def test_viewer_mode_never_loads_a_model(explore_runs, method, monkeypatch):
    from actscale.engine import models
    from actscale.ui import common

    def refuse(*args, **kwargs):
        raise AssertionError("Explore must not load a model")

    monkeypatch.setattr(common, "resident_model", refuse)
    monkeypatch.setattr(common, "load_model", refuse)
    monkeypatch.setattr(models, "load_model", refuse)
    at = open_page(explore_runs[1][method].run_id)
    assert not at.exception and not at.error


def test_headline_tiles_say_what_moved_and_reliability_is_drawn(explore_runs):
    bundle = explore_runs[1]["activscalar"]
    at = open_link(run=bundle.run_id, tab="reliability")
    assert not at.exception and not at.error
    m = bundle.metrics["test"]
    tiles = {t.label: t for t in at.metric}
    from streamlit.proto.Metric_pb2 import Metric

    pos = tiles[f"flip rate β = +1 (test, n = {m['n_prompts']})"]
    assert pos.value == f"{m['flip_acc_pos']:.2f}"
    # The tiny run moves no test prompt either way: no change, drawn without an arrow (it had been
    # "+0.00" under a green arrow up).
    assert (m["flip_acc_pos"], m["flip_acc_neg"]) == (m["acc_base"], 1 - m["acc_base"])
    assert (pos.delta, pos.proto.direction) == (f"±0.00 vs unmodified {m['acc_base']:.2f}", Metric.NONE)
    neg = tiles[f"flip rate β = −1 (test, n = {m['n_prompts']})"]
    assert (neg.delta, neg.proto.direction) == (f"±0.00 vs unmodified {1 - m['acc_base']:.2f}", Metric.NONE)
    # the intervals beside the tiles, not only in their help

    assert m["n_groups"] == 2  # IOI's two template families: too few for an interval by group

    def quoted(base: float, name: str) -> str:
        lo, hi = m[f"{name}_ci95"]
        return f"{base:.2f} → {m[name]:.2f} [{lo:.2f}, {hi:.2f}] (n = {m['n_prompts']} from {m['n_groups']} groups)"

    assert f"Test flips: β = +1 {quoted(m['acc_base'], 'flip_acc_pos')}, β = −1 " + quoted(
        1 - m["acc_base"], "flip_acc_neg"
    ) + " (unmodified → steered [95% Wilson interval])." in [c.value for c in at.caption]
    assert tiles["effective components"].value == f"{m['n_effective']:,}"
    # an ActivScalar component is a cell: one share, not the same figure twice
    assert tiles["effective components"].delta == f"of {m['n_components']:,} ({100 * m['effective_frac']:.1f}%)"
    assert tiles["effective components"].proto.direction == Metric.NONE  # no arrow: a share is not a change
    assert "reliability" in chart_keys(at)
    worst = [d.value for d in at.dataframe if "shortfall" in d.value.columns]
    assert len(worst) == 1 and len(worst[0]) == min(10, m["n_prompts"])
    assert any(b.proto.label == "Download every prompt (CSV)" for b in at.get("download_button"))


def test_the_effective_tile_gives_the_cells_share_where_it_differs(explore_runs):
    """A DynScalar component is a whole layer: its tile gives the share of components and the
    share of cells, which differ."""
    bundle = explore_runs[1]["dynscalar"]
    at = open_link(run=bundle.run_id)
    assert not at.exception and not at.error
    m = bundle.metrics["test"]
    share, cells = f"{100 * m['effective_frac']:.1f}%", f"{100 * m['cells_effective_frac']:.1f}%"
    assert share != cells
    tile = next(t for t in at.metric if t.label == "effective components")
    assert (tile.value, tile.delta) == (
        f"{m['n_effective']:,}",
        f"of {m['n_components']:,} ({share}); {cells} of cells",
    )


def test_map_checks_are_drawn_from_the_bundle(explore_runs, tiny_llama):
    """A run with checks shows its k90 next to the maps and the sufficiency figure with its
    tables; a run without says the map is untested and offers the launcher."""
    from actscale.checks import CheckOptions, run_checks

    bundle = explore_runs[1]["dynscalar"]
    out = run_checks(tiny_llama, bundle, CheckOptions(prompts=8, draws=5, precision="float32"))
    at = open_link(run=bundle.run_id, tab="checks", interactive="1")
    assert not at.exception and not at.error
    infos = [i.value for i in at.info]
    # The tiny run moves neither direction beyond its interval: said, and nothing drawn at a k90.
    assert out["map"]["k90"] is None
    assert any(v.startswith("**Map check.** No effect to localise: on all 3 validation prompts") for v in infos)
    assert "checks-sufficiency" in chart_keys(at)
    fig = chart(at, "checks-sufficiency")
    names = {t.get("name") for t in fig["data"]}
    assert {"keep top-k (sufficiency)", "remove top-k (necessity)"} <= names
    assert not any(str(n).startswith("random placement") for n in names)
    assert fig["layout"]["title"]["text"].startswith("Sufficiency and necessity of the top-k components (no effect")
    assert [e.label for e in at.expander if e.label.startswith("Run the checks")] == ["Run the checks again"]
    # next to the learned map, the free ones on the same cells, with their agreement
    assert {"free-atp-attn_out", "free-atp-mlp_out", "free-atp-head"} <= set(chart_keys(at))
    assert chart(at, "free-atp-head")["data"][0]["zmid"] == 0
    tables = [d.value for d in at.dataframe if "Spearman (effective in either)" in d.value.columns]
    assert len(tables) == 1 and list(tables[0]["map"]) == [
        "gradient × activation (AtP, zero ablation)",
        "AtP, mean ablation",
    ]
    local = chart(at, "free-localisation")
    assert {t["name"] for t in local["data"] if t.get("showlegend", True)} >= {"random (each draw)"}
    areas = [d.value for d in at.dataframe if "area keeping top-k" in d.value.columns]
    assert len(areas) == 1 and list(areas[0]["ranking"])[0] == "learned map"
    other = explore_runs[1]["steervec"]
    if other.checks() is None:
        at = open_link(run=other.run_id, tab="checks")
        assert any("No map checks for this run yet" in c.value for c in at.caption)
        assert [e.label for e in at.expander if e.label.startswith("Run the checks")] == ["Run the checks"]


def test_exact_patching_is_drawn_next_to_the_free_maps_or_says_why_not(explore_runs, tiny_llama, tmp_path):
    """A run whose counterfactuals move Δ shows the patching map per site and its verification
    table; the random tiny IOI runs' counterfactuals do not, and the page says so."""
    from test_patching import last_word_dataset

    from actscale.checks import CheckOptions, run_checks
    from actscale.engine.training import TrainConfig
    from actscale.runs.api import train_run
    from actscale.runs.store import RunStore

    last_word_dataset(tmp_path / "d.csv")
    config = TrainConfig(model="tiny-llama", task="custom", dataset=str(tmp_path / "d.csv"), steps=2)
    bundle = train_run(config, tiny_llama, store=RunStore(explore_runs[0]))
    out = run_checks(tiny_llama, bundle, CheckOptions(prompts=8, draws=5, precision="float32", side_effects=False))
    assert out["map"]["free"]["patching"]["patched"] > 0
    at = open_link(run=bundle.run_id, tab="checks", interactive="1")
    assert not at.exception and not at.error
    assert {"free-patch-attn_out", "free-patch-mlp_out"} <= set(chart_keys(at))
    patch = chart(at, "free-patch-attn_out")
    assert patch["data"][0]["zmid"] == 0 and patch["layout"]["title"]["text"].startswith("activation patching")
    tables = [d.value for d in at.dataframe if "mean |share restored|" in d.value.columns]
    assert len(tables) == 1 and list(tables[0]["ranking"]) == [
        "learned map",
        "gradient × activation (AtP, zero ablation)",
        "AtP, mean ablation",
    ]
    areas = [d.value for d in at.dataframe if "area keeping top-k" in d.value.columns]
    assert list(areas[0]["ranking"])[-2] == "activation patching"  # a ranking in the localisation curves
    refused = explore_runs[1]["dynscalar"]
    if refused.checks() is None:  # the map checks' test above runs them first in a whole-file run
        run_checks(tiny_llama, refused, CheckOptions(prompts=8, draws=5, precision="float32"))
    at = open_link(run=refused.run_id, tab="checks")
    assert any(c.value.startswith("Exact activation patching patched nothing: the counterfactual") for c in at.caption)
    assert not [k for k in chart_keys(at) if k.startswith("free-patch-")]


def test_read_only_deployment_offers_the_command_not_the_button(explore_runs, monkeypatch):
    monkeypatch.setenv("ACTSCALE_READONLY", "1")
    run_id = explore_runs[1]["steervec"].run_id
    at = open_link(run=run_id, tab="checks")
    assert not at.exception
    assert not [e for e in at.expander if e.label.startswith("Run the checks")]
    assert any(f"python -m actscale analyse --run {run_id} --seeds 3" in c.value for c in at.caption)


BF16_NOTE = (
    "The checks' passes (in this run's precision: it was trained under bfloat16 autocast) on cpu, a CPU without "
    "AVX512-BF16 or AMX: PyTorch emulates bfloat16 there, and a pass takes several times as long as in float32 "
    "(6–7 times on a 2-core AVX2 CPU, docs/measured.md); “Passes in float32” runs them in float32."
)


def test_a_bf16_runs_checks_offer_float32_and_say_where_bf16_is_emulated(
    explore_runs, tiny_llama, monkeypatch, tmp_path
):
    """A run trained under bf16 autocast has its checks' passes in it (`analyse --precision
    run`): the launcher offers them in float32, says what bf16 costs where the CPU emulates it,
    and launches with the precision chosen. A float32 run's launcher offers no such choice."""
    import actscale.engine.models as models
    import actscale.ui.checks_panel as panel
    from actscale.engine.training import TrainConfig
    from actscale.errors import ActscaleError
    from actscale.runs.api import train_run
    from actscale.runs.store import RunStore

    config = TrainConfig(model="tiny-llama", autocast="bf16", steps=2, n_prompts=16, n_test=8, seed=5)
    bf16_run = train_run(config, tiny_llama, store=RunStore(tmp_path / "runs"))  # the module's store stays as it is
    monkeypatch.setenv("ACTSCALE_STORE", str(tmp_path / "runs"))
    asked = []

    def stop(bundle, options):
        asked.append((bundle.run_id, options.precision))
        raise ActscaleError("stopped before the job")

    monkeypatch.setattr(panel, "check_asked", stop)
    for native, note in ((False, [BF16_NOTE]), (True, [])):
        monkeypatch.setattr(models, "native_bf16", lambda _device, native=native: native)
        at = open_link(run=bf16_run.run_id, tab="checks")
        assert [c.value for c in at.caption if "bfloat16" in c.value] == note
        assert [c.label for c in at.checkbox if c.label == "Passes in float32"] == ["Passes in float32"]
    for tick, precision in ((True, "float32"), (False, "run")):
        next(c for c in at.checkbox if c.label == "Passes in float32").set_value(tick)
        at = next(b for b in at.button if b.label == "Run the checks").click().run()
        assert [e.value for e in at.error] == ["stopped before the job"]
        assert asked.pop() == (bf16_run.run_id, precision)
    monkeypatch.setattr(models, "native_bf16", lambda _device: False)
    monkeypatch.setenv("ACTSCALE_STORE", str(explore_runs[0]))
    at = open_link(run=explore_runs[1]["activscalar"].run_id, tab="checks")
    assert not [c for c in at.checkbox if c.label == "Passes in float32"]
    assert not [c for c in at.caption if "bfloat16" in c.value]
