"""A run's maps: layer × position heatmaps per site, heads, SteerVec's norm ratio and direction,
DynScalar's weights and per-prompt scalars, and the Playground's trigger map."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

from actscale.engine.interventions import SteerVec
from actscale.engine.sites import is_head_site
from actscale.errors import ActscaleError
from actscale.runs.bundle import RunBundle
from actscale.views.analysis import (
    MAP_LABELS,
    component_values,
    dyn_prompt_scalars,
    free_values,
    head_values,
    layer_labels,
    position_labels,
    run_method,
)
from actscale.views.plots.style import LAYOUT, heatmap, new_figure


def plot_scalar_heatmap(bundle: RunBundle, site: str) -> go.Figure:
    """ActivScalar: learned α per layer × position, centred on 0 ("no change")."""
    alpha = bundle.params[f"alpha.{site}"].numpy()
    if is_head_site(site):
        alpha = alpha.sum(-1)
        title = f"α summed over heads — {site}"
    else:
        title = f"α per layer and position — {site}"
    return heatmap(alpha, position_labels(bundle), layer_labels(alpha.shape[0]), title, diverging=True, zlabel="α")


def plot_free_map(bundle: RunBundle, name: str, site: str) -> go.Figure:
    """A training-free map the checks stored (`analysis.MAP_LABELS`), per layer × position on the
    learned map's axes, signed and centred on 0 like α (the head site summed over heads; cells
    activation patching did not patch are blank)."""
    values = free_values(bundle, name, site)
    if values is None:
        raise ActscaleError(f"this run's checks store no {MAP_LABELS[name]} map for {site}: run the checks again")
    labels = position_labels(bundle)
    if len(labels) != values.shape[1]:  # counted back from the answer
        labels = [f"−{values.shape[1] - 1 - i}" if i < values.shape[1] - 1 else "last" for i in range(values.shape[1])]
    where = " summed over heads" if is_head_site(site) else ""
    title = f"{MAP_LABELS[name]}{where} — {site}"
    zlabel = "share restored" if name == "patch" else "⟨∇Δ, h⟩"
    return heatmap(values, labels, layer_labels(values.shape[0]), title, diverging=True, zlabel=zlabel)


def plot_head_heatmap(bundle: RunBundle, position: int | None) -> go.Figure:
    """The head site as layer × head, at one position or summed over positions (methods whose
    components have no position: as they are)."""
    method = run_method(bundle)
    z = head_values(bundle, position)
    if "position" not in method.component_axes("head"):
        where = "(per layer and head)"
    else:
        where = "summed over positions" if position is None else f"at position {position_labels(bundle)[position]}"
    return heatmap(
        z,
        [f"H{h}" for h in range(z.shape[1])],
        layer_labels(z.shape[0]),
        f"head site {where}",
        diverging=method.magnitude_signed,
        zlabel=method.magnitude_label,
        xtitle="head",
    )


def steer_norm_ratio(bundle: RunBundle, site: str) -> np.ndarray:
    """SteerVec: ``‖v‖ / mean‖h‖`` per [layer pos (head)]."""
    return SteerVec.component_values(bundle.params, bundle.analysis, site).numpy()


def layer_position_map(bundle: RunBundle, values: np.ndarray, title: str, **kwargs: Any) -> go.Figure:
    """A [layer pos] map of ``bundle`` (a [layer pos head] one averaged over heads)."""
    if values.ndim == 3:
        values = values.mean(-1)
    return heatmap(values, position_labels(bundle), layer_labels(values.shape[0]), title, **kwargs)


def plot_steer_ratio(bundle: RunBundle, site: str) -> go.Figure:
    """SteerVec: the norm ratio ‖v‖/‖h‖ per layer × position (head site: mean over heads)."""
    ratio = steer_norm_ratio(bundle, site)
    return layer_position_map(bundle, ratio, f"‖v‖/‖h‖ — {site}", diverging=False, zlabel="‖v‖/‖h‖")


def plot_steer_cos(bundle: RunBundle, site: str) -> go.Figure:
    """SteerVec: the direction cos(v, h) per layer × position (head site: mean over heads);
    zeros where the bundle stores no cosines."""
    stored = bundle.cos(site)
    cos = stored.numpy() if stored is not None else np.zeros_like(steer_norm_ratio(bundle, site))
    return layer_position_map(bundle, cos, f"cos(v, h) — {site}", diverging=True, zlabel="cos", zrange=(-1.0, 1.0))


def plot_steer_heatmaps(bundle: RunBundle, site: str) -> tuple[go.Figure, go.Figure]:
    """SteerVec: the norm ratio ‖v‖/‖h‖ and the direction cos(v, h) per layer × position."""
    return plot_steer_ratio(bundle, site), plot_steer_cos(bundle, site)


def plot_component_map(bundle: RunBundle, site: str) -> go.Figure:
    """Any method: the size of each component at ``site`` along the method's component axes, as
    a bar per layer (one axis) or a layer × position / layer × head heatmap (a third axis is
    averaged). Signed sizes are drawn on a scale centred on 0."""
    method = run_method(bundle)
    values, axes = component_values(bundle, site), method.component_axes(site)
    title = f"{method.magnitude_label} per {' and '.join(axes[:2])} — {site}"
    if values.ndim == 1:
        fig = new_figure(
            go.Bar(x=layer_labels(len(values)), y=values.tolist(), marker_color="#3b6ea8", name=method.magnitude_label)
        )
        fig.update_layout(title=title, xaxis_title="layer", yaxis_title=method.magnitude_label, **LAYOUT)
        fig.update_xaxes(type="category")
        return fig
    if values.ndim > 2:
        values = values.reshape(*values.shape[:2], -1).mean(-1)
    x = (
        position_labels(bundle)
        if axes[1] == "position"
        else [f"{axes[1][0].upper()}{i}" for i in range(values.shape[1])]
    )
    return heatmap(
        values,
        x,
        layer_labels(values.shape[0]),
        title,
        diverging=method.magnitude_signed,
        zlabel=method.magnitude_label,
        xtitle=axes[1],
    )


def plot_dyn_weight_norms(bundle: RunBundle) -> go.Figure:
    """DynScalar: ‖w‖ per layer (and |b|), one line per site."""
    fig = new_figure()
    for site in bundle.sites:
        w = bundle.params[f"w.{site}"].norm(dim=-1)
        b = bundle.params[f"b.{site}"].abs()
        if w.dim() == 2:  # head site: mean over heads
            w, b = w.mean(-1), b.mean(-1)
        layers = list(range(w.shape[0]))
        fig.add_trace(go.Scatter(x=layers, y=w.numpy(), mode="lines+markers", name=f"‖w‖ {site}"))
        fig.add_trace(go.Scatter(x=layers, y=b.numpy(), mode="lines", name=f"|b| {site}", line=dict(dash="dot")))
    fig.update_layout(title="DynScalar: ‖w‖ and |b| per layer", xaxis_title="layer", yaxis_title="norm", **LAYOUT)
    n_layers = bundle.record.provenance.model_shape.n_layers
    fig.update_xaxes(tickmode="linear", tick0=0, dtick=max(1, n_layers // 15))  # whole layers only
    return fig


def mark_component(fig: go.Figure, index: tuple[int, ...]) -> go.Figure:
    """A copy of a component map (rows: layers; columns: the component's second axis, or a bar
    per layer) with the component at ``index`` outlined; the figure given is not modified (it
    may be shared by a cache)."""
    marked = go.Figure(fig)
    layer = index[0]
    # Category axes place their n-th category at n, so a cell spans n ± 0.5.
    x0: float
    y0: float
    if len(index) == 1:
        x0, x1, y0, y1, yref = layer - 0.5, layer + 0.5, 0.0, 1.0, "y domain"
    else:
        x0, x1, y0, y1, yref = index[1] - 0.5, index[1] + 0.5, layer - 0.5, layer + 0.5, "y"
    marked.add_shape(
        type="rect", x0=x0, x1=x1, y0=y0, y1=y1, xref="x", yref=yref, line=dict(color="#111", width=3), name="chosen"
    )
    return marked


def plot_dyn_prompt(bundle: RunBundle, site: str, index: int) -> go.Figure:
    z, labels = dyn_prompt_scalars(bundle, site, index)
    return heatmap(
        z, labels, layer_labels(z.shape[0]), f"scalars α on prompt {index} — {site}", diverging=True, zlabel="α"
    )


def plot_trigger_map(values: np.ndarray, units: list[str], tokens: list[str]) -> go.Figure:
    """DynScalar: the scalar α(h) each of the run's strongest units computes at every token
    (on the unmodified model), centred on 0 = "this unit leaves the token alone"."""
    x = [f"{i}:{t}" for i, t in enumerate(tokens)]
    fig = heatmap(
        values,
        x,
        units,
        "Trigger map: α(h) per token for the strongest units (0 = no change)",
        diverging=True,
        zlabel="α(h)",
        xtitle="token",
        ytitle="unit",
    )
    fig.update_yaxes(autorange="reversed")
    return fig
