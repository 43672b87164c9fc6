"""The figures' shared style: colour scales, layout, the heatmap every map is drawn with."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

DIVERGING = "RdBu_r"  # red = scaled up, blue = scaled down, white = no change
SEQUENTIAL = "Viridis"
LAYOUT = dict(margin=dict(l=60, r=20, t=50, b=60))
# plotly's own colour order (the house template's): the n-th trace's colour where a trace has none
# of its own (`svg_lines`), and one colour per run where a figure draws several traces of each run
# (plotly's cycle gives each trace the next colour, so a run's traces would not match).
COLORWAY = (
    "#636efa",
    "#EF553B",
    "#00cc96",
    "#ab63fa",
    "#FFA15A",
    "#19d3f3",
    "#FF6692",
    "#B6E880",
    "#FF97FF",
    "#FECB52",
)
TEMPLATE = "plotly_white"


def styled(fig: go.Figure) -> go.Figure:
    """Give ``fig`` the house template. Setting a template through ``update_layout`` validates
    (deep-copies) the whole template, about 50 ms a figure; plotly assigns its own default
    template unvalidated, and so do we, which keeps a run's dozen figures well under a second."""
    import plotly.io as pio

    template = pio.templates[TEMPLATE]
    layout = fig._layout_obj
    try:
        layout._validate = False
        layout.template = template
    except Exception:  # noqa: BLE001 - a plotly without this path: the slow, validated way
        layout._validate = True
        fig.update_layout(template=TEMPLATE)
    finally:
        layout._validate = True
    return fig


def new_figure(*args, **kwargs) -> go.Figure:
    return styled(go.Figure(*args, **kwargs))


def heatmap(
    z: np.ndarray,
    x: list[str],
    y: list[str],
    title: str,
    *,
    diverging: bool,
    zlabel: str,
    xtitle: str = "position",
    ytitle: str = "layer",
    zrange: tuple[float, float] | None = None,
) -> go.Figure:
    kwargs: dict = {"colorscale": DIVERGING if diverging else SEQUENTIAL}
    if diverging:
        bound = float(np.nanmax(np.abs(z))) if z.size else 1.0
        bound = bound if bound > 0 else 1.0
        lo, hi = zrange or (-bound, bound)
        kwargs.update(zmid=0.0, zmin=lo, zmax=hi)
    elif zrange:
        kwargs.update(zmin=zrange[0], zmax=zrange[1])
    fig = new_figure(
        go.Heatmap(
            z=z,
            x=x,
            y=y,
            colorbar=dict(title=zlabel),
            hovertemplate=f"{ytitle} %{{y}}<br>{xtitle} %{{x}}<br>{zlabel} %{{z:.4f}}<extra></extra>",
            **kwargs,
        )
    )
    fig.update_layout(title=title, xaxis_title=xtitle, yaxis_title=ytitle, **LAYOUT)
    # Every label (a token, a layer) where there are few enough to read; plotly would otherwise
    # drop some when the figure is narrow, and a position is named by its token.
    fig.update_yaxes(type="category", **every_tick(len(y)))
    fig.update_xaxes(type="category", tickangle=-45, **every_tick(len(x)))
    return fig


def every_tick(n: int, most: int = 48) -> dict[str, Any]:
    return {"tickmode": "linear", "tick0": 0, "dtick": 1} if n <= most else {}
