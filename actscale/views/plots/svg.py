"""A heatmap figure as a static SVG: Explore shows its maps this way unless they are made
interactive, because a browser draws an SVG image at once, where a plotly figure waits for
plotly.js (3.5 MB) to be compiled (docs/measured.md, "Explore"). In the SVG file each cell's value
is its tooltip (the page shows it as an image, whose tooltips a browser does not show)."""

from __future__ import annotations

import math
import re
from html import escape
from typing import Any

import numpy as np
import plotly.graph_objects as go

# The drawing's own units (it scales to its column): the plot area and the margins around it.
WIDTH, HEIGHT = 560, 460
LEFT, RIGHT, TOP, BOTTOM = 64, 84, 40, 84
FONT = 'font-family="sans-serif" font-size="11" fill="#333"'
TITLE_FONT = 'font-family="sans-serif" font-size="14" fill="#333"'
MOST_TICKS = 48  # every label up to this many (as the plotly figures), else every n-th


def heatmap_svg(fig: go.Figure) -> str | None:
    """``fig``'s one Heatmap trace as an SVG string: the cells on the trace's colour scale and
    range (NaN cells blank, as plotly leaves them), a tooltip per cell naming its row, column and
    value, the axis labels, the title, a colour bar and the figure's rectangles (a component
    outlined by `mark_component`). None for any other figure, and for a heatmap whose cells carry
    text (the generalisation matrix's rates and intervals): those stay plotly figures."""
    if len(fig.data) != 1 or not isinstance(fig.data[0], go.Heatmap) or fig.data[0].z is None:
        return None
    if fig.data[0].text is not None or fig.data[0].texttemplate:
        return None
    trace = fig.data[0]
    z = np.asarray(trace.z, dtype=float)
    if z.ndim != 2 or z.size == 0:
        return None
    n_rows, n_cols = z.shape
    x = [str(v) for v in (trace.x if trace.x is not None else range(n_cols))]
    y = [str(v) for v in (trace.y if trace.y is not None else range(n_rows))]
    lo, hi = _range(trace, z)
    names = (_text(fig.layout.yaxis.title), _text(fig.layout.xaxis.title), _text(trace.colorbar.title) or "value")
    cell_w, cell_h = (WIDTH - LEFT - RIGHT) / n_cols, (HEIGHT - TOP - BOTTOM) / n_rows
    colours = colour_of(trace.colorscale, (z - lo) / (hi - lo) if hi > lo else np.full_like(z, 0.5))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="actscale-map" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" role="img" aria-label="{escape(_text(fig.layout.title), quote=True)}">',
        f'<text x="{WIDTH / 2}" y="22" text-anchor="middle" {TITLE_FONT}>{escape(_text(fig.layout.title))}</text>',
    ]
    # The cells on a grid of unit squares (short to send and to parse), the first row at the
    # bottom as plotly draws a category y axis.
    parts.append(
        f'<g transform="translate({LEFT} {TOP}) scale({cell_w:.4f} {cell_h:.4f})" shape-rendering="crispEdges">'
    )
    for i in range(n_rows):
        for j in range(n_cols):
            if math.isnan(z[i, j]):
                continue
            tip = f"{names[0]} {y[i]}".strip() + "\n" + f"{names[1]} {x[j]}".strip() + f"\n{names[2]} {z[i, j]:.4f}"
            parts.append(
                f'<rect x="{j}" y="{n_rows - 1 - i}" width="1" height="1" fill="{colours[i][j]}">'
                f"<title>{escape(tip)}</title></rect>"
            )
    parts.append("</g>")
    parts += _axes(x, y, names, cell_w, cell_h)
    parts += _colour_bar(trace.colorscale, lo, hi, names[2])
    parts += _rectangles(fig, n_rows, cell_w, cell_h)
    parts.append("</svg>")
    return "".join(parts)


def colour_of(colorscale: Any, t: np.ndarray) -> list[list[str]]:
    """The colours of ``t`` (fractions of the range, clipped to [0, 1]) on a plotly colour scale
    (pairs of a fraction and an ``rgb(...)`` or ``#rrggbb`` colour), as ``#rrggbb`` strings."""
    stops = np.array([float(s) for s, _ in colorscale])
    rgb = np.array([_rgb(c) for _, c in colorscale])  # [stops 3]
    t = np.clip(np.nan_to_num(t, nan=0.5), 0.0, 1.0)
    channels = [np.interp(t, stops, rgb[:, k]).round().astype(int) for k in range(3)]
    return [[f"#{r:02x}{g:02x}{b:02x}" for r, g, b in zip(*(c[i] for c in channels))] for i in range(t.shape[0])]


def _rgb(colour: str) -> tuple[float, float, float]:
    if colour.startswith("#") and len(colour) == 7:
        return (int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16))
    found = re.findall(r"[\d.]+", colour)
    if not colour.startswith("rgb") or len(found) < 3:
        raise ValueError(f"not a colour this drawing reads: {colour!r}")
    return (float(found[0]), float(found[1]), float(found[2]))


def _text(title: Any) -> str:
    """A plotly title's text ('' for none)."""
    text = getattr(title, "text", title)
    return "" if text is None else str(text)


def _range(trace: go.Heatmap, z: np.ndarray) -> tuple[float, float]:
    """The colour range as plotly draws it: the trace's zmin/zmax where set (every diverging map
    of `heatmap` sets them, centred on 0), else the data's finite range, widened to be symmetric
    about ``zmid`` where that is set."""
    finite = z[np.isfinite(z)]
    lo = float(trace.zmin) if trace.zmin is not None else float(finite.min()) if finite.size else 0.0
    hi = float(trace.zmax) if trace.zmax is not None else float(finite.max()) if finite.size else 1.0
    if trace.zmid is not None and trace.zmin is None and trace.zmax is None:
        reach = max(abs(lo - trace.zmid), abs(hi - trace.zmid))
        lo, hi = trace.zmid - reach, trace.zmid + reach
    return lo, hi


def _every(n: int) -> int:
    return 1 if n <= MOST_TICKS else math.ceil(n / MOST_TICKS)


def _axes(x: list[str], y: list[str], names: tuple[str, str, str], cell_w: float, cell_h: float) -> list[str]:
    """Tick labels (x turned by 45°, as the plotly maps) and both axis titles."""
    parts, bottom = [], HEIGHT - BOTTOM
    for j in range(0, len(x), _every(len(x))):
        cx = LEFT + (j + 0.5) * cell_w
        parts.append(
            f'<text x="{cx:.2f}" y="{bottom + 12}" text-anchor="end" transform="rotate(-45 {cx:.2f} {bottom + 12})" '
            f"{FONT}>{escape(x[j][:14])}</text>"
        )
    for i in range(0, len(y), _every(len(y))):
        cy = TOP + (len(y) - 1 - i + 0.5) * cell_h
        parts.append(f'<text x="{LEFT - 6}" y="{cy + 4:.2f}" text-anchor="end" {FONT}>{escape(y[i])}</text>')
    mid_x, mid_y = (LEFT + WIDTH - RIGHT) / 2, (TOP + bottom) / 2
    parts.append(f'<text x="{mid_x}" y="{HEIGHT - 6}" text-anchor="middle" {FONT}>{escape(names[1])}</text>')
    turned = f'transform="rotate(-90 14 {mid_y})"'
    parts.append(f'<text x="14" y="{mid_y}" text-anchor="middle" {turned} {FONT}>{escape(names[0])}</text>')
    return parts


def _colour_bar(colorscale: Any, lo: float, hi: float, label: str) -> list[str]:
    """A vertical bar of the scale from ``lo`` (bottom) to ``hi`` (top), its ends and middle labelled."""
    x0, top, height, steps = WIDTH - RIGHT + 16, TOP, HEIGHT - TOP - BOTTOM, 32
    fractions = np.linspace(1.0, 0.0, steps)
    colours = colour_of(colorscale, fractions[None, :])[0]
    parts = [f'<text x="{x0}" y="{top - 8}" {FONT}>{escape(label)}</text>']
    for k, colour in enumerate(colours):
        y = top + k * height / steps
        parts.append(f'<rect x="{x0}" y="{y:.2f}" width="14" height="{height / steps + 0.5:.2f}" fill="{colour}"/>')
    for value, y in ((hi, top), ((lo + hi) / 2, top + height / 2), (lo, top + height)):
        parts.append(f'<text x="{x0 + 18}" y="{y + 4:.2f}" {FONT}>{value:.3g}</text>')
    return parts


def _rectangles(fig: go.Figure, n_rows: int, cell_w: float, cell_h: float) -> list[str]:
    """The figure's rectangles on the cells' coordinates (a category's n-th cell spans n ± 0.5)."""
    parts = []
    for shape in fig.layout.shapes or ():
        if shape.type != "rect" or shape.xref != "x" or shape.yref != "y":
            continue
        left = LEFT + (float(shape.x0) + 0.5) * cell_w
        right = LEFT + (float(shape.x1) + 0.5) * cell_w
        top = TOP + (n_rows - 1 - float(shape.y1) + 0.5) * cell_h
        bottom = TOP + (n_rows - 1 - float(shape.y0) + 0.5) * cell_h
        colour = shape.line.color or "#111"
        parts.append(
            f'<rect x="{left:.2f}" y="{top:.2f}" width="{right - left:.2f}" height="{bottom - top:.2f}" '
            f'fill="none" stroke="{escape(colour)}" stroke-width="3"/>'
        )
    return parts
