"""``python -m benchmarks.experiments baselines``: the learned interventions next to the ones the
field gets for free, and the learned map next to the free maps (the baselines issue), on IOI and
CCC over seeds 1–3 at every method's defaults.

Per task and seed: ActivScalar, SteerVec and DiffMean runs (DiffMean's layer and strength chosen
on validation), the logit-bias floor on the same prompts and split, and `analyse`'s map checks of
the ActivScalar run (AtP agreement, exact patching of each map's top 64 cells, the localisation
areas of every ranking). Test figures as mean ± sd over the seeds with the seed-level 95% t
interval; parameters as stored.
"""

from __future__ import annotations

import statistics
from typing import Any

TASKS = ("ioi", "ccc")
METHODS = ("activscalar", "steervec", "diffmean")


def baselines(model: Any, store: Any) -> dict[str, Any]:
    from benchmarks.experiments import SEEDS, _run, _summary

    out: dict[str, Any] = {}
    for task in TASKS:
        runs = {m: [_run(model, store, task=task, method=m, seed=s) for s in SEEDS] for m in METHODS}
        out[task] = {
            "methods": {m: {"test": _summary(b), "n_params": _params(b)} for m, b in runs.items()},
            "diffmean_fit": [b.info["fit"] for b in runs["diffmean"]],
            "floor": [_floor(b) for b in runs["activscalar"]],
            "maps": [_maps(model, b) for b in runs["activscalar"]],
            "run_ids": {m: [x.run_id for x in b] for m, b in runs.items()},
        }
    return out


def _params(bundles: list[Any]) -> list[int]:
    return [b.metrics["test"]["n_params"] for b in bundles]


def _floor(bundle: Any) -> dict[str, Any]:
    from actscale.views.analysis import floor_result

    floor = floor_result(bundle)
    assert floor is not None
    return {"bias": floor["bias"], "test": floor["splits"]["test"]}


def _maps(model: Any, bundle: Any) -> dict[str, Any]:
    """The run's map checks (run once and stored; a rerun reads them back)."""
    from actscale.checks import CheckOptions, run_checks

    stored = bundle.checks()
    checks = stored[0] if stored and "patching" in stored[0].get("map", {}).get("free", {}) else None
    if checks is None:
        checks = run_checks(model, bundle, CheckOptions(side_effects=False))
    free = checks["map"]["free"]
    local = free["localisation"]
    return {
        "spearman_atp_all": free["agreement"][0]["spearman_all"],
        "spearman_atp_effective": free["agreement"][0]["spearman"],
        "patching": {k: v for k, v in free["patching"].items() if k != "prompts"},
        "auc_keep": {n: c["auc_keep"] for n, c in local["curves"].items() if not n.startswith("random ")}
        | {"random": local["random_auc_keep"]},
        "auc_drop": {n: c["auc_drop"] for n, c in local["curves"].items() if not n.startswith("random ")}
        | {"random": local["random_auc_drop"]},
        "seconds_patching": free["patching"].get("seconds"),
    }


def _pm(values: list[float], digits: int = 2, rate: bool = False) -> str:
    """Mean ± sd [the seed-level 95% t interval, clipped to [0, 1] only for a rate]."""
    from actscale.engine.objective import seed_interval

    mean = statistics.mean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    lo, hi = seed_interval(values, rate=rate)[1:]
    return f"{mean:.{digits}f} ± {sd:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def baselines_markdown(result: dict[str, Any]) -> str:
    from benchmarks.experiments import HEADER, _row

    lines: list[str] = []
    for task, r in result.items():
        lines += [f"\n**{task.upper()}**\n", HEADER]
        lines += [_row(m, s["test"]) for m, s in r["methods"].items()]
        floors = r["floor"]
        biases = "/".join(f"{f['bias']:.1f}" for f in floors)
        lines.append(
            f"| logit-bias floor (b {biases}) | "
            f"{'/'.join(str(f['test']['n_prompts']) for f in floors)} | | "
            f"{_pm([f['test']['flip_acc_pos'] for f in floors], rate=True)} | "
            f"{_pm([f['test']['flip_acc_neg'] for f in floors], rate=True)} "
            "| | 0 (by construction) | no component | no cell |"
        )
        params = "; ".join(f"{m} {'/'.join(map(str, s['n_params']))}" for m, s in r["methods"].items())
        lines.append(f"\nParameters per seed: {params}; logit-bias floor 1.")
        fits = r["diffmean_fit"]
        lines.append(
            "DiffMean's choices on validation: "
            + "; ".join(f"{f['site']} L{f['layer']} × {f['strength']:g}" for f in fits)
        )
        maps = r["maps"]
        lines.append(
            f"\nActivScalar's map: Spearman with AtP {_pm([m['spearman_atp_all'] for m in maps])} (all cells), "
            f"{_pm([m['spearman_atp_effective'] for m in maps])} (effective in either)."
        )
        names = list(maps[0]["auc_keep"])
        for key, what in (("auc_keep", "keeping only the top-k"), ("auc_drop", "without the top-k")):
            lines.append(f"- area {what}: " + "; ".join(f"{n} {_pm([m[key][n] for m in maps])}" for n in names))
        verified: dict[str, list[int]] = {n["ranking"]: [] for n in maps[0]["patching"]["rankings"]}
        for m in maps:
            for row in m["patching"]["rankings"]:
                verified[row["ranking"]].append(row["shared_with_patching"])
        lines.append(
            "- of each map's top 64, among patching's top 64: "
            + "; ".join(f"{n} {'/'.join(map(str, v))}" for n, v in verified.items())
            + f" (patched cells {'/'.join(str(m['patching']['patched']) for m in maps)}, "
            f"{'/'.join(str(m['seconds_patching']) for m in maps)} s)"
        )
    return "\n".join(lines)
