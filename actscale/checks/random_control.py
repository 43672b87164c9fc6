"""The random control (docs/method.md §7.3): the learned top-k's parameters placed on other
components, stratified — anywhere in the site; the same site and position, another layer; the
same site and layer, another position — never on a learned top-k component or at a position the
check prompts do not reach, each moved component applying its learned relative magnitude."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from actscale.checks.components import STRATA, scale_components, stratified_draws, transplant_params
from actscale.checks.options import CheckOptions
from actscale.checks.passes import (
    Context,
    Variant,
    applied_magnitudes,
    evaluate_variants,
    quantile,
    steer_row,
    transplant_reads,
)
from actscale.runs.bundle import RunBundle

RATES = ("mean_flip", "flip_acc_pos", "flip_acc_neg")
QUANTILES = (("median", 0.5), ("p05", 0.05), ("p95", 0.95))


def random_controls(
    ctx: Context,
    bundle: RunBundle,
    learned: dict[str, Tensor],
    k: int,
    options: CheckOptions,
    learned_row: Mapping[str, Any],
    targets: Mapping[str, float],
    advance: Callable[[int], None],
) -> list[dict[str, Any]]:
    """One row per stratum (`STRATA`) at ``k``: each draw's flip rates with their median and 5th
    and 95th percentiles, and whether the learned top-k (``learned_row``) beats the draws' 95th
    percentile in every direction with an effect (``targets``); a stratum that cannot be drawn
    says why. One k (k90): a minute holds 20 draws per stratum at one k (docs/checks.md)."""
    top, allowed = ctx.comps.top(k), reached_components(ctx)
    rows = []
    for i, stratum in enumerate(STRATA):
        draws = stratified_draws(ctx.comps, top, options.draws, options.random_seed + k + 7919 * i, stratum, allowed)
        if draws is None:
            rows.append({"k": k, "stratum": stratum, "draws": 0, "reason": _why_not(ctx, stratum)})
            continue
        placed = placed_params(ctx, learned, bundle.analysis, top, draws)
        variants = [Variant(f"random{k}.{stratum}.{d}", params) for d, params in enumerate(placed)]
        per_draw = [steer_row(k, r) for r in evaluate_variants(ctx, variants, advance)]
        row: dict[str, Any] = {"k": k, "stratum": stratum, "draws": len(draws)}
        for name in RATES:
            values = [d[name] for d in per_draw]
            row[name] = values
            row.update(
                {f"{name}_{q}": quantile(values, at) for q, at in (("median", 0.5), ("p05", 0.05), ("p95", 0.95))}
            )
        row["beats"] = bool(targets) and all(learned_row[d] > row[f"{d}_p95"] for d in targets)
        rows.append(row)
    return rows


def _why_not(ctx: Context, stratum: str) -> str:
    if stratum == "position" and not any("position" in ctx.comps.method.component_axes(s) for s in ctx.comps.sites):
        return "the method's components have no position"
    return "some learned component has no other place in this stratum that the check prompts reach"


def reached_components(ctx: Context) -> Tensor:
    """[n] bool: the components at positions some check prompt reaches (a real token in that
    column of the left-padded batch; `Intervention.columns` uses the last ``width`` positions);
    every component of a method without positions."""
    width, comps = ctx.mask.shape[1], ctx.comps
    real = ctx.mask.bool().any(0).cpu()  # [width]
    out = []
    for site in comps.sites:
        axes = comps.method.component_axes(site)
        if "position" not in axes:
            out.append(torch.ones(comps.sizes[site], dtype=torch.bool))
            continue
        axis = axes.index("position")
        n_pos = comps.shapes[site][axis]
        column = torch.arange(n_pos) - (n_pos - width)
        pos_ok = (column >= 0) & real[column.clamp(0, width - 1)]
        coords = torch.unravel_index(torch.arange(comps.sizes[site]), comps.shapes[site])
        out.append(pos_ok[coords[axis]])
    return torch.cat(out)


def placed_params(
    ctx: Context, learned: dict[str, Tensor], analysis: Mapping[str, Tensor], top: Tensor, draws: list[Tensor]
) -> list[dict[str, Tensor]]:
    """The parameter sets of the draws: the top components' parameters moved onto each draw,
    each applying its learned relative magnitude there (`transplant_params`). A method whose
    magnitude is what it applies to the activation (DynScalar's α) is then measured in the
    transplanted run itself and rescaled once more, so the moved components apply their learned
    magnitude in the run as a whole (components moved to earlier layers change what later ones
    read)."""
    comps = ctx.comps
    reads = transplant_reads(ctx.model, ctx) if comps.method.transplant_reads_activations else None
    placed = [transplant_params(learned, comps, analysis, top, dst, reads) for dst in draws]
    if not ctx.template.records:
        return placed
    applied = applied_magnitudes(ctx, placed)
    return [
        scale_components(p, comps, dst, comps.magnitude[top] / a[dst].clamp_min(1e-12))
        for p, a, dst in zip(placed, applied, draws, strict=True)
    ]
