"""Checks the figure tests share: a figure's one trace, its layer-by-position axes, a diverging or
sequential colour scale, a trace's values as floats."""

from __future__ import annotations

import plotly.graph_objects as go

DIVERGING = go.Heatmap(colorscale="RdBu_r").colorscale
SEQUENTIAL = go.Heatmap(colorscale="Viridis").colorscale


def only_trace(fig: go.Figure, kind: str):
    assert len(fig.data) == 1
    assert fig.data[0].type == kind
    return fig.data[0]


def assert_layer_position_axes(fig: go.Figure, x: list[str], y: tuple[str, ...], xtitle: str = "position") -> None:
    trace = fig.data[0]
    assert tuple(trace.x) == tuple(x) and tuple(trace.y) == y
    assert fig.layout.xaxis.type == "category" and fig.layout.yaxis.type == "category"
    assert fig.layout.xaxis.title.text == xtitle and fig.layout.yaxis.title.text == "layer"


def assert_centred(trace, bound: float | None = None) -> None:
    """A diverging heatmap: white at 0, symmetric limits (at ``bound`` when given)."""
    assert trace.colorscale == DIVERGING
    assert trace.zmid == 0
    assert trace.zmin == -trace.zmax
    if bound is not None:
        assert trace.zmax == bound


def assert_sequential(trace) -> None:
    assert trace.colorscale == SEQUENTIAL
    assert trace.zmid is None and trace.zmin is None and trace.zmax is None


def values(seq) -> list:
    return [float(v) for v in seq]
