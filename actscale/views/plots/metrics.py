"""A run's metrics as figures: training history, methods compared, parameter counts, trade-offs,
the β curve, flips per prompt length and the per-prompt reliability."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from actscale.engine.tasks.examples import SPLITS
from actscale.runs.bundle import RunBundle
from actscale.views.analysis import (
    examples_frame,
    history_frame,
    reliability,
)
from actscale.views.plots.style import COLORWAY, LAYOUT, SEQUENTIAL, new_figure, styled


def plot_history(history: pd.DataFrame) -> go.Figure:
    """Each loss term and the flip accuracies per step (train batch): the effectiveness and
    faithfulness terms on top with the flip accuracies on the right axis, the minimality term
    ‖θ‖₁ below (its scale is its own)."""
    from plotly.subplots import make_subplots

    if history.empty:
        fig = new_figure()
        fig.update_layout(title="no steps yet", **LAYOUT)
        return fig
    fig = styled(
        make_subplots(
            rows=2,
            cols=1,
            shared_xaxes=True,
            row_heights=[0.68, 0.32],
            vertical_spacing=0.08,
            specs=[[{"secondary_y": True}], [{}]],
        )
    )
    _add_history_traces(fig, history)
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
    fig.update_layout(title="training", legend=dict(orientation="h", y=-0.2), **LAYOUT)
    return fig


def _add_history_traces(fig: go.Figure, history: pd.DataFrame) -> None:
    """The loss terms and flip accuracies on top (the accuracies on the right axis), the
    minimality term below."""
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
    # one unit for every method: a DynScalar component is a whole layer, an ActivScalar one a position
    ("cells_effective_frac", None, "minimality (share of cells changed > τ ↓)"),
)


def run_labels(frame: pd.DataFrame) -> pd.Series:
    """A bar's label: its method, a line per word, over the run id's first six characters (six
    bars fit half a page's width at 1,400 px)."""
    return frame["method"].str.replace(" ", "<br>") + "<br>" + frame["run_id"].str[:6]


def plot_method_comparison(df: pd.DataFrame) -> go.Figure:
    """Effectiveness (each direction, with its 95% interval and the unmodified model's rate as a
    diamond), faithfulness and minimality per run, train and test side by side."""
    from plotly.subplots import make_subplots

    # Two panels to a row: four in one row overlapped their titles at 1,400 px, and five methods'
    # labels need the width.
    titles = [title for _, _, title in COMPARISON_PANELS]
    fig = styled(make_subplots(rows=2, cols=2, subplot_titles=titles, vertical_spacing=0.28, horizontal_spacing=0.1))
    for split in ("train", "test"):
        part = df[df["split"] == split]
        for i, trace in () if part.empty else _comparison_traces(part, split):
            fig.add_trace(trace, row=i // 2 + 1, col=i % 2 + 1)
    for col in (1, 2):
        fig.update_yaxes(range=[0, 1.05], row=1, col=col)
    fig.update_xaxes(tickangle=0)
    fig.update_layout(barmode="group", scattermode="group", title="methods compared", **{**LAYOUT, "height": 720})
    return fig


SPLIT_COLOURS = {"train": "#9aa5b1", "test": "#b4232c"}


def _comparison_traces(part: pd.DataFrame, split: str) -> list[tuple[int, go.BaseTraceType]]:
    """One split's traces of `plot_method_comparison`, each with its panel's index: a bar per
    panel, and on the flip panels the unmodified model's rates as diamonds. Bars and diamonds
    share the split's slot (``offsetgroup``): a bar without one is drawn over the other split's
    once the panel's diamonds are grouped."""
    label = run_labels(part)
    traces: list[tuple[int, go.BaseTraceType]] = []
    for i, (metric, base, _) in enumerate(COMPARISON_PANELS):
        y = part[metric] if metric in part else pd.Series(np.nan, index=part.index)
        error_y = _error_bars(part, metric) if metric in part else None
        bar = go.Bar(x=label, y=y, name=split, marker_color=SPLIT_COLOURS[split], error_y=error_y)
        traces.append((i, bar.update(showlegend=i == 0, legendgroup=split, offsetgroup=split)))
        if base and base in part:
            diamond = dict(symbol="diamond", size=9, color="#222", line=dict(width=0))
            marks = go.Scatter(x=label, y=part[base], mode="markers", name=f"unmodified ({split})", marker=diamond)
            traces.append((i, marks.update(showlegend=i == 0, legendgroup=split, offsetgroup=split)))
    return traces


def plot_param_counts(df: pd.DataFrame) -> go.Figure:
    """Learned parameters per run, on a log scale."""
    first = df.drop_duplicates("run_id")
    fig = new_figure(
        go.Bar(
            x=run_labels(first),
            y=first["n_params"],
            text=first["n_params"],
            textposition="outside",
            marker_color="#3b6ea8",
        )
    )
    fig.update_layout(title="parameters (learned, fitted or chosen)", yaxis_title="parameters (log)", **LAYOUT)
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


def value_colours(n: int) -> list[str]:
    """``n`` colours of the sequential scale in order, from its dark end to short of its pale
    yellow (hard to see on white)."""
    from plotly.colors import sample_colorscale

    return sample_colorscale(SEQUENTIAL, [0.85 * i / max(1, n - 1) for i in range(n)])


def plot_tradeoff(df: pd.DataFrame, x: str, y: str = "flip_acc", colour: str = "method") -> go.Figure:
    """A trade-off scatter (docs/method.md §6.4); each point carries its run id for click-through.
    A colour per group: by method, the runs' colours; by a number (λ_M, λ_F, m), a sequential
    scale in the values' order, so that eleven values are eleven colours and neighbours look alike."""
    fig = new_figure()
    xl, yl = METRIC_LABELS.get(x, x), METRIC_LABELS.get(y, y)
    groups = list(df.groupby(colour, sort=True))
    numbers = bool(groups) and not any(isinstance(key, str) for key, _ in groups)
    colours = value_colours(len(groups)) if numbers else [COLORWAY[i % len(COLORWAY)] for i in range(len(groups))]
    for (key, part), marker_colour in zip(groups, colours):
        label = str(key) if isinstance(key, str) else f"{METRIC_LABELS.get(colour, colour)} = {key:g}"
        fig.add_trace(
            go.Scatter(
                x=part[x],
                y=part[y],
                mode="markers",
                name=label,
                customdata=part[["run_id", "method"]].to_numpy(),
                marker=dict(size=11, color=marker_colour),
                hovertemplate=f"run %{{customdata[0]}} (%{{customdata[1]}})<br>{xl}: %{{x:.4g}}<br>{yl}: %{{y:.3f}}"
                "<extra></extra>",
            )
        )
    fig.update_layout(
        title=f"{yl.split(':')[0]} against {xl.split(':')[0]}",
        xaxis_title=xl,
        yaxis_title=yl,
        legend_title_text=METRIC_LABELS.get(colour, colour),
        **LAYOUT,
    )
    return fig


def plot_beta_curve(curve: pd.DataFrame, beta: float | None = None) -> go.Figure:
    """Δ, p(a+) and p(a−) as β runs from −1 to +1 (docs/method.md §6.5); ``beta`` marks the current
    strength. The probability axis starts at 0 and fits the data (small models give small p)."""
    fig = new_figure()
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
        title="Δ, p(a+) and p(a−) against the steering strength β",
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
        **LAYOUT,
    )
    return fig


# A colour per split and direction (the split's hue, β = −1 the darker): plotly's own cycle of
# ten colours gave the sixth bar the first one's, with the diamonds' traces taking turns in it.
LENGTH_COLOURS = {
    ("train", "pos"): "#b9c1ca",
    ("train", "neg"): "#6b7785",
    ("val", "pos"): "#9cc0e4",
    ("val", "neg"): "#3b6ea8",
    ("test", "pos"): "#eea3a6",
    ("test", "neg"): "#b4232c",
}


def plot_length_generalisation(bundle: RunBundle) -> go.Figure:
    """Flip rate per prompt length, split and direction (DynScalar across lengths, docs/method.md
    §6.6), each next to the unmodified model's rate at that length (◆)."""
    df = examples_frame(bundle)
    fig = new_figure()
    if "n_tokens" not in df or "flipped_pos" not in df or "delta_base" not in df:
        fig.update_layout(title="no per-prompt results in this bundle", **LAYOUT)
        return fig
    df["base_pos"], df["base_neg"] = df["delta_base"] > 0, df["delta_base"] < 0
    cols = ["flipped_pos", "flipped_neg", "base_pos", "base_neg"]
    grouped = df.groupby(["split", "n_tokens"])[cols].mean().reset_index()
    for split in [s for s in SPLITS if s in set(grouped["split"])]:
        part = grouped[grouped["split"] == split]
        x = part["n_tokens"].astype(str)
        for direction, sign in (("pos", "+1"), ("neg", "−1")):
            name, colour = f"{split} β = {sign}", LENGTH_COLOURS[(split, direction)]
            fig.add_trace(go.Bar(x=x, y=part[f"flipped_{direction}"], name=name, offsetgroup=name, marker_color=colour))
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=part[f"base_{direction}"],
                    mode="markers",
                    showlegend=False,
                    name=f"{split} β = {sign} unmodified",
                    offsetgroup=name,
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
        **LAYOUT,
    )
    lengths = [str(n) for n in sorted(grouped["n_tokens"].unique())]
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=lengths)  # shortest first
    return fig


RELIABILITY_BANDS = ((0.05, 0.95, "rgba(59,110,168,0.18)"), (0.25, 0.75, "rgba(59,110,168,0.35)"))


def plot_reliability(bundle: RunBundle, split: str = "test", worst: int = 10) -> go.Figure:
    """Per-example reliability: the spread of Δ over the split's prompts at β = −1, 0 and +1 as
    bands (5–95% and 25–75% of the prompts, the median as a line), and the ``worst`` prompts
    (furthest from flipping, `reliability`'s order) as lines of their own; a line that ends on
    the wrong side of 0 did not flip. Bands, not a line per prompt: 200 lines draw slowly and
    hide each other."""
    df, _ = reliability(bundle, split)
    fig = new_figure()
    if df.empty:
        fig.update_layout(title=f"no per-prompt results for the {split} split", **LAYOUT)
        return fig
    xs = ["β = −1", "β = 0", "β = +1"]
    deltas = df[["delta_neg", "delta_base", "delta_pos"]]
    for low, high, colour in RELIABILITY_BANDS:
        lo, hi = deltas.quantile(low).tolist(), deltas.quantile(high).tolist()
        name = f"{low:.0%}–{high:.0%} of the {len(df)} prompts"
        fig.add_trace(go.Scatter(x=xs, y=hi, mode="lines", line=dict(width=0), showlegend=False, hoverinfo="skip"))
        fig.add_trace(
            go.Scatter(x=xs, y=lo, mode="lines", line=dict(width=0), fill="tonexty", fillcolor=colour, name=name)
        )
    median = deltas.median().tolist()
    fig.add_trace(go.Scatter(x=xs, y=median, mode="lines+markers", name="median", line=dict(color="#3b6ea8")))
    x, y, text = [], [], []
    for _, row in df.head(worst).iterrows():  # one polyline per prompt, separated by gaps
        x += [*xs, None]
        y += [row["delta_neg"], row["delta_base"], row["delta_pos"], None]
        text += [str(row["prompt"])[:80]] * 3 + [None]
    fig.add_trace(
        go.Scatter(
            x=x,
            y=y,
            mode="lines+markers",
            name=f"the {min(worst, len(df))} furthest from flipping",
            text=text,
            line=dict(color="rgba(180,35,44,0.8)", width=1),
            marker=dict(size=4),
            hovertemplate="%{text}<br>Δ %{y:.2f}<extra></extra>",
        )
    )
    fig.add_hline(y=0, line=dict(color="#999", width=1))
    fig.update_layout(
        title=f"Δ over the {split} prompts at β = −1, 0, +1",
        xaxis_title="steering strength",
        yaxis_title="Δ = logit(a+) − logit(a−)",
        **LAYOUT,
    )
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=xs)
    return fig
