"""A stored run as tables and arrays: what the figures draw and the pages list, computed from
a bundle alone (no model). Nothing here depends on which method made the run: what a
component is and how large it is comes from the method's class (`interventions`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from actscale.interventions import Intervention, method_class
from actscale.store import RunBundle, RunListing


def run_method(bundle: RunBundle) -> type[Intervention]:
    """The class of the method that made ``bundle``."""
    return method_class(bundle.method)


def position_labels(bundle: RunBundle) -> list[str]:
    """A label per position of a fixed-length run, as stored at training time: ``"3:Mary…"``
    with absolute positions, ``"−1: in"`` / ``"−9: The (40%)"`` counted back from the answer;
    plain numbers for a bundle that has none."""
    labels = bundle.summary.get("position_labels")
    n_pos = int(bundle.config["n_pos"])
    if isinstance(labels, list) and len(labels) == n_pos:
        return [str(x) for x in labels]
    return [str(i) for i in range(n_pos)]


def position_coverage(bundle: RunBundle) -> list[float] | None:
    """Per position, the share of training prompts long enough to reach it (answer-aligned
    runs reach their early positions through long prompts only), as stored at training time;
    None for a bundle that has none."""
    coverage = bundle.summary.get("position_coverage")
    n_pos = int(bundle.config["n_pos"])
    if isinstance(coverage, list) and len(coverage) == n_pos and all(isinstance(c, (int, float)) for c in coverage):
        return [float(c) for c in coverage]
    return None


def rare_positions(bundle: RunBundle, below: float = 0.5) -> list[str]:
    """The labels of the positions fewer than ``below`` of the training prompts reach: their
    parameters were learned from few prompts (or none)."""
    coverage = position_coverage(bundle)
    if coverage is None:
        return []
    labels = position_labels(bundle)
    return [label for label, share in zip(labels, coverage) if share < below]


def layer_labels(n: int) -> list[str]:
    return [str(i) for i in range(n)]


def component_values(bundle: RunBundle, site: str) -> np.ndarray:
    """The size of each component at ``site`` (|α| for ActivScalar, ‖v‖/‖h‖ for SteerVec, ...)
    shaped by the method's `component_axes`."""
    return run_method(bundle).component_values(bundle.params, bundle.analysis, site).detach().float().numpy()


def head_values(bundle: RunBundle, position: int | None) -> np.ndarray:
    """[layer head] values of the head site at one position, or summed over positions (None).
    Methods whose components have no position (DynScalar) give theirs as they are."""
    values = component_values(bundle, "head")
    axes = run_method(bundle).component_axes("head")
    if "position" not in axes:
        return values
    at = axes.index("position")
    return values.sum(at) if position is None else np.take(values, position, axis=at)


def dyn_prompt_scalars(bundle: RunBundle, site: str, index: int) -> tuple[np.ndarray, list[str]]:
    """The scalars α DynScalar produced on dataset prompt ``index`` (β = +1): [layer pos]."""
    stored = bundle.dynalpha(site)
    if stored is None:
        raise KeyError(f"dynalpha.{site}")
    alpha = stored[index]  # [layer pos (head)], left-padded
    if alpha.dim() == 3:
        alpha = alpha.mean(-1)
    tokens = bundle.str_tokens()
    toks = tokens[index] if index < len(tokens) else []
    n_real = len(toks) or alpha.shape[1]
    return alpha[:, -n_real:].numpy(), [f"{i}:{t}" for i, t in enumerate(toks)] or [str(i) for i in range(n_real)]


def top_components(bundle: RunBundle, k: int = 20) -> pd.DataFrame:
    """The ``k`` components with the largest size (method's `component_values`), one row each
    with its site, layer and, where the method has them, position (and its token) and head."""
    method = run_method(bundle)
    labels = position_labels(bundle)
    parts = []
    for site in bundle.sites:
        values = component_values(bundle, site)
        flat = np.abs(values).reshape(-1)
        if flat.size == 0:
            continue
        # Only the k largest of each site can make the overall top k (ties at the cut kept).
        cut = np.partition(flat, -min(k, flat.size))[-min(k, flat.size)] if k > 0 else np.inf
        chosen = np.flatnonzero(flat >= cut)  # ascending: the order np.ndindex would give
        index = dict(zip(method.component_axes(site), np.unravel_index(chosen, values.shape)))
        part: dict = {
            "site": site,
            "layer": index["layer"],
            "value": values.reshape(-1)[chosen].astype(float),
            "metric": method.magnitude_name,
        }
        if "position" in index:
            part["position"] = index["position"]
            part["token"] = [labels[i] for i in index["position"]]
        part["head"] = index.get("head")
        parts.append(pd.DataFrame(part))
    if not parts:
        return pd.DataFrame()
    df = pd.concat(parts, ignore_index=True)
    df["head"] = df["head"].astype("Int64")  # empty outside the head site
    df["abs"] = df["value"].abs()
    return df.sort_values(["abs", "site", "layer"], ascending=[False, True, True]).head(k).reset_index(drop=True)


def history_frame(bundle: RunBundle) -> pd.DataFrame:
    return pd.DataFrame(bundle.history)


def metrics_frame(bundles: list[RunBundle] | list[RunListing]) -> pd.DataFrame:
    """One row per (run, split) with every metric: the tidy input of the comparison figures.

    Anything with ``run_id``, ``config`` and ``metrics`` will do (a `RunListing` too, so the
    Compare page never reads tensors)."""
    rows = []
    for b in bundles:
        for split, metrics in b.metrics.items():
            rows.append(
                {
                    "run_id": b.run_id,
                    "method": b.config.get("method"),
                    "task": b.config.get("task"),
                    "split": split,
                    "lambda_m": b.config.get("lambda_m"),
                    "lambda_f": b.config.get("lambda_f"),
                    "margin": b.config.get("margin"),
                    **metrics,
                }
            )
    df = pd.DataFrame(rows)
    if {"flip_acc_pos", "flip_acc_neg"} <= set(df.columns):
        df["flip_acc"] = (df["flip_acc_pos"] + df["flip_acc_neg"]) / 2
    if {"n_effective", "n_params"} <= set(df.columns):
        df["effective_frac"] = df["n_effective"] / df["n_params"].clip(lower=1)
    return df


def metrics_table(bundle: RunBundle) -> pd.DataFrame:
    """The run's metrics (method.md §4), one row per metric, one column per split."""
    splits = [s for s in ("train", "test") if s in bundle.metrics] + sorted(set(bundle.metrics) - {"train", "test"})
    names: list[str] = []
    for split in splits:
        names += [k for k in bundle.metrics[split] if k not in names]
    df = pd.DataFrame({split: [bundle.metrics[split].get(k) for k in names] for split in splits}, index=names)
    df.index.name = "metric"
    return df.reset_index()


def examples_frame(bundle: RunBundle) -> pd.DataFrame:
    """Per prompt of the run's dataset: Δ before and after (β = ±1) and whether it flipped."""
    df = pd.DataFrame(bundle.dataset)
    for key, t in bundle.deltas().items():
        if len(t) == len(df):
            df[f"delta_{key}"] = t.numpy()
    if "delta_pos" in df and "delta_neg" in df:
        df["flipped_pos"] = df["delta_pos"] > 0
        df["flipped_neg"] = df["delta_neg"] < 0
    tokens = bundle.str_tokens()
    if tokens and len(tokens) == len(df):
        df["n_tokens"] = [len(t) for t in tokens]
    return df
