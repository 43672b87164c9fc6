"""Sufficiency, necessity, the random control and the knock-outs (docs/method.md §7.1–4):
the checks of one run's map."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from actscale.checks.components import (
    Components,
    k_grid,
    keep_params,
    necessity_grid,
)
from actscale.checks.free_maps import FREE_MAPS, agreement, cell_means, cell_probe, flat, free_maps, learned_cells
from actscale.checks.localisation import RANDOM_DRAWS, cell_grid, localisation
from actscale.checks.options import CheckOptions, Progress
from actscale.checks.passes import (
    Context,
    Variant,
    ablation_row,
    context_on,
    evaluate_variants,
    mean_activations,
    prepare_context,
    sample_rows,
    steer_row,
)
from actscale.checks.patching import PATCH_TOP, patching, patching_ranking
from actscale.checks.random_control import random_controls
from actscale.engine.models import LoadedModel
from actscale.engine.objective import logit_diff
from actscale.engine.sites import is_head_site
from actscale.engine.tasks import PreparedTask
from actscale.engine.training import CancelFlag
from actscale.runs.bundle import RunBundle

# The two directions, each read against the unmodified model's rate (docs/method.md §7.1).
DIRECTIONS = ("flip_acc_pos", "flip_acc_neg")


def map_checks(
    model: LoadedModel,
    bundle: RunBundle,
    options: CheckOptions = CheckOptions(),
    on_progress: Progress | None = None,
    cancel: CancelFlag | None = None,
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Sufficiency, necessity, the random control and the ablations of ``bundle``'s map
    (docs/method.md §7.1–4), as (checks.json part, tensors). k90 (on the effect scale; none
    without an effect) is chosen on validation prompts and every figure is reported on test
    prompts drawn with the checks' seed, which are stored."""
    start = time.perf_counter()
    ctx, task, rows = prepare_context(model, bundle, options, cancel)
    comps, n = ctx.comps, ctx.comps.n
    ctx.means = mean_activations(model, task, comps, ctx.template.dims.n_layers)
    choose_split = task.choice_split
    choose_rows = sample_rows(task, choose_split, options.prompts, options.random_seed)
    chooser = context_on(ctx, task, choose_rows)
    grid, removed = k_grid(n), necessity_grid(n)
    learned = ctx.template.named_tensors()
    # the choice (grid and up to 4 bisection steps on validation); on test the grids, k90 and
    # necessity at k90, 3 strata of draws and the knock-outs; each at β = ±1; then the free part
    checks = chooser.n * 2 * (len(grid) + 4) + ctx.n * (2 * len(grid) + 2 * len(removed) + 4 + 6 * options.draws + 2)
    advance = _progress(checks + _free_rows(ctx, task, options), on_progress)
    make = _variants(learned, comps)
    chosen = _choose_k90(chooser, grid, make[0], advance)
    variants = [make[0](k) for k in grid] + [make[1](k) for k in removed]
    results = evaluate_variants(ctx, variants, lambda r: advance(r, "sufficiency and necessity"))
    sufficiency = {k: steer_row(k, results[i]) for i, k in enumerate(grid)}
    necessity = {k: steer_row(k, results[len(grid) + i]) for i, k in enumerate(removed)}
    k90 = chosen["k90"]
    _add_points(ctx, k90, grid, sufficiency, necessity, make, advance)
    part = {
        **_passes_part(ctx, bundle, task, rows, results[len(grid) - 1]),
        "choose": {**_rows_part(task, choose_split, choose_rows, options.random_seed), **chosen},
        **_curves_part(ctx, grid, sufficiency, necessity, chosen),
    }
    part.update(_at_k90(ctx, bundle, learned, k90, sufficiency, part["targets"], options, advance))
    part["seconds_map"] = round(time.perf_counter() - start, 3)
    part["free"], free = _free_part(model, bundle, task, ctx, advance)
    return part, {"order": comps.order.clone(), "magnitude": comps.magnitude.clone(), **free}


def _free_rows(ctx: Context, task: PreparedTask, options: CheckOptions) -> int:
    """About how many prompt rows the free part evaluates (for the progress): each ranking's
    top cells patched (every cell under the full grid) on the patching prompts, and the
    localisation curves of up to five rankings and three random ones on the checks' prompts."""
    dims = ctx.template.dims
    cells = sum(dims.n_layers * task.n_pos * (dims.n_heads if is_head_site(s) else 1) for s in ctx.template.sites)
    patched = cells if options.patching == "full" else min(cells, 3 * PATCH_TOP)
    curves = 1 + 2 * (len(cell_grid(cells)) - 1) * (5 + RANDOM_DRAWS)
    return patched * min(options.prompts, int(task.counterfactual_rows("train").numel())) + curves * ctx.n


def _free_part(
    model: LoadedModel, bundle: RunBundle, task: PreparedTask, ctx: Context, advance: Callable[[int, str], None]
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The training-free maps on the run's cells (from the training prompts), how they agree with
    the learned one, exact patching of each ranking's top cells (`patching`), and which ranking
    localises the answer on the checks' test prompts (`free_maps`, `localisation`)."""
    start = time.perf_counter()
    probe = cell_probe(model, task, bundle.sites)
    means = cell_means(model, task, probe)
    maps = free_maps(model, task, probe, means)
    learned = learned_cells(bundle, task)
    rows = agreement(learned, maps, bundle.sites, bundle.record.config.tau)
    maps_s = time.perf_counter() - start
    rankings = {"learned": torch.nan_to_num(learned, nan=-1.0)} | {n: flat(maps, n, bundle.sites) for n in FREE_MAPS}
    patched, share = patching(ctx, task, probe, rankings, ctx.options.patching == "full", advance)
    patched["seconds"] = round(time.perf_counter() - start - maps_s, 3)
    if patched["rankings"]:
        rankings["patching"] = patching_ranking(share, rankings["atp_mean"])
    local = localisation(ctx, probe, means, rankings, advance)
    local["seconds"] = round(time.perf_counter() - start - maps_s - patched["seconds"], 3)
    n = int(task.split_indices("train").numel())
    part = {"split": "train", "n": n, "agreement": rows, "seconds": round(maps_s, 3), "localisation": local}
    shapes = {site: tuple(maps[f"atp.{site}"].shape) for site in bundle.sites}
    return part | {"patching": patched}, maps | _per_site(share, shapes, "patch")


def _per_site(values: Tensor, shapes: Mapping[str, tuple[int, ...]], name: str) -> dict[str, Tensor]:
    """A flat cell map (over the sites, in order) as ``<name>.<site>`` tensors of those shapes."""
    out, start = {}, 0
    for site, shape in shapes.items():
        size = int(torch.Size(shape).numel())
        out[f"{name}.{site}"] = values[start : start + size].reshape(shape)
        start += size
    return out


def _curves_part(
    ctx: Context,
    grid: list[int],
    sufficiency: dict[int, dict[str, Any]],
    necessity: dict[int, dict[str, Any]],
    chosen: Mapping[str, Any],
) -> dict[str, Any]:
    """The reported curves on the test prompts, k90 (chosen on validation) and what the top k90
    keep of each effect there."""
    n, k90, base = ctx.comps.n, chosen["k90"], base_rates(ctx)
    targets = {d: base[d] + 0.9 * (sufficiency[n][d] - base[d]) for d in chosen["targets"]}
    return {
        "n_components": n,
        "magnitude": ctx.comps.method.magnitude_label,
        "grid": grid,
        "sufficiency": [sufficiency[k] for k in sorted(sufficiency)],
        "necessity": [necessity[k] for k in sorted(necessity)],
        "full": sufficiency[n],
        "scale": "effect",
        "base": base,
        "targets": targets,
        "k90": k90,
        "k90_frac": None if k90 is None else k90 / n,
        "effect_kept": {} if k90 is None else effect_kept(base, sufficiency[n], sufficiency[k90], targets),
        "top_components": _top_components(ctx.comps, min(k90 or 10, 50)),
    }


Make = tuple[Callable[[int], Variant], Callable[[int], Variant]]


def _variants(learned: dict[str, Tensor], comps: Components) -> Make:
    """The variants "keep the top k" and "the full run without its top k"."""

    def suff(k: int) -> Variant:
        return Variant(f"top{k}", keep_params(learned, comps, comps.mask(comps.top(k))))

    def minus(k: int) -> Variant:
        return Variant(f"minus{k}", keep_params(learned, comps, ~comps.mask(comps.top(k))))

    return suff, minus


def _choose_k90(
    chooser: Context, grid: list[int], suff: Callable[[int], Variant], advance: Callable[[int, str], None]
) -> dict[str, Any]:
    """k90 chosen on the chooser's (validation) prompts: their unmodified rates, the full run's,
    the targets and the sufficiency points evaluated there (k90 None: no effect to localise)."""
    results = evaluate_variants(chooser, [suff(k) for k in grid], lambda r: advance(r, "choosing k90"))
    points = {k: steer_row(k, results[i]) for i, k in enumerate(grid)}
    base = base_rates(chooser)
    targets = effect_targets(base, points[grid[-1]])

    def evaluate(k: int) -> dict[str, Any]:
        return steer_row(k, evaluate_variants(chooser, [suff(k)], lambda r: advance(r, "choosing k90"))[0])

    k90 = _k90(grid, targets, points, evaluate) if targets else None
    return {
        "base": base,
        "full": points[grid[-1]],
        "targets": targets,
        "k90": k90,
        "sufficiency": [points[k] for k in sorted(points)],
    }


def _add_points(
    ctx: Context,
    k90: int | None,
    grid: list[int],
    sufficiency: dict[int, dict[str, Any]],
    necessity: dict[int, dict[str, Any]],
    make: Make,
    advance: Callable[[int, str], None],
) -> None:
    """The report's points at k90 where the grids lack it: the top k90 alone, and the full run
    without them."""
    if k90 is None:
        return
    suff, minus = make
    # removing every component (k90 = the last grid point) leaves nothing to evaluate
    curves = [(suff, sufficiency), *([(minus, necessity)] if k90 < grid[-1] else [])]
    wanted = [(make_one(k90), curve) for make_one, curve in curves if k90 not in curve]
    results = evaluate_variants(ctx, [v for v, _ in wanted], lambda r: advance(r, "k90"))
    for (_, curve), result in zip(wanted, results, strict=True):
        curve[k90] = steer_row(k90, result)


def _rows_part(task: PreparedTask, split: str, rows: Tensor, seed: int) -> dict[str, Any]:
    """Which prompts of ``split`` a part of the checks used: the rows (dataset indices), how many
    of how many, and the seed they were drawn with."""
    of = int(task.split_indices(split).numel())
    return {"split": split, "n": int(rows.numel()), "rows": rows.tolist(), "of": of, "seed": seed}


def _passes_part(ctx: Context, bundle: RunBundle, task: PreparedTask, rows: Tensor, full: dict) -> dict[str, Any]:
    """Which prompts the passes ran on, in which precision, and how they agree with the run's
    own evaluation."""
    return {
        "prompts": _rows_part(task, "test", rows, ctx.options.random_seed),
        "precision": ctx.precision_name,
        "precision_agreement": _agreement(bundle, rows, ctx.base_logits, full, ctx),
    }


def base_rates(ctx: Context) -> dict[str, float]:
    """The unmodified model's rate per direction on the check prompts: the share already
    preferring a+ (what β = +1's flip rate is read against) and the share preferring a−."""
    d = logit_diff(ctx.base_logits, ctx.correct, ctx.wrong)
    return {"flip_acc_pos": float((d > 0).double().mean()), "flip_acc_neg": float((d < 0).double().mean())}


def effect_targets(base: Mapping[str, float], full: Mapping[str, Any]) -> dict[str, float]:
    """k90's target per direction with an effect: ``base + 0.9·(full − base)``. A direction has
    an effect where the full run's Wilson interval lies above the unmodified rate; {} where
    neither has one (no effect to localise)."""
    return {d: base[d] + 0.9 * (full[d] - base[d]) for d in DIRECTIONS if full[f"{d}_ci95"][0] > base[d]}


def effect_kept(
    base: Mapping[str, float], full: Mapping[str, Any], row: Mapping[str, Any], targets: Mapping[str, float]
) -> dict[str, float | None]:
    """The share of the full run's effect above the unmodified model that ``row`` keeps, per
    direction with an effect (None where the full run does not move these prompts at all)."""
    return {d: (row[d] - base[d]) / (full[d] - base[d]) if full[d] != base[d] else None for d in targets}


def _at_k90(
    ctx: Context,
    bundle: RunBundle,
    learned: dict[str, Tensor],
    k90: int | None,
    sufficiency: Mapping[int, dict[str, Any]],
    targets: Mapping[str, float],
    options: CheckOptions,
    advance: Callable[[int, str], None],
) -> dict[str, Any]:
    """The stratified random controls and the knock-outs at k90; none without a k90."""
    if k90 is None:
        return {"random": [], "learned_above_random_p95": None, "ablation": []}
    rows = random_controls(
        ctx, bundle, learned, k90, options, sufficiency[k90], targets, lambda r: advance(r, "random control")
    )
    kinds = ("zero", "mean")
    ablations = [Variant(f"{kind}{k90}", ablate=ctx.comps.mask(ctx.comps.top(k90)), kind=kind) for kind in kinds]
    abl = evaluate_variants(ctx, ablations, lambda r: advance(r, "ablation"))
    return {
        "random": rows,
        # the control anywhere in the site; each stratum's own verdict is its row's "beats"
        "learned_above_random_p95": next(r.get("beats", False) for r in rows if r["stratum"] == "site"),
        "ablation": [ablation_row(k90, kind, abl[i]) for i, kind in enumerate(kinds)],
    }


def _top_components(comps: Components, k: int) -> list[dict[str, Any]]:
    """The ``k`` largest components by magnitude: rank, label and magnitude."""
    return [
        {"rank": i + 1, "component": comps.label(int(c)), "magnitude": float(comps.magnitude[c])}
        for i, c in enumerate(comps.top(k).tolist())
    ]


def _progress(total: int, on_progress: Progress | None) -> Callable[[int, str], None]:
    """A counter of evaluated rows that reports the share of ``total`` done (the map checks'
    total: sufficiency and necessity over their grids, up to four bisection steps, the random
    draws of the three random controls, the necessity point at k90 and the two knock-outs at
    k90, each at β = ±1)."""
    done = [0]

    def advance(rows_done: int, what: str = "") -> None:
        done[0] += rows_done
        if on_progress is not None:
            on_progress(min(1.0, done[0] / total), what)

    return advance


def _k90(
    grid: list[int],
    targets: Mapping[str, float],
    sufficiency: dict[int, dict[str, Any]],
    evaluate: Callable[[int], dict[str, Any]],
) -> int:
    """The smallest k whose flip rates reach every direction's target: the first grid point
    that does, then bisection between it and the grid point below (which assumes the curve rises
    in between); ``evaluate(k)`` gives k's sufficiency row. Every k evaluated on the way is added
    to ``sufficiency``, so it stays on the curve. The full run (the last grid point) reaches
    every target."""

    def reached(row: Mapping[str, Any]) -> bool:
        return all(row[d] >= t - 1e-12 for d, t in targets.items())

    k90 = next(k for k in grid if reached(sufficiency[k]))
    lo = max([k for k in grid if k < k90], default=0)
    while k90 - lo > 1:
        mid = (lo + k90) // 2
        sufficiency[mid] = evaluate(mid)
        if reached(sufficiency[mid]):
            k90 = mid
        else:
            lo = mid
    return k90


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
