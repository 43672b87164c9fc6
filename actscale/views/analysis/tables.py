"""A run's metrics as tables: history, metrics with base rates and intervals, examples,
reliability, groups, and which runs Compare opens on."""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from actscale.engine.config import TrainConfig
from actscale.engine.interventions import effective_counts
from actscale.engine.objective import METRIC_NAMES, RATE_NAMES, wilson_interval
from actscale.engine.tasks.examples import SPLITS
from actscale.runs.bundle import RunBundle, RunListing
from actscale.runs.records import SplitMetrics
from actscale.views.analysis.arrays import run_method, train_token_mask
from actscale.views.words import counted


def history_frame(bundle: RunBundle) -> pd.DataFrame:
    return pd.DataFrame(bundle.history)


def metrics_frame(
    bundles: list[RunBundle] | list[RunListing],
    metrics_of: Callable[[Any], Mapping[str, SplitMetrics]] | None = None,
) -> pd.DataFrame:
    """One row per (run, split) with every metric: the tidy input of the comparison figures.

    Anything with ``run_id`` and a ``record`` will do (a `RunListing` too, so the Compare page
    never reads tensors); ``metrics_of(run)`` may complete a run's metrics (see
    `filled_metrics`). A run without ``n_components`` gets no minimality figure (NaN)."""
    rows = []
    for b in bundles:
        record = b.record
        if record is None:  # a listing whose configuration could not be read
            continue
        config = record.config
        for split, metrics in (metrics_of(b) if metrics_of else record.splits).items():
            rows.append(
                {
                    "run_id": b.run_id,
                    "method": config.method,
                    "task": config.task,
                    "split": split,
                    "lambda_m": config.lambda_m,
                    "lambda_f": config.lambda_f,
                    "margin": config.margin,
                    **metrics.to_json(),
                }
            )
    df = pd.DataFrame(rows)
    if {"flip_acc_pos", "flip_acc_neg"} <= set(df.columns):
        df["flip_acc"] = (df["flip_acc_pos"] + df["flip_acc_neg"]) / 2
    if "acc_base" in df.columns:
        df["base_pos"], df["base_neg"] = df["acc_base"], 1 - df["acc_base"]
    if "n_effective" in df.columns:
        # Runs stored before components were counted: their n_effective used other units.
        old = df["n_components"].isna() if "n_components" in df.columns else pd.Series(True, index=df.index)
        df["n_effective"] = df["n_effective"].where(~old)
        df["effective_frac"] = df["effective_frac"].where(~old) if "effective_frac" in df.columns else np.nan
    return df


def metrics_table(bundle: RunBundle) -> pd.DataFrame:
    """The run's metrics (docs/method.md §4, completed by `filled_metrics`), one row per metric, one
    column per split (train, val, test first); each rate also as "base → rate [interval]"."""
    metrics = {split: m.to_json() for split, m in filled_metrics(bundle).items()}
    splits = [s for s in SPLITS if s in metrics] + sorted(set(metrics) - set(SPLITS))
    names: list[str] = [f"{n} (base → rate [95% CI])" for n in RATE_NAMES[1:]]
    for split in splits:
        names += [k for k in metrics[split] if k not in names]
    names += [k for k in METRIC_NAMES if k not in names]  # one not stored (e.g. no interval by group): "n/a"

    def cell(split: str, name: str) -> Any:
        if name.endswith(" (base → rate [95% CI])"):
            return rate_text(SplitMetrics.from_json(metrics[split]), name.split(" ")[0])
        value = metrics[split].get(name)
        if value is None:
            return "n/a"
        if isinstance(value, list):
            return "[" + ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value) + "]"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    # Text cells: one column holds numbers, intervals and rates side by side.
    df = pd.DataFrame({split: [cell(split, k) for k in names] for split in splits}, index=names)
    df.index.name = "metric"
    return df.reset_index()


def examples_frame(bundle: RunBundle) -> pd.DataFrame:
    """Per prompt of the run's dataset: Δ before and after (β = ±1) and whether it flipped."""
    df = pd.DataFrame(bundle.dataset)
    for key, t in bundle.deltas().items():
        if len(t) == len(df):
            df[f"delta_{key}"] = t.numpy()
    if "delta_pos" in df and "delta_neg" in df:
        df["flipped_pos"] = df["delta_pos"] > 0
        df["flipped_neg"] = df["delta_neg"] < 0
    tokens = bundle.str_tokens()
    if tokens and len(tokens) == len(df):
        df["n_tokens"] = [len(t) for t in tokens]
    return df


def examples_flips_text(examples: pd.DataFrame) -> str:
    """The per-example table's flips over all its prompts, each after its base as every rate is
    (`rate_text`): ``"Flips over all 248 prompts (every split): β = +1 215 → 245, β = −1 33 → 242
    (unmodified → steered)."``; "" where the table has no Δ at β = ±1."""
    if not {"delta_base", "flipped_pos", "flipped_neg"} <= set(examples):
        return ""
    n, base = len(examples), int((examples["delta_base"] > 0).sum())
    pos, neg = int(examples["flipped_pos"].sum()), int(examples["flipped_neg"].sum())
    return (
        f"Flips over all {counted(n, 'prompt')} (every split): β = +1 {base} → {pos}, β = −1 {n - base} → {neg} "
        "(unmodified → steered)."
    )


def is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value  # not NaN


def change_delta(change: float, digits: int, then: str = "") -> tuple[str, dict[str, str]]:
    """A metric tile's change as text, and the tile's options: a change that rounds to zero is
    "±0.00" with neither arrow nor colour (it had been "+0.00" under a green arrow up, or
    "-0.00" under a red one down: a rate that did not move drawn as a gain or a loss)."""
    text = f"{change:+.{digits}f}"
    if float(text) == 0:
        return f"±{0:.{digits}f}{then}", {"delta_arrow": "off", "delta_color": "off"}
    return f"{text}{then}", {}


def rate_text(metrics: SplitMetrics, name: str, digits: int = 2) -> str:
    """``"0.00 → 0.97 [0.94, 0.99] (n = 200; by 12 groups [0.90, 1.00])"``: a rate after its base
    (`SplitMetrics.base_rate`) with its 95% Wilson interval and, where stored, its interval by
    group (bootstrap over groups); where the prompts come from too few groups for that
    (``"(n = 200 from 2 groups)"``), the count of groups, since the Wilson interval reads the
    prompts as independent and says nothing of other groups; what is not stored is left out;
    "" without the rate."""
    rate = metrics.rate(name)
    if rate is None:
        return ""
    base = metrics.base_rate(name)
    text = (f"{base:.{digits}f} → " if base is not None else "") + f"{rate:.{digits}f}"
    ci = metrics.interval(name)
    if ci is not None:
        text += f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    n, by_group, groups = metrics.n_prompts, metrics.cluster_interval(name), metrics.n_groups
    parts = (
        [f"n = {n}" + (f" from {counted(groups, 'group')}" if groups and by_group is None else "")]
        if n is not None
        else []
    )
    if by_group is not None:
        parts.append(f"by {metrics.n_groups} groups [{by_group[0]:.{digits}f}, {by_group[1]:.{digits}f}]")
    return text + (f" ({'; '.join(parts)})" if parts else "")


SPLIT_WORDS = {"val": "validation", "train": "training", "test": "test"}


def split_word(split: str) -> str:
    """A split's name in a sentence: "validation" for "val", "training" for "train"."""
    return SPLIT_WORDS.get(split, split)


def flips_text(split: str, metrics: Mapping[str, Any] | SplitMetrics, minus: str = "−", beta: float = 1.0) -> str:
    """``"validation flips: β = +1 0.90 → 1.00 [0.72, 1.00] (n = 10), β = −1 …"``: a split's flip
    rates from its stored `flip_metrics` (or their `SplitMetrics`), each after its base rate
    (`rate_text`); ``minus`` is the sign written for β = −1 (the command line writes "-"), ``beta``
    the strength they were measured at (±1 unless evaluated at another)."""
    name = split_word(split)
    read = metrics if isinstance(metrics, SplitMetrics) else SplitMetrics.from_json(metrics)
    pos, neg = rate_text(read, "flip_acc_pos"), rate_text(read, "flip_acc_neg")
    return f"{name} flips: β = +{beta:g} {pos}, β = {minus}{beta:g} {neg}"


def target_text(info: Mapping[str, Any], config: TrainConfig) -> str | None:
    """One sentence where a run did not reach its validation target (`training.target_outcome`),
    with what to try; None where it did, or for a run stored before targets were recorded."""
    target = info.get("target")
    if not isinstance(target, Mapping) or target.get("met", True):
        return None
    split = split_word(str(target["split"]))
    steps, cycles = int(target["steps"]), int(target["cycles_run"])
    took = f"{steps * cycles} steps" + (f" ({cycles} cycles of {steps})" if cycles > 1 else "")
    prompts = "prompt flips" if int(target["n"]) == 1 else "prompts flip"
    return (
        f"Validation target not reached: after {took} the {target['n']} {split} {prompts} "
        f"{target['flip_acc_pos']:.2f} at β = +1 and {target['flip_acc_neg']:.2f} at β = −1, where the target is "
        f"{target['target']:.2f} in both directions; try more cycles, a higher learning rate (now "
        f"{config.lr:g}) or more training prompts."
    )


def filled_metrics(bundle: RunBundle) -> dict[str, SplitMetrics]:
    """The run's metrics, completed for bundles written before baselines, intervals and
    comparable minimality existed: ``acc_base`` from the stored per-prompt Δ, intervals from the
    counts, ``n_components``/``n_effective``/``effective_frac`` recomputed from the stored arrays
    (docs/method.md §4) — or None ("n/a") where the arrays are not there, never the old figure, which
    counted in other units."""
    out = dict(bundle.record.splits)
    if all(m.n_components is not None for m in out.values()):
        return out
    counts = recompute_minimality(bundle)
    splits = [str(row.get("split", "")) for row in bundle.dataset]
    base = bundle.deltas().get("base")
    for split, m in out.items():
        changes: dict[str, Any] = {"n_components": None, "n_effective": None, "effective_frac": None}
        if counts:
            changes.update(n_components=counts[0], n_effective=counts[1])
            changes["effective_frac"] = counts[1] / counts[0] if counts[0] else None
        rows = [i for i, s in enumerate(splits) if s == split]
        if m.acc_base is None and base is not None and len(base) == len(splits) and rows:
            changes["acc_base"] = float((base[rows] > 0).double().mean())
        m = dataclasses.replace(m, **changes)
        for name in RATE_NAMES:
            rate, n = m.rate(name), m.n_prompts
            if m.interval(name) is None and rate is not None and n is not None:
                lo, hi = wilson_interval(round(rate * n), n)
                interval: dict[str, Any] = {f"{name}_ci95": (round(lo, 6), round(hi, 6))}
                m = dataclasses.replace(m, **interval)
        out[split] = m
    return out


def recompute_minimality(bundle: RunBundle) -> tuple[int, int] | None:
    """(n_components, n_effective) of docs/method.md §4 from a bundle's stored arrays; None when an
    array it needs is not stored."""
    method = run_method(bundle)
    tau = bundle.record.config.tau
    try:
        return effective_counts(method, bundle.sites, bundle.params, bundle.analysis, train_token_mask(bundle), tau)
    except (KeyError, RuntimeError, ValueError, IndexError):
        return None


def reliability(bundle: RunBundle, split: str = "test") -> tuple[pd.DataFrame, dict[str, float]]:
    """Each prompt of ``split`` with its Δ at β = −1, 0, +1, and the summary a sceptical reader
    asks for: the share never flipped (β = +1 left Δ ≤ 0, or β = −1 left Δ ≥ 0), the share pushed
    the wrong way (β moved Δ against its direction), per direction. The frame is sorted worst
    first: by how far the harder direction is from flipping."""
    df = examples_frame(bundle)
    needed = {"delta_base", "delta_pos", "delta_neg"}
    if not needed <= set(df.columns) or "split" not in df:
        return pd.DataFrame(), {}
    df = df[df["split"] == split].copy()
    if df.empty:
        return df, {}
    df["moved_pos"] = df["delta_pos"] - df["delta_base"]
    df["moved_neg"] = df["delta_neg"] - df["delta_base"]
    # How far each direction is from its goal: positive = not flipped (Δ must be > 0 at β = +1, < 0 at β = −1).
    df["shortfall"] = np.maximum(-df["delta_pos"], df["delta_neg"])
    summary = {
        "n": float(len(df)),
        "never_flipped_pos": float((df["delta_pos"] <= 0).mean()),
        "never_flipped_neg": float((df["delta_neg"] >= 0).mean()),
        "wrong_way_pos": float((df["moved_pos"] < 0).mean()),
        "wrong_way_neg": float((df["moved_neg"] > 0).mean()),
    }
    columns = [
        c
        for c in (
            "prompt",
            "correct",
            "wrong",
            "group",
            "delta_neg",
            "delta_base",
            "delta_pos",
            "moved_neg",
            "moved_pos",
            "shortfall",
        )
        if c in df.columns
    ]
    return df.sort_values("shortfall", ascending=False)[columns].reset_index(drop=True), summary


def group_table(groups: list[dict[str, Any]]) -> pd.DataFrame:
    """The per-group rates stored with a run, one row per (split, group), rates as text with
    their base and interval."""
    rows = []
    for g in groups:
        if isinstance(g, dict):
            rows.append(
                {
                    "split": g.get("split"),
                    "group": g.get("group"),
                    "n": g.get("n_prompts"),
                    "unmodified prefers a+": rate_text(SplitMetrics.from_json(g), "acc_base"),
                    "flip β = +1": rate_text(SplitMetrics.from_json(g), "flip_acc_pos"),
                    "flip β = −1": rate_text(SplitMetrics.from_json(g), "flip_acc_neg"),
                }
            )
    return pd.DataFrame(rows)


def best_on_validation(df: pd.DataFrame) -> str | None:
    """The run a sweep would pick, read on the validation split only: the highest mean flip
    rate, then the lowest faithfulness KL, then the fewest effective components. None when
    fewer than two runs have validation metrics."""
    val = df[df["split"] == "val"]
    if val["run_id"].nunique() < 2 or "flip_acc" not in val:
        return None
    keys = val.assign(
        neg_flip=-val["flip_acc"],
        kl=val.get("faithfulness_kl", 0.0),
        frac=val["effective_frac"].fillna(1.0) if "effective_frac" in val else 1.0,
    )
    return str(keys.sort_values(["neg_flip", "kl", "frac", "run_id"]).iloc[0]["run_id"])


# What makes two runs' prompts and split the same (apart from the task and model): the data
# seed draws the prompts and the split; the rest sizes it or holds prompts out.
SPLIT_KEYS = (
    "data_seed", "n_prompts", "n_test", "val_frac", "test_frac", "templates", "test_templates",
    "test_groups", "memory_is_correct", "dataset",
)  # fmt: skip


def same_split(a: TrainConfig, b: TrainConfig) -> bool:
    """Whether two runs' configs drew the same prompts into the same split (`SPLIT_KEYS`)."""
    return all(getattr(a, k) == getattr(b, k) for k in SPLIT_KEYS)


def default_comparison(rows: list[RunListing]) -> list[str]:
    """What Compare opens on: for the newest readable run's task and model, the latest run of
    each method (methods in the order their latest runs were made), preferring, per method, a
    run on the newest run's split and seed, then on its split, then on its seed. ``rows``:
    newest first, as `RunStore.list` orders them."""
    configs = [(r.run_id, r.record.config) for r in rows if r.ok and r.record is not None]
    if not configs:
        return []
    newest = configs[0][1]
    chosen: dict[str, str] = {}
    best: dict[str, tuple[bool, bool, bool]] = {}
    for run_id, config in configs:  # newest first: among equal scores the first one seen (the latest) is kept
        if (config.task, config.model) != (newest.task, newest.model):
            continue
        split, seed = same_split(config, newest), config.seed == newest.seed
        score = (split and seed, split, seed)
        if config.method not in best or score > best[config.method]:
            best[config.method], chosen[config.method] = score, run_id
    return list(chosen.values())
