"""A figure of lines as a static SVG (Explore's training curves, drawn at once as its maps are,
`svg.heatmap_svg`): line traces on panels stacked by their y axes' domains, an axis overlaying
another on the panel's right, the traces' own colours and dashes, a legend below."""

from __future__ import annotations

import math
import re
from html import escape
from typing import Any

import numpy as np
import plotly.graph_objects as go

from actscale.views.plots.style import COLORWAY
from actscale.views.plots.svg import FONT, TITLE_FONT, _text, heatmap_svg

WIDTH, HEIGHT = 640, 420
LEFT, RIGHT, TOP, BOTTOM = 64, 64, 36, 76
DASHES = {"dash": "6 4", "dot": "2 3", "dashdot": "6 3 2 3"}


def figure_svg(fig: go.Figure) -> str | None:
    """``fig`` as a static SVG where this package draws its kind (a heatmap, `heatmap_svg`; lines,
    `lines_svg`), else None (the figure stays plotly)."""
    return heatmap_svg(fig) or lines_svg(fig)


def lines_svg(fig: go.Figure) -> str | None:
    """``fig`` as an SVG string when every trace is a line (``go.Scatter`` in mode "lines") on
    linear numeric axes; None for any other figure (markers, fills, error bars, bars, log, date or
    category axes, a reversed axis: they stay plotly)."""
    if not fig.data or not all(_plain_line(t) for t in fig.data):
        return None
    layout = fig.layout
    axes = [layout[k] for k in layout.to_plotly_json() if re.fullmatch(r"[xy]axis\d*", k)]
    if any(a.type not in (None, "-", "linear") or a.autorange == "reversed" for a in axes):
        return None
    colorway = _colorway(layout)
    xs = np.concatenate([np.asarray(t.x, dtype=float) for t in fig.data])
    if not np.isfinite(xs).any():
        return None
    x_range = (float(np.nanmin(xs)), float(np.nanmax(xs)))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="actscale-lines" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" role="img" aria-label="{escape(_text(layout.title), quote=True)}">',
        f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" {TITLE_FONT}>{escape(_text(layout.title))}</text>',
    ]
    frames = {name: _frame(layout, name, fig) for name in sorted({_y(t) for t in fig.data}, key=_axis_number)}
    for name, frame in frames.items():
        parts += _axis(layout[_key(name)], frame)
    for i, trace in enumerate(fig.data):
        parts += _polyline(trace, frames[_y(trace)], x_range, colorway[i % len(colorway)])
    parts += _x_axis(layout, x_range)
    parts += _legend(fig, colorway)
    parts.append("</svg>")
    return "".join(parts)


def _colorway(layout: Any) -> tuple[str, ...]:
    """The template's colour order, else plotly's. Streamlit's own plotly template (the default
    once Streamlit is imported) lists placeholders, #000001, #000002, …, that its browser code
    replaces with the theme's colours: a static drawing takes plotly's instead."""
    colours = tuple(layout.template.layout.colorway or ())
    if not colours or all(re.fullmatch(r"#0000\d\d", str(c)) for c in colours):
        return COLORWAY
    return colours


def _plain_line(trace: Any) -> bool:
    if not isinstance(trace, go.Scatter) or (trace.mode or "lines") != "lines" or trace.fill not in (None, "none"):
        return False
    if trace.x is None or trace.y is None or (trace.error_y is not None and trace.error_y.array is not None):
        return False
    try:
        np.asarray(trace.x, dtype=float), np.asarray(trace.y, dtype=float)
    except (TypeError, ValueError):
        return False
    return True


def _y(trace: Any) -> str:
    """A trace's y axis ("y", "y2", …)."""
    return str(trace.yaxis or "y")


def _axis_number(name: str) -> int:
    return int(name[1:] or 1)


def _key(name: str) -> str:
    """A trace's axis reference ("y2") as the layout's key ("yaxis2")."""
    return f"{name[0]}axis{name[1:]}"


def _frame(layout: Any, name: str, fig: go.Figure) -> tuple[float, float, tuple[float, float], bool]:
    """(top, bottom) pixels of the axis' panel, its value range and whether it is drawn on the
    right (an axis overlaying another shares that one's panel)."""
    axis = layout[_key(name)]
    panel = layout[_key(axis.overlaying)] if axis.overlaying else axis
    lo_d, hi_d = panel.domain or (0.0, 1.0)
    height = HEIGHT - TOP - BOTTOM
    return TOP + (1 - hi_d) * height, TOP + (1 - lo_d) * height, _value_range(axis, name, fig), axis.side == "right"


def _value_range(axis: Any, name: str, fig: go.Figure) -> tuple[float, float]:
    """The axis' range where set, else its traces' finite values padded by 5% (as plotly's
    autorange, about)."""
    if axis.range is not None:
        return float(axis.range[0]), float(axis.range[1])
    ys = np.concatenate([np.asarray(t.y, dtype=float) for t in fig.data if _y(t) == name])
    finite = ys[np.isfinite(ys)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    pad = (hi - lo) * 0.05 or abs(hi) * 0.05 or 0.5
    return lo - pad, hi + pad


def ticks(lo: float, hi: float, dtick: float | None = None, tick0: float = 0.0) -> list[float]:
    """Tick values within [lo, hi]: every ``dtick`` from ``tick0`` where set, else about five
    at a step of 1, 2 or 5 × 10ⁿ."""
    if not hi > lo:
        return [lo]
    if dtick is None:
        raw = (hi - lo) / 5
        power = 10 ** math.floor(math.log10(raw))
        dtick = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
        tick0 = 0.0
    first = tick0 + math.ceil((lo - tick0) / dtick - 1e-9) * dtick
    return [round(float(v), 12) for v in np.arange(first, hi + dtick * 1e-9, dtick)]


def _axis(axis: Any, frame: tuple[float, float, tuple[float, float], bool]) -> list[str]:
    """One y axis on its `_frame`: its ticks (with grid lines on a left axis), its title, and its
    panel's frame."""
    top, bottom, (lo, hi), right = frame
    x0, x1 = LEFT, WIDTH - RIGHT
    parts = (
        []
        if right
        else [
            f'<rect x="{x0}" y="{top:.1f}" width="{x1 - x0}" height="{bottom - top:.1f}" fill="#fafafa" stroke="#ccc"/>'
        ]
    )
    for v in ticks(lo, hi, axis.dtick, float(axis.tick0 or 0.0)):
        y = bottom - (v - lo) / (hi - lo) * (bottom - top)
        if right:
            parts.append(f'<text x="{x1 + 6}" y="{y + 4:.1f}" {FONT}>{v:.3g}</text>')
        else:
            parts.append(f'<line x1="{x0}" x2="{x1}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>')
            parts.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" {FONT}>{v:.3g}</text>')
    at, mid = (WIDTH - 12 if right else 14), (top + bottom) / 2
    parts.append(
        f'<text x="{at}" y="{mid:.1f}" text-anchor="middle" transform="rotate(-90 {at} {mid:.1f})" {FONT}>'
        f"{escape(_text(axis.title))}</text>"
    )
    return parts


def _x(v: float, x_range: tuple[float, float]) -> float:
    lo, hi = x_range
    return LEFT + ((v - lo) / (hi - lo) if hi > lo else 0.5) * (WIDTH - LEFT - RIGHT)


def _polyline(trace: Any, frame: tuple[float, float, tuple[float, float], bool], x_range, colour: str) -> list[str]:
    """The trace as polylines (broken where a value is missing), its name as their tooltip."""
    top, bottom, (lo, hi), _ = frame
    xs, ys = np.asarray(trace.x, dtype=float), np.asarray(trace.y, dtype=float)
    stroke = _stroke(trace, colour)
    parts, run = [], []
    for x, y in [*zip(xs, ys), (math.nan, math.nan)]:
        if math.isfinite(x) and math.isfinite(y):
            run.append(f"{_x(x, x_range):.1f},{bottom - (min(max(y, lo), hi) - lo) / (hi - lo) * (bottom - top):.1f}")
        elif run:
            parts.append(
                f'<polyline points="{" ".join(run)}" fill="none" stroke-width="1.8"{stroke}>'
                f"<title>{escape(str(trace.name or ''))}</title></polyline>"
            )
            run = []
    return parts


def _stroke(trace: Any, default: str) -> str:
    """A line's colour (its own, else ``default``, its place in the colour order) and dash, as
    SVG attributes."""
    dash = f' stroke-dasharray="{DASHES[trace.line.dash]}"' if trace.line.dash in DASHES else ""
    return f' stroke="{escape(trace.line.color or default)}"{dash}'


def _x_axis(layout: Any, x_range: tuple[float, float]) -> list[str]:
    """Ticks and the title under the lowest panel (the axes share their x)."""
    bottom = HEIGHT - BOTTOM
    parts = [
        f'<text x="{_x(v, x_range):.1f}" y="{bottom + 14}" text-anchor="middle" {FONT}>{v:.4g}</text>'
        for v in ticks(*x_range)
    ]
    keys = sorted((k for k in layout.to_plotly_json() if k.startswith("xaxis")), key=lambda k: int(k[5:] or 1))
    titles = [_text(layout[k].title) for k in keys]
    title = next((t for t in reversed(titles) if t), "")
    parts.append(
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{bottom + 30}" text-anchor="middle" {FONT}>{escape(title)}</text>'
    )
    return parts


def _legend(fig: go.Figure, colorway: tuple[str, ...]) -> list[str]:
    """Each trace's line and name in a row under the x axis (a second row where they do not fit)."""
    parts: list[str] = []
    x, y = float(LEFT), HEIGHT - 26
    for i, trace in enumerate(fig.data):
        name = str(trace.name or f"trace {i}")
        width = 28 + 6.2 * len(name)
        if x + width > WIDTH - 8 and x > LEFT:
            x, y = LEFT, y + 16
        stroke = _stroke(trace, colorway[i % len(colorway)])
        parts.append(f'<line x1="{x:.1f}" x2="{x + 20:.1f}" y1="{y - 4}" y2="{y - 4}" stroke-width="2"{stroke}/>')
        parts.append(f'<text x="{x + 24:.1f}" y="{y}" {FONT}>{escape(name)}</text>')
        x += width
    return parts
