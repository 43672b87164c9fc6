"""The maps as static SVG (Explore draws them first, issue 21 item 5): the cells on the plotly
figure's own colour scale and range, a tooltip per cell, a marked component outlined, and every
other figure left to plotly."""

from __future__ import annotations

import re
import xml.dom.minidom

import numpy as np
import plotly.graph_objects as go
import pytest

from actscale.views.plots import heatmap, heatmap_svg, mark_component
from actscale.views.plots.svg import BOTTOM, HEIGHT, LEFT, RIGHT, TOP, WIDTH, colour_of


def small_map(z: np.ndarray, diverging: bool = True) -> go.Figure:
    return heatmap(z, ["a", "b", "c"], ["L0", "L1"], "α — attn_out", diverging=diverging, zlabel="α")


def cells(svg: str) -> list[dict[str, str]]:
    """The cells (rectangles with a tooltip), each as its attributes and tooltip."""
    found = re.findall(r'<rect x="(\d+)" y="(\d+)" width="1" height="1" fill="([^"]+)"><title>([^<]*)', svg)
    return [{"x": x, "y": y, "fill": fill, "tip": tip} for x, y, fill, tip in found]


def test_each_cell_has_its_colour_on_the_figures_scale_and_its_value_as_tooltip():
    z = np.array([[-2.0, 0.0, 2.0], [1.0, -1.0, 0.5]])
    svg = heatmap_svg(small_map(z))
    assert svg is not None
    xml.dom.minidom.parseString(svg)  # well-formed
    drawn = cells(svg)
    assert len(drawn) == 6
    # RdBu_r over [-2, 2] (the diverging maps' range, centred on 0): its ends and its white middle
    assert [c["fill"] for c in drawn[:3]] == ["#053061", "#f7f7f7", "#67001f"]  # rgb(5,48,97) … rgb(103,0,31)
    assert drawn[0]["tip"] == "layer L0\nposition a\nα -2.0000"
    assert drawn[5]["tip"] == "layer L1\nposition c\nα 0.5000"
    # on a grid of unit cells scaled to the plot area, the first layer at the bottom (as plotly
    # draws the category axis), one cell a column
    cell_w, cell_h = (WIDTH - LEFT - RIGHT) / 3, (HEIGHT - TOP - BOTTOM) / 2
    assert f'<g transform="translate({LEFT} {TOP}) scale({cell_w:.4f} {cell_h:.4f})"' in svg
    assert [(c["x"], c["y"]) for c in drawn] == [("0", "1"), ("1", "1"), ("2", "1"), ("0", "0"), ("1", "0"), ("2", "0")]
    assert "α — attn_out</text>" in svg and ">position</text>" in svg and ">layer</text>" in svg
    # the colour bar: its ends and middle labelled with the range
    assert [">2</text>", ">0</text>", ">-2</text>"] == re.findall(r">-?2</text>|>0</text>", svg)[-3:]


def test_a_sequential_map_spans_its_data_and_a_nan_cell_is_blank():
    z = np.array([[0.0, np.nan, 4.0], [1.0, 2.0, 3.0]])
    drawn = cells(heatmap_svg(small_map(z, diverging=False)) or "")
    assert len(drawn) == 5 and not any("position b\nα" in c["tip"] and "L0" in c["tip"] for c in drawn)
    assert drawn[0]["fill"] == "#440154" and drawn[1]["fill"] == "#fde725"  # Viridis' ends: 0 and 4


def test_a_marked_component_is_outlined_on_its_cell():
    svg = heatmap_svg(mark_component(small_map(np.zeros((2, 3))), (1, 2))) or ""
    outline = re.findall(r'<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)" fill="none"', svg)
    cell_w, cell_h = (WIDTH - LEFT - RIGHT) / 3, (HEIGHT - TOP - BOTTOM) / 2
    assert [tuple(map(float, o)) for o in outline] == [
        pytest.approx((LEFT + 2 * cell_w, TOP, cell_w, cell_h), abs=0.01)  # layer 1 (the top row), position c
    ]


def test_other_figures_stay_plotly():
    assert heatmap_svg(go.Figure(go.Bar(x=["L0"], y=[1.0]))) is None
    assert heatmap_svg(go.Figure()) is None
    two = small_map(np.zeros((2, 3)))
    two.add_trace(go.Scatter(x=["a"], y=["L0"]))
    assert heatmap_svg(two) is None


def test_a_heatmap_with_text_in_its_cells_stays_plotly():
    """The generalisation matrix prints each cell's rate and interval: an image would drop them."""
    fig = small_map(np.zeros((2, 3)))
    fig.update_traces(text=[["a"] * 3] * 2, texttemplate="%{text}")
    assert heatmap_svg(fig) is None


def test_zmid_alone_centres_the_range_as_plotly_does():
    fig = go.Figure(go.Heatmap(z=[[-1.0, 3.0]], x=["a", "b"], y=["L0"], colorscale="RdBu_r", zmid=0))
    drawn = cells(heatmap_svg(fig) or "")
    assert [c["fill"] for c in drawn] == colour_of(fig.data[0].colorscale, np.array([[2 / 6, 1.0]]))[0]
    assert drawn[0]["tip"] == "L0\na\nvalue -1.0000"  # no axis titles: the labels alone


def test_text_is_escaped():
    fig = heatmap(np.ones((1, 1)), ["<b>&"], ["L0"], "a < b", diverging=False, zlabel="α")
    svg = heatmap_svg(fig) or ""
    xml.dom.minidom.parseString(svg)
    assert "a &lt; b" in svg and "&lt;b&gt;&amp;" in svg


def test_colours_interpolate_between_stops_and_clip():
    scale = ((0.0, "rgb(0,0,0)"), (1.0, "#ffffff"))
    assert colour_of(scale, np.array([[0.5, -1.0, 2.0]])) == [["#808080", "#000000", "#ffffff"]]
