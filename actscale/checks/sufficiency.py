"""Sufficiency, necessity, the random control and the knock-outs (docs/method.md §7.1–4):
the checks of one run's map."""

from __future__ import annotations

import time
from typing import Any

from torch import Tensor

from actscale.checks.components import k_grid, keep_params, necessity_grid, random_draws, transplant_params
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
    grid = k_grid(n)
    learned = ctx.template.named_tensors()
    # Rows, for the progress bar: sufficiency and necessity over their grids, up to four
    # bisection steps, the random draws and the two knock-outs at k90.
    total = ctx.n * (2 * len(grid) + 2 * len(necessity_grid(n)) + 2 * 4 + 2 * options.draws + 2)
    done = [0]

    def advance(rows_done: int, what: str = "") -> None:
        done[0] += rows_done
        if on_progress is not None:
            on_progress(min(1.0, done[0] / total), what)

    def suff(k: int) -> Variant:
        return Variant(f"top{k}", keep_params(learned, comps, comps.mask(comps.top(k))))

    variants = [suff(k) for k in grid]
    removed = necessity_grid(n)
    variants += [Variant(f"minus{k}", keep_params(learned, comps, ~comps.mask(comps.top(k)))) for k in removed]
    results = evaluate_variants(ctx, variants, lambda r: advance(r, "sufficiency and necessity"))
    sufficiency = {k: steer_row(k, results[i]) for i, k in enumerate(grid)}
    necessity = [steer_row(k, results[len(grid) + i]) for i, k in enumerate(removed)]
    full = sufficiency[n]
    target = 0.9 * full["mean_flip"]
    # The smallest grid k reaching the target, then bisection between it and the grid point
    # below (which assumes the curve rises in between; every evaluated k is kept on the curve).
    k90 = next(k for k in grid if sufficiency[k]["mean_flip"] >= target - 1e-12)
    lo = max([k for k in grid if k < k90], default=0)
    while k90 - lo > 1:
        mid = (lo + k90) // 2
        sufficiency[mid] = steer_row(mid, evaluate_variants(ctx, [suff(mid)], lambda r: advance(r, "k90"))[0])
        if sufficiency[mid]["mean_flip"] >= target - 1e-12:
            k90 = mid
        else:
            lo = mid
    random_ks = [k90]  # one k: a minute holds 20 draws at one k (docs/checks.md, "the time budget")
    random_rows = []
    for k in random_ks:
        top = comps.top(k)
        draws = random_draws(comps, top, options.draws, options.random_seed + k)
        rand = evaluate_variants(
            ctx,
            [
                Variant(f"random{k}.{d}", transplant_params(learned, comps, bundle.analysis, top, dst))
                for d, dst in enumerate(draws)
            ],
            lambda r: advance(r, "random control"),
        )
        per_draw = [steer_row(k, r) for r in rand]
        row: dict[str, Any] = {"k": k, "draws": options.draws}
        for name in ("mean_flip", "flip_acc_pos", "flip_acc_neg"):
            values = [d[name] for d in per_draw]
            row[name] = values
            row[f"{name}_median"] = quantile(values, 0.5)
            row[f"{name}_p05"] = quantile(values, 0.05)
            row[f"{name}_p95"] = quantile(values, 0.95)
        random_rows.append(row)
    ablations = [
        Variant(f"{kind}{k}", ablate=comps.mask(comps.top(k)), kind=kind)
        for k in random_ks
        for kind in ("zero", "mean")
    ]
    abl = evaluate_variants(ctx, ablations, lambda r: advance(r, "ablation"))
    ablation_rows = [
        ablation_row(k, kind, abl[i])
        for i, (k, kind) in enumerate((k, kind) for k in random_ks for kind in ("zero", "mean"))
    ]
    at_k90 = sufficiency[k90]
    random_at_k90 = next(r for r in random_rows if r["k"] == k90)
    part = {
        "prompts": {"split": "test", "n": ctx.n, "rows": rows.tolist(), "of": int(task.split_indices("test").numel())},
        "precision": ctx.precision_name,
        "precision_agreement": _agreement(bundle, rows, ctx.base_logits, results[len(grid) - 1], ctx),
        "n_components": n,
        "magnitude": comps.method.magnitude_label,
        "grid": grid,
        "sufficiency": [sufficiency[k] for k in sorted(sufficiency)],
        "necessity": necessity,
        "full": full,
        "target": target,
        "k90": k90,
        "k90_frac": k90 / n,
        "top_components": [
            {"rank": i + 1, "component": comps.label(int(c)), "magnitude": float(comps.magnitude[c])}
            for i, c in enumerate(comps.top(min(k90, 50)).tolist())
        ],
        "random": random_rows,
        "learned_above_random_p95": bool(at_k90["mean_flip"] > random_at_k90["mean_flip_p95"]),
        "ablation": ablation_rows,
        "seconds_map": round(time.perf_counter() - start, 3),
    }
    return part, {"order": comps.order.clone(), "magnitude": comps.magnitude.clone()}


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
