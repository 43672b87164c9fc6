"""A run's arrays and components: position and layer labels, each site's values, heads,
DynScalar's per-prompt scalars, the top components, and one component described in words."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from actscale.engine.interventions import Intervention, method_class
from actscale.runs.bundle import RunBundle


def run_method(bundle: RunBundle) -> type[Intervention]:
    """The class of the method that made ``bundle``."""
    return method_class(bundle.method)


def position_labels(bundle: RunBundle) -> list[str]:
    """A label per position of a fixed-length run, as stored at training time: ``"3:Mary…"``
    with absolute positions, ``"−1: in"`` / ``"−9: The (40%)"`` counted back from the answer;
    plain numbers for a bundle that has none."""
    labels = bundle.summary.get("position_labels")
    n_pos = bundle.record.provenance.n_pos
    if isinstance(labels, list) and len(labels) == n_pos:
        return [str(x) for x in labels]
    return [str(i) for i in range(n_pos)]


def position_coverage(bundle: RunBundle) -> list[float] | None:
    """Per position, the share of training prompts long enough to reach it (answer-aligned
    runs reach their early positions through long prompts only), as stored at training time;
    None for a bundle that has none."""
    coverage = bundle.summary.get("position_coverage")
    n_pos = bundle.record.provenance.n_pos
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
    with its site, layer and, where the method has them, position (and its token) and head (a
    column only where a chosen component has a head: it read "None" on every row of a run without
    the head site)."""
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
    top = df.sort_values(["abs", "site", "layer"], ascending=[False, True, True]).head(k).reset_index(drop=True)
    return top.drop(columns="head") if top["head"].isna().all() else top


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def component_label(bundle: RunBundle, site: str, index: tuple[int, ...]) -> str:
    """``"layer 12 · position 3:Mary · head 2"``: a component named along the method's axes."""
    labels = position_labels(bundle) if "position" in run_method(bundle).component_axes(site) else []
    parts = []
    for axis, i in zip(run_method(bundle).component_axes(site), index):
        parts.append(f"position {labels[i]}" if axis == "position" else f"{axis} {i}")
    return " · ".join(parts)


def components(bundle: RunBundle, site: str) -> list[tuple[tuple[int, ...], float]]:
    """Every component at ``site`` as (its indices along the method's axes, its value), the
    largest in absolute value first (ties in index order)."""
    values = component_values(bundle, site)
    flat = values.reshape(-1)
    order = np.argsort(-np.abs(flat), kind="stable")
    return [(tuple(int(i) for i in np.unravel_index(k, values.shape)), float(flat[k])) for k in order]


def describe_component(bundle: RunBundle, site: str, index: tuple[int, ...]) -> str:
    """One sentence on a component: its value, its rank by size among the site's components,
    and whether it counts as effective (its relative magnitude above τ), from the bundle alone."""
    method = run_method(bundle)
    values = component_values(bundle, site)
    value = float(values[index])
    rank = int((np.abs(values) > abs(value)).sum()) + 1
    text = (
        f"{method.magnitude_label} at {site}, {component_label(bundle, site, index)} = {value:+.4g}: "
        f"the {'' if rank == 1 else _ordinal(rank) + ' '}largest in size of the {values.size:,} components at this site"
    )
    try:
        relative = bundle.analysis.get(f"magnitude.{site}")  # stored by the run's evaluation
        if relative is None:  # a bundle stored before magnitudes were: recomputed from its arrays
            relative = method.relative_magnitude(bundle.params, bundle.analysis, site, train_token_mask(bundle))
        rel = float(relative.detach().float().numpy()[index])
    except (KeyError, ValueError, IndexError, RuntimeError, TypeError):
        return text + "."
    tau = bundle.record.config.tau
    verdict = "effective" if rel > tau else "not effective"
    return text + f"; it changes its activation by {rel:.3g} of its size ({verdict} at τ = {tau:g})."


def train_token_mask(bundle: RunBundle) -> torch.Tensor:
    """[n pos] bool: the real tokens of the training prompts, from the stored token strings
    (prompts are left-padded to the bundle's width). Only for bundles stored before the run's
    evaluation stored ``magnitude.<site>`` and ``n_components``: today's read those."""
    tokens, n_pos = bundle.str_tokens(), bundle.record.provenance.n_pos
    width = max([n_pos, *(len(t) for t in tokens)]) if tokens else n_pos
    mask = torch.zeros(len(bundle.dataset), width, dtype=torch.bool)
    for i, row in enumerate(bundle.dataset):
        if row.get("split") == "train" and i < len(tokens):
            mask[i, width - len(tokens[i]) :] = True
    return mask
