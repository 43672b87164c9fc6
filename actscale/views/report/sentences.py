"""Sentences computed from a run's numbers: what each direction's flip rate shows against the
unmodified model, what the split holds out, what the checks show, and which differences
between runs their intervals separate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actscale.checks.sufficiency import effect_kept
from actscale.engine.config import TrainConfig
from actscale.engine.tasks.registry import task_spec
from actscale.runs.bundle import RunBundle
from actscale.runs.records import SplitMetrics
from actscale.views.analysis import (
    filled_metrics,
    free_text,
    k90_text,
    localisation_text,
    overlap_text,
    patching_text,
    prompts_text,
    rare_positions,
    same_split,
    share_text,
    spearman_text,
    target_text,
    vary_text,
)

# (metric, the answer it counts, β's sign)
_DIRECTIONS = (("flip_acc_pos", "a+", "+"), ("flip_acc_neg", "a−", "−"))


def shown_split(metrics: Mapping[str, SplitMetrics]) -> str | None:
    """The split a reader should judge a run by: test, else validation, else train (one that
    holds any metric)."""
    return next((s for s in ("test", "val", "train") if metrics.get(s, SplitMetrics()) != SplitMetrics()), None)


def comparison_interval(m: SplitMetrics, name: str) -> tuple[float, float, float] | None:
    """(rate, lo, hi) to compare runs by: the Wilson interval widened to the interval by group
    where one is stored (prompts of one group are not independent), never narrower than either."""
    found = interval_of(m, name)
    by_group = m.cluster_interval(name)
    if found is None or by_group is None:
        return found
    return found[0], min(found[1], by_group[0]), max(found[2], by_group[1])


def interval_of(m: SplitMetrics, name: str) -> tuple[float, float, float] | None:
    """(rate, lo, hi) where the rate and its 95% interval are stored."""
    rate, ci = m.rate(name), m.interval(name)
    return None if rate is None or ci is None else (rate, ci[0], ci[1])


def n_text(m: SplitMetrics, split: str) -> str:
    return f"the {m.n_prompts} {split} prompts" if m.n_prompts is not None else f"the {split} prompts"


def changed_prompts(bundle: RunBundle, split: str, name: str) -> tuple[int, int] | None:
    """How many of ``split``'s prompts β = ±1 (``name``'s direction) moved to its answer and how
    many away from it, from the stored per-prompt Δ; None where they are not stored for exactly
    the prompts the split's metrics count."""
    deltas = bundle.deltas()
    key = "pos" if name == "flip_acc_pos" else "neg"
    rows = [i for i, r in enumerate(bundle.dataset) if r.get("split") == split]
    stored = {"base", key} <= deltas.keys() and deltas["base"].numel() == len(bundle.dataset)
    if not stored or not rows or len(rows) != bundle.record.split(split).n_prompts:
        return None
    sign = 1.0 if key == "pos" else -1.0
    before, after = sign * deltas["base"][rows] > 0, sign * deltas[key][rows] > 0
    return int((after & ~before).sum()), int((before & ~after).sum())


def direction_sentence(
    m: SplitMetrics, split: str, name: str, answer: str, sign: str, changed: tuple[int, int] | None = None
) -> str:
    """What β = ±1 did on ``split``, read against the unmodified model's rate and the interval;
    ``changed``: the prompts it moved to ``answer`` and away from it (`changed_prompts`)."""
    found = interval_of(m, name)
    base = m.base_rate(name)
    if found is None:
        rate = m.rate(name)
        if rate is None:
            return f"β = {sign}1: no flip rate is stored for the {split} split."
        found = (rate, float("nan"), float("nan"))
    rate, lo, hi = found
    prompts = n_text(m, split)
    steered = f"{rate:.2f}" + ("" if lo != lo else f" [{lo:.2f}, {hi:.2f}]")
    if base is None:
        return (
            f"β = {sign}1: the model prefers {answer} on {steered} of {prompts} when steered; the unmodified "
            "model's rate is not stored, so how much of that steering did cannot be said."
        )
    if lo != lo:
        return f"β = {sign}1: {answer} preferred on {steered} of {prompts} when steered, against {base:.2f} unmodified."
    if lo <= base <= hi:
        return (
            f"β = {sign}1 does not move the rate beyond its interval here: the unmodified model prefers {answer} on "
            f"{base:.2f} of {prompts}, and the steered rate {steered} includes that" + _changed_text(changed, answer)
        )
    if lo > base:
        room = f" (the unmodified model already did on {base:.2f}, so the room to move was {1 - base:.2f})"
        return (
            f"β = {sign}1 moves the answer: the model prefers {answer} on {steered} of {prompts}"
            + (room if base >= 0.5 else f", against {base:.2f} unmodified")
            + "."
        )
    return (
        f"β = {sign}1 works against its purpose here: the model prefers {answer} on {steered} of {prompts}, "
        f"fewer than the {base:.2f} of the unmodified model."
    )


def _changed_text(changed: tuple[int, int] | None, answer: str) -> str:
    """The end of a "no change beyond the interval" sentence: the prompts that did change."""
    if changed is None:
        return "."
    to, away = changed
    if not to and not away:
        return "; no prompt changed its preferred answer."
    who = "1 prompt changed its" if to + away == 1 else f"{to + away} prompts changed their"
    return (
        f"; {who} preferred answer ({to} to {answer}, "
        f"{away} away from it), which the rate's interval does not separate from no change."
    )


def _held_out_text(cfg: TrainConfig) -> str:
    held = [*cfg.test_templates, *cfg.test_groups]
    if held:
        return (
            f"The test prompts come from groups held out of training ({', '.join(map(str, held))}): the test "
            "figures speak to prompts of a structure the intervention never saw."
        )
    if task_spec(cfg.task).from_file:
        return (
            "The test prompts are a share of the same file as the training prompts: the test figures speak to "
            "new prompts like those, not to other kinds of prompt."
        )
    return (
        "The test prompts are new prompts from the same templates as training (new names or countries, the "
        "same sentence structures): the test figures do not show that it works on other structures."
    )


def findings(bundle: RunBundle) -> tuple[list[str], list[str]]:
    """(what the figures show, what they cannot show): sentences computed from the run's numbers
    (`analysis.filled_metrics`) and configuration, for a report's reader."""
    metrics = filled_metrics(bundle)
    split = shown_split(metrics)
    if split is None:
        return ["This run stores no metrics."], []
    return _what_it_shows(bundle, metrics, split), _what_it_cannot_show(bundle, metrics[split], split)


def _what_it_shows(bundle: RunBundle, metrics: Mapping[str, SplitMetrics], split: str) -> list[str]:
    m = metrics[split]
    shows = [
        direction_sentence(m, split, name, answer, sign, changed_prompts(bundle, split, name))
        for name, answer, sign in _DIRECTIONS
    ]
    shows += _generalisation_gaps(m, metrics.get("train") or SplitMetrics(), split)
    if (unmet := target_text(bundle.summary, bundle.record.config)) is not None:
        shows.append(unmet)
    kl = m.faithfulness_kl
    if kl is not None:
        shows.append(
            f"Faithfulness: at β = ±1 the next-token distribution over every other token moves by KL = {kl:.3g} nats "
            f"on average over {n_text(m, split)} (0 = untouched; lower is more faithful)."
        )
    n_eff, n_comp = m.n_effective, m.n_components
    if n_eff is not None and n_comp:
        cells = (
            ""
            if not m.n_cells or m.n_cells_effective is None
            else (
                f" In the unit every method shares, {m.n_cells_effective:,} of {m.n_cells:,} cells (site, layer, "
                f"position[, head]; {m.n_cells_effective / m.n_cells:.0%}) are changed by more than τ."
            )
        )
        shows.append(
            f"Minimality: {n_eff:,} of {n_comp:,} components ({n_eff / n_comp:.0%}) change their activation by more "
            f"than τ = {bundle.record.config.tau:g} of its size; the maps below show where." + cells
        )
    return shows


def _generalisation_gaps(m: SplitMetrics, train: SplitMetrics, split: str) -> list[str]:
    """A sentence per direction that moves the held-out prompts less than the training prompts,
    each read against its own split's unmodified rate (the splits' prompts differ in difficulty)."""
    out = []
    for name, _, sign in _DIRECTIONS:
        held, fitted = interval_of(m, name), train.rate(name)
        held_base, fitted_base = m.base_rate(name), train.base_rate(name)
        if split == "train" or held is None or fitted is None:
            continue
        if held_base is None or fitted_base is None:
            continue
        gap = (fitted - fitted_base) - (held[0] - held_base)
        if gap > (held[2] - held[1]) / 2:
            out.append(
                f"At β = {sign}1 it moves the {split} prompts less than the training prompts ({held_base:.2f} → "
                f"{held[0]:.2f} on {split} against {fitted_base:.2f} → {fitted:.2f} on train): it fits its training "
                "prompts better than it generalises."
            )
    return out


def _what_it_cannot_show(bundle: RunBundle, m: SplitMetrics, split: str) -> list[str]:
    cfg = bundle.record.config
    cannot = [
        "The maps show where the learned parameters are large, that is which components training used; they do "
        "not show that the model needs those components for the behaviour"
        + (
            "."
            if (bundle.path / "checks.json").is_file()
            else f" — that is what the checks test (sufficiency, necessity, a random control), which this run does "
            f"not have yet (python -m actscale analyse --run {bundle.run_id} adds them)."
        ),
        f"One training run (seed {cfg.seed}, data seed {cfg.data_seed}): how much "
        "these numbers move from one seed to another is not shown.",
        _held_out_text(cfg),
    ]
    held = interval_of(m, "flip_acc_pos")
    if held and held[2] - held[1] > 0.15:
        cannot.append(
            f"With {n_text(m, split)} the intervals are wide (up to {held[2] - held[1]:.2f} across): differences "
            "smaller than that are not measured."
        )
    rare = rare_positions(bundle)
    if rare:
        cannot.append(
            f"Positions {', '.join(r.split(':')[0] for r in rare)} are reached by fewer than half of the training "
            "prompts: their parameters rest on few prompts."
        )
    return cannot


def comparison_findings(bundles: list[RunBundle]) -> list[str]:
    """Sentences comparing runs, from their numbers: per direction, the best run on the shown split
    and whether its interval separates it from the others; and whether the runs share their prompts."""
    if len(bundles) < 2:
        return []
    out = []
    configs = [b.record.config for b in bundles]
    if not all(same_split(configs[0], c) for c in configs[1:]) or len({c.task for c in configs}) > 1:
        out.append(
            "These runs were not all trained and tested on the same prompts (task, data seed, sizes or held-out "
            "groups differ): differences between them mix the methods with the data."
        )
    filled = [filled_metrics(b) for b in bundles]
    all_test = all("test" in metrics for metrics in filled)
    rows: list[tuple[RunBundle, str, SplitMetrics]] = []
    for b, metrics in zip(bundles, filled):
        split = "test" if all_test else (shown_split(metrics) or "")
        rows.append((b, split, metrics.get(split) or SplitMetrics()))
    for name, _, sign in _DIRECTIONS:
        scored: list[tuple[RunBundle, str, tuple[float, float, float]]] = []
        for b, split, m in rows:
            found = comparison_interval(m, name)
            if found is not None:
                scored.append((b, split, found))
        if len(scored) < 2:
            continue
        scored.sort(key=lambda x: -x[2][0])
        (best, split, (rate, lo, hi)), rest = scored[0], scored[1:]
        who = f"{best.method} (run {best.run_id})"
        tied = [f"{b.method} {r:.2f} [{r_lo:.2f}, {r_hi:.2f}]" for b, _, (r, r_lo, r_hi) in rest if r_hi >= lo]
        if not tied:
            out.append(
                f"At β = {sign}1 {who} flips the most {split} prompts, {rate:.2f} [{lo:.2f}, {hi:.2f}], and its "
                "interval lies above every other run's: the difference is measurable (intervals by group where the "
                "prompts have groups)."
            )
        else:
            out.append(
                f"At β = {sign}1 {who} flips the most {split} prompts ({rate:.2f} [{lo:.2f}, {hi:.2f}]), but not "
                f"measurably more than {', '.join(tied)}: their intervals overlap (by group where the prompts have "
                "groups)."
            )
    return out + _faithfulness_comparison(rows)


def _faithfulness_comparison(rows: list[tuple[RunBundle, str, SplitMetrics]]) -> list[str]:
    kls = sorted(((b, m.faithfulness_kl) for b, _, m in rows if m.faithfulness_kl is not None), key=lambda x: x[1])
    if len(kls) < 2:
        return []
    (low, low_kl), (high, high_kl) = kls[0], kls[-1]
    return [
        f"Faithfulness: {low.method} (run {low.run_id}) disturbs the other tokens least (KL = {low_kl:.3g}), "
        f"{high.method} (run {high.run_id}) most (KL = {high_kl:.3g}); no interval is computed for KL."
    ]


def _necessity_text(m: Mapping[str, Any]) -> list[str]:
    """What removing the top k90 leaves: the share of the effect per direction (the effect
    scale), or the mean flip rate for checks stored before it."""
    nec = next((r for r in m.get("necessity", []) if m.get("k90") is not None and r["k"] == m["k90"]), None)
    if nec is None:
        return []
    if m.get("scale") != "effect":
        return [
            f"Removing the top {m['k90']} from the full run leaves a mean flip rate of {nec['mean_flip']:.2f} "
            f"(full run {m['full']['mean_flip']:.2f})."
        ]
    left = effect_kept(m["base"], m["full"], nec, m["targets"])
    signs = {"flip_acc_pos": "β = +1", "flip_acc_neg": "β = −1"}
    shares = ", ".join(f"{share_text(share)} at {signs[d]}" for d, share in left.items())
    return [
        f"Removing the top {m['k90']} from the full run leaves {shares} above the unmodified model "
        f"(on {prompts_text(m['prompts'])}; 100% would mean the rest of the map stands in for them entirely)."
    ]


def check_findings(bundle: RunBundle) -> list[str]:
    """Sentences on the run's map checks, from their numbers; [] until they are run."""
    found = bundle.checks()
    data = found[0] if found else {}
    out = []
    if "map" in data:
        out.append(k90_text(data))
        m = data["map"]
        out += _necessity_text(m)
        agree = m.get("precision_agreement") or {}
        if agree.get("agree") is not None:
            out.append(
                f"The checks ran in {m['precision']}: the sign of Δ agrees with the run's own evaluation on "
                f"{agree['agree']} of {agree['n']} prompt-directions."
            )
        out += [free_text(data), patching_text(data), localisation_text(data)]
    if "stability" in data:
        st = data["stability"]
        out.append(
            f"Over {len(st['runs'])} seeds ({vary_text(st)}), {st['n_selected_all']} components are selected in "
            f"every seed and {st['n_selected_any']} in at least one; {spearman_text(st)}; {overlap_text(st)}."
        )
    if "side_effects" in data:
        rows = {r["beta"]: r for r in data["side_effects"]["rows"]}
        out.append(
            "On neutral text the run applied everywhere changes perplexity from "
            f"{rows[1.0]['perplexity_base']:.1f} to {rows[1.0]['perplexity_steered']:.1f} (β = +1) and "
            f"{rows[-1.0]['perplexity_steered']:.1f} (β = −1); per-token KL {rows[1.0]['kl_per_token_mean']:.3f} and "
            f"{rows[-1.0]['kl_per_token_mean']:.3f}."
        )
    return [x for x in out if x]
