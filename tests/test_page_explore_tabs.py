"""The Explore page's parts below the maps, through Streamlit's AppTest on tiny-model runs: only
the open tab is drawn, the reliability figure's bands, the maps as SVG images and the tables as
text unless interactive."""

from __future__ import annotations

import json

import pytest
from conftest import param, svg_images
from explore_page_helpers import chart, chart_keys, copy_run, open_link, open_page

from actscale.ui import explore_tabs
from actscale.ui.common import markdown_table
from actscale.views import analysis
from actscale.views.plots import lines_svg, plot_run_history

pytestmark = pytest.mark.usefixtures("explore_env")


def test_only_the_open_tab_is_drawn_and_the_link_keeps_it(explore_runs):
    bundle = explore_runs[1]["activscalar"]
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


def test_the_reliability_figure_draws_bands_and_the_worst_prompts_as_lines(explore_runs):
    from actscale.views.analysis import reliability

    bundle = explore_runs[1]["activscalar"]
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


def test_the_maps_are_svg_images_unless_interactive(explore_runs):
    """Issue 21 item 5: a heatmap, and the first tab's training curves, are shown as SVG images
    the browser draws at once (no plotly.js), each with its SVG download, and the first tab's
    tables as text (no grid to load); a link's component is outlined on its map.
    ``?interactive=1`` (the toggle) draws the same figures with plotly and the tables as grids,
    and is kept in the link."""
    from actscale.views.plots import heatmap_svg, mark_component, plot_scalar_heatmap

    bundle = explore_runs[1]["activscalar"]
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


def test_the_dropped_prompts_are_a_text_table_unless_interactive(explore_runs):
    """A run that dropped prompts lists them, and why, under the page: as text with a CSV
    download (no grid's code to load with the page), as a grid with interactive figures."""
    import pandas as pd

    root, made = explore_runs
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
