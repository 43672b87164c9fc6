"""The one-parameter floor (docs/method.md §4): a bias ``b`` on the two answer logits,
``logit(a+) += β·b/2`` and ``logit(a−) −= β·b/2``, so ``Δ' = Δ + β·b``. It is always effective and
names no component: what "effective" alone is worth, beside methods that claim a map.

``b`` is the smallest bias that moves every prompt of the split a run's choices read (validation,
else training) past the run's margin in both directions, ``max|Δ| + m``; test is never read. Its
faithfulness is 0 exactly: the distribution over every other token, renormalised, is untouched
(the faithfulness KL of docs/method.md §4 excludes the two answers). Computed from the unmodified
model's per-prompt Δ a run stores (``delta.base``), so it needs no model and no pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from actscale.engine.objective import cluster_metrics, rate_metrics
from actscale.engine.tasks.examples import SPLITS


def logit_bias_floor(
    delta: Tensor, splits: Sequence[str], margin: float, groups: Sequence[str | None] | None = None
) -> dict[str, Any]:
    """The bias chosen on validation (training without it) and each split's metrics under it, in
    the fields of a run's metrics (flip rates with Wilson intervals and the base rate; KL 0; one
    parameter, no component). ``delta``: per-prompt Δ of the unmodified model, ``splits`` each
    prompt's split, ``groups`` each prompt's group (then each split's `cluster_metrics` too, as
    a run's metrics have them)."""
    choose = "val" if "val" in splits else "train"
    chosen = delta[[s == choose for s in splits]].float()
    bias = float(chosen.abs().max()) + margin if chosen.numel() else margin
    out: dict[str, Any] = {"bias": bias, "split": choose, "n": int(chosen.numel()), "splits": {}}
    for split in SPLITS:
        rows = [s == split for s in splits]
        d = delta[rows].float()
        n = int(d.numel())
        if not n:
            continue
        out["splits"][split] = {
            "n_prompts": n,
            **rate_metrics(d, d + bias, d - bias),
            "faithfulness_kl": 0.0,
            "l1": bias,
            "n_params": 1,
            "n_components": 0,
            "n_effective": 0,
            "effective_frac": 0.0,
            "cells_effective_frac": 0.0,
        }
        if groups is not None:
            grouped = [g for g, keep in zip(groups, rows, strict=True) if keep]
            out["splits"][split] |= cluster_metrics(d, d + bias, d - bias, grouped)
    return out
