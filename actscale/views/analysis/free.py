"""The training-free maps the map checks store next to the learned one (docs/method.md §7.8):
their agreement with the learned map as a table and a sentence, and their values per site."""

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


RANKING_LABELS = {"learned": "learned map", **FREE_MAPS}


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
    """A free map's signed estimates at ``site``, [layer pos] (the head site summed over heads)."""
    stored = checks_tensor(bundle, f"map.{name}.{site}")
    if stored is None:
        return None
    values = stored.float().numpy()
    return values.sum(-1) if values.ndim == 3 else values


__all__ = [
    "FREE_MAPS",
    "RANKING_LABELS",
    "free_part",
    "free_table",
    "free_text",
    "free_values",
    "localisation_part",
    "localisation_table",
    "localisation_text",
]
