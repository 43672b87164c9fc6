"""Exact activation patching on the run's cells (docs/method.md §7.8): the measurement the free
maps estimate and circuit papers validate against.

Each cell is patched on its own, **counterfactual → clean** ("denoising"): the model runs on the
counterfactual prompts (IOI's ABC corruption, CCC's third capital, a file's own column) with that
one cell's activation replaced by the clean prompt's, and the cell's value is the share of the
clean–counterfactual logit difference it restores, ``mean(Δ_patched − Δ_cf) / mean(Δ_clean −
Δ_cf)`` (1: the whole difference from one cell; 0: nothing; < 0: further away). Prompts: the
training prompts that have a counterfactual of their own token length (up to the checks'
``prompts``, drawn with their seed), as the free maps read the training prompts.

Patching every cell costs one pass of those prompts per cell, so by default only the union of
the top `PATCH_TOP` cells of every ranking shown (learned, AtP, mean-AtP) is patched: the AtP\\*
practice of verifying the candidates an estimate proposes (Kramár et al. 2024). The full grid is
an option (``CheckOptions.patching = "full"``). TransformerLens 4.3's activation-patching helpers
patch one hook's whole (layer, position) grid for a single prompt pair at a time; the cells here
are chosen, batched over prompts and several cells per pass through the checks' own passes, so
they are not used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from actscale.checks.free_maps import cell_components
from actscale.checks.over_seeds import spearman
from actscale.checks.passes import Context, Variant, draw_rows, evaluate_variants
from actscale.engine.interventions import Intervention, at_sites
from actscale.engine.models import LoadedModel, last_position_logits
from actscale.engine.objective import logit_diff
from actscale.engine.tasks import PreparedTask

PATCH_TOP = 64  # each ranking's top cells patched exactly (every cell with patching="full")


def patch_rows(task: PreparedTask, n: int, seed: int) -> Tensor:
    """Up to ``n`` training prompts with a usable counterfactual, drawn with ``seed`` (in order)."""
    return draw_rows(task.counterfactual_rows("train"), n, seed)


def cells_to_patch(rankings: Mapping[str, Tensor], n: int, full: bool, top: int = PATCH_TOP) -> Tensor:
    """The cells patched: every cell, or the union of each ranking's ``top`` (larger first)."""
    if full:
        return torch.arange(n)
    chosen = {int(i) for score in rankings.values() for i in torch.sort(-score.float(), stable=True).indices[:top]}
    return torch.tensor(sorted(chosen), dtype=torch.long)


def cell_activations(
    model: LoadedModel, tokens: Tensor, mask: Tensor, probe: Intervention, batch: int = 32, autocast: bool = False
) -> tuple[dict[str, Tensor], Tensor]:
    """Every site's activation on ``tokens``, [prompt layer pos (head) d], and the last-position
    logits: what a patch puts back."""
    n_layers = probe.dims.n_layers
    chunks: dict[tuple[str, int], list[Tensor]] = {(s, layer): [] for s in probe.sites for layer in range(n_layers)}

    def capture(act: Tensor, site: str, layer: int) -> None:
        chunks[(site, layer)].append(act.detach().float().cpu())

    logits = []
    with model.lock, torch.no_grad(), at_sites(model.bridge, probe.sites, n_layers, capture):
        for start in range(0, tokens.shape[0], batch):
            sl = slice(start, start + batch)
            logits.append(last_position_logits(model, tokens[sl], mask[sl], autocast=autocast).float().cpu())
    acts = {s: torch.stack([torch.cat(chunks[(s, layer)]) for layer in range(n_layers)], 1) for s in probe.sites}
    return acts, torch.cat(logits)


def patching(
    ctx: Context,
    task: PreparedTask,
    probe: Intervention,
    rankings: Mapping[str, Tensor],
    full: bool,
    progress: Callable[[int, str], None] | None = None,
) -> tuple[dict[str, Any], Tensor]:
    """The patching part (prompts, the clean–counterfactual gap, per-ranking verification) and
    each cell's restored share, flat in the probe's cell order (NaN where not patched). Nothing is
    patched where no prompt has a counterfactual, or where the counterfactuals do not move Δ
    beyond twice its standard error over the prompts (a share of noise means nothing)."""
    n_cells = int(sum(probe.tensor("alpha", s).numel() for s in probe.sites))
    rows = patch_rows(task, ctx.options.prompts, ctx.options.random_seed)
    part: dict[str, Any] = {"split": "train", "n": int(rows.numel()), "prompts": task.counterfactual_summary("train")}
    part |= {"mode": "full" if full else "top", "top": PATCH_TOP, "n_cells": n_cells, "patched": 0, "rankings": []}
    share = torch.full((n_cells,), float("nan"))
    if not rows.numel():
        return part | {"why": "no training prompt has a counterfactual of its own token length"}, share
    counter, clean = counterfactual_context(ctx, task, probe, rows)
    corrupt = logit_diff(counter.base_logits, counter.correct, counter.wrong)
    gap = clean - corrupt
    span, se = float(gap.mean()), float(gap.std() / gap.numel() ** 0.5) if gap.numel() > 1 else 0.0
    part |= {"clean_logit_diff": float(clean.mean()), "counterfactual_logit_diff": float(corrupt.mean())}
    part |= {"span": span, "span_se": se}
    if abs(span) <= max(2 * se, 1e-6):
        why = f"the counterfactual prompts move Δ by {span:.3g} ± {se:.3g} (standard error): not beyond its noise"
        return part | {"why": why}, share
    chosen = cells_to_patch(rankings, n_cells, full)
    same = cell_columns(probe)[chosen] < first_difference(task.tokens[rows], counter.tokens)
    share[chosen[same]] = 0.0  # before the first token that differs, clean and counterfactual are one computation
    share[chosen[~same]] = (patched_deltas(counter, chosen[~same], progress) - corrupt).mean(1) / span
    part |= {"patched": int(chosen.numel()), "patched_before_difference": int(same.sum())}
    return part | {"rankings": verification(rankings, share)}, share


def cell_columns(probe: Intervention) -> Tensor:
    """Each cell's position column (of the probe's ``n_pos``), flat over the sites in cell order."""
    columns = []
    for site in probe.sites:
        shape = probe.tensor("alpha", site).shape  # [layer pos (head)]
        columns.append(torch.arange(shape[1]).reshape(1, -1, *([1] * (len(shape) - 2))).expand(shape).reshape(-1))
    return torch.cat(columns)


def first_difference(clean: Tensor, counterfactual: Tensor) -> int:
    """The first column where any clean prompt differs from its counterfactual (left-padded alike):
    a causal model computes every activation before it identically on both."""
    differs = (clean != counterfactual).any(0).nonzero()
    return int(differs[0]) if differs.numel() else int(clean.shape[1])


def counterfactual_context(
    ctx: Context, task: PreparedTask, probe: Intervention, rows: Tensor
) -> tuple[Context, Tensor]:
    """The checks' context on the counterfactual prompts of ``rows`` (their logits as the base),
    carrying the clean prompts' activations to patch back; and the clean prompts' Δ."""
    mask = task.attention_mask[rows]
    clean_acts, clean_logits = cell_activations(ctx.model, task.tokens[rows], mask, probe, autocast=ctx.bf16)
    counter = Context(
        ctx.model, ctx.bundle, probe, cell_components(probe), task.counterfactual_tokens[rows], mask,
        task.correct_ids[rows], task.wrong_ids[rows], ctx.options, cancel=ctx.cancel, patch=clean_acts,
    )  # fmt: skip
    with ctx.model.lock, torch.no_grad():
        counter.base_logits = last_position_logits(ctx.model, counter.tokens, mask, autocast=counter.bf16).float().cpu()
    return counter, logit_diff(clean_logits, counter.correct, counter.wrong)


def patched_deltas(counter: Context, cells: Tensor, progress: Callable[[int, str], None] | None = None) -> Tensor:
    """Δ on each counterfactual prompt with one cell at a time patched from its clean prompt:
    [cells, prompts] (several cells to a forward pass, as the checks batch their variants)."""
    variants = [Variant(f"cell {c}", None, counter.comps.mask(c.reshape(1)), "patch") for c in cells]
    report = None if progress is None else lambda rows: progress(rows, "exact patching")
    results = evaluate_variants(counter, variants, report)
    return torch.stack([r[0.0][0] for r in results]) if results else torch.zeros(0, counter.n)


def verification(rankings: Mapping[str, Tensor], share: Tensor, top: int = PATCH_TOP) -> list[dict[str, Any]]:
    """Per ranking, what exact patching says of its top ``top`` cells: their mean |share|, how
    many are among the ``top`` cells patching itself ranks first (of those patched), and the rank
    correlation of the ranking's scores with |share| over every patched cell."""
    patched = ~torch.isnan(share)
    size = abs(share[patched])
    best = set(torch.nonzero(patched).flatten()[torch.sort(-size, stable=True).indices[:top]].tolist())
    out = []
    for name, score in rankings.items():
        own = torch.sort(-score.float(), stable=True).indices[:top]
        out.append(
            {
                "ranking": name,
                "k": int(own.numel()),
                "mean_abs_share": float(share[own].abs().nanmean()),
                "shared_with_patching": len(best & set(own.tolist())),
                "spearman": spearman(score.float()[patched], size) if int(patched.sum()) > 1 else float("nan"),
            }
        )
    return out


def patching_ranking(share: Tensor, fallback: Tensor) -> Tensor:
    """Patching as a ranking (larger first): the patched cells by |share|, then the others in
    ``fallback``'s order (every cell is patched under the full grid)."""
    patched = ~torch.isnan(share)
    first = torch.nonzero(patched).flatten()[torch.sort(-share[patched].abs(), stable=True).indices]
    rest = torch.nonzero(~patched).flatten()[torch.sort(-fallback[~patched].float(), stable=True).indices]
    order = torch.cat([first, rest])
    score = torch.empty(share.numel())
    score[order] = torch.arange(share.numel(), 0, -1, dtype=torch.float)
    return score
