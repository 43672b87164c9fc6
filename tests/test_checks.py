"""The map checks of docs/method.md §7 (actscale.checks) on tiny-model runs: the component
operations exactly, the batched evaluation against the engine's own, k90 and the minimality unit
(running them, the bundle's files and the CLI: test_checks_run; over seeds and families:
test_checks_over_seeds)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from actscale import checks
from actscale.checks import (
    CheckOptions,
    Components,
    k_grid,
    keep_params,
    necessity_grid,
    passes,
    stratified_draws,
    transplant_params,
)
from actscale.engine.interventions import method_class
from actscale.engine.training import TrainConfig
from actscale.runs.api import train_run
from actscale.runs.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
SITES = ("attn_out", "mlp_out", "head")
FAST = CheckOptions(prompts=8, draws=5, side_effects=False, precision="float32")


def comps_of(bundle) -> Components:
    mags = {s: bundle.analysis[f"magnitude.{s}"] for s in bundle.sites}
    return Components(method_class(bundle.method), bundle.sites, mags)


def test_k_grid():
    assert k_grid(1) == [1]
    assert k_grid(2) == [1, 2]
    assert k_grid(960) == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 960]
    assert k_grid(64) == [1, 2, 4, 8, 16, 32, 64]
    assert necessity_grid(960) == [1, 4, 16, 64, 256]
    assert necessity_grid(64) == [1, 4, 16] and necessity_grid(1) == []


@pytest.mark.parametrize("method", ["activscalar", "steervec", "dynscalar"])
def test_components_rank_and_keep(check_runs, method):
    bundle = check_runs[1][method]
    comps = comps_of(bundle)
    n_site = {s: bundle.analysis[f"magnitude.{s}"].numel() for s in SITES}
    assert comps.n == sum(n_site.values())
    # Ranked largest first; ties by flat position.
    ranked = comps.magnitude[comps.order]
    assert bool((ranked[:-1] >= ranked[1:]).all())
    params = bundle.params
    everything = keep_params(params, comps, torch.ones(comps.n, dtype=torch.bool))
    assert all(torch.equal(everything[k], params[k].float()) for k in params)
    nothing = keep_params(params, comps, torch.zeros(comps.n, dtype=torch.bool))
    assert all(int(v.count_nonzero()) == 0 for v in nothing.values())
    # Keeping the top 3: exactly their parameters survive.
    top = comps.top(3)
    kept = keep_params(params, comps, comps.mask(top))
    for name, tensor in kept.items():
        site = name.split(".", 1)[1]
        flat = tensor.reshape(n_site[site], -1)
        alive = set(torch.nonzero(flat.abs().sum(-1)).flatten().tolist())
        lo = comps.offsets[site]
        assert alive <= {int(i) - lo for i in top if lo <= int(i) < lo + n_site[site]}


def test_transplant_keeps_each_vectors_relative_magnitude(check_runs):
    """SteerVec: a vector moved to another (layer, position) is rescaled to the mean ‖h‖ there."""
    bundle = check_runs[1]["steervec"]
    comps = comps_of(bundle)
    src = comps.top(4)
    (dst,) = stratified_draws(comps, src, 1, 3, "site", torch.ones(comps.n, dtype=torch.bool))
    moved = transplant_params(bundle.params, comps, bundle.analysis, src, dst)
    sv = method_class("steervec")
    new = torch.cat([sv.component_values(moved, bundle.analysis, s).reshape(-1) for s in bundle.sites])
    assert torch.allclose(new[dst], comps.magnitude[src], rtol=1e-4)
    assert int((new > 0).sum()) == len(set(dst.tolist()))  # nothing else is set


@pytest.mark.parametrize("method", ["activscalar", "steervec", "dynscalar"])
def test_a_transplanted_component_applies_its_learned_magnitude(tiny_llama, check_runs, method):
    """The random control moves the top-k's parameters to other components; each must apply its
    learned relative magnitude there. DynScalar's α = wᵀĥ + b is no longer aligned at another
    layer, so (w, b) are rescaled: the mean |α| the moved components apply on the check prompts'
    real tokens, recorded by the engine's own forward pass, is the learned one within 1%."""
    from actscale.checks.random_control import placed_params
    from actscale.engine.interventions import steer

    bundle = check_runs[1][method]
    ctx, _, _ = passes.prepare_context(tiny_llama, bundle, FAST, None)
    comps = ctx.comps
    head = comps.site_slice("head")  # the largest site: room to move three of its components
    src = torch.tensor([c for c in comps.order.tolist() if head.start <= c < head.stop][:3])
    (dst,) = stratified_draws(comps, src, 1, 11, "site", torch.ones(comps.n, dtype=torch.bool))
    (moved,) = placed_params(ctx, ctx.template.named_tensors(), bundle.analysis, src, [dst])
    if method == "dynscalar":
        record: dict = {}
        with (
            torch.no_grad(),
            steer(tiny_llama.bridge, ctx.intervention(moved), 1.0, batch=ctx.n, record=record, mask=ctx.mask),
        ):
            passes.last_position_logits(tiny_llama, ctx.tokens, ctx.mask)
        real = ctx.mask.bool()
        applied = {}
        for site in comps.sites:
            for layer in range(ctx.template.dims.n_layers):
                alpha = record[(site, layer)][real].abs().mean(0)  # per head at the head site
                for i, value in enumerate(alpha.reshape(-1).tolist()):
                    applied[comps.offsets[site] + layer * alpha.numel() + i] = value
        got = torch.tensor([applied[int(d)] for d in dst])
    else:
        got = torch.cat(
            [comps.method.relative_magnitude(moved, bundle.analysis, s, None).reshape(-1) for s in comps.sites]
        )[dst]
    assert torch.allclose(got, comps.magnitude[src], rtol=0.01), (got, comps.magnitude[src])


def test_random_draws_keep_each_site_count_never_land_on_the_top_and_are_seeded(check_runs):
    bundle = check_runs[1]["activscalar"]
    comps = comps_of(bundle)
    top, every = comps.top(10), torch.ones(comps.n, dtype=torch.bool)
    a, b = stratified_draws(comps, top, 2, 7, "site", every), stratified_draws(comps, top, 2, 7, "site", every)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], a[1])
    for draw in a:
        assert len(set(draw.tolist())) == 10 and not set(draw.tolist()) & set(top.tolist())
        for site in comps.sites:
            sl = comps.site_slice(site)
            in_top = int(((top >= sl.start) & (top < sl.stop)).sum())
            assert int(((draw >= sl.start) & (draw < sl.stop)).sum()) == in_top


def test_each_stratum_varies_one_axis_only():
    """Two layers × three positions: the top two (L0 P0, L1 P1) moved to another layer keep
    their position; to another position keep their layer, and never land where no check prompt
    reaches (position 2 here) or on each other."""
    magnitudes = {"attn_out": torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0]])}
    comps = Components(method_class("activscalar"), ("attn_out",), magnitudes)
    top = comps.top(2)
    assert top.tolist() == [0, 4]
    every = torch.ones(6, dtype=torch.bool)
    for seed in range(5):
        (layer,) = stratified_draws(comps, top, 1, seed, "layer", every)
        assert layer.tolist() == [3, 1]  # L1 P0, L0 P1
    reached = torch.tensor([True, True, False] * 2)
    (position,) = stratified_draws(comps, top, 1, 0, "position", reached)
    assert position.tolist() == [1, 3]  # L0 P1, L1 P0: P2 is not reached, P0/P1 their own
    assert stratified_draws(comps, top, 1, 0, "position", torch.tensor([True, False, False] * 2)) is None
    per_layer = Components(method_class("dynscalar"), ("attn_out",), {"attn_out": torch.tensor([1.0, 2.0])})
    assert stratified_draws(per_layer, per_layer.top(1), 1, 0, "position", torch.ones(2, dtype=torch.bool)) is None
    draws = stratified_draws(per_layer, per_layer.top(1), 3, 0, "layer", torch.ones(2, dtype=torch.bool))
    assert [d.tolist() for d in draws] == [[0], [0], [0]]  # L1's one other layer: L0


def test_the_checks_run_at_the_runs_own_precision(tiny_llama, tmp_path):
    """precision="run" (the default): a run trained under bf16 autocast is checked under it, and
    the full run reproduces its own evaluation exactly; float32 passes on it are another
    computation (Δ moves). Before, an autocast block around `last_position_logits` was switched
    off inside it, so "bf16" checks had run in float32."""
    config = TrainConfig(model="tiny-llama", steps=3, n_prompts=16, n_test=8, autocast="bf16")
    bundle = train_run(config, tiny_llama, store=RunStore(tmp_path / "runs"))
    options = CheckOptions(prompts=8, draws=5, side_effects=False)
    assert options.precision == "run"
    part, _ = checks.map_checks(tiny_llama, bundle, options)
    assert part["precision"] == "bf16"
    assert part["precision_agreement"]["max_abs_delta_change"] == 0.0
    assert part["precision_agreement"]["agree"] == part["precision_agreement"]["n"] == 24
    plain, _ = checks.map_checks(tiny_llama, bundle, FAST)
    assert plain["precision"] == "float32" and plain["precision_agreement"]["max_abs_delta_change"] > 1e-3


@pytest.mark.parametrize("method", ["activscalar", "steervec", "dynscalar"])
def test_full_run_in_the_checks_reproduces_the_runs_own_evaluation(tiny_llama, check_runs, method):
    """At k = n_components the batched variant is the run itself: in float32 the sign of Δ
    agrees with the stored evaluation on every prompt-direction, and Δ within 1e-4."""
    bundle = check_runs[1][method]
    part, tensors = checks.map_checks(tiny_llama, bundle, FAST)
    agree = part["precision_agreement"]
    assert agree["n"] == 3 * part["prompts"]["n"] == 24
    assert agree["agree"] == agree["n"]
    assert agree["max_abs_delta_change"] < 1e-4
    assert part["grid"] == k_grid(part["n_components"])
    assert [r["k"] for r in part["necessity"]] == necessity_grid(part["n_components"])
    assert part["full"] == part["sufficiency"][-1]
    # Four steps on the tiny model move neither direction beyond its interval: no effect to localise.
    assert part["scale"] == "effect" and part["targets"] == {} and part["k90"] is None and part["k90_frac"] is None
    assert (part["random"], part["ablation"], part["learned_above_random_p95"]) == ([], [], None)
    for d in ("flip_acc_pos", "flip_acc_neg"):
        assert part["full"][f"{d}_ci95"][0] <= part["base"][d]
    assert part["base"]["flip_acc_pos"] == agree_base(part, bundle, ">") and part["base"]["flip_acc_neg"] == agree_base(
        part, bundle, "<"
    )
    assert torch.equal(tensors["order"], comps_of(bundle).order)


def agree_base(part, bundle, sign):
    """The unmodified model's rate on the check prompts, from the run's own stored Δ."""
    d = bundle.analysis["delta.base"][part["prompts"]["rows"]]
    return float(((d > 0) if sign == ">" else (d < 0)).double().mean())


def test_no_effect_to_localise_is_said_not_drawn(tiny_llama, check_runs):
    from actscale.views.analysis import k90_text

    part, _ = checks.map_checks(tiny_llama, check_runs[1]["activscalar"], FAST)
    assert k90_text({"map": part}) == (
        "No effect to localise: on all 3 validation prompts neither direction of the full run beats the unmodified "
        "model beyond its interval (β = +1 0.67 → 0.67 [0.21, 0.94]; β = −1 0.33 → 0.33 [0.06, 0.79]), so no k90 is "
        "drawn and no control is run."
    )


def test_k90_is_chosen_on_validation_and_reported_on_a_seeded_test_sample(tiny_llama, check_runs):
    """k90 is chosen on the validation prompts; every figure is reported on test prompts drawn
    with the checks' seed; both are stored (dataset indices)."""
    bundle = check_runs[1]["activscalar"]
    task = passes.run_task(tiny_llama, bundle)
    test, val = task.split_indices("test").tolist(), task.split_indices("val").tolist()
    parts = {
        seed: checks.map_checks(tiny_llama, bundle, replace(FAST, prompts=4, random_seed=seed))[0] for seed in (0, 1)
    }
    for seed, part in parts.items():
        assert part["choose"]["split"] == "val" and part["choose"]["rows"] == val and part["choose"]["n"] == 3
        assert part["prompts"]["split"] == "test" and part["prompts"]["seed"] == seed
        assert part["prompts"]["n"] == 4 and part["prompts"]["of"] == len(test) == 8
        assert part["prompts"]["rows"] == passes.sample_rows(task, "test", 4, seed).tolist()
        assert set(part["prompts"]["rows"]) <= set(test) and part["prompts"]["rows"] == sorted(part["prompts"]["rows"])
        assert part["base"]["flip_acc_pos"] == agree_base(part, bundle, ">")
    assert parts[0]["prompts"]["rows"] != parts[1]["prompts"]["rows"]
    assert [r["k"] for r in parts[0]["choose"]["sufficiency"]] == parts[0]["grid"]


def _row(k, pos, neg=0.75):
    return {"k": k, "flip_acc_pos": pos, "flip_acc_neg": neg, "mean_flip": (pos + neg) / 2}


def test_k90_is_on_the_effect_scale_per_direction():
    """Only a direction whose full-run interval lies above the unmodified rate has a target,
    base + 0.9·(full − base); k90 is the smallest k reaching every target (grid, then bisection)."""
    from actscale.checks.sufficiency import _k90, effect_kept, effect_targets

    base = {"flip_acc_pos": 0.25, "flip_acc_neg": 0.75}
    full = {**_row(16, 0.95, 0.85), "flip_acc_pos_ci95": [0.8, 0.99], "flip_acc_neg_ci95": [0.7, 0.93]}
    targets = effect_targets(base, full)
    assert targets == {"flip_acc_pos": pytest.approx(0.88)}  # β = −1's interval holds its base rate: no target
    rows = {1: _row(1, 0.3), 2: _row(2, 0.5), 4: _row(4, 0.85), 8: _row(8, 0.9), 16: full}
    between = {6: _row(6, 0.88), 5: _row(5, 0.87)}
    asked = []

    def evaluate(k):
        asked.append(k)
        return between[k]

    assert _k90([1, 2, 4, 8, 16], targets, rows, evaluate) == 6
    assert asked == [6, 5] and sorted(rows) == [1, 2, 4, 5, 6, 8, 16]  # every k evaluated is on the curve
    assert effect_kept(base, full, rows[6], targets) == {"flip_acc_pos": pytest.approx(0.9)}
    # On the old scale (90% of the mean flip rate, 0.81) k = 4 would have "reached" it: 0.80 mean.
    assert rows[4]["mean_flip"] == 0.8 and effect_targets(base, {**full, "flip_acc_pos_ci95": [0.2, 0.99]}) == {}


def test_batching_does_not_change_a_variant(tiny_llama, check_runs):
    """Variants stacked along the batch give the same Δ as each evaluated alone."""
    bundle = check_runs[1]["activscalar"]
    one = checks.map_checks(tiny_llama, bundle, CheckOptions(prompts=8, draws=5, precision="float32", rows_per_pass=8))
    many = checks.map_checks(
        tiny_llama, bundle, CheckOptions(prompts=8, draws=5, precision="float32", rows_per_pass=1000)
    )
    for a, b in zip(one[0]["sufficiency"], many[0]["sufficiency"], strict=True):
        assert a["k"] == b["k"] and a["flip_acc_neg"] == b["flip_acc_neg"]
        assert abs(a["logit_diff_neg"] - b["logit_diff_neg"]) < 1e-4


def test_zero_ablation_equals_scaling_by_minus_one(tiny_llama, check_runs):
    """ActivScalar's h·(1 + β·α) with α = −1 at β = +1 is the zero-ablation of that component."""
    bundle = check_runs[1]["activscalar"]
    ctx, _, _ = passes.prepare_context(tiny_llama, bundle, FAST, None)
    comps = ctx.comps
    chosen = comps.mask(comps.top(7))
    minus_one = {k: torch.zeros_like(v) for k, v in bundle.params.items()}
    for name in minus_one:
        site = name.split(".", 1)[1]
        minus_one[name].view(-1)[chosen[comps.site_slice(site)]] = -1.0
    steer, zero = passes.evaluate_variants(
        ctx, [passes.Variant("minus-one", minus_one), passes.Variant("zero", ablate=chosen, kind="zero")]
    )
    assert torch.allclose(steer[1.0][0], zero[0.0][0], atol=1e-4)


@pytest.mark.parametrize("method", ["activscalar", "dynscalar"])
def test_mean_activations_do_not_depend_on_the_batch(tiny_llama, check_runs, method):
    """The training prompts' mean activation, per (layer, position) or per layer, is the same
    whether they run in batches of 3 or all at once, and matches a hand computation."""
    bundle = check_runs[1][method]
    ctx, task, _ = passes.prepare_context(tiny_llama, bundle, FAST, None)
    n_layers = ctx.template.dims.n_layers
    small = passes.mean_activations(tiny_llama, task, ctx.comps, n_layers, batch=3)
    large = passes.mean_activations(tiny_llama, task, ctx.comps, n_layers, batch=1000)
    assert small.keys() == large.keys() == set(bundle.sites)
    for site in small:
        assert torch.allclose(small[site], large[site], atol=1e-5)
    rows = task.split_indices("train")
    if not bool(task.attention_mask[rows].all()):
        return  # prompts of several lengths: the hand computation below needs one
    _, cache = tiny_llama.bridge.run_with_cache(task.tokens[rows])
    from actscale.engine.sites import hook_name

    act = cache[hook_name("mlp_out", 0)]  # [n pos d]
    expected = act.mean(0)
    assert torch.allclose(small["mlp_out"][0], expected, atol=1e-4)


@pytest.mark.parametrize("method", ["activscalar", "steervec", "dynscalar"])
def test_one_minimality_unit_for_every_method(tiny_llama, check_runs, method):
    """Cells (site, layer, position[, head]) reached by a training prompt, and the share changed
    by more than τ: the components themselves for the positioned methods; for DynScalar the
    |α(h)| it applied at each answer-aligned position, averaged over the training prompts."""
    bundle = check_runs[1][method]
    m, tau = bundle.record.split("test"), bundle.record.config.tau
    if method != "dynscalar":
        assert (m.n_cells, m.n_cells_effective) == (m.n_components, m.n_effective)
        return
    task = passes.run_task(tiny_llama, bundle)
    train = task.split_indices("train")
    reached = task.attention_mask[train].bool().any(0)  # [pos]
    cells = effective = 0
    for site in bundle.sites:
        alpha = bundle.analysis[f"dynalpha.{site}"].abs()[train]  # [n layer pos (head)]
        mask = task.attention_mask[train].float().reshape(len(train), 1, -1, *([1] * (alpha.dim() - 3)))
        mean = (alpha * mask).sum(0) / mask.sum(0).clamp_min(1)  # [layer pos (head)]
        per_pos = mean[:, reached]
        cells += per_pos.numel()
        effective += int((per_pos > tau).sum())
    assert (m.n_cells, m.n_cells_effective) == (cells, effective) and m.n_components == 2 + 2 + 2 * 4  # layers; heads
    assert m.cells_effective_frac == effective / cells


def test_dynscalar_map_and_checks_rank_by_the_same_magnitude(tiny_llama, check_runs):
    bundle = check_runs[1]["dynscalar"]
    task = passes.run_task(tiny_llama, bundle)
    ranked = passes.magnitudes(bundle, task)
    for site in bundle.sites:
        drawn = method_class("dynscalar").component_values(bundle.params, bundle.analysis, site)
        assert torch.equal(drawn, ranked[site])
        assert not torch.allclose(drawn, bundle.params[f"w.{site}"].norm(dim=-1))
