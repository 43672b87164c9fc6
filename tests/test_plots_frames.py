"""The figure functions of `actscale.views.plots` on frames built by hand with known numbers, with
exact expectations: the training curves, the runs' comparisons and trade-off, and the β curve
(one run's maps, from tiny-model bundles: test_plots)."""

from __future__ import annotations

import pandas as pd
import pytest
from figure_checks import only_trace, values

from actscale.views.plots import (
    plot_beta_curve,
    plot_history,
    plot_method_comparison,
    plot_param_counts,
    plot_tradeoff,
)

# ---- training curves ----------------------------------------------------------------------

HISTORY = pd.DataFrame(
    {
        "step": [1, 2, 3],
        "loss": [3.0, 2.0, 1.0],
        "effectiveness": [2.0, 1.5, 0.5],
        "faithfulness": [0.125, 0.25, 0.375],
        "flip_acc_pos": [0.0, 0.5, 1.0],
        "flip_acc_neg": [0.25, 0.5, 0.75],
        "minimality": [0.0, 0.5, 0.25],
    }
)


def test_history_draws_each_term_on_its_own_axis():
    fig = plot_history(HISTORY)
    assert [t.type for t in fig.data] == ["scatter"] * 6
    assert [t.name for t in fig.data] == [
        "loss",
        "effectiveness",
        "faithfulness",
        "flip_acc_pos",
        "flip_acc_neg",
        "minimality ‖θ‖₁",
    ]
    for trace, col in zip(
        fig.data, ["loss", "effectiveness", "faithfulness", "flip_acc_pos", "flip_acc_neg", "minimality"]
    ):
        assert values(trace.x) == [1, 2, 3]
        assert values(trace.y) == HISTORY[col].tolist()
    # Loss terms on the top left axis, flip accuracies on its right axis, ‖θ‖₁ on a panel below.
    assert [(t.xaxis, t.yaxis) for t in fig.data] == [("x", "y")] * 3 + [("x", "y2")] * 2 + [("x2", "y3")]
    assert [t.line.dash for t in fig.data] == [None, None, None, "dash", "dash", None]
    layout = fig.layout
    assert layout.title.text == "training"
    assert layout.yaxis.title.text == "loss"
    assert layout.yaxis2.title.text == "flip accuracy" and tuple(layout.yaxis2.range) == (0, 1.05)
    assert layout.yaxis3.title.text == "‖θ‖₁"
    assert layout.xaxis2.title.text == "step"


def test_history_draws_only_the_columns_it_has():
    fig = plot_history(HISTORY[["step", "loss", "flip_acc_pos"]])
    assert [(t.name, t.yaxis) for t in fig.data] == [("loss", "y"), ("flip_acc_pos", "y2")]


def test_history_without_steps_is_an_empty_figure():
    fig = plot_history(pd.DataFrame())
    assert len(fig.data) == 0
    assert fig.layout.title.text == "no steps yet"


# ---- comparisons ---------------------------------------------------------------------------

RUNS = pd.DataFrame(
    {
        "run_id": ["aaaaaa11", "aaaaaa11", "bbbbbb22", "bbbbbb22"],
        "method": ["activscalar", "activscalar", "steervec", "steervec"],
        "split": ["train", "test", "train", "test"],
        "flip_acc": [1.0, 0.5, 0.75, 0.25],
        "flip_acc_pos": [1.0, 0.5, 0.75, 0.25],
        "flip_acc_neg": [1.0, 0.5, 0.75, 0.25],
        "flip_acc_pos_ci95": [[0.5, 1.0], [0.25, 1.0], [0.5, 1.0], [0.125, 0.75]],
        "flip_acc_neg_ci95": [[0.5, 1.0], [0.25, 1.0], [0.5, 1.0], [0.125, 0.75]],
        "base_pos": [1.0, 1.0, 0.5, 0.5],
        "base_neg": [0.0, 0.0, 0.5, 0.5],
        "faithfulness_kl": [0.125, 0.25, 0.375, 0.5],
        "effective_frac": [0.5, 0.625, 0.75, 0.875],
        "cells_effective_frac": [0.25, 0.25, 0.5, 0.5],  # the panel draws these, not effective_frac
        "n_params": [30, 30, 1920, 1920],
        "l1": [1.5, 1.5, 2.5, 2.5],
        "lambda_m": [0.01, 0.01, 0.1, 0.1],
    }
)


LABELS = ["activscalar<br>aaaaaa", "steervec<br>bbbbbb"]


def test_method_comparison_is_one_bar_per_split_and_panel():
    fig = plot_method_comparison(RUNS)
    # per split: four panels of bars, the two flip panels each with the unmodified rate as markers
    kinds = ["bar", "scatter", "bar", "scatter", "bar", "bar"]
    assert [t.type for t in fig.data] == kinds * 2
    assert [t.name for t in fig.data] == [
        n for s in ("train", "test") for n in (s, f"unmodified ({s})", s, f"unmodified ({s})", s, s)
    ]
    assert [t.xaxis for t in fig.data] == ["x", "x", "x2", "x2", "x3", "x4"] * 2
    assert [t.legendgroup for t in fig.data] == ["train"] * 6 + ["test"] * 6
    # bars and diamonds in one slot per split: a bar without one was drawn over the other split's
    assert [t.offsetgroup for t in fig.data] == ["train"] * 6 + ["test"] * 6
    for trace in fig.data:
        assert list(trace.x) == LABELS
    bars = [t for t in fig.data if t.type == "bar"]
    assert [values(t.y) for t in bars] == [
        [1.0, 0.75],
        [1.0, 0.75],
        [0.125, 0.375],
        [0.25, 0.5],  # train: β=+1, β=−1, KL, share of cells
        [0.5, 0.25],
        [0.5, 0.25],
        [0.25, 0.5],
        [0.25, 0.5],  # test
    ]
    # the 95% intervals as asymmetric error bars on the flip panels
    assert values(bars[4].error_y.array) == pytest.approx([0.5, 0.5])  # hi - rate
    assert values(bars[4].error_y.arrayminus) == pytest.approx([0.25, 0.125])  # rate - lo
    assert bars[6].error_y.array is None  # no interval for the KL
    markers = [t for t in fig.data if t.type == "scatter"]
    assert [values(t.y) for t in markers] == [[1.0, 0.5], [0.0, 0.5], [1.0, 0.5], [0.0, 0.5]]  # acc_base, 1 − acc_base
    assert [t.marker.color for t in bars] == ["#9aa5b1"] * 4 + ["#b4232c"] * 4  # train grey, test red
    assert [a.text for a in fig.layout.annotations] == [
        "flip rate β = +1 (↑; ◆ unmodified)",
        "flip rate β = −1 (↑; ◆ unmodified)",
        "faithfulness (KL ↓)",
        "minimality (share of cells changed > τ ↓)",
    ]
    assert tuple(fig.layout.yaxis.range) == (0, 1.05) and tuple(fig.layout.yaxis2.range) == (0, 1.05)
    assert fig.layout.barmode == "group"
    assert fig.layout.title.text == "methods compared"


def test_method_comparison_skips_a_missing_split():
    fig = plot_method_comparison(RUNS[RUNS["split"] == "test"])
    assert {t.legendgroup for t in fig.data} == {"test"}
    assert [t.showlegend for t in fig.data] == [True, True, False, False, False, False]


def test_param_counts_is_one_bar_per_run_on_a_log_axis():
    trace = only_trace(plot_param_counts(RUNS), "bar")
    assert list(trace.x) == LABELS
    assert values(trace.y) == [30, 1920]
    assert values(trace.text) == [30, 1920]
    fig = plot_param_counts(RUNS)
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis.dtick == 1
    assert fig.layout.yaxis.title.text == "parameters (log)"
    assert fig.layout.title.text == "parameters (learned, fitted or chosen)"


def test_tradeoff_is_one_marker_series_per_method():
    test = RUNS[RUNS["split"] == "test"]
    fig = plot_tradeoff(test, "l1", "flip_acc", "method")
    assert [t.type for t in fig.data] == ["scatter", "scatter"]
    assert [t.name for t in fig.data] == ["activscalar", "steervec"]  # sorted
    assert [t.mode for t in fig.data] == ["markers", "markers"]
    assert [(values(t.x), values(t.y)) for t in fig.data] == [([1.5], [0.5]), ([2.5], [0.25])]
    # Each point carries its run id, for click-through.
    assert [t.customdata.tolist() for t in fig.data] == [[["aaaaaa11", "activscalar"]], [["bbbbbb22", "steervec"]]]
    assert fig.layout.xaxis.title.text == "minimality: ‖θ‖₁"
    assert fig.layout.yaxis.title.text == "effectiveness: mean flip accuracy"
    assert fig.layout.title.text == "effectiveness against minimality"
    assert fig.layout.legend.title.text == "method"


def test_tradeoff_names_numeric_groups_by_their_value():
    fig = plot_tradeoff(RUNS[RUNS["split"] == "train"], "faithfulness_kl", "flip_acc", "lambda_m")
    assert [t.name for t in fig.data] == ["λ_M = 0.01", "λ_M = 0.1"]
    assert [(values(t.x), values(t.y)) for t in fig.data] == [([0.125], [1.0]), ([0.375], [0.75])]
    assert fig.layout.xaxis.title.text == "faithfulness: KL (lower is better)"
    assert fig.layout.legend.title.text == "λ_M"


def test_tradeoff_colours_each_group_by_methods_or_along_the_values():
    """Plotly's own cycle has ten colours: an eleventh λ_M took the first one's. A number is
    coloured along a sequential scale in the values' order; a method by the runs' colours."""
    from actscale.views.plots.style import COLORWAY

    lambdas = [0.001 * 2**i for i in range(11)]
    sweep = pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(11)],
            "method": "activscalar",
            "lambda_m": lambdas,
            "l1": 1.0,
            "flip_acc": 1.0,
        }
    )
    fig = plot_tradeoff(sweep, "l1", "flip_acc", "lambda_m")
    colours = [t.marker.color for t in fig.data]
    assert [t.name for t in fig.data] == [f"λ_M = {v:g}" for v in lambdas]
    assert len(set(colours)) == 11 and colours[0] == "rgb(68, 1, 84)"  # the scale's dark end first
    by_method = plot_tradeoff(RUNS[RUNS["split"] == "train"], "l1", "flip_acc", "method")
    assert [t.marker.color for t in by_method.data] == list(COLORWAY[:2])


# ---- the β curve ---------------------------------------------------------------------------

CURVE = pd.DataFrame(
    {
        "beta": [-1.0, 0.0, 1.0],
        "delta": [-2.0, 0.5, 3.0],
        "p_correct": [0.125, 0.25, 0.5],
        "p_wrong": [0.5, 0.25, 0.125],
    }
)


def test_beta_curve_draws_delta_and_both_probabilities():
    fig = plot_beta_curve(CURVE, 0.5)
    assert [t.type for t in fig.data] == ["scatter"] * 3
    assert [t.name for t in fig.data] == ["Δ = logit(a+) − logit(a−)", "p(a+)", "p(a−)"]
    assert [t.yaxis for t in fig.data] == [None, "y2", "y2"]  # probabilities on the right axis
    for trace, col in zip(fig.data, ["delta", "p_correct", "p_wrong"]):
        assert values(trace.x) == [-1.0, 0.0, 1.0]
        assert values(trace.y) == CURVE[col].tolist()
    layout = fig.layout
    assert layout.title.text == "Δ, p(a+) and p(a−) against the steering strength β"
    assert layout.xaxis.title.text == "β" and layout.yaxis.title.text == "Δ"
    assert layout.yaxis2.title.text == "probability"
    assert layout.yaxis2.overlaying == "y" and layout.yaxis2.side == "right" and layout.yaxis2.rangemode == "tozero"
    # Δ = 0 and the current β are marked.
    zero, current = layout.shapes
    assert (zero.y0, zero.y1, zero.yref) == (0, 0, "y")
    assert (current.x0, current.x1, current.xref) == (0.5, 0.5, "x")
    assert [a.text for a in layout.annotations] == ["β = +0.50"]


def test_beta_curve_without_a_current_beta_marks_only_zero():
    fig = plot_beta_curve(CURVE, None)
    assert len(fig.data) == 3
    assert len(fig.layout.shapes) == 1 and fig.layout.shapes[0].y0 == 0
    assert len(fig.layout.annotations) == 0
