"""The Explore page through Streamlit's AppTest, on tiny-model runs of the three methods.

Explore is viewer mode: no test here may need a model on the page, and none is loaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import make_method_runs, svg_images
from safetensors.torch import save_file
from streamlit.testing.v1 import AppTest

from actscale.ui import explore_tabs
from actscale.ui.common import markdown_table
from actscale.views import analysis
from actscale.views.plots import lines_svg, plot_run_history

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "app_pages" / "2_Explore.py")
METHODS = ("activscalar", "steervec", "dynscalar")
SITES = ("attn_out", "mlp_out", "head")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_llama):
    """One tiny run per method (made once for the module), in a store of their own."""
    root = tmp_path_factory.mktemp("explore") / "runs"
    return root, make_method_runs(root, tiny_llama, SITES)


@pytest.fixture(autouse=True)
def env(runs, monkeypatch):
    monkeypatch.setenv("ACTSCALE_STORE", str(runs[0]))
    monkeypatch.setenv("ACTSCALE_MODEL", "tiny-llama")


def open_page(run_id: str | None = None) -> AppTest:
    """The page on ``run_id`` with interactive maps: plotly figures, whose specifications these
    tests read (the default, SVG images: `test_the_maps_are_svg_images_unless_interactive`)."""
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["interactive"] = "1"
    if run_id is not None:
        at.query_params["run"] = run_id
    return at.run()


def chart(at: AppTest, key: str) -> dict:
    """The plotly specification of the figure drawn with ``show_figure(..., key)``."""
    found = [c for c in at.get("plotly_chart") if c.proto.id.endswith(f"-fig-{key}")]
    assert len(found) == 1, [c.proto.id for c in at.get("plotly_chart")]
    return json.loads(found[0].proto.spec)


def chart_keys(at: AppTest) -> list[str]:
    return [c.proto.id.split("-fig-", 1)[1] for c in at.get("plotly_chart")]


@pytest.mark.parametrize("method", METHODS)
def test_query_param_opens_that_run(runs, method):
    run_id = runs[1][method].run_id
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
        assert heat["x"] == runs[1][method].info["position_labels"]  # token strings on the position axis
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


def test_invalid_query_param_is_one_error_line(runs):
    at = open_page("../../etc")
    assert not at.exception
    assert len(at.error) == 1 and "invalid run id" in at.error[0].value
    # and the page still shows a run (the newest)
    assert at.selectbox(key="explore_run").value in {b.run_id for b in runs[1].values()}


def test_unknown_run_id_is_a_warning(runs):
    at = open_page("0123456789abcdef")
    assert not at.exception and not at.error
    assert len(at.warning) == 1 and "0123456789abcdef" in at.warning[0].value


def test_head_position_select_changes_the_figure(runs):
    at = open_page(runs[1]["activscalar"].run_id)
    slider = at.select_slider(key="explore_head_position")
    n_pos = runs[1]["activscalar"].config["n_pos"]
    assert slider.value == n_pos - 1  # the last position (where the answer is read) by default
    before = chart(at, "head-position")
    summed = chart(at, "head-sum")
    at.select_slider(key="explore_head_position").set_value(n_pos - 2).run()
    assert not at.exception and not at.error
    after = chart(at, "head-position")
    assert after["data"][0]["z"] != before["data"][0]["z"]
    assert runs[1]["activscalar"].info["position_labels"][n_pos - 2] in after["layout"]["title"]["text"]
    assert chart(at, "head-sum")["data"][0]["z"] == summed["data"][0]["z"]  # not tied to the position


def test_dyn_prompt_select_changes_the_scalars(runs):
    bundle = runs[1]["dynscalar"]
    at = open_page(bundle.run_id)
    before = chart(at, "dyn-prompt-mlp_out")
    lengths = [len(t) for t in bundle.info["str_tokens"]]
    other = next(i for i, n in enumerate(lengths) if n != lengths[0])
    at.selectbox(key="explore_dyn_prompt").set_value(other).run()
    assert not at.exception and not at.error
    after = chart(at, "dyn-prompt-mlp_out")
    assert len(after["data"][0]["x"]) == lengths[other] != len(before["data"][0]["x"])


def test_top_components_count(runs):
    at = open_link(run=runs[1]["activscalar"].run_id, tab="top")
    at.number_input(key="explore_top_k").set_value(7).run()
    assert not at.exception
    tables = [d.value for d in at.dataframe if "abs" in d.value.columns]
    assert len(tables) == 1 and len(tables[0]) == 7
    assert list(tables[0]["abs"]) == sorted(tables[0]["abs"], reverse=True)


def copy_run(root: Path, src: str, new_id: str) -> Path:
    """A copy of run ``src`` under another id (config.json names its folder)."""
    dest = root / new_id
    shutil.copytree(root / src, dest)
    config = json.loads((dest / "config.json").read_text())
    config["run_id"] = new_id
    (dest / "config.json").write_text(json.dumps(config))
    return dest


BROKEN_FIGURES = [  # one line per figure drawn from the broken arrays (the top components' tab is closed)
    "this run's analysis arrays lack magnitude.head (the mean |α(h)| DynScalar applied)",
    "The per-prompt scalars failed: IndexError: too many indices for tensor of dimension 1",
]


def test_broken_bundles_never_break_the_page(runs):
    root, bundles = runs
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
def test_viewer_mode_never_loads_a_model(runs, method, monkeypatch):
    from actscale.engine import models
    from actscale.ui import common

    def refuse(*args, **kwargs):
        raise AssertionError("Explore must not load a model")

    monkeypatch.setattr(common, "resident_model", refuse)
    monkeypatch.setattr(common, "load_model", refuse)
    monkeypatch.setattr(models, "load_model", refuse)
    at = open_page(runs[1][method].run_id)
    assert not at.exception and not at.error


def test_headline_tiles_say_what_moved_and_reliability_is_drawn(runs):
    bundle = runs[1]["activscalar"]
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


def test_the_effective_tile_gives_the_cells_share_where_it_differs(runs):
    """A DynScalar component is a whole layer: its tile gives the share of components and the
    share of cells, which differ."""
    bundle = runs[1]["dynscalar"]
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


def test_map_checks_are_drawn_from_the_bundle(runs, tiny_llama):
    """A run with checks shows its k90 next to the maps and the sufficiency figure with its
    tables; a run without says the map is untested and offers the launcher."""
    from actscale.checks import CheckOptions, run_checks

    bundle = runs[1]["dynscalar"]
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
    other = runs[1]["steervec"]
    if other.checks() is None:
        at = open_link(run=other.run_id, tab="checks")
        assert any("No map checks for this run yet" in c.value for c in at.caption)
        assert [e.label for e in at.expander if e.label.startswith("Run the checks")] == ["Run the checks"]


def test_exact_patching_is_drawn_next_to_the_free_maps_or_says_why_not(runs, tiny_llama, tmp_path):
    """A run whose counterfactuals move Δ shows the patching map per site and its verification
    table; the random tiny IOI runs' counterfactuals do not, and the page says so."""
    from test_patching import last_word_dataset

    from actscale.checks import CheckOptions, run_checks
    from actscale.engine.training import TrainConfig
    from actscale.runs.api import train_run
    from actscale.runs.store import RunStore

    last_word_dataset(tmp_path / "d.csv")
    config = TrainConfig(model="tiny-llama", task="custom", dataset=str(tmp_path / "d.csv"), steps=2)
    bundle = train_run(config, tiny_llama, store=RunStore(runs[0]))
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
    refused = runs[1]["dynscalar"]
    if refused.checks() is None:  # the map checks' test above runs them first in a whole-file run
        run_checks(tiny_llama, refused, CheckOptions(prompts=8, draws=5, precision="float32"))
    at = open_link(run=refused.run_id, tab="checks")
    assert any(c.value.startswith("Exact activation patching patched nothing: the counterfactual") for c in at.caption)
    assert not [k for k in chart_keys(at) if k.startswith("free-patch-")]


def test_read_only_deployment_offers_the_command_not_the_button(runs, monkeypatch):
    monkeypatch.setenv("ACTSCALE_READONLY", "1")
    run_id = runs[1]["steervec"].run_id
    at = open_link(run=run_id, tab="checks")
    assert not at.exception
    assert not [e for e in at.expander if e.label.startswith("Run the checks")]
    assert any(f"python -m actscale analyse --run {run_id} --seeds 3" in c.value for c in at.caption)


# ---------------------------------------------------------------- links that reproduce the view
def open_link(**params: str) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    for key, value in params.items():
        at.query_params[key] = value
    return at.run()


def param(at: AppTest, name: str) -> str | None:
    """A query parameter as the page left it (AppTest gives a list for a value the page wrote)."""
    if name not in at.query_params:
        return None
    value = at.query_params[name]
    return value[-1] if isinstance(value, list) else value


def plain_text(markdown: str) -> str:
    return markdown.replace("\\", "")


def test_describe_component_from_the_numbers(runs):
    from actscale.views.analysis import components, describe_component, position_labels

    bundle = runs[1]["activscalar"]
    alpha = bundle.params["alpha.attn_out"].numpy()
    layer, pos = 1, 2
    value = float(alpha[layer, pos])
    rank = int((abs(alpha) > abs(value)).sum()) + 1
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(rank % 10 if not 10 <= rank % 100 <= 20 else 0, "th")
    label = position_labels(bundle)[pos]
    tau = bundle.config["tau"]
    verdict = "effective" if abs(value) > tau else "not effective"
    assert describe_component(bundle, "attn_out", (layer, pos)) == (
        f"α at attn_out, layer {layer} · position {label} = {value:+.4g}: the {'' if rank == 1 else f'{rank}{suffix} '}"
        "largest in size of the "
        f"{alpha.size:,} components at this site; it changes its activation by {abs(value):.3g} of its size "
        f"({verdict} at τ = {tau:g})."
    )
    ranked = components(bundle, "attn_out")
    assert len(ranked) == alpha.size
    assert [abs(v) for _, v in ranked] == sorted((abs(v) for _, v in ranked), reverse=True)
    assert ranked[0][1] == float(alpha.flat[abs(alpha).argmax()])


def test_a_link_opens_the_site_and_component(runs):
    bundle = runs[1]["activscalar"]
    at = open_link(run=bundle.run_id, site="attn_out", component="1,2", interactive="1")
    assert not at.exception and not at.error and not at.warning
    assert at.selectbox(key="explore_site").value == "attn_out"
    assert at.selectbox(key="explore_component").value == "1,2"
    from actscale.views.analysis import describe_component

    assert describe_component(bundle, "attn_out", (1, 2)) in [plain_text(m.value) for m in at.markdown]
    # only that site's figures; the component outlined on its map
    keys = chart_keys(at)
    assert "alpha-attn_out" in keys and "alpha-mlp_out" not in keys and "head-sum" not in keys
    shapes = chart(at, "alpha-attn_out")["layout"]["shapes"]
    assert [(s["x0"], s["x1"], s["y0"], s["y1"]) for s in shapes] == [(1.5, 2.5, 0.5, 1.5)]
    assert (param(at, "run"), param(at, "site"), param(at, "component")) == (bundle.run_id, "attn_out", "1,2")

    # changing the site changes the link, and the component (of another site) is dropped
    at.selectbox(key="explore_site").set_value("head").run()
    assert not at.exception and not at.error
    assert (param(at, "site"), param(at, "component")) == ("head", None)
    assert "head-sum" in chart_keys(at) and "alpha-attn_out" not in chart_keys(at)
    assert param(at, "position") == str(bundle.config["n_pos"] - 1)
    # all sites: no site, no component in the link
    at.selectbox(key="explore_site").set_value("").run()
    assert (param(at, "site"), param(at, "component")) == (None, None)
    assert {"alpha-attn_out", "alpha-head"} <= set(chart_keys(at))


def test_a_link_opens_the_position_and_the_prompt(runs):
    bundle = runs[1]["steervec"]
    at = open_link(run=bundle.run_id, position="1", interactive="1")
    assert not at.exception and not at.error and not at.warning
    assert at.select_slider(key="explore_head_position").value == 1
    assert bundle.info["position_labels"][1] in chart(at, "head-position")["layout"]["title"]["text"]
    dyn = runs[1]["dynscalar"]
    at = open_link(run=dyn.run_id, prompt_index="3", site="head", component="0,1", interactive="1")
    assert not at.exception and not at.error and not at.warning
    assert at.selectbox(key="explore_dyn_prompt").value == 3
    assert chart(at, "dyn-prompt-head")["layout"]["title"]["text"].startswith("scalars α on prompt 3")
    shapes = chart(at, "head-dyn")["layout"]["shapes"]  # DynScalar's head map is layer × head
    assert [(s["x0"], s["x1"], s["y0"], s["y1"]) for s in shapes] == [(0.5, 1.5, -0.5, 0.5)]
    assert param(at, "prompt_index") == "3" and param(at, "position") is None


@pytest.mark.parametrize(
    ("params", "warning"),
    [
        ({"site": "resid"}, "Ignored ?site='resid' from the link: site must be one of attn_out, mlp_out, head"),
        (
            {"site": "attn_out", "component": "1"},
            "Ignored ?component='1' from the link: a component here is 2 numbers (layer, position)",
        ),
        (
            {"site": "attn_out", "component": "99,0"},
            "Ignored ?component='99,0' from the link: layer 99 is out of range",
        ),
        (
            {"site": "head", "component": "0,x,1"},
            "Ignored ?component='0,x,1' from the link: position must be a whole number",
        ),
        ({"position": "-1"}, "Ignored ?position='-1' from the link: position -1 is out of range"),
    ],
)
def test_bad_link_values_are_one_warning_and_ignored(runs, params, warning):
    bundle = runs[1]["activscalar"]
    at = open_link(run=bundle.run_id, **params)
    assert not at.exception and not at.error
    assert len(at.warning) == 1 and at.warning[0].value.startswith(warning), at.warning[0].value
    assert at.selectbox(key="explore_run").value == bundle.run_id
    if "component" in params:
        assert at.selectbox(key="explore_component").value == ""
        assert param(at, "component") is None
    if params.get("site") == "resid":
        assert at.selectbox(key="explore_site").value == "" and param(at, "site") is None


# ---------------------------------------------------------------- the tabs below the maps
def test_only_the_open_tab_is_drawn_and_the_link_keeps_it(runs):
    bundle = runs[1]["activscalar"]
    at = open_page(bundle.run_id)
    assert [t.label for t in at.tabs] == list(explore_tabs.TABS.values())
    keys = chart_keys(at)
    assert "history" in keys and "reliability" not in keys and not any(k.startswith("checks-") for k in keys)
    assert param(at, "tab") is None  # the first tab is the default and not written
    at.session_state["explore_tab"] = "Reliability per example"
    at.run()
    keys = chart_keys(at)
    assert "reliability" in keys and "history" not in keys and param(at, "tab") == "reliability"
    at = open_link(run=bundle.run_id, tab="nope")
    assert [w.value for w in at.warning] == [
        "Ignored ?tab='nope' from the link: tab must be one of training, checks, reliability, top"
    ]
    assert lines_svg(plot_run_history(bundle)) in svg_images(at)  # the first tab, its curves an image


def test_the_reliability_figure_draws_bands_and_the_worst_prompts_as_lines(runs):
    from actscale.views.analysis import reliability

    bundle = runs[1]["activscalar"]
    frame, _ = reliability(bundle, "test")
    fig = chart(open_link(run=bundle.run_id, tab="reliability"), "reliability")
    n = len(frame)
    assert [t.get("name") for t in fig["data"]] == [
        None,
        f"5%–95% of the {n} prompts",
        None,
        f"25%–75% of the {n} prompts",
        "median",
        f"the {min(10, n)} furthest from flipping",
    ]
    deltas = frame[["delta_neg", "delta_base", "delta_pos"]]
    assert fig["data"][0]["y"] == deltas.quantile(0.95).tolist()
    assert fig["data"][1]["y"] == deltas.quantile(0.05).tolist()
    assert fig["data"][4]["y"] == deltas.median().tolist()
    worst = fig["data"][5]["y"]
    assert len(worst) == 4 * min(10, n) and worst[:3] == frame.loc[0, ["delta_neg", "delta_base", "delta_pos"]].tolist()


def test_the_maps_are_svg_images_unless_interactive(runs):
    """Issue 21 item 5: a heatmap, and the first tab's training curves, are shown as SVG images
    the browser draws at once (no plotly.js), each with its SVG download, and the first tab's
    tables as text (no grid to load); a link's component is outlined on its map.
    ``?interactive=1`` (the toggle) draws the same figures with plotly and the tables as grids,
    and is kept in the link."""
    from actscale.views.plots import heatmap_svg, mark_component, plot_scalar_heatmap

    bundle = runs[1]["activscalar"]
    at = open_link(run=bundle.run_id, site="attn_out", component="1,2")
    assert not at.exception and not at.error and not at.warning
    assert at.toggle(key="explore_interactive").value is False and param(at, "interactive") is None
    shown = svg_images(at)
    # the site's one map, outlined, then the training curves
    marked = heatmap_svg(mark_component(plot_scalar_heatmap(bundle, "attn_out"), (1, 2)))
    assert shown == [marked, lines_svg(plot_run_history(bundle))]
    assert chart_keys(at) == [] and len(at.dataframe) == 0
    metrics = analysis.metrics_table(bundle)
    assert markdown_table(metrics) in [m.value for m in at.markdown]
    downloads = [b.proto.label for b in at.get("download_button") if b.proto.label == "Download figure (SVG)"]
    assert len(downloads) == 2
    # interactive: plotly figures in their place, no image, the tables as grids
    at.toggle(key="explore_interactive").set_value(True).run()
    assert not at.exception and not at.error
    assert svg_images(at) == [] and {"alpha-attn_out", "history"} <= set(chart_keys(at))
    assert at.dataframe[0].value.equals(metrics)
    assert param(at, "interactive") == "1"
    linked = open_link(run=bundle.run_id, interactive="1")
    assert linked.toggle(key="explore_interactive").value is True and svg_images(linked) == []
    bad = open_link(run=bundle.run_id, interactive="yes")
    assert [w.value for w in bad.warning] == [
        "Ignored ?interactive='yes' from the link: interactive must be 1 (on) or 0 (off)"
    ]


def test_the_dropped_prompts_are_a_text_table_unless_interactive(runs):
    """A run that dropped prompts lists them, and why, under the page: as text with a CSV
    download (no grid's code to load with the page), as a grid with interactive figures."""
    import pandas as pd

    root, made = runs
    dest = copy_run(root, made["activscalar"].run_id, "d50bbed000000001")
    summary = json.loads((dest / "analysis.json").read_text())
    dropped = [
        {"prompt": "When *Mary* and John", "correct": " Mary", "wrong": " John", "row": 3, "reason": "wrong | length"},
        {"prompt": "Then Anna and Bob", "correct": " Anna", "wrong": " Bob", "row": 7, "reason": "too long"},
    ]
    (dest / "analysis.json").write_text(json.dumps({**summary, "dropped": dropped}))
    at = open_link(run="d50bbed000000001")
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [e.label for e in at.expander] == ["2 prompts were dropped from the dataset, and why"]
    table = markdown_table(pd.DataFrame(dropped))
    assert table.startswith("| prompt | correct | wrong | row | reason |\n") and "When \\*Mary\\* and John" in table
    assert table in [m.value for m in at.expander[0].markdown] and len(at.dataframe) == 0
    assert [b.proto.label for b in at.expander[0].get("download_button")] == ["Download table (CSV)"]
    at.toggle(key="explore_interactive").set_value(True).run()
    assert not at.exception and at.expander[0].dataframe[0].value.equals(pd.DataFrame(dropped))


def test_a_text_table_shows_every_cell_as_typed():
    import pandas as pd

    frame = pd.DataFrame({"metric": ["flip_acc_pos", "a|b"], "test": ["0.86 → 0.98 [0.96, 0.99]", "*x*"]})
    assert markdown_table(frame) == (
        "| metric | test |\n"
        "| --- | --- |\n"
        "| flip\\_acc\\_pos | 0\\.86 → 0\\.98 \\[0\\.96, 0\\.99\\] |\n"
        "| a\\|b | \\*x\\* |"
    )
