"""The map checks as tables and sentences (docs/method.md §7), read from a run's bundle."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch

from actscale.checks.components import STRATUM_LABELS
from actscale.runs.bundle import RunBundle
from actscale.views.analysis.tables import split_word


def run_checks_data(bundle: RunBundle) -> dict[str, Any] | None:
    """The run's checks.json content, or None until the checks were run."""
    found = bundle.checks()
    return found[0] if found else None


def checks_tensor(bundle: RunBundle, name: str) -> torch.Tensor | None:
    found = bundle.checks()
    return found[1].get(name) if found else None


def interval_text(ci: Any) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if isinstance(ci, list) and len(ci) == 2 else ""


_SIGNS = {"flip_acc_pos": "β = +1", "flip_acc_neg": "β = −1"}


def share_text(share: float | None) -> str:
    """A share of an effect in percent; None: the full run does not move these prompts."""
    return "no effect on these prompts" if share is None else f"{100 * share:.0f}% of the effect"


def prompts_text(part: Mapping[str, Any]) -> str:
    """A checks part's prompts: "all 3 validation prompts", "16 of 40 test prompts (drawn with seed 0)"."""
    split = split_word(str(part.get("split", "test")))
    n, of = part["n"], part.get("of")
    if of is None or n >= of:
        return f"{'all ' if of is not None else ''}{n} {split} prompts"
    seed = part.get("seed")
    return f"{n} of {of} {split} prompts" + (f" (drawn with seed {seed})" if seed is not None else " (the first ones)")


def k90_text(checks: Mapping[str, Any]) -> str:
    """One sentence: how many components carry the flips (chosen on validation, reported on
    test), against the random controls."""
    m = checks.get("map") or {}
    if "k90" not in m:
        return ""
    if m.get("scale") != "effect":  # checks stored before k90 was on the effect scale
        return _mean_scale_k90_text(m)
    chose = m.get("choose") or m  # checks stored before 2026-12-04 chose k90 on the test prompts
    where = prompts_text(chose) if "choose" in m else f"the same {prompts_text(m['prompts'])}"
    if m["k90"] is None:
        rates = "; ".join(
            f"{_SIGNS[d]} {chose['base'][d]:.2f} → {chose['full'][d]:.2f} {interval_text(chose['full'][f'{d}_ci95'])}"
            for d in _SIGNS
        )
        return (
            f"No effect to localise: on {where} neither direction of the full run beats the "
            f"unmodified model beyond its interval ({rates}), so no k90 is drawn and no control is run."
        )
    k90, n, full, base = m["k90"], m["n_components"], m["full"], m["base"]
    learned: dict[str, Any] = next((r for r in m["sufficiency"] if r["k"] == k90), {})
    kept = "; ".join(
        f"{_SIGNS[d]} {base[d]:.2f} → {full[d]:.2f} in full, {learned.get(d, float('nan')):.2f} with the top {k90} "
        f"({share_text(share)})"
        for d, share in m["effect_kept"].items()
    )
    text = (
        f"k90 = {k90} of {n:,} components ({100 * k90 / n:.1f}%), chosen on {where}: the fewest top components "
        f"that keep 90% of the full run's effect above the unmodified model in each direction it moves there. "
        f"On {prompts_text(m['prompts'])}: {kept}."
    )
    return text + _random_text(m, k90)


STRATUM_CLAIMS = {
    "site": "the learned components beat random components of the same sites",
    "layer": "the learned layers matter: the same magnitudes at the same positions in other layers do less",
    "position": "the learned positions matter: the same magnitudes in the same layers at other positions do less",
}


def _random_text(m: Mapping[str, Any], k90: int) -> str:
    """The random controls at k90, each named, and what beating each one shows; nothing is
    claimed against a control the learned components do not beat."""
    rows = [r for r in m.get("random", []) if r["k"] == k90]
    if not rows:
        return ""
    if all("stratum" not in r for r in rows):  # checks stored before the controls were stratified
        return _unstratified_text(m, rows[0], k90)
    parts = []
    for r in rows:
        label = STRATUM_LABELS.get(r["stratum"], r["stratum"])
        if not r.get("draws"):
            parts.append(f"{label}: not run ({r.get('reason', 'no candidate')})")
            continue
        p95 = ", ".join(f"{_SIGNS[d]} {r[f'{d}_p95']:.2f}" for d in m["targets"])
        parts.append(
            f"{label} ({r['draws']} draws): 95th percentile {p95}, " + ("beaten" if r["beats"] else "NOT beaten")
        )
    beaten = [STRATUM_CLAIMS[r["stratum"]] for r in rows if r.get("beats")]
    claim = " So " + "; ".join(beaten) + "." if beaten else " The learned placement beats none of these controls."
    return (
        f" The same {k90} magnitudes placed at random (never on the learned top {k90} or where the check prompts do "
        f"not reach), against the top {k90}'s own rates: " + "; ".join(parts) + "." + claim
    )


def _unstratified_text(m: Mapping[str, Any], rand: Mapping[str, Any], k90: int) -> str:
    return (
        f" The same {k90} magnitudes on random components of the same sites (anywhere in them): median mean flip "
        f"{rand['mean_flip_median']:.2f}, 95th percentile {rand['mean_flip_p95']:.2f} over {rand['draws']} draws"
        + (
            " — the learned components beat every draw but the top 5%."
            if m.get("learned_above_random_p95")
            else " — the learned components do NOT beat the random control's 95th percentile."
        )
    )


def _mean_scale_k90_text(m: Mapping[str, Any]) -> str:
    """The sentence of checks stored before k90 was on the effect scale (run them again for it)."""
    k90, n = m["k90"], m["n_components"]
    learned: dict[str, Any] = next((r for r in m["sufficiency"] if r["k"] == k90), {})
    return (
        f"k90 = {k90} of {n:,} components ({100 * k90 / n:.1f}%): keeping only the top {k90} reaches "
        f"{learned.get('mean_flip', float('nan')):.2f} mean flip rate, 90% of the full run's "
        f"{m['full']['mean_flip']:.2f} (on {prompts_text(m['prompts'])}; checks of an earlier version, on the "
        "mean flip rate rather than the effect above the unmodified model: run them again to update)."
    ) + _random_text(m, k90)


def sufficiency_table(checks: Mapping[str, Any]) -> pd.DataFrame:
    """Sufficiency and necessity per k: flip rates with intervals, Δ and faithfulness."""
    m = checks.get("map") or {}
    rows = []
    for kind, part in (("keep top-k", m.get("sufficiency", [])), ("remove top-k", m.get("necessity", []))):
        for r in part:
            rows.append(
                {
                    "check": kind,
                    "k": r["k"],
                    "flip β = +1": round(r["flip_acc_pos"], 3),
                    "95% CI (+1)": interval_text(r.get("flip_acc_pos_ci95")),
                    "flip β = −1": round(r["flip_acc_neg"], 3),
                    "95% CI (−1)": interval_text(r.get("flip_acc_neg_ci95")),
                    "mean flip": round(r["mean_flip"], 3),
                    "Δ at +1": round(r["logit_diff_pos"], 3),
                    "Δ at −1": round(r["logit_diff_neg"], 3),
                    "faithfulness KL": round(r["faithfulness_kl"], 4),
                }
            )
    return pd.DataFrame(rows)


def random_table(checks: Mapping[str, Any]) -> pd.DataFrame:
    """The random control per k next to the learned top-k on the same prompts."""
    m = checks.get("map") or {}
    learned = {r["k"]: r for r in m.get("sufficiency", [])}
    rows = []
    for r in m.get("random", []):
        if not r.get("draws"):
            rows.append({"k": r["k"], "control": STRATUM_LABELS.get(r["stratum"], r["stratum"]), "draws": 0})
            continue
        rows.append(
            {
                "k": r["k"],
                "control": STRATUM_LABELS.get(r.get("stratum", "site"), "anywhere in the site"),
                "draws": r["draws"],
                "beaten": r.get("beats", None),
                "learned mean flip": round(learned.get(r["k"], {}).get("mean_flip", float("nan")), 3),
                "random median": round(r["mean_flip_median"], 3),
                "random 5%": round(r["mean_flip_p05"], 3),
                "random 95%": round(r["mean_flip_p95"], 3),
                "random β = −1 median": round(r["flip_acc_neg_median"], 3),
                "random β = +1 median": round(r["flip_acc_pos_median"], 3),
            }
        )
    return pd.DataFrame(rows)


def ablation_table(checks: Mapping[str, Any]) -> pd.DataFrame:
    """Zero- and mean-ablation of the top-k, next to scaling them (the learned run kept to its top-k)."""
    m = checks.get("map") or {}
    learned = {r["k"]: r for r in m.get("sufficiency", [])}
    rows = []
    for r in m.get("ablation", []):
        s = learned.get(r["k"], {})
        rows.append(
            {
                "k": r["k"],
                "knock-out": f"{r['kind']}-ablation",
                "prefers a+": round(r["prefers_pos"], 3),
                "95% CI": interval_text(r.get("prefers_pos_ci95")),
                "prefers a−": round(r["prefers_neg"], 3),
                "Δ": round(r["logit_diff"], 3),
                "KL (full vocabulary)": round(r["kl_full"], 4),
                "scaling them: flip β = −1": round(s.get("flip_acc_neg", float("nan")), 3),
                "scaling them: flip β = +1": round(s.get("flip_acc_pos", float("nan")), 3),
            }
        )
    return pd.DataFrame(rows)


def vary_text(s: Mapping[str, Any]) -> str:
    """What the stability runs varied, in words."""
    if s.get("varies"):
        return str(s["varies"])
    return "the training seed varied on the same data" if s.get("vary") == "seed" else "the data seed varied"


def spearman_text(s: Mapping[str, Any]) -> str:
    """The mean rank correlation, over the components effective in either run where stored."""
    if "mean_spearman_all" not in s:  # stored before 2026-12-04: over every component
        return f"mean rank correlation of the magnitudes over every component {s['mean_spearman']:.2f}"
    return (
        f"mean rank correlation of the magnitudes {s['mean_spearman']:.2f} over the components effective in either "
        f"run of a pair ({s['mean_spearman_all']:.2f} over every component, most of them near zero)"
    )


def overlap_text(s: Mapping[str, Any]) -> str:
    """The top-k overlaps against the overlap expected by chance."""
    pairs, k = s.get("pairs") or [], s.get("k_top")
    if not pairs or "top_k_chance" not in pairs[0]:
        return f"top-{k} sets share " + ", ".join(str(p["top_k_shared"]) for p in pairs)
    return (
        f"top-{k} sets share {', '.join(str(p['top_k_shared']) for p in pairs)} components per pair, where two random "
        f"{k}-sets would share {pairs[0]['top_k_chance']:.2f} on average (largest chance of sharing as many: "
        f"p = {max(p['top_k_p'] for p in pairs):.2g})"
    )


def stability_tables(checks: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(runs, pairs, components selected in every seed) of the stability check."""
    s = checks.get("stability") or {}
    runs = pd.DataFrame(s.get("runs", []))
    k = s.get("k_top")
    pairs = pd.DataFrame(
        [
            {
                "seed a": p["seed_a"],
                "seed b": p["seed_b"],
                "effective in either": p.get("n_union"),
                "Spearman (effective in either)": round(p["spearman"], 3) if "n_union" in p else None,
                "Spearman (all components)": round(p.get("spearman_all", p["spearman"]), 3),
                f"top-{k} shared": p["top_k_shared"],
                "expected by chance": None if "top_k_chance" not in p else round(p["top_k_chance"], 2),
                "p (hypergeometric)": p.get("top_k_p"),
                "Jaccard": round(p["top_k_jaccard"], 3),
            }
            for p in s.get("pairs", [])
        ]
    )
    stable = pd.DataFrame(s.get("stable_components", []))
    return runs, pairs, stable


def generalisation_table(checks: Mapping[str, Any]) -> pd.DataFrame:
    g = checks.get("generalisation") or {}
    rows = []
    for c in g.get("cells", []):
        rows.append(
            {
                "trained on": c["train"],
                "tested on": c["test"] + (" (validation)" if c["split"] == "val" else ""),
                "n": c.get("n_prompts", 0),
                "unmodified prefers a+": c.get("acc_base"),
                "flip β = +1": c.get("flip_acc_pos"),
                "95% CI (+1)": interval_text(c.get("flip_acc_pos_ci95")),
                "flip β = −1": c.get("flip_acc_neg"),
                "95% CI (−1)": interval_text(c.get("flip_acc_neg_ci95")),
            }
        )
    return pd.DataFrame(rows)


def side_effects_table(checks: Mapping[str, Any]) -> pd.DataFrame:
    s = checks.get("side_effects") or {}
    return pd.DataFrame(
        [
            {
                "β": r["beta"],
                "per-token KL, mean": round(r["kl_per_token_mean"], 4),
                "sd over sentences": round(r["kl_per_token_sd"], 4),
                "worst sentence": round(r["kl_per_token_max"], 4),
                "perplexity unmodified": round(r["perplexity_base"], 2),
                "perplexity steered": round(r["perplexity_steered"], 2),
                "top-1 next token unchanged": round(r["top1_unchanged"], 3),
            }
            for r in s.get("rows", [])
        ]
    )


def checks_frame(bundles: list[RunBundle]) -> pd.DataFrame:
    """One row per run with map checks: k90 (count and share of components), the learned top-k
    against the random control, necessity, stability: what Compare shows next to the metrics."""
    rows = []
    for b in bundles:
        data = run_checks_data(b)
        if not data or "map" not in data:
            continue
        m = data["map"]
        if m.get("k90") is None:  # no effect to localise
            rows.append({"run_id": b.run_id, "method": b.method, "k90": None, "of components": m["n_components"],
                         "full run": round(m["full"]["mean_flip"], 3), "prompts": m["prompts"]["n"]})  # fmt: skip
            continue
        rands = [r for r in m.get("random", []) if r["k"] == m["k90"]]
        rand: dict[str, Any] = next((r for r in rands if r.get("stratum", "site") == "site"), {})
        beats = {r["stratum"]: r.get("beats") if r.get("draws") else None for r in rands if "stratum" in r}
        learned: dict[str, Any] = next((r for r in m["sufficiency"] if r["k"] == m["k90"]), {})
        nec: dict[str, Any] = next((r for r in m.get("necessity", []) if r["k"] == m["k90"]), {})
        stab = data.get("stability") or {}
        rows.append(
            {
                "run_id": b.run_id,
                "method": b.method,
                "k90": m["k90"],
                "of components": m["n_components"],
                "k90 share": round(m["k90_frac"], 4),
                "top-k90 mean flip": round(learned.get("mean_flip", float("nan")), 3),
                "random 95%": round(rand.get("mean_flip_p95", float("nan")), 3),
                "beats random anywhere in the site": bool(m.get("learned_above_random_p95")),
                "beats another layer": beats.get("layer"),
                "beats another position": beats.get("position"),
                "without top-k90": round(nec.get("mean_flip", float("nan")), 3),
                "full run": round(m["full"]["mean_flip"], 3),
                "seeds": len(stab.get("runs", [])) or None,
                "selected in every seed": stab.get("n_selected_all"),
                "mean rank correlation": None if not stab else round(stab["mean_spearman"], 3),
                "prompts": m["prompts"]["n"],
            }
        )
    return pd.DataFrame(rows)
