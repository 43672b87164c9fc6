"""The three-term objective (docs/method.md §3) and the metrics (docs/method.md §4).

Everything here is a pure function of last-position logits, so it is tested against
hand-computed values without a model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


def logit_diff(logits: Tensor, correct: Tensor, wrong: Tensor) -> Tensor:
    """``Δ = logit(a+) − logit(a−)``: logits [batch d_vocab], ids [batch] -> [batch]."""
    return logits.gather(-1, correct[:, None]).squeeze(-1) - logits.gather(-1, wrong[:, None]).squeeze(-1)


def _answer_mask(logits: Tensor, correct: Tensor, wrong: Tensor) -> Tensor:
    mask = torch.zeros_like(logits, dtype=torch.bool)
    mask.scatter_(-1, correct[:, None], True)
    mask.scatter_(-1, wrong[:, None], True)
    return mask


def kl_divergence(
    base_logits: Tensor, logits: Tensor, correct: Tensor | None = None, wrong: Tensor | None = None
) -> Tensor:
    """``KL(p₀ ‖ p)`` per example at the last position, [batch].

    With ``correct`` and ``wrong`` given, both distributions are restricted to the vocabulary
    without the two answer tokens and renormalised (faithfulness); without them, the whole
    vocabulary is used (``kl_full``).
    """
    if correct is not None and wrong is not None:
        mask = _answer_mask(logits, correct, wrong)
        base_logits = base_logits.masked_fill(mask, float("-inf"))
        logits = logits.masked_fill(mask, float("-inf"))
    else:
        mask = torch.zeros_like(logits, dtype=torch.bool)
    lp0 = torch.log_softmax(base_logits.float(), dim=-1)
    lp = torch.log_softmax(logits.float(), dim=-1)
    # Masked entries have p0 = 0 and contribute nothing; where() keeps -inf - -inf out.
    terms = torch.where(mask, torch.zeros_like(lp), lp0.exp() * (lp0 - lp))
    return terms.sum(-1)


def effectiveness(delta: Tensor, beta: Tensor, margin: float) -> Tensor:
    """Hinge ``max(0, m − β·Δ)`` per example: β = +1 wants Δ ≥ m, β = −1 wants Δ ≤ −m."""
    return torch.relu(margin - beta * delta)


@dataclass
class LossTerms:
    total: Tensor
    effectiveness: Tensor
    faithfulness: Tensor
    minimality: Tensor


def objective(
    logits: Tensor,
    base_logits: Tensor,
    correct: Tensor,
    wrong: Tensor,
    beta: Tensor,
    l1: Tensor,
    *,
    margin: float,
    lambda_f: float,
    lambda_m: float,
) -> LossTerms:
    """``L = L_E + λ_F·L_F + λ_M·L_M`` for a batch whose rows carry their own β.

    logits [batch d_vocab] (intervened, last position), base_logits [batch d_vocab]
    (unmodified model, same rows), correct/wrong/beta [batch], l1 the scalar ``‖θ‖₁``.
    """
    l_e = effectiveness(logit_diff(logits, correct, wrong), beta, margin).mean()
    l_f = kl_divergence(base_logits, logits, correct, wrong).mean()
    total = l_e + lambda_f * l_f + lambda_m * l1
    return LossTerms(total, l_e, l_f, l1)


# The run-level figures (its parameters, measured on its training prompts), the same in every split.
MINIMALITY_NAMES = (
    "l1",
    "n_params",
    "n_components",
    "n_effective",
    "effective_frac",
    "n_cells",
    "n_cells_effective",
    "cells_effective_frac",
)
METRIC_NAMES = (
    "acc_base",
    "flip_acc_pos",
    "flip_acc_neg",
    "acc_base_ci95",
    "flip_acc_pos_ci95",
    "flip_acc_neg_ci95",
    "logit_diff_base",
    "logit_diff_pos",
    "logit_diff_neg",
    "faithfulness_kl",
    "kl_full",
    *MINIMALITY_NAMES,
    "n_groups",
    "n_prompts",
)
# Stored where the split has enough groups (`cluster_interval`): each rate's 95% interval by group.
CLUSTER_NAMES = ("acc_base_cluster95", "flip_acc_pos_cluster95", "flip_acc_neg_cluster95")
RATE_NAMES = ("acc_base", "flip_acc_pos", "flip_acc_neg")
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a rate ``successes / n`` (95% by default); ``(0, 1)`` when
    ``n`` is 0. Unlike the normal approximation it stays inside [0, 1] and is honest at the
    ends: 10 of 10 gives [0.72, 1], not [1, 1]."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # At 0 and n the bound on that side is exactly 0 or 1 (the formula leaves rounding dust).
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


@dataclass(frozen=True)
class Minimality:
    """The run-level minimality figures (docs/method.md §4), shared by every split."""

    l1: float
    n_params: int
    n_components: int
    n_effective: int
    # The unit every method shares: cells (site, layer, position[, head]) reached by a training
    # prompt, and those whose relative change of the activation exceeds τ.
    n_cells: int = 0
    n_cells_effective: int = 0

    @property
    def effective_frac(self) -> float:
        return self.n_effective / self.n_components if self.n_components else 0.0

    @property
    def cells_effective_frac(self) -> float:
        return self.n_cells_effective / self.n_cells if self.n_cells else 0.0


# Student's t 97.5% quantiles for 1..10 degrees of freedom (more: z + 2.4/df, its first-order expansion).
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def seed_interval(values: Sequence[float], rate: bool = True) -> tuple[float, float, float]:
    """(mean, lo, hi): the 95% t interval of a figure over independently trained seeds, clipped
    to [0, 1] for a rate (``rate``; a correlation or an area is not clipped). The interval that
    carries what varies between runs (three seeds of 0.94 ± 0.07 give [0.77, 1.00]; pooling their
    prompts into one Wilson interval would give about [0.92, 0.96]). Needs two values at least."""
    if len(values) < 2:
        raise ValueError("a seed-level interval needs at least two seeds")
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    df = len(values) - 1
    half = (T975[df - 1] if df <= len(T975) else Z95 + 2.4 / df) * sd / math.sqrt(len(values))
    return (mean, max(0.0, mean - half), min(1.0, mean + half)) if rate else (mean, mean - half, mean + half)


MIN_CLUSTERS = 5  # a bootstrap over fewer clusters says little (and can be narrower than Wilson's)


def cluster_interval(hits: Tensor, groups: Sequence[str], n_boot: int = 2000, seed: int = 0) -> list[float] | None:
    """The 95% percentile-bootstrap interval of the rate ``hits.mean()`` resampling whole groups
    (countries, templates) with replacement: prompts of one group are not independent, so this
    is the interval to compare runs by; None with fewer than `MIN_CLUSTERS` groups."""
    names = sorted(set(groups))
    if len(names) < MIN_CLUSTERS:
        return None
    index = torch.tensor([names.index(g) for g in groups])
    k = torch.zeros(len(names), dtype=torch.float64).index_add_(0, index, hits.double())
    n = torch.zeros(len(names), dtype=torch.float64).index_add_(0, index, torch.ones(len(groups), dtype=torch.float64))
    draws = torch.randint(len(names), (n_boot, len(names)), generator=torch.Generator().manual_seed(seed))
    rates = k[draws].sum(1) / n[draws].sum(1)
    return [round(float(rates.quantile(q)), 6) for q in (0.025, 0.975)]


def cluster_metrics(d_base: Tensor, d_pos: Tensor, d_neg: Tensor, groups: Sequence[str | None]) -> dict[str, Any]:
    """``n_groups`` (the clusters: each prompt's group, e.g. its country or IOI template family;
    0 where a prompt has none) and, where there are enough, each rate's `cluster_interval`."""
    named = [g for g in groups if g]
    whole = bool(named) and len(named) == len(groups)
    out: dict[str, Any] = {"n_groups": len(set(named)) if whole else 0}
    for name, hits in rate_hits(d_base, d_pos, d_neg):
        interval = cluster_interval(hits, named) if whole else None
        if interval is not None:
            out[f"{name}_cluster95"] = interval
    return out


def rate_hits(d_base: Tensor, d_pos: Tensor, d_neg: Tensor) -> tuple[tuple[str, Tensor], ...]:
    """Each rate of docs/method.md §4 with the prompts it counts, from Δ unmodified and at β = ±1:
    ``acc_base`` (Δ > 0 unmodified), ``flip_acc_pos`` (Δ > 0 at +1), ``flip_acc_neg`` (Δ < 0 at −1)."""
    return (("acc_base", d_base > 0), ("flip_acc_pos", d_pos > 0), ("flip_acc_neg", d_neg < 0))


def rate_metrics(d_base: Tensor, d_pos: Tensor, d_neg: Tensor) -> dict[str, Any]:
    """Each rate of `rate_hits` and its 95% Wilson interval (``*_ci95``), from per-prompt Δ
    unmodified and at β = ±1: a run's split and the logit-bias floor count them alike."""
    out: dict[str, Any] = {}
    for name, hits in rate_hits(d_base, d_pos, d_neg):
        out[name], out[f"{name}_ci95"] = _rate(hits)
    return out


def _rate(hits: Tensor) -> tuple[float, list[float]]:
    k, n = int(hits.sum()), int(hits.numel())
    # In float64: a float32 mean reports 9 of 10 as 0.8999999761581421, below a 0.90 target.
    return (k / n if n else 0.0), [round(x, 6) for x in wilson_interval(k, n)]


def flip_metrics(
    base_logits: Tensor,
    pos_logits: Tensor,
    neg_logits: Tensor,
    correct: Tensor,
    wrong: Tensor,
    groups: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """The metrics of docs/method.md §4 that need no minimality figure: the base rate and flip rates
    with their intervals, the mean Δ, faithfulness and the prompt count, from last-position
    logits [n d_vocab] of the unmodified model and of the model steered with β = +1 and β = −1;
    with each prompt's group, the rates' intervals by group too (`cluster_metrics`), as a
    split's stored metrics have them."""
    out, deltas = _flip_parts(base_logits, pos_logits, neg_logits, correct, wrong)
    return out if groups is None else {**out, **cluster_metrics(*deltas, groups)}


def _flip_parts(
    base_logits: Tensor, pos_logits: Tensor, neg_logits: Tensor, correct: Tensor, wrong: Tensor
) -> tuple[dict[str, Any], tuple[Tensor, Tensor, Tensor]]:
    """`flip_metrics`, and the per-prompt Δ unmodified and at β = ±1 they were counted from."""
    d_base = logit_diff(base_logits, correct, wrong)
    d_pos = logit_diff(pos_logits, correct, wrong)
    d_neg = logit_diff(neg_logits, correct, wrong)
    faith = torch.cat(
        [kl_divergence(base_logits, pos_logits, correct, wrong), kl_divergence(base_logits, neg_logits, correct, wrong)]
    )
    full = torch.cat([kl_divergence(base_logits, pos_logits), kl_divergence(base_logits, neg_logits)])
    out = rate_metrics(d_base, d_pos, d_neg)
    out.update(
        {
            "logit_diff_base": float(d_base.mean()),
            "logit_diff_pos": float(d_pos.mean()),
            "logit_diff_neg": float(d_neg.mean()),
            "faithfulness_kl": float(faith.mean()),
            "kl_full": float(full.mean()),
            "n_prompts": int(correct.shape[0]),
        }
    )
    return out, (d_base, d_pos, d_neg)


def split_metrics(
    base_logits: Tensor,
    pos_logits: Tensor,
    neg_logits: Tensor,
    correct: Tensor,
    wrong: Tensor,
    minimality: Minimality,
    groups: Sequence[str | None] = (),
) -> dict[str, Any]:
    """Every metric of docs/method.md §4 for one split: `flip_metrics`, the run's minimality and,
    from each prompt's group, the rates' intervals by group (`cluster_metrics`)."""
    out, deltas = _flip_parts(base_logits, pos_logits, neg_logits, correct, wrong)
    clusters = cluster_metrics(*deltas, list(groups) or [None] * int(correct.shape[0]))
    n_prompts = out.pop("n_prompts")  # last, in METRIC_NAMES' order
    out.update(
        {
            "l1": float(minimality.l1),
            "n_params": int(minimality.n_params),
            "n_components": int(minimality.n_components),
            "n_effective": int(minimality.n_effective),
            "effective_frac": float(minimality.effective_frac),
            "n_cells": int(minimality.n_cells),
            "n_cells_effective": int(minimality.n_cells_effective),
            "cells_effective_frac": float(minimality.cells_effective_frac),
            **clusters,
            "n_prompts": n_prompts,
        }
    )
    return out
