"""Which ranking of the cells localises the model's answer: the learned map's, the free maps'
(`free_maps`) or a random one (docs/method.md §7.8).

On the checks' test prompts, with no steering: keep only a ranking's top-k cells (every other
cell of the run's sites mean-ablated) and knock its top-k out (mean-ablated, the rest kept),
for k = 1, 4, 16, … and every cell. Each point is the **restored logit difference**,
``mean(Δ_k − Δ_none) / mean(Δ_clean − Δ_none)`` (1: the unmodified model's Δ, 0: Δ with every
cell mean-ablated), and the share of prompts that still prefer a+. The summary is the area under
each curve over ``x = log(k) / log(n)`` (trapezoids; keeping: higher is better, knocking out:
lower is better), so no k has to be picked. A ranking that localises the answer keeps it with
few cells and loses it without them; random rankings (three draws) are the floor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from actscale.checks.free_maps import cell_components
from actscale.checks.passes import Context, Variant, evaluate_variants
from actscale.engine.interventions import Intervention
from actscale.engine.objective import logit_diff

RANDOM_DRAWS = 3


def cell_grid(n: int) -> list[int]:
    """1, 4, 16, … below ``n``, then ``n``."""
    return sorted({*(4**i for i in range(n.bit_length()) if 4**i < n), n})


def localisation(
    ctx: Context,
    probe: Intervention,
    means: Mapping[str, Tensor],
    rankings: Mapping[str, Tensor],
    progress: Callable[[int, str], None] | None = None,
) -> dict[str, Any]:
    """The keep and knock-out curves of each ranking (a score per cell, flat over the sites in
    the probe's cell order; larger first) and three random rankings, on ``ctx``'s prompts."""
    cells = cell_components(probe)
    on_cells = Context(
        ctx.model, ctx.bundle, probe, cells, ctx.tokens, ctx.mask, ctx.correct, ctx.wrong, ctx.options,
        base_logits=ctx.base_logits, means=dict(means), cancel=ctx.cancel,
    )  # fmt: skip
    generator = torch.Generator().manual_seed(ctx.options.random_seed)
    scores = dict(rankings) | {f"random {i + 1}": torch.rand(cells.n, generator=generator) for i in range(RANDOM_DRAWS)}
    grid = cell_grid(cells.n)
    inner = grid[:-1]  # every cell kept is the unmodified model, every cell out is "none": not run again
    variants = [Variant("none", None, torch.ones(cells.n, dtype=torch.bool), kind="mean")]
    for name, score in scores.items():
        order = torch.sort(-score.float(), stable=True).indices
        for k in inner:
            top = cells.mask(order[:k])
            variants += [Variant(f"{name} keep {k}", None, ~top, "mean")]
            variants += [Variant(f"{name} drop {k}", None, top, "mean")]
    results = evaluate_variants(on_cells, variants, None if progress is None else lambda r: progress(r, "localisation"))
    clean = logit_diff(ctx.base_logits, ctx.correct, ctx.wrong)
    none = results[0][0.0][0]
    span = float((clean - none).mean())
    curves = {}
    for i, name in enumerate(scores):
        block = [r[0.0][0] for r in results[1 + 2 * len(inner) * i : 1 + 2 * len(inner) * (i + 1)]]
        keep = [_point(k, d, none, span) for k, d in zip(grid, [*block[0::2], clean], strict=True)]
        drop = [_point(k, d, none, span) for k, d in zip(grid, [*block[1::2], none], strict=True)]
        curves[name] = {"keep": keep, "drop": drop, "auc_keep": _auc(keep, cells.n), "auc_drop": _auc(drop, cells.n)}
    return _summary(curves, grid, cells.n, ctx, span, clean)


def _point(k: int, delta: Tensor, none: Tensor, span: float) -> dict[str, float]:
    return {
        "k": k,
        "restored": float((delta - none).mean()) / span if span else float("nan"),
        "prefers_pos": float((delta > 0).double().mean()),
    }


def _auc(points: list[dict[str, float]], n: int) -> float:
    """The area under ``restored`` over x = log(k)/log(n) in [0, 1] (trapezoids)."""
    if n < 2:
        return float(points[-1]["restored"]) if points else float("nan")
    xs = [math.log(p["k"]) / math.log(n) for p in points]
    ys = [p["restored"] for p in points]
    return sum((xs[i + 1] - xs[i]) * (ys[i] + ys[i + 1]) / 2 for i in range(len(xs) - 1))


def _summary(
    curves: dict[str, dict[str, Any]], grid: list[int], n: int, ctx: Context, span: float, clean: Tensor
) -> dict[str, Any]:
    randoms = [c for name, c in curves.items() if name.startswith("random ")]
    return {
        "n_cells": n,
        "grid": grid,
        "n_prompts": ctx.n,
        "clean_logit_diff": float(clean.mean()),
        "span": span,
        "curves": curves,
        "random_auc_keep": sum(c["auc_keep"] for c in randoms) / len(randoms),
        "random_auc_drop": sum(c["auc_drop"] for c in randoms) / len(randoms),
    }
