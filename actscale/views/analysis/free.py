"""The training-free maps the map checks store next to the learned one (docs/method.md §7.8):
their agreement with the learned map as a table and a sentence, exact activation patching's
verification of each ranking's top cells, which ranking localises, and the maps' values per site."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from actscale.checks.free_maps import FREE_MAPS
from actscale.runs.bundle import RunBundle
from actscale.views.analysis.checks import checks_tensor


def free_part(checks: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """checks.json's free maps (None for checks stored before they existed)."""
    part = ((checks or {}).get("map") or {}).get("free")
    return part if isinstance(part, Mapping) and part.get("agreement") else None


def free_table(checks: Mapping[str, Any]) -> pd.DataFrame:
    """One row per free map: its rank agreement with the learned map and the top-k overlap."""
    part = free_part(checks) or {}
    return pd.DataFrame(
        [
            {
                "map": r["label"],
                "Spearman (effective in either)": round(r["spearman"], 3),
                "cells in either": r["n_union"],
                "Spearman (all cells)": round(r["spearman_all"], 3),
                "top-k shared": r["top_k_shared"],
                "k": r["k"],
                "by chance": round(r["top_k_chance"], 1),
                "p": float(f"{r['top_k_p']:.3g}"),
            }
            for r in part.get("agreement", [])
        ]
    )


def free_text(checks: Mapping[str, Any]) -> str:
    """What the free maps' agreement says, and what it cannot show; "" without them."""
    part = free_part(checks)
    if part is None:
        return ""
    sentences = []
    for r in part["agreement"]:
        if not r["k"]:
            sentences.append(f"{r['label']}: the learned map has no effective cell to compare.")
            continue
        sentences.append(
            f"{r['label'][0].upper()}{r['label'][1:]}: Spearman {r['spearman']:.2f} over the {r['n_union']} cells "
            f"effective in either map ({r['spearman_all']:.2f} over all {r['n_cells']}); the two top {r['k']} share "
            f"{r['top_k_shared']} cells against {r['top_k_chance']:.1f} by chance (p = {r['top_k_p']:.2g})."
        )
    return (
        f"On the {part['n']} training prompts, one forward and one backward pass: " + " ".join(sentences) + " "
        "Agreement is not localisation: which ranking's top cells carry the answer is measured below."
    )


MAP_LABELS = {**FREE_MAPS, "patch": "activation patching (share of Δ restored)"}
RANKING_LABELS = {"learned": "learned map", **FREE_MAPS, "patching": "activation patching"}


def patching_part(checks: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    part = free_part(checks)
    patched = part.get("patching") if part else None
    return patched if isinstance(patched, Mapping) else None


def patching_table(checks: Mapping[str, Any]) -> pd.DataFrame:
    """Per ranking, what exact patching says of its top cells."""
    part = patching_part(checks) or {}
    frame = pd.DataFrame(
        [
            {
                "ranking": RANKING_LABELS.get(r["ranking"], r["ranking"]),
                "top cells": r["k"],
                "mean |share restored|": r["mean_abs_share"],
                f"among patching's top {part['top']}": r["shared_with_patching"],
                "Spearman with |share| (patched cells)": r["spearman"],
            }
            for r in part.get("rankings", [])
        ]
    )
    return frame.round(3) if len(frame) else frame


def patching_text(checks: Mapping[str, Any]) -> str:
    """What exact patching measured, on which prompts, and what it cannot show; "" without it."""
    part = patching_part(checks)
    if part is None:
        return ""
    if not part["rankings"]:
        return f"Exact activation patching patched nothing: {part['why']} ({part['prompts']})."
    which = (
        "every cell"
        if part["mode"] == "full"
        else f"the union of each ranking's top {part['top']} cells (the AtP* practice of verifying an estimate's "
        "candidates; the cells outside every top are not verified, and the patching ranking orders them by "
        "mean-ablation AtP)"
    )
    before = part.get("patched_before_difference", 0)
    known = f" ({before} before the first token that differs, 0 without a pass)" if before else ""
    best = ", ".join(
        f"{RANKING_LABELS.get(r['ranking'], r['ranking'])} {r['shared_with_patching']} (mean |share| "
        f"{r['mean_abs_share']:.3f})"
        for r in part["rankings"]
    )
    return (
        f"Exact activation patching, counterfactual → clean, one cell at a time, on {part['n']} training prompts "
        f"({part['prompts']}): the counterfactuals move Δ from {part['clean_logit_diff']:.2f} to "
        f"{part['counterfactual_logit_diff']:.2f}, and a cell's value is the share of that gap it restores. "
        f"{part['patched']} of {part['n_cells']} cells patched{known}: {which}. Of each ranking's top {part['top']}, "
        f"how many are among the {part['top']} cells patching ranks first of those it patched: {best}"
        + (" (drawn from the rankings' own candidates, this overlap flatters them)" if part["mode"] == "top" else "")
        + ". A cell patched alone misses what cells do only together, and these prompts' counterfactual fixes "
        "what 'the information' is."
    )


def localisation_part(checks: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    part = free_part(checks)
    local = part.get("localisation") if part else None
    return local if isinstance(local, Mapping) and local.get("curves") else None


def localisation_table(checks: Mapping[str, Any]) -> pd.DataFrame:
    """Per ranking (the random draws averaged): the area under the restored logit difference
    keeping only its top-k cells (higher localises better) and knocking them out (lower)."""
    local = localisation_part(checks) or {}
    curves = local.get("curves", {})
    rows = [
        {
            "ranking": RANKING_LABELS.get(name, name),
            "area keeping top-k": c["auc_keep"],
            "area without top-k": c["auc_drop"],
        }
        for name, c in curves.items()
        if not name.startswith("random ")
    ]
    if curves:
        draws = sum(name.startswith("random ") for name in curves)
        rows.append(
            {
                "ranking": f"random (mean of {draws} draws)",
                "area keeping top-k": local["random_auc_keep"],
                "area without top-k": local["random_auc_drop"],
            }
        )
    frame = pd.DataFrame(rows)
    return frame.round(3) if len(frame) else frame


def localisation_text(checks: Mapping[str, Any]) -> str:
    """Which ranking localises the unmodified model's answer best, on which prompts, and what one
    run on these prompts cannot show; "" without the curves."""
    local = localisation_part(checks)
    if local is None:
        return ""
    named = {n: c for n, c in local["curves"].items() if not n.startswith("random ")}
    keep = sorted(named, key=lambda n: -named[n]["auc_keep"])
    drop = sorted(named, key=lambda n: named[n]["auc_drop"])
    areas = ", ".join(f"{RANKING_LABELS.get(n, n)} {named[n]['auc_keep']:.2f}" for n in keep)
    lost = ", ".join(f"{RANKING_LABELS.get(n, n)} {named[n]['auc_drop']:.2f}" for n in drop)
    return (
        f"Which ranking localises the unmodified model's answer, on {local['n_prompts']} test prompts with every "
        f"other cell of the run's sites mean-ablated (area under the restored logit difference over log k, 1 = "
        f"all of it at every k): keeping only the top cells, {areas}, random {local['random_auc_keep']:.2f}; "
        f"without them, {lost}, random {local['random_auc_drop']:.2f} (lower: more of the answer lost). "
        "One run and these prompts, no interval: a difference of a few hundredths may not hold on others. The "
        "learned map was trained to steer, not to find the model's own mechanism: ranking below a free map "
        "says it steers through other cells, not that it is wrong."
    )


def free_values(bundle: RunBundle, name: str, site: str) -> np.ndarray | None:
    """A free map's signed values at ``site``, [layer pos] (the head site summed over heads; a
    patching map's cells not patched are NaN, and a sum over heads none of which was patched)."""
    stored = checks_tensor(bundle, f"map.{name}.{site}")
    if stored is None:
        return None
    values = stored.float().numpy()
    if values.ndim != 3:
        return values
    summed = np.nansum(values, -1)
    return np.where(np.isnan(values).all(-1), np.nan, summed)


__all__ = [
    "FREE_MAPS",
    "MAP_LABELS",
    "RANKING_LABELS",
    "free_part",
    "free_table",
    "free_text",
    "free_values",
    "localisation_part",
    "localisation_table",
    "localisation_text",
    "patching_part",
    "patching_table",
    "patching_text",
]
