"""Figures of lines as static SVG (Explore's training curves, drawn at once as its maps are,
issue 21 item 5): each point where its axes put it, a panel per y axis domain, an overlaying
axis on the right, the traces' colours and dashes, gaps at missing values, and every other
figure left to plotly."""

from __future__ import annotations

import re
import xml.dom.minidom

import plotly.graph_objects as go
import pytest
from plotly.subplots import make_subplots
from test_plots_frames import HISTORY

from actscale.views.plots import figure_svg, heatmap, heatmap_svg, lines_svg, plot_history
from actscale.views.plots.svg_lines import BOTTOM, COLORWAY, HEIGHT, LEFT, RIGHT, TOP, WIDTH, ticks


def polylines(svg: str) -> list[tuple[str, str, str]]:
    """Each line's points, its stroke attributes and its tooltip (the trace's name)."""
    return re.findall(r'<polyline points="([^"]+)" fill="none" stroke-width="1.8"([^>]*)><title>([^<]*)', svg)


def test_each_point_is_where_its_axes_put_it():
    fig = go.Figure(go.Scatter(x=[0, 1, 2], y=[0.0, 1.0, 2.0], name="a", mode="lines"), layout=dict(template="plotly"))
    fig.update_yaxes(range=[0, 2])
    svg = lines_svg(fig) or ""
    xml.dom.minidom.parseString(svg)  # well-formed
    left, right, top, bottom = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM
    mid_x, mid_y = (left + right) / 2, (top + bottom) / 2
    points = f"{left:.1f},{bottom:.1f} {mid_x:.1f},{mid_y:.1f} {right:.1f},{top:.1f}"
    assert polylines(svg) == [(points, f' stroke="{COLORWAY[0]}"', "a")]


def test_a_missing_value_breaks_the_line_and_colours_follow_the_trace_order_or_the_trace():
    fig = go.Figure(
        [
            go.Scatter(x=[0, 1, 2, 3], y=[1.0, float("nan"), 1.0, 1.0], name="gap", mode="lines"),
            go.Scatter(x=[0, 3], y=[0.0, 0.0], name="own", mode="lines", line=dict(color="#123456", dash="dash")),
        ],
        layout=dict(template="plotly"),
    )
    fig.update_yaxes(range=[0, 1])
    drawn = polylines(lines_svg(fig) or "")
    # the first trace in two pieces (one point, then two) in the first default colour; the second in its own
    assert [(len(p.split()), stroke, name) for p, stroke, name in drawn] == [
        (1, f' stroke="{COLORWAY[0]}"', "gap"),
        (2, f' stroke="{COLORWAY[0]}"', "gap"),
        (2, ' stroke="#123456" stroke-dasharray="6 4"', "own"),
    ]


def test_an_overlaying_axis_shares_its_panel_and_is_labelled_on_the_right():
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.5, 0.5], vertical_spacing=0.0,
                        specs=[[{"secondary_y": True}], [{}]])  # fmt: skip
    fig.add_trace(go.Scatter(x=[0, 1], y=[0.0, 1.0], name="left", mode="lines"), row=1, col=1)
    fig.add_trace(go.Scatter(x=[0, 1], y=[1.0, 0.0], name="right", mode="lines"), row=1, col=1, secondary_y=True)
    fig.add_trace(go.Scatter(x=[0, 1], y=[0.0, 1.0], name="below", mode="lines"), row=2, col=1)
    fig.update_yaxes(range=[0, 1], row=1, col=1, secondary_y=False)
    fig.update_yaxes(range=[0, 1], dtick=0.5, row=1, col=1, secondary_y=True)
    fig.update_yaxes(range=[0, 1], row=2, col=1)
    svg = lines_svg(fig) or ""
    half = TOP + (HEIGHT - TOP - BOTTOM) / 2
    left, right = polylines(svg)[0][0], polylines(svg)[1][0]
    assert left == f"{LEFT:.1f},{half:.1f} {WIDTH - RIGHT:.1f},{TOP:.1f}"  # the upper panel
    assert right == f"{LEFT:.1f},{TOP:.1f} {WIDTH - RIGHT:.1f},{half:.1f}"  # the same panel, reversed
    below = polylines(svg)[2][0]
    assert below == f"{LEFT:.1f},{HEIGHT - BOTTOM:.1f} {WIDTH - RIGHT:.1f},{half:.1f}"
    on_the_right = re.findall(rf'<text x="{WIDTH - RIGHT + 6}" y="[\d.]+" [^>]*>([^<]*)</text>', svg)
    assert on_the_right == ["0", "0.5", "1"]


def test_streamlits_placeholder_colours_give_way_to_plotlys():
    """Streamlit's plotly template (the default once it is imported) lists #000001, #000002, …
    for its browser code to replace: drawn as they are, every line would be black."""
    placeholders = go.layout.Template(layout=dict(colorway=["#000001", "#000002"]))
    own = go.layout.Template(layout=dict(colorway=["#aa0000", "#00aa00"]))
    for template, first in ((placeholders, COLORWAY[0]), (own, "#aa0000"), ("none", COLORWAY[0])):
        fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="a"), layout=dict(template=template))
        assert polylines(lines_svg(fig) or "")[0][1] == f' stroke="{first}"'


def test_ticks_are_one_two_or_five_times_a_power_of_ten_or_the_axis_own():
    assert ticks(0.0, 1.05, 0.25) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert ticks(0.3, 6.2) == [2.0, 4.0, 6.0]
    assert ticks(1.0, 18.0) == [5.0, 10.0, 15.0]
    assert ticks(-0.004, 0.012) == [0.0, 0.005, 0.01]
    assert ticks(3.0, 3.0) == [3.0]


def test_the_training_curves_are_drawn_and_named():
    svg = lines_svg(plot_history(HISTORY)) or ""
    names = [name for _, _, name in polylines(svg)]
    assert names == ["loss", "effectiveness", "faithfulness", "flip_acc_pos", "flip_acc_neg", "minimality ‖θ‖₁"]
    assert [stroke for _, stroke, _ in polylines(svg)][3:] == [
        f' stroke="{COLORWAY[3]}" stroke-dasharray="6 4"',
        f' stroke="{COLORWAY[4]}" stroke-dasharray="6 4"',
        ' stroke="#6b4c9a"',
    ]
    for title in ("training", "loss", "flip accuracy", "‖θ‖₁", "step"):
        assert f">{title}</text>" in svg


@pytest.mark.parametrize(
    "fig",
    [
        go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines+markers")),
        go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", fill="tonexty")),
        go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", error_y=dict(type="data", array=[0.1, 0.1]))),
        go.Figure(go.Scatter(x=["a", "b"], y=[0, 1], mode="lines")),
        go.Figure(go.Bar(x=[0, 1], y=[0, 1])),
        go.Figure(),
    ],
    ids=["markers", "fill", "error-bars", "categories", "bars", "empty"],
)
def test_other_figures_stay_plotly(fig):
    assert lines_svg(fig) is None and figure_svg(fig) is None


@pytest.mark.parametrize("axis", [dict(type="log"), dict(type="date"), dict(autorange="reversed")])
def test_a_line_on_an_axis_this_drawing_does_not_scale_stays_plotly(axis):
    fig = go.Figure(go.Scatter(x=[1, 10], y=[1, 2], mode="lines"))
    assert lines_svg(fig) is not None
    fig.update_xaxes(**axis)
    assert lines_svg(fig) is None


def test_figure_svg_draws_heatmaps_and_lines():
    import numpy as np

    fig = heatmap(np.zeros((2, 3)), ["a", "b", "c"], ["L0", "L1"], "m", diverging=True, zlabel="α")
    assert figure_svg(fig) == heatmap_svg(fig) and heatmap_svg(fig) is not None
    lines = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="<a & b>"))
    assert figure_svg(lines) == lines_svg(lines) and "<title>&lt;a &amp; b&gt;</title>" in (figure_svg(lines) or "")
