"""Sufficiency, necessity, the random control and the knock-outs (docs/method.md §7.1–4):
the checks of one run's map."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from torch import Tensor

from actscale.checks.components import Components, k_grid, keep_params, necessity_grid, random_draws, transplant_params
from actscale.checks.options import CheckOptions, Progress
from actscale.checks.passes import (
    Context,
    Variant,
    ablation_row,
    evaluate_variants,
    mean_activations,
    prepare_context,
    quantile,
    steer_row,
)
from actscale.engine.models import LoadedModel
from actscale.engine.objective import logit_diff
from actscale.engine.training import CancelFlag
from actscale.runs.bundle import RunBundle


def map_checks(
    model: LoadedModel,
    bundle: RunBundle,
    options: CheckOptions = CheckOptions(),
    on_progress: Progress | None = None,
    cancel: CancelFlag | None = None,
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Sufficiency, necessity, the random control and the ablations of ``bundle``'s map
    (docs/method.md §7.1–4), as (checks.json part, tensors)."""
    start = time.perf_counter()
    ctx, task, rows = prepare_context(model, bundle, options, cancel)
    comps, n = ctx.comps, ctx.comps.n
    ctx.means = mean_activations(model, task, comps, ctx.template.dims.n_layers)
    grid, removed = k_grid(n), necessity_grid(n)
    learned = ctx.template.named_tensors()
    advance = _progress(ctx.n * (2 * len(grid) + 2 * len(removed) + 2 * 4 + 2 * options.draws + 2), on_progress)

    def suff(k: int) -> Variant:
        return Variant(f"top{k}", keep_params(learned, comps, comps.mask(comps.top(k))))

    variants = [suff(k) for k in grid]
    variants += [Variant(f"minus{k}", keep_params(learned, comps, ~comps.mask(comps.top(k)))) for k in removed]
    results = evaluate_variants(ctx, variants, lambda r: advance(r, "sufficiency and necessity"))
    sufficiency = {k: steer_row(k, results[i]) for i, k in enumerate(grid)}
    necessity = [steer_row(k, results[len(grid) + i]) for i, k in enumerate(removed)]
    target = 0.9 * sufficiency[n]["mean_flip"]
    k90 = _k90(grid, target, sufficiency, lambda k: evaluate_variants(ctx, [suff(k)], lambda r: advance(r, "k90"))[0])
    random_row = _random_control(ctx, bundle, learned, k90, options, lambda r: advance(r, "random control"))
    kinds = ("zero", "mean")
    ablations = [Variant(f"{kind}{k90}", ablate=comps.mask(comps.top(k90)), kind=kind) for kind in kinds]
    abl = evaluate_variants(ctx, ablations, lambda r: advance(r, "ablation"))
    return {
        "prompts": {"split": "test", "n": ctx.n, "rows": rows.tolist(), "of": int(task.split_indices("test").numel())},
        "precision": ctx.precision_name,
        "precision_agreement": _agreement(bundle, rows, ctx.base_logits, results[len(grid) - 1], ctx),
        "n_components": n,
        "magnitude": comps.method.magnitude_label,
        "grid": grid,
        "sufficiency": [sufficiency[k] for k in sorted(sufficiency)],
        "necessity": necessity,
        "full": sufficiency[n],
        "target": target,
        "k90": k90,
        "k90_frac": k90 / n,
        "top_components": _top_components(comps, min(k90, 50)),
        "random": [random_row],
        "learned_above_random_p95": bool(sufficiency[k90]["mean_flip"] > random_row["mean_flip_p95"]),
        "ablation": [ablation_row(k90, kind, abl[i]) for i, kind in enumerate(kinds)],
        "seconds_map": round(time.perf_counter() - start, 3),
    }, {"order": comps.order.clone(), "magnitude": comps.magnitude.clone()}


def _top_components(comps: Components, k: int) -> list[dict[str, Any]]:
    """The ``k`` largest components by magnitude: rank, label and magnitude."""
    return [
        {"rank": i + 1, "component": comps.label(int(c)), "magnitude": float(comps.magnitude[c])}
        for i, c in enumerate(comps.top(k).tolist())
    ]


def _progress(total: int, on_progress: Progress | None) -> Callable[[int, str], None]:
    """A counter of evaluated rows that reports the share of ``total`` done (the map checks'
    total: sufficiency and necessity over their grids, up to four bisection steps, the random
    draws and the two knock-outs at k90, each at β = ±1)."""
    done = [0]

    def advance(rows_done: int, what: str = "") -> None:
        done[0] += rows_done
        if on_progress is not None:
            on_progress(min(1.0, done[0] / total), what)

    return advance


def _k90(
    grid: list[int], target: float, sufficiency: dict[int, dict[str, Any]], evaluate: Callable[[int], dict]
) -> int:
    """The smallest grid k whose sufficiency reaches ``target``, then bisection between it and
    the grid point below (which assumes the curve rises in between). Every k evaluated on the
    way is added to ``sufficiency``, so it stays on the curve."""
    k90 = next(k for k in grid if sufficiency[k]["mean_flip"] >= target - 1e-12)
    lo = max([k for k in grid if k < k90], default=0)
    while k90 - lo > 1:
        mid = (lo + k90) // 2
        sufficiency[mid] = steer_row(mid, evaluate(mid))
        if sufficiency[mid]["mean_flip"] >= target - 1e-12:
            k90 = mid
        else:
            lo = mid
    return k90


def _random_control(
    ctx: Context,
    bundle: RunBundle,
    learned: dict[str, Tensor],
    k: int,
    options: CheckOptions,
    advance: Callable[[int], None],
) -> dict[str, Any]:
    """The learned top-``k`` values moved to ``options.draws`` random sets of ``k`` components:
    each draw's flip rates, and their median and 5th and 95th percentiles. One k (k90): a minute
    holds 20 draws at one k (docs/checks.md, "the time budget")."""
    comps = ctx.comps
    top = comps.top(k)
    draws = random_draws(comps, top, options.draws, options.random_seed + k)
    variants = [
        Variant(f"random{k}.{d}", transplant_params(learned, comps, bundle.analysis, top, dst))
        for d, dst in enumerate(draws)
    ]
    per_draw = [steer_row(k, r) for r in evaluate_variants(ctx, variants, advance)]
    row: dict[str, Any] = {"k": k, "draws": options.draws}
    for name in ("mean_flip", "flip_acc_pos", "flip_acc_neg"):
        values = [d[name] for d in per_draw]
        row[name] = values
        row[f"{name}_median"] = quantile(values, 0.5)
        row[f"{name}_p05"] = quantile(values, 0.05)
        row[f"{name}_p95"] = quantile(values, 0.95)
    return row


def _agreement(bundle: RunBundle, rows: Tensor, base_logits: Tensor, full: dict, ctx: Context) -> dict[str, Any]:
    """How often the checks' passes (their precision) agree with the run's own evaluation on
    the sign of Δ: unmodified, and the full run at β = ±1."""
    stored = bundle.deltas()
    if not {"base", "pos", "neg"} <= stored.keys():
        return {"agree": None, "n": 0}
    base = logit_diff(base_logits, ctx.correct, ctx.wrong)
    pairs = [(stored["base"][rows], base), (stored["pos"][rows], full[1.0][0]), (stored["neg"][rows], full[-1.0][0])]
    agree = sum(int(((a > 0) == (b > 0)).sum()) for a, b in pairs)
    worst = max(float((a - b).abs().max()) for a, b in pairs)
    return {"agree": agree, "n": 3 * int(rows.numel()), "max_abs_delta_change": worst}
