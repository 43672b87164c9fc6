"""Figures of docs/method.md §6, as pure functions from a bundle or a tidy DataFrame to a plotly
figure. No model is needed for any of them (viewer mode). The numbers come from `analysis`;
this module only draws them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from actscale.engine.interventions import SteerVec
from actscale.engine.sites import is_head_site
from actscale.runs.store import RunBundle
from actscale.views.analysis import (
    component_values,
    dyn_prompt_scalars,
    examples_frame,
    head_values,
    history_frame,
    layer_labels,
    position_labels,
    reliability,
    run_method,
)

DIVERGING = "RdBu_r"  # red = scaled up, blue = scaled down, white = no change
SEQUENTIAL = "Viridis"
_LAYOUT = dict(margin=dict(l=60, r=20, t=50, b=60))
_TEMPLATE = "plotly_white"


def _styled(fig: go.Figure) -> go.Figure:
    """Give ``fig`` the house template. Setting a template through ``update_layout`` validates
    (deep-copies) the whole template, about 50 ms a figure; plotly assigns its own default
    template unvalidated, and so do we, which keeps a run's dozen figures well under a second."""
    import plotly.io as pio

    template = pio.templates[_TEMPLATE]
    layout = fig._layout_obj
    try:
        layout._validate = False
        layout.template = template
    except Exception:  # noqa: BLE001 - a plotly without this path: the slow, validated way
        layout._validate = True
        fig.update_layout(template=_TEMPLATE)
    finally:
        layout._validate = True
    return fig


def _new_figure(*args, **kwargs) -> go.Figure:
    return _styled(go.Figure(*args, **kwargs))


def _heatmap(
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
    fig = _new_figure(
        go.Heatmap(
            z=z,
            x=x,
            y=y,
            colorbar=dict(title=zlabel),
            hovertemplate=f"{ytitle} %{{y}}<br>{xtitle} %{{x}}<br>{zlabel} %{{z:.4f}}<extra></extra>",
            **kwargs,
        )
    )
    fig.update_layout(title=title, xaxis_title=xtitle, yaxis_title=ytitle, **_LAYOUT)
    # Every label (a token, a layer) where there are few enough to read; plotly would otherwise
    # drop some when the figure is narrow, and a position is named by its token.
    fig.update_yaxes(type="category", **_every_tick(len(y)))
    fig.update_xaxes(type="category", tickangle=-45, **_every_tick(len(x)))
    return fig


def _every_tick(n: int, most: int = 48) -> dict[str, Any]:
    return {"tickmode": "linear", "tick0": 0, "dtick": 1} if n <= most else {}


def plot_scalar_heatmap(bundle: RunBundle, site: str) -> go.Figure:
    """ActivScalar: learned α per layer × position, centred on 0 ("no change")."""
    alpha = bundle.params[f"alpha.{site}"].numpy()
    if is_head_site(site):
        alpha = alpha.sum(-1)
        title = f"α summed over heads — {site}"
    else:
        title = f"α per layer and position — {site}"
    return _heatmap(alpha, position_labels(bundle), layer_labels(alpha.shape[0]), title, diverging=True, zlabel="α")


def plot_head_heatmap(bundle: RunBundle, position: int | None) -> go.Figure:
    """The head site as layer × head, at one position or summed over positions (methods whose
    components have no position: as they are)."""
    method = run_method(bundle)
    z = head_values(bundle, position)
    if "position" not in method.component_axes("head"):
        where = "(per layer and head)"
    else:
        where = "summed over positions" if position is None else f"at position {position_labels(bundle)[position]}"
    return _heatmap(
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


def _layer_position_map(bundle: RunBundle, values: np.ndarray, title: str, **kwargs: Any) -> go.Figure:
    """A [layer pos] map of ``bundle`` (a [layer pos head] one averaged over heads)."""
    if values.ndim == 3:
        values = values.mean(-1)
    return _heatmap(values, position_labels(bundle), layer_labels(values.shape[0]), title, **kwargs)


def plot_steer_ratio(bundle: RunBundle, site: str) -> go.Figure:
    """SteerVec: the norm ratio ‖v‖/‖h‖ per layer × position (head site: mean over heads)."""
    ratio = steer_norm_ratio(bundle, site)
    return _layer_position_map(bundle, ratio, f"‖v‖/‖h‖ — {site}", diverging=False, zlabel="‖v‖/‖h‖")


def plot_steer_cos(bundle: RunBundle, site: str) -> go.Figure:
    """SteerVec: the direction cos(v, h) per layer × position (head site: mean over heads);
    zeros where the bundle stores no cosines."""
    stored = bundle.cos(site)
    cos = stored.numpy() if stored is not None else np.zeros_like(steer_norm_ratio(bundle, site))
    return _layer_position_map(bundle, cos, f"cos(v, h) — {site}", diverging=True, zlabel="cos", zrange=(-1.0, 1.0))


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
        fig = _new_figure(
            go.Bar(x=layer_labels(len(values)), y=values.tolist(), marker_color="#3b6ea8", name=method.magnitude_label)
        )
        fig.update_layout(title=title, xaxis_title="layer", yaxis_title=method.magnitude_label, **_LAYOUT)
        fig.update_xaxes(type="category")
        return fig
    if values.ndim > 2:
        values = values.reshape(*values.shape[:2], -1).mean(-1)
    x = (
        position_labels(bundle)
        if axes[1] == "position"
        else [f"{axes[1][0].upper()}{i}" for i in range(values.shape[1])]
    )
    return _heatmap(
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
    fig = _new_figure()
    for site in bundle.sites:
        w = bundle.params[f"w.{site}"].norm(dim=-1)
        b = bundle.params[f"b.{site}"].abs()
        if w.dim() == 2:  # head site: mean over heads
            w, b = w.mean(-1), b.mean(-1)
        layers = list(range(w.shape[0]))
        fig.add_trace(go.Scatter(x=layers, y=w.numpy(), mode="lines+markers", name=f"‖w‖ {site}"))
        fig.add_trace(go.Scatter(x=layers, y=b.numpy(), mode="lines", name=f"|b| {site}", line=dict(dash="dot")))
    fig.update_layout(title="DynScalar: ‖w‖ and |b| per layer", xaxis_title="layer", yaxis_title="norm", **_LAYOUT)
    n_layers = int(bundle.config.get("model_dims", {}).get("n_layers", 1) or 1)
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
    return _heatmap(
        z, labels, layer_labels(z.shape[0]), f"scalars α on prompt {index} — {site}", diverging=True, zlabel="α"
    )


def plot_history(history: pd.DataFrame) -> go.Figure:
    """Each loss term and the flip accuracies per step (train batch): the effectiveness and
    faithfulness terms on top with the flip accuracies on the right axis, the minimality term
    ‖θ‖₁ below (its scale is its own)."""
    from plotly.subplots import make_subplots

    if history.empty:
        fig = _new_figure()
        fig.update_layout(title="no steps yet", **_LAYOUT)
        return fig
    fig = _styled(
        make_subplots(
            rows=2,
            cols=1,
            shared_xaxes=True,
            row_heights=[0.68, 0.32],
            vertical_spacing=0.08,
            specs=[[{"secondary_y": True}], [{}]],
        )
    )
    for col in ("loss", "effectiveness", "faithfulness"):
        if col in history:
            fig.add_trace(go.Scatter(x=history["step"], y=history[col], name=col, mode="lines"), row=1, col=1)
    for col in ("flip_acc_pos", "flip_acc_neg"):
        if col in history:
            fig.add_trace(
                go.Scatter(x=history["step"], y=history[col], name=col, mode="lines", line=dict(dash="dash")),
                row=1,
                col=1,
                secondary_y=True,
            )
    if "minimality" in history:
        fig.add_trace(
            go.Scatter(
                x=history["step"],
                y=history["minimality"],
                name="minimality ‖θ‖₁",
                mode="lines",
                line=dict(color="#6b4c9a"),
            ),
            row=2,
            col=1,
        )
    fig.update_yaxes(title_text="loss", row=1, col=1, secondary_y=False)
    fig.update_yaxes(
        title_text="flip accuracy",
        range=[0, 1.05],
        tickmode="linear",
        tick0=0,
        dtick=0.25,
        showgrid=False,
        row=1,
        col=1,
        secondary_y=True,
    )
    fig.update_yaxes(title_text="‖θ‖₁", row=2, col=1)
    fig.update_xaxes(title_text="step", row=2, col=1)
    fig.update_layout(title="training", legend=dict(orientation="h", y=-0.2), **_LAYOUT)
    return fig


def plot_run_history(bundle: RunBundle) -> go.Figure:
    """A stored run's training curves."""
    return plot_history(history_frame(bundle))


def _error_bars(part: pd.DataFrame, name: str) -> dict | None:
    """Plotly error bars from a ``<name>_ci95`` column of [lo, hi] pairs (None where absent)."""
    col = f"{name}_ci95"
    if col not in part or part[col].isna().all():
        return None
    lo = [r - c[0] if isinstance(c, (list, tuple)) else 0.0 for r, c in zip(part[name], part[col])]
    hi = [c[1] - r if isinstance(c, (list, tuple)) else 0.0 for r, c in zip(part[name], part[col])]
    return dict(type="data", symmetric=False, array=hi, arrayminus=lo, thickness=1.2)


COMPARISON_PANELS = (
    ("flip_acc_pos", "base_pos", "flip rate β = +1 (↑; ◆ unmodified)"),
    ("flip_acc_neg", "base_neg", "flip rate β = −1 (↑; ◆ unmodified)"),
    ("faithfulness_kl", None, "faithfulness (KL ↓)"),
    ("effective_frac", None, "minimality (effective fraction of components ↓)"),
)


def plot_method_comparison(df: pd.DataFrame) -> go.Figure:
    """Effectiveness (each direction, with its 95% interval and the unmodified model's rate as a
    diamond), faithfulness and minimality per run, train and test side by side."""
    from plotly.subplots import make_subplots

    fig = _styled(
        make_subplots(rows=1, cols=len(COMPARISON_PANELS), subplot_titles=[title for _, _, title in COMPARISON_PANELS])
    )
    colours = {"train": "#9aa5b1", "test": "#b4232c"}
    for split in ("train", "test"):
        part = df[df["split"] == split]
        if part.empty:
            continue
        label = part["method"] + " · " + part["run_id"].str[:6]
        for col, (metric, base, _) in enumerate(COMPARISON_PANELS, start=1):
            y = part[metric] if metric in part else pd.Series(np.nan, index=part.index)
            fig.add_trace(
                go.Bar(
                    x=label,
                    y=y,
                    name=split,
                    marker_color=colours[split],
                    showlegend=col == 1,
                    legendgroup=split,
                    error_y=_error_bars(part, metric) if metric in part else None,
                ),
                row=1,
                col=col,
            )
            if base and base in part:
                fig.add_trace(
                    go.Scatter(
                        x=label,
                        y=part[base],
                        mode="markers",
                        name=f"unmodified ({split})",
                        marker=dict(symbol="diamond", size=9, color="#222", line=dict(width=0)),
                        legendgroup=split,
                        showlegend=col == 1,
                        offsetgroup=split,
                    ),
                    row=1,
                    col=col,
                )
    for col in (1, 2):
        fig.update_yaxes(range=[0, 1.05], row=1, col=col)
    fig.update_layout(barmode="group", scattermode="group", title="methods compared", **_LAYOUT)
    return fig


def plot_param_counts(df: pd.DataFrame) -> go.Figure:
    """Learned parameters per run, on a log scale."""
    first = df.drop_duplicates("run_id")
    fig = _new_figure(
        go.Bar(
            x=first["method"] + " · " + first["run_id"].str[:6],
            y=first["n_params"],
            text=first["n_params"],
            textposition="outside",
            marker_color="#3b6ea8",
        )
    )
    fig.update_layout(title="learned parameters", yaxis_title="parameters (log)", **_LAYOUT)
    fig.update_yaxes(type="log", dtick=1)  # one tick per power of ten
    return fig


METRIC_LABELS = {
    "flip_acc": "effectiveness: mean flip accuracy",
    "flip_acc_pos": "flip accuracy β = +1",
    "flip_acc_neg": "flip accuracy β = −1",
    "faithfulness_kl": "faithfulness: KL (lower is better)",
    "kl_full": "KL over the whole vocabulary",
    "l1": "minimality: ‖θ‖₁",
    "effective_frac": "minimality: fraction of effective components",
    "n_effective": "minimality: effective components",
    "n_params": "learned parameters",
    "lambda_m": "λ_M",
    "lambda_f": "λ_F",
    "margin": "m",
}


def plot_tradeoff(df: pd.DataFrame, x: str, y: str = "flip_acc", colour: str = "method") -> go.Figure:
    """A trade-off scatter (docs/method.md §6.4); each point carries its run id for click-through."""
    fig = _new_figure()
    xl, yl = METRIC_LABELS.get(x, x), METRIC_LABELS.get(y, y)
    for key, part in df.groupby(colour, sort=True):
        label = str(key) if isinstance(key, str) else f"{METRIC_LABELS.get(colour, colour)} = {key:g}"
        fig.add_trace(
            go.Scatter(
                x=part[x],
                y=part[y],
                mode="markers",
                name=label,
                customdata=part[["run_id", "method"]].to_numpy(),
                marker=dict(size=11),
                hovertemplate=f"run %{{customdata[0]}} (%{{customdata[1]}})<br>{xl}: %{{x:.4g}}<br>{yl}: %{{y:.3f}}"
                "<extra></extra>",
            )
        )
    fig.update_layout(
        title=f"{yl.split(':')[0]} against {xl.split(':')[0]}",
        xaxis_title=xl,
        yaxis_title=yl,
        legend_title_text=METRIC_LABELS.get(colour, colour),
        **_LAYOUT,
    )
    return fig


def plot_beta_curve(curve: pd.DataFrame, beta: float | None = None) -> go.Figure:
    """Δ, p(a+) and p(a−) as β runs from −1 to +1 (docs/method.md §6.5); ``beta`` marks the current
    strength. The probability axis starts at 0 and fits the data (small models give small p)."""
    fig = _new_figure()
    fig.add_trace(go.Scatter(x=curve["beta"], y=curve["delta"], name="Δ = logit(a+) − logit(a−)", mode="lines+markers"))
    fig.add_trace(go.Scatter(x=curve["beta"], y=curve["p_correct"], name="p(a+)", yaxis="y2", mode="lines"))
    fig.add_trace(go.Scatter(x=curve["beta"], y=curve["p_wrong"], name="p(a−)", yaxis="y2", mode="lines"))
    fig.add_hline(y=0, line=dict(color="#999", width=1))
    if beta is not None:
        fig.add_vline(
            x=float(beta),
            line=dict(color="#b4232c", width=1, dash="dot"),
            annotation_text=f"β = {float(beta):+.2f}",
            annotation_position="top",
        )
    fig.update_layout(
        title="steering strength β",
        xaxis_title="β",
        yaxis_title="Δ",
        yaxis2=dict(
            title="probability",
            overlaying="y",
            side="right",
            rangemode="tozero",
            tickmode="auto",
            nticks=6,
            showgrid=False,
        ),
        legend=dict(orientation="h", y=-0.25),
        **_LAYOUT,
    )
    return fig


def plot_length_generalisation(bundle: RunBundle) -> go.Figure:
    """Flip rate per prompt length, split and direction (DynScalar across lengths, docs/method.md
    §6.6), each next to the unmodified model's rate at that length (◆)."""
    df = examples_frame(bundle)
    fig = _new_figure()
    if "n_tokens" not in df or "flipped_pos" not in df or "delta_base" not in df:
        fig.update_layout(title="no per-prompt results in this bundle", **_LAYOUT)
        return fig
    df["base_pos"], df["base_neg"] = df["delta_base"] > 0, df["delta_base"] < 0
    cols = ["flipped_pos", "flipped_neg", "base_pos", "base_neg"]
    grouped = df.groupby(["split", "n_tokens"])[cols].mean().reset_index()
    for split, part in grouped.groupby("split"):
        x = part["n_tokens"].astype(str)
        for direction, sign in (("pos", "+1"), ("neg", "−1")):
            fig.add_trace(
                go.Bar(
                    x=x, y=part[f"flipped_{direction}"], name=f"{split} β = {sign}", offsetgroup=f"{split}-{direction}"
                )
            )
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=part[f"base_{direction}"],
                    mode="markers",
                    showlegend=False,
                    name=f"{split} β = {sign} unmodified",
                    offsetgroup=f"{split}-{direction}",
                    marker=dict(symbol="diamond", size=8, color="#222"),
                )
            )
    fig.update_layout(
        barmode="group",
        scattermode="group",
        title="flip rate by prompt length (◆ unmodified)",
        xaxis_title="prompt length (tokens)",
        yaxis_title="flip rate",
        yaxis_range=[0, 1.05],
        **_LAYOUT,
    )
    lengths = [str(n) for n in sorted(grouped["n_tokens"].unique())]
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=lengths)  # shortest first
    return fig


def plot_reliability(bundle: RunBundle, split: str = "test") -> go.Figure:
    """Per-example reliability: each prompt's Δ at β = −1, 0 and +1 as one line (a slope chart);
    lines that end on the wrong side of 0 did not flip."""
    df, _ = reliability(bundle, split)
    fig = _new_figure()
    if df.empty:
        fig.update_layout(title=f"no per-prompt results for the {split} split", **_LAYOUT)
        return fig
    xs = ["β = −1", "β = 0", "β = +1"]
    for flipped, colour, name in (
        (True, "rgba(59,110,168,0.35)", "flipped both ways"),
        (False, "rgba(180,35,44,0.8)", "not flipped one way"),
    ):
        part = df[(df["shortfall"] < 0) == flipped]
        x, y, text = [], [], []
        for _, row in part.iterrows():  # one polyline per prompt, separated by gaps
            x += [*xs, None]
            y += [row["delta_neg"], row["delta_base"], row["delta_pos"], None]
            text += [str(row["prompt"])[:80]] * 3 + [None]
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines+markers",
                name=f"{name} ({len(part)})",
                text=text,
                line=dict(color=colour, width=1),
                marker=dict(size=4),
                hovertemplate="%{text}<br>Δ %{y:.2f}<extra></extra>",
            )
        )
    fig.add_hline(y=0, line=dict(color="#999", width=1))
    fig.update_layout(
        title=f"Δ per {split} prompt at β = −1, 0, +1",
        xaxis_title="steering strength",
        yaxis_title="Δ = logit(a+) − logit(a−)",
        **_LAYOUT,
    )
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=xs)
    return fig


# ---------------------------------------------------------------- the map checks (docs/method.md §7)
def plot_sufficiency(bundle: RunBundle) -> go.Figure:
    """Flip rate against k (log): the top-k kept (sufficiency) and removed (necessity) with
    Wilson intervals, the random control's median and 5–95% band, the zero- and mean-ablation
    points, the unmodified model's rate and k90; one panel per direction."""
    from plotly.subplots import make_subplots

    from actscale.views.analysis import run_checks_data

    m = (run_checks_data(bundle) or {}).get("map") or {}
    if not m:
        raise ValueError("this run has no map checks")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("β = −1 (towards a−)", "β = +1 (towards a+)"))
    _styled(fig)
    colours = {"keep": "#c0392b", "remove": "#2c7fb8", "random": "#7f7f7f", "zero": "#000000", "mean": "#8e44ad"}
    for col, (name, ablation_name) in enumerate((("flip_acc_neg", "prefers_neg"), ("flip_acc_pos", "prefers_pos")), 1):
        for label, part, colour in (
            ("keep top-k (sufficiency)", m["sufficiency"], colours["keep"]),
            ("remove top-k (necessity)", m["necessity"], colours["remove"]),
        ):
            frame = pd.DataFrame(part)
            lo = frame[name] - frame[f"{name}_ci95"].str[0]
            hi = frame[f"{name}_ci95"].str[1] - frame[name]
            fig.add_trace(
                go.Scatter(
                    x=frame["k"],
                    y=frame[name],
                    mode="lines+markers",
                    name=label,
                    legendgroup=label,
                    showlegend=col == 1,
                    line=dict(color=colour),
                    error_y=dict(type="data", symmetric=False, array=hi, arrayminus=lo, thickness=1),
                    hovertemplate="k %{x}<br>flip rate %{y:.2f}<extra>" + label + "</extra>",
                ),
                row=1,
                col=col,
            )
        rand = pd.DataFrame(m.get("random", []))
        if not rand.empty:
            med, p05, p95 = (rand[f"{name}_{q}"] for q in ("median", "p05", "p95"))
            fig.add_trace(
                go.Scatter(
                    x=rand["k"],
                    y=med,
                    mode="markers",
                    marker=dict(symbol="square", color=colours["random"], size=9),
                    name=f"random placement (median, 5–95% of {int(rand['draws'].iloc[0])} draws)",
                    legendgroup="random",
                    showlegend=col == 1,
                    error_y=dict(type="data", symmetric=False, array=p95 - med, arrayminus=med - p05, thickness=2),
                ),
                row=1,
                col=col,
            )
        abl = pd.DataFrame(m.get("ablation", []))
        for kind, symbol in (("zero", "x"), ("mean", "diamond")):
            part = abl[abl["kind"] == kind] if not abl.empty else abl
            if part.empty:
                continue
            fig.add_trace(
                go.Scatter(
                    x=part["k"],
                    y=part[ablation_name],
                    mode="markers",
                    marker=dict(symbol=symbol, size=11, color=colours[kind]),
                    name=f"{kind}-ablation of the top-k (share preferring that answer)",
                    legendgroup=kind,
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
        unmodified = _unmodified_rate(bundle, m, name)
        if unmodified is not None:
            fig.add_hline(
                y=unmodified,
                line=dict(dash="dot", color="#555"),
                annotation_text="unmodified",
                annotation_position="bottom right",
                row=1,
                col=col,
            )
        fig.add_vline(x=m["k90"], line=dict(dash="dash", color="#c0392b", width=1), row=1, col=col)
    fig.update_xaxes(type="log", title_text="k (top components kept or removed, log scale)")
    fig.update_yaxes(range=[-0.03, 1.03])
    fig.update_yaxes(title_text="flip rate", col=1)
    fig.update_layout(
        title=f"Sufficiency and necessity of the top-k components (k90 = {m['k90']} of {m['n_components']:,}; "
        f"{m['prompts']['n']} test prompts)",
        legend=dict(orientation="h", y=-0.25),
        height=480,
        **_LAYOUT,
    )
    return fig


def _unmodified_rate(bundle: RunBundle, m: dict, name: str) -> float | None:
    """The unmodified model's rate of ``name`` on the check prompts (from the stored Δ)."""
    base = bundle.analysis.get("delta.base")
    rows = m.get("prompts", {}).get("rows")
    if base is None or not rows:
        return None
    d = base[rows]
    return float((d > 0).double().mean() if name == "flip_acc_pos" else (d < 0).double().mean())


def plot_stability_map(bundle: RunBundle, site: str) -> go.Figure:
    """The consensus map over seeds (mean relative magnitude) with the components selected in
    every seed marked, and each one's selection frequency on hover."""
    from actscale.views.analysis import checks_tensor, run_checks_data

    s = (run_checks_data(bundle) or {}).get("stability") or {}
    consensus, freq = (
        checks_tensor(bundle, f"stability.consensus.{site}"),
        checks_tensor(bundle, f"stability.freq.{site}"),
    )
    if not s or consensus is None or freq is None:
        raise ValueError("this run has no stability check")
    method = run_method(bundle)
    axes = method.component_axes(site)
    c, f = consensus.numpy(), freq.numpy()
    if c.ndim == 1:
        c, f, x = c[:, None], f[:, None], [site]
    else:
        if c.ndim > 2:
            c, f = c.reshape(*c.shape[:2], -1).mean(-1), f.reshape(*f.shape[:2], -1).max(-1)
        x = (
            position_labels(bundle)
            if axes[1] == "position"
            else [f"{axes[1][0].upper()}{i}" for i in range(c.shape[1])]
        )
    y = layer_labels(c.shape[0])
    k = len(s.get("runs", []))
    fig = _heatmap(
        c,
        x,
        y,
        f"Consensus over {k} seeds ({s.get('vary')}) — {site}: mean {method.magnitude_label}; "
        "● selected (> τ) in every seed",
        diverging=False,
        zlabel=f"mean {method.magnitude_label}",
        xtitle=axes[1] if len(axes) > 1 else "site",
    )
    fig.data[0].customdata = f
    fig.data[
        0
    ].hovertemplate = "layer %{y}<br>%{x}<br>mean %{z:.4f}<br>selected in %{customdata:.0%} of seeds<extra></extra>"
    yi, xi = np.nonzero(f >= 1.0 - 1e-9)
    fig.add_trace(
        go.Scatter(
            x=[x[i] for i in xi],
            y=[y[i] for i in yi],
            mode="markers",
            marker=dict(symbol="circle", size=7, color="white", line=dict(color="black", width=1.5)),
            name="selected in every seed",
            hoverinfo="skip",
        )
    )
    fig.update_layout(showlegend=False)
    return fig


def plot_generalisation(bundle: RunBundle, name: str = "flip_acc_neg") -> go.Figure:
    """Train on one group (rows), test on each other (columns; the diagonal: the group's own
    validation prompts): a flip rate per cell with its interval and n."""
    from actscale.views.analysis import run_checks_data

    g = (run_checks_data(bundle) or {}).get("generalisation") or {}
    if not g:
        raise ValueError("this run has no generalisation check")
    groups = g["groups"]
    z = np.full((len(groups), len(groups)), np.nan)
    text = [["" for _ in groups] for _ in groups]
    for c in g["cells"]:
        i, j = groups.index(c["train"]), groups.index(c["test"])
        if c.get("n_prompts"):
            z[i, j] = c[name]
            ci = c.get(f"{name}_ci95") or [float("nan")] * 2
            text[i][j] = f"{c[name]:.2f}<br>[{ci[0]:.2f}, {ci[1]:.2f}]<br>n = {c['n_prompts']}"
        else:
            text[i][j] = "no prompts<br>(length)"
    direction = "β = −1" if name == "flip_acc_neg" else "β = +1"
    fig = _new_figure(
        go.Heatmap(
            z=z,
            x=groups,
            y=groups,
            text=text,
            texttemplate="%{text}",
            colorscale=SEQUENTIAL,
            zmin=0,
            zmax=1,
            colorbar=dict(title="flip rate"),
            hovertemplate="trained on %{y}<br>tested on %{x}<br>%{text}<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"{g['method']}: flip rate at {direction}, trained on one group, tested on each (diagonal: validation)",
        xaxis_title="tested on",
        yaxis_title="trained on",
        height=120 + 80 * len(groups),
        **_LAYOUT,
    )
    return fig


def plot_trigger_map(values: np.ndarray, units: list[str], tokens: list[str]) -> go.Figure:
    """DynScalar: the scalar α(h) each of the run's strongest units computes at every token
    (on the unmodified model), centred on 0 = "this unit leaves the token alone"."""
    x = [f"{i}:{t}" for i, t in enumerate(tokens)]
    fig = _heatmap(
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


def plot_sufficiency_overlay(bundles: list[RunBundle]) -> go.Figure:
    """Runs side by side: mean flip rate of the top-k against k as a share of each run's
    components (log), the learned curve solid and the random control's median as markers."""
    from actscale.views.analysis import run_checks_data

    fig = _new_figure()
    for b in bundles:
        m = (run_checks_data(b) or {}).get("map") or {}
        if not m:
            continue
        frame = pd.DataFrame(m["sufficiency"])
        n = m["n_components"]
        label = f"{b.method} {b.run_id[:8]}"
        fig.add_trace(
            go.Scatter(
                x=frame["k"] / n, y=frame["mean_flip"], mode="lines+markers", name=f"{label} top-k", legendgroup=label
            )
        )
        rand = pd.DataFrame(m.get("random", []))
        if not rand.empty:
            fig.add_trace(
                go.Scatter(
                    x=rand["k"] / n,
                    y=rand["mean_flip_median"],
                    mode="markers",
                    marker=dict(symbol="square-open", size=10),
                    name=f"{label} random (median)",
                    legendgroup=label,
                )
            )
    fig.update_xaxes(type="log", title_text="share of components kept (log scale)")
    fig.update_yaxes(range=[-0.03, 1.03], title_text="mean flip rate ((β = +1 and β = −1) / 2)")
    fig.update_layout(title="Sufficiency of the top components, runs compared", **_LAYOUT)
    return fig
