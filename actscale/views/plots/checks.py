"""The map checks' figures (docs/method.md §7): sufficiency and necessity with the random band,
the stability map, the generalisation matrix, sufficiency curves overlaid."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from actscale.checks.components import STRATUM_LABELS
from actscale.runs.bundle import RunBundle
from actscale.views.analysis import (
    RANKING_LABELS,
    checks_tensor,
    layer_labels,
    localisation_part,
    position_labels,
    prompts_text,
    run_checks_data,
    run_method,
)
from actscale.views.plots.style import COLORWAY, LAYOUT, SEQUENTIAL, heatmap, new_figure, styled

COLOURS = {"keep": "#c0392b", "remove": "#2c7fb8", "random": "#7f7f7f", "zero": "#000000", "mean": "#8e44ad"}


def plot_sufficiency(bundle: RunBundle) -> go.Figure:
    """Flip rate against k (log): the top-k kept (sufficiency) and removed (necessity) with
    Wilson intervals, the random control's median and 5–95% band, the zero- and mean-ablation
    points, the unmodified model's rate and k90; one panel per direction."""
    from plotly.subplots import make_subplots

    m = (run_checks_data(bundle) or {}).get("map") or {}
    if not m:
        raise ValueError("this run has no map checks")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("β = −1 (towards a−)", "β = +1 (towards a+)"))
    styled(fig)
    for col, (name, ablation_name) in enumerate((("flip_acc_neg", "prefers_neg"), ("flip_acc_pos", "prefers_pos")), 1):
        _add_curves(fig, m, name, col)
        _add_chosen(fig, m, name, col)
        _add_random(fig, pd.DataFrame(m.get("random", [])), name, col)
        _add_ablations(fig, pd.DataFrame(m.get("ablation", [])), ablation_name, col)
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
        target = (m.get("targets") or {}).get(name)
        if target is not None:  # this direction's k90 target: 90% of the effect above the unmodified rate
            fig.add_hline(y=target, line=dict(dash="dash", color="#c0392b", width=1), row=1, col=col)
        if m["k90"] is not None:
            fig.add_vline(x=m["k90"], line=dict(dash="dash", color="#c0392b", width=1), row=1, col=col)
    fig.update_xaxes(type="log", title_text="k (top components kept or removed, log scale)")
    fig.update_yaxes(range=[-0.03, 1.03])
    fig.update_yaxes(title_text="flip rate", col=1)
    fig.update_layout(
        title=f"Sufficiency and necessity of the top-k components ({_k90_title(m)}; {prompts_text(m['prompts'])})",
        legend=dict(orientation="h", y=-0.25),
        height=480,
        **LAYOUT,
    )
    return fig


def _add_curves(fig: go.Figure, m: dict, name: str, col: int) -> None:
    """The sufficiency and necessity curves of rate ``name``, with their Wilson intervals."""
    for label, part, colour in (
        ("keep top-k (sufficiency)", m["sufficiency"], COLOURS["keep"]),
        ("remove top-k (necessity)", m["necessity"], COLOURS["remove"]),
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


def _add_chosen(fig: go.Figure, m: dict, name: str, col: int) -> None:
    """Where k90 was chosen: the sufficiency curve on the validation prompts (no intervals)."""
    chose = m.get("choose")
    if not chose:
        return
    frame = pd.DataFrame(chose["sufficiency"])
    label = f"keep top-k, {prompts_text(chose)} (where k90 is chosen)"
    fig.add_trace(
        go.Scatter(
            x=frame["k"],
            y=frame[name],
            mode="lines",
            name=label,
            legendgroup="choose",
            showlegend=col == 1,
            line=dict(color=COLOURS["keep"], dash="dot", width=1),
            hovertemplate="k %{x}<br>flip rate %{y:.2f}<extra>chosen on</extra>",
        ),
        row=1,
        col=col,
    )


# Each random control's marker and its nudge along the (log) k axis, so the three at k90 stand apart.
_STRATUM_MARKS = {"site": ("square", 1.0), "layer": ("triangle-up", 0.88), "position": ("triangle-down", 1.13)}


def _add_random(fig: go.Figure, rand: pd.DataFrame, name: str, col: int) -> None:
    """Each random control's median of rate ``name`` with its 5–95% band, where it was run."""
    if rand.empty:
        return
    if "stratum" not in rand:  # checks stored before the controls were stratified
        rand = rand.assign(stratum="site")
    for stratum, part in rand[rand["draws"] > 0].groupby("stratum", sort=False):
        symbol, nudge = _STRATUM_MARKS.get(str(stratum), ("square", 1.0))
        med, p05, p95 = (part[f"{name}_{q}"] for q in ("median", "p05", "p95"))
        fig.add_trace(
            go.Scatter(
                x=part["k"] * nudge,
                y=med,
                mode="markers",
                marker=dict(symbol=symbol, color=COLOURS["random"], size=9),
                name=f"random placement, {STRATUM_LABELS.get(str(stratum), stratum)} "
                f"(median, 5–95% of {int(part['draws'].iloc[0])} draws)",
                legendgroup=f"random-{stratum}",
                showlegend=col == 1,
                error_y=dict(type="data", symmetric=False, array=p95 - med, arrayminus=med - p05, thickness=2),
            ),
            row=1,
            col=col,
        )


def _add_ablations(fig: go.Figure, abl: pd.DataFrame, name: str, col: int) -> None:
    """The zero- and mean-ablation points: the share of prompts preferring the answer ``name``."""
    for kind, symbol in (("zero", "x"), ("mean", "diamond")):
        part = abl[abl["kind"] == kind] if not abl.empty else abl
        if part.empty:
            continue
        fig.add_trace(
            go.Scatter(
                x=part["k"],
                y=part[name],
                mode="markers",
                marker=dict(symbol=symbol, size=11, color=COLOURS[kind]),
                name=f"{kind}-ablation of the top-k (share preferring that answer)",
                legendgroup=kind,
                showlegend=col == 1,
            ),
            row=1,
            col=col,
        )


def _k90_title(m: dict) -> str:
    if m["k90"] is None:
        return "no effect to localise: no k90"
    return f"k90 = {m['k90']} of {m['n_components']:,}"


def _unmodified_rate(bundle: RunBundle, m: dict, name: str) -> float | None:
    """The unmodified model's rate of ``name`` on the check prompts (stored with the checks, else
    from the stored Δ)."""
    if name in (m.get("base") or {}):
        return float(m["base"][name])
    base = bundle.analysis.get("delta.base")
    rows = m.get("prompts", {}).get("rows")
    if base is None or not rows:
        return None
    d = base[rows]
    return float((d > 0).double().mean() if name == "flip_acc_pos" else (d < 0).double().mean())


def plot_stability_map(bundle: RunBundle, site: str) -> go.Figure:
    """The consensus map over seeds (mean relative magnitude) with the components selected in
    every seed marked, and each one's selection frequency on hover."""
    s = (run_checks_data(bundle) or {}).get("stability") or {}
    consensus, freq = (
        checks_tensor(bundle, f"stability.consensus.{site}"),
        checks_tensor(bundle, f"stability.freq.{site}"),
    )
    if not s or consensus is None or freq is None:
        raise ValueError("this run has no stability check")
    method = run_method(bundle)
    axes = method.component_axes(site)
    c, f, x = _layer_grid(bundle, site, axes, consensus.numpy(), freq.numpy())
    y = layer_labels(c.shape[0])
    k = len(s.get("runs", []))
    fig = heatmap(
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


def _layer_grid(
    bundle: RunBundle, site: str, axes: tuple[str, ...], c: np.ndarray, f: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The consensus and frequency as [layer, column] with the columns' labels: one column for
    a per-layer site; heads or positions otherwise (a third axis is averaged, its frequency the
    highest)."""
    if c.ndim == 1:
        return c[:, None], f[:, None], [site]
    if c.ndim > 2:
        c, f = c.reshape(*c.shape[:2], -1).mean(-1), f.reshape(*f.shape[:2], -1).max(-1)
    if axes[1] == "position":
        return c, f, position_labels(bundle)
    return c, f, [f"{axes[1][0].upper()}{i}" for i in range(c.shape[1])]


def plot_generalisation(bundle: RunBundle, name: str = "flip_acc_neg") -> go.Figure:
    """Train on one group (rows), test on each other (columns; the diagonal: the group's own
    validation prompts): a flip rate per cell with its interval and n."""
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
    fig = new_figure(
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
        **LAYOUT,
    )
    return fig


def plot_sufficiency_overlay(bundles: list[RunBundle]) -> go.Figure:
    """Runs side by side: mean flip rate of the top-k against k as a share of each run's
    components (log), the learned curve solid and the random control's median as markers."""
    fig = new_figure()
    checked = [(b, m) for b in bundles if (m := (run_checks_data(b) or {}).get("map") or {})]
    for i, (b, m) in enumerate(checked):
        frame = pd.DataFrame(m["sufficiency"])
        n = m["n_components"]
        label, colour = f"{b.method} {b.run_id[:8]}", COLORWAY[i % len(COLORWAY)]
        fig.add_trace(
            go.Scatter(
                x=frame["k"] / n,
                y=frame["mean_flip"],
                mode="lines+markers",
                name=f"{label} top-k",
                legendgroup=label,
                line=dict(color=colour),
                marker=dict(color=colour),
            )
        )
        rand = pd.DataFrame(m.get("random", []))
        if not rand.empty and "stratum" in rand:
            rand = rand[rand["stratum"] == "site"]  # one control per run: the one anywhere in the site
        if not rand.empty:
            fig.add_trace(
                go.Scatter(
                    x=rand["k"] / n,
                    y=rand["mean_flip_median"],
                    mode="markers",
                    marker=dict(symbol="square-open", size=10, color=colour),
                    name=f"{label} random anywhere in the site (median)",
                    legendgroup=label,
                )
            )
    fig.update_xaxes(type="log", title_text="share of components kept (log scale)")
    fig.update_yaxes(range=[-0.03, 1.03], title_text="mean flip rate ((β = +1 and β = −1) / 2)")
    fig.update_layout(title="Sufficiency of the top components, runs compared", **LAYOUT)
    return fig


LOCALISATION_COLOURS = {"learned": "#b4232c", "atp": "#3b6ea8", "atp_mean": "#2e8b57"}


def plot_localisation(bundle: RunBundle) -> go.Figure:
    """The restored logit difference against k (log) for each ranking of the cells, keeping only
    its top-k (left) and without them (right); the random draws in grey, with the areas in the
    legend (docs/method.md §7.8)."""
    from plotly.subplots import make_subplots

    local = localisation_part(run_checks_data(bundle))
    if local is None:
        raise ValueError("this run's checks store no localisation curves")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("keeping only the top-k cells", "without the top-k cells"))
    styled(fig)
    for name, curve in local["curves"].items():
        random = name.startswith("random ")
        colour = "#aaa" if random else LOCALISATION_COLOURS.get(name, "#555")
        label = "random (each draw)" if random else RANKING_LABELS.get(name, name)
        for col, key in enumerate(("keep", "drop"), 1):
            points = curve[key]
            fig.add_trace(
                go.Scatter(
                    x=[p["k"] for p in points],
                    y=[p["restored"] for p in points],
                    mode="lines" if random else "lines+markers",
                    name=label if random else f"{label} (areas {curve['auc_keep']:.2f} / {curve['auc_drop']:.2f})",
                    legendgroup=name,
                    showlegend=col == 1 and (not random or name == "random 1"),
                    line=dict(color=colour, width=1 if random else 2),
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(type="log", title_text=f"k (of {local['n_cells']} cells)")
    fig.update_yaxes(title_text="restored logit difference", col=1)
    fig.update_layout(
        title=f"Which ranking localises the answer ({local['n_prompts']} test prompts, the rest mean-ablated)",
        **LAYOUT,
    )
    return fig
