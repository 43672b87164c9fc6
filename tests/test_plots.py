"""The figure functions of `actscale.views.plots` that draw one run, with exact expectations:
trace counts and types, the plotted values, axis titles, legend names, category axes, and
diverging colour scales centred on 0 ("no change"); the figures of hand-made frames are in
test_plots_frames.

Bundles are tiny-model runs of the three methods, read back from disk as the dashboard reads
them; the values a figure must show are read from the bundle's own files (safetensors and JSON),
not through the code under test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_method_runs
from figure_checks import assert_centred, assert_layer_position_axes, assert_sequential, only_trace, values
from safetensors.torch import load_file

from actscale.runs.store import RunStore
from actscale.views.plots import (
    plot_dyn_prompt,
    plot_dyn_weight_norms,
    plot_head_heatmap,
    plot_length_generalisation,
    plot_run_history,
    plot_scalar_heatmap,
    plot_steer_heatmaps,
    plot_sufficiency_overlay,
)

SITES = ("attn_out", "mlp_out", "head")
N_LAYERS, N_HEADS = 2, 4  # the tiny model's
LAYERS = ("0", "1")
HEADS = ("H0", "H1", "H2", "H3")


# ---- bundles: one tiny run per method, and what their files hold ------------------------


@pytest.fixture(scope="module")
def store_root(tmp_path_factory, tiny_llama) -> Path:
    root = tmp_path_factory.mktemp("plots") / "runs"
    make_method_runs(root, tiny_llama, SITES)
    return root


@pytest.fixture(scope="module")
def bundles(store_root):
    """{method: bundle} as the dashboard reads them from the store."""
    store = RunStore(store_root)
    found = {}
    for listing in store.list():
        assert listing.ok, listing.reason
        found[listing.config["method"]] = store.load(listing.run_id)
    assert set(found) == {"activscalar", "steervec", "dynscalar"}
    return found


def params(bundle) -> dict[str, torch.Tensor]:
    return load_file(str(Path(bundle.path) / "params.safetensors"))


def analysis(bundle) -> dict[str, torch.Tensor]:
    return load_file(str(Path(bundle.path) / "analysis.safetensors"))


def info(bundle) -> dict:
    return json.loads((Path(bundle.path) / "analysis.json").read_text(encoding="utf-8"))


def dataset(bundle) -> list[dict]:
    lines = (Path(bundle.path) / "dataset.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def history(bundle) -> pd.DataFrame:
    return pd.read_csv(Path(bundle.path) / "history.csv")


def steer_ratio(bundle, site: str) -> np.ndarray:
    """‖v‖ / mean‖h‖, the SteerVec magnitude the figures show, from the files."""
    return (params(bundle)[f"vector.{site}"].norm(dim=-1) / analysis(bundle)[f"hnorm.{site}"].clamp_min(1e-6)).numpy()


# ---- a run's stored training curves --------------------------------------------------------


@pytest.mark.parametrize("method", ["activscalar", "steervec", "dynscalar"])
def test_run_history_draws_the_stored_curves(bundles, method):
    bundle = bundles[method]
    stored = history(bundle)
    assert len(stored) == 3  # three steps, each with every term
    fig = plot_run_history(bundle)
    names = ["loss", "effectiveness", "faithfulness", "flip_acc_pos", "flip_acc_neg", "minimality"]
    assert [t.name for t in fig.data] == names[:-1] + ["minimality ‖θ‖₁"]
    for trace, col in zip(fig.data, names):
        assert values(trace.x) == stored["step"].tolist()
        assert values(trace.y) == stored[col].tolist()


# ---- one run's maps (tiny-model bundles) --------------------------------------------------


@pytest.mark.parametrize("site", ["attn_out", "mlp_out"])
def test_scalar_heatmap_is_alpha_per_layer_and_position(bundles, site):
    bundle = bundles["activscalar"]
    alpha = params(bundle)[f"alpha.{site}"].numpy()  # [layer pos]
    assert alpha.shape == (N_LAYERS, bundle.config["n_pos"]) and np.abs(alpha).max() > 0
    fig = plot_scalar_heatmap(bundle, site)
    trace = only_trace(fig, "heatmap")
    np.testing.assert_array_equal(trace.z, alpha)
    assert_layer_position_axes(fig, info(bundle)["position_labels"], LAYERS)
    assert_centred(trace, float(np.abs(alpha).max()))
    assert trace.colorbar.title.text == "α"
    assert fig.layout.title.text == f"α per layer and position — {site}"


def test_scalar_heatmap_of_the_head_site_sums_over_heads(bundles):
    bundle = bundles["activscalar"]
    alpha = params(bundle)["alpha.head"].numpy()  # [layer pos head]
    fig = plot_scalar_heatmap(bundle, "head")
    trace = only_trace(fig, "heatmap")
    np.testing.assert_array_equal(trace.z, alpha.sum(-1))
    assert_layer_position_axes(fig, info(bundle)["position_labels"], LAYERS)
    assert_centred(trace, float(np.abs(alpha.sum(-1)).max()))
    assert fig.layout.title.text == "α summed over heads — head"


@pytest.mark.parametrize("site", ["attn_out", "mlp_out", "head"])
def test_steer_heatmaps_are_norm_ratio_and_cosine(bundles, site):
    bundle = bundles["steervec"]
    ratio, cos = steer_ratio(bundle, site), analysis(bundle)[f"cos.{site}"].numpy()
    if site == "head":  # the mean over heads
        ratio, cos = ratio.mean(-1), cos.mean(-1)
    ratio_fig, cos_fig = plot_steer_heatmaps(bundle, site)
    labels = info(bundle)["position_labels"]

    trace = only_trace(ratio_fig, "heatmap")
    np.testing.assert_array_equal(trace.z, ratio)
    assert_layer_position_axes(ratio_fig, labels, LAYERS)
    assert_sequential(trace)  # a magnitude: no centre
    assert trace.colorbar.title.text == "‖v‖/‖h‖"
    assert ratio_fig.layout.title.text == f"‖v‖/‖h‖ — {site}"

    trace = only_trace(cos_fig, "heatmap")
    np.testing.assert_array_equal(trace.z, cos)
    assert_layer_position_axes(cos_fig, labels, LAYERS)
    assert_centred(trace, 1.0)  # a cosine's whole range, whatever the values
    assert trace.colorbar.title.text == "cos"
    assert cos_fig.layout.title.text == f"cos(v, h) — {site}"


def test_steer_heatmaps_without_analysis_show_zero_cosines(bundles, tmp_path):
    """A bundle without its optional analysis files still draws (the ratio falls back to ‖v‖)."""
    bundle = bundles["steervec"]
    root = tmp_path / "runs"
    shutil.copytree(bundle.path, root / bundle.run_id)
    for name in ("analysis.safetensors", "analysis.json"):
        (root / bundle.run_id / name).unlink()
    bare = RunStore(root).load(bundle.run_id)
    ratio_fig, cos_fig = plot_steer_heatmaps(bare, "attn_out")
    np.testing.assert_array_equal(ratio_fig.data[0].z, params(bundle)["vector.attn_out"].norm(dim=-1).numpy())
    np.testing.assert_array_equal(cos_fig.data[0].z, np.zeros((N_LAYERS, bundle.config["n_pos"]), dtype=np.float32))
    assert tuple(cos_fig.data[0].x) == tuple(str(i) for i in range(bundle.config["n_pos"]))  # no token labels
    assert_centred(cos_fig.data[0], 1.0)


def test_head_heatmap_of_activscalar_at_a_position_and_summed(bundles):
    bundle = bundles["activscalar"]
    alpha = params(bundle)["alpha.head"].numpy()  # [layer pos head]
    labels = info(bundle)["position_labels"]

    fig = plot_head_heatmap(bundle, 2)
    trace = only_trace(fig, "heatmap")
    np.testing.assert_array_equal(trace.z, alpha[:, 2, :])
    assert_layer_position_axes(fig, list(HEADS), LAYERS, xtitle="head")
    assert_centred(trace, float(np.abs(alpha[:, 2, :]).max()))
    assert trace.colorbar.title.text == "α"
    assert fig.layout.title.text == f"head site at position {labels[2]}"

    fig = plot_head_heatmap(bundle, None)
    trace = only_trace(fig, "heatmap")
    np.testing.assert_array_equal(trace.z, alpha.sum(1))
    assert_centred(trace, float(np.abs(alpha.sum(1)).max()))
    assert fig.layout.title.text == "head site summed over positions"


def test_head_heatmap_of_steervec_is_the_norm_ratio(bundles):
    bundle = bundles["steervec"]
    ratio = steer_ratio(bundle, "head")  # [layer pos head]
    fig = plot_head_heatmap(bundle, 0)
    trace = only_trace(fig, "heatmap")
    np.testing.assert_array_equal(trace.z, ratio[:, 0, :])
    assert_layer_position_axes(fig, list(HEADS), LAYERS, xtitle="head")
    assert_sequential(trace)
    assert trace.colorbar.title.text == "‖v‖/‖h‖"
    np.testing.assert_array_equal(plot_head_heatmap(bundle, None).data[0].z, ratio.sum(1))


def test_head_heatmap_of_dynscalar_is_the_scalar_it_applied(bundles):
    """DynScalar's map draws the mean |α(h)| it applied (what its checks rank by), not ‖w‖."""
    bundle = bundles["dynscalar"]
    w = bundle.analysis["magnitude.head"].numpy()  # [layer head]
    assert not np.allclose(w, params(bundle)["w.head"].norm(dim=-1).numpy())
    for position in (None, 0):  # positions do not apply
        fig = plot_head_heatmap(bundle, position)
        trace = only_trace(fig, "heatmap")
        np.testing.assert_array_equal(trace.z, w)
        assert_layer_position_axes(fig, list(HEADS), LAYERS, xtitle="head")
        assert_sequential(trace)
        assert trace.colorbar.title.text == "mean |α(h)|"
        assert fig.layout.title.text == "head site (per layer and head)"


def test_dyn_weight_norms_are_two_lines_per_site(bundles):
    bundle = bundles["dynscalar"]
    p = params(bundle)
    fig = plot_dyn_weight_norms(bundle)
    assert [t.type for t in fig.data] == ["scatter"] * 6
    assert [t.name for t in fig.data] == [f"{n} {s}" for s in SITES for n in ("‖w‖", "|b|")]
    assert [t.mode for t in fig.data] == ["lines+markers", "lines"] * 3
    assert [t.line.dash for t in fig.data] == [None, "dot"] * 3
    for i, site in enumerate(SITES):
        w, b = p[f"w.{site}"].norm(dim=-1), p[f"b.{site}"].abs()
        if site == "head":
            w, b = w.mean(-1), b.mean(-1)
        w_trace, b_trace = fig.data[2 * i], fig.data[2 * i + 1]
        assert list(w_trace.x) == list(b_trace.x) == [0, 1]
        np.testing.assert_array_equal(w_trace.y, w.numpy())
        np.testing.assert_array_equal(b_trace.y, b.numpy())
    assert fig.layout.xaxis.title.text == "layer" and fig.layout.yaxis.title.text == "norm"
    assert fig.layout.xaxis.dtick == 1  # whole layers only
    assert fig.layout.title.text == "DynScalar: ‖w‖ and |b| per layer"


@pytest.mark.parametrize("site", ["attn_out", "head"])
def test_dyn_prompt_is_the_prompts_own_scalars(bundles, site):
    bundle = bundles["dynscalar"]
    tokens = info(bundle)["str_tokens"]
    n_pos = bundle.config["n_pos"]
    # A prompt shorter than the longest: its left padding is not drawn.
    index = next(i for i, t in enumerate(tokens) if len(t) < n_pos)
    alpha = analysis(bundle)[f"dynalpha.{site}"][index]  # [layer pos (head)], left-padded
    if site == "head":
        alpha = alpha.mean(-1)
    expected = alpha[:, n_pos - len(tokens[index]) :].numpy()
    fig = plot_dyn_prompt(bundle, site, index)
    trace = only_trace(fig, "heatmap")
    np.testing.assert_array_equal(trace.z, expected)
    assert_layer_position_axes(fig, [f"{i}:{t}" for i, t in enumerate(tokens[index])], LAYERS)
    assert_centred(trace, float(np.abs(expected).max()))
    assert trace.colorbar.title.text == "α"
    assert fig.layout.title.text == f"scalars α on prompt {index} — {site}"


def _flip_rates_by_length(bundle) -> dict[str, dict[str, dict[str, float]]]:
    """{trace name: {length: rate}} by hand from the files: the flip rate of each split and
    direction per prompt length, and the unmodified model's rate in that direction."""
    a, rows, tokens = analysis(bundle), dataset(bundle), info(bundle)["str_tokens"]
    groups: dict[str, dict[str, list[float]]] = {}
    for row, toks, base, pos, neg in zip(
        rows, tokens, a["delta.base"].tolist(), a["delta.pos"].tolist(), a["delta.neg"].tolist()
    ):
        n = str(len(toks))
        for name, hit in (
            (f"{row['split']} β = +1", pos > 0),
            (f"{row['split']} β = −1", neg < 0),
            (f"{row['split']} β = +1 unmodified", base > 0),
            (f"{row['split']} β = −1 unmodified", base < 0),
        ):
            groups.setdefault(name, {}).setdefault(n, []).append(float(hit))
    return {name: {n: sum(v) / len(v) for n, v in by_n.items()} for name, by_n in groups.items()}


def test_length_generalisation_is_flip_rate_per_length_split_and_direction(bundles):
    bundle = bundles["dynscalar"]
    expected = _flip_rates_by_length(bundle)
    splits = [s for s in ("train", "val", "test") if s in {r["split"] for r in dataset(bundle)}]
    assert len(splits) == 3
    fig = plot_length_generalisation(bundle)
    names = [
        n for s in splits for n in (f"{s} β = +1", f"{s} β = +1 unmodified", f"{s} β = −1", f"{s} β = −1 unmodified")
    ]
    assert [t.name for t in fig.data] == names
    assert [t.type for t in fig.data] == ["bar", "scatter"] * (2 * len(splits))
    # each bar its own colour (the split's hue, β = −1 darker), its diamonds in its slot
    bars = [t for t in fig.data if t.type == "bar"]
    assert [t.marker.color for t in bars] == ["#b9c1ca", "#6b7785", "#9cc0e4", "#3b6ea8", "#eea3a6", "#b4232c"]
    assert [t.offsetgroup for t in fig.data] == [n.removesuffix(" unmodified") for n in names]
    assert sum(len(by_n) for by_n in expected.values()) > 8  # the tiny task has several lengths
    for trace in fig.data:
        lengths = sorted(expected[trace.name], key=int)
        assert list(trace.x) == lengths
        assert values(trace.y) == pytest.approx([expected[trace.name][n] for n in lengths], abs=1e-12)
    all_lengths = sorted({n for by_n in expected.values() for n in by_n}, key=int)
    assert fig.layout.xaxis.type == "category" and list(fig.layout.xaxis.categoryarray) == all_lengths  # shortest first
    assert fig.layout.xaxis.title.text == "prompt length (tokens)"
    assert fig.layout.yaxis.title.text == "flip rate" and tuple(fig.layout.yaxis.range) == (0, 1.05)
    assert fig.layout.barmode == "group"


def test_length_generalisation_of_a_fixed_length_run_is_one_length(bundles):
    bundle = bundles["activscalar"]
    expected = _flip_rates_by_length(bundle)
    n_pos = str(bundle.config["n_pos"])
    fig = plot_length_generalisation(bundle)
    assert [list(t.x) for t in fig.data] == [[n_pos]] * len(expected)
    assert [float(t.y[0]) for t in fig.data] == pytest.approx([expected[t.name][n_pos] for t in fig.data], abs=1e-12)


def test_length_generalisation_without_per_prompt_results(bundles, tmp_path):
    bundle = bundles["dynscalar"]
    root = tmp_path / "runs"
    shutil.copytree(bundle.path, root / bundle.run_id)
    (root / bundle.run_id / "analysis.safetensors").unlink()
    fig = plot_length_generalisation(RunStore(root).load(bundle.run_id))
    assert len(fig.data) == 0
    assert fig.layout.title.text == "no per-prompt results in this bundle"


class _Checked:
    """A run as `plot_sufficiency_overlay` reads it: its method, id and map checks."""

    def __init__(self, i: int):
        self.method, self.run_id = "activscalar", f"{i:016x}"
        sufficiency = [{"k": k, "mean_flip": 0.1 * k} for k in (1, 2, 4)]
        self._map = {
            "n_components": 8,
            "sufficiency": sufficiency,
            "random": [{"stratum": "site", "k": 2, "mean_flip_median": 0.1}],
        }

    def checks(self):
        return {"map": self._map}, {}


def test_sufficiency_overlay_draws_each_run_in_one_colour():
    """A run's curve and its random control's markers share a colour, each run its own (ten of
    them; plotly's cycle gave a run's two traces two colours, and the sixth run the first's)."""
    fig = plot_sufficiency_overlay([_Checked(i) for i in range(11)])
    assert [t.name for t in fig.data[:2]] == [
        "activscalar 00000000 top-k",
        "activscalar 00000000 random anywhere in the site (median)",
    ]
    lines, marks = fig.data[0::2], fig.data[1::2]
    assert [t.line.color for t in lines] == [t.marker.color for t in lines] == [t.marker.color for t in marks]
    assert len({t.line.color for t in lines[:10]}) == 10 and lines[10].line.color == lines[0].line.color
