"""A run's metrics as tables: history, metrics with base rates and intervals, examples,
reliability, groups, and which runs Compare opens on."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from actscale.engine.interventions import effective_counts
from actscale.engine.objective import RATE_NAMES, wilson_interval
from actscale.runs.bundle import RunBundle, RunListing
from actscale.views.analysis.arrays import run_method, train_token_mask


def history_frame(bundle: RunBundle) -> pd.DataFrame:
    return pd.DataFrame(bundle.history)


def metrics_frame(
    bundles: list[RunBundle] | list[RunListing],
    metrics_of: Callable[[Any], Mapping[str, Mapping[str, Any]]] | None = None,
) -> pd.DataFrame:
    """One row per (run, split) with every metric: the tidy input of the comparison figures.

    Anything with ``run_id``, ``config`` and ``metrics`` will do (a `RunListing` too, so the
    Compare page never reads tensors); ``metrics_of(run)`` may complete a run's metrics (see
    `filled_metrics`). A run without ``n_components`` gets no minimality figure (NaN)."""
    rows = []
    for b in bundles:
        for split, metrics in (metrics_of(b) if metrics_of else b.metrics).items():
            rows.append(
                {
                    "run_id": b.run_id,
                    "method": b.config.get("method"),
                    "task": b.config.get("task"),
                    "split": split,
                    "lambda_m": b.config.get("lambda_m"),
                    "lambda_f": b.config.get("lambda_f"),
                    "margin": b.config.get("margin"),
                    **metrics,
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
    metrics = filled_metrics(bundle)
    order = ("train", "val", "test")
    splits = [s for s in order if s in metrics] + sorted(set(metrics) - set(order))
    names: list[str] = [f"{n} (base → rate [95% CI])" for n in RATE_NAMES[1:]]
    for split in splits:
        names += [k for k in metrics[split] if k not in names]

    def cell(split: str, name: str) -> Any:
        if name.endswith(" (base → rate [95% CI])"):
            return rate_text(metrics[split], name.split(" ")[0])
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


def base_rate(metrics: Mapping[str, Any], name: str) -> float | None:
    """What a rate is read against (docs/method.md §4): ``flip_acc_pos`` against the share of prompts
    the unmodified model already answers with a+ (``acc_base``), ``flip_acc_neg`` against the
    share it already answers with a− (1 − ``acc_base``)."""
    base = metrics.get("acc_base")
    if not is_number(base):
        return None
    return {"flip_acc_pos": float(base), "flip_acc_neg": 1.0 - float(base)}.get(name)  # type: ignore[arg-type]


def is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value  # not NaN


def rate_text(metrics: Mapping[str, Any], name: str, digits: int = 2) -> str:
    """``"0.00 → 0.97 [0.94, 0.99] (n = 200)"``: a rate after its base and with its 95% interval;
    what is not stored is left out; "" without the rate."""
    rate = metrics.get(name)
    if not is_number(rate):
        return ""
    base = base_rate(metrics, name)
    text = (f"{base:.{digits}f} → " if base is not None else "") + f"{rate:.{digits}f}"
    ci = metrics.get(f"{name}_ci95")  # metrics.json may be hand-edited: only numbers are used
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(is_number(x) for x in ci):
        text += f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    n = metrics.get("n_prompts")
    return text + (f" (n = {int(n)})" if isinstance(n, numbers.Integral) and not isinstance(n, bool) else "")


def filled_metrics(bundle: RunBundle) -> dict[str, dict[str, Any]]:
    """The run's metrics, completed for bundles written before baselines, intervals and
    comparable minimality existed: ``acc_base`` from the stored per-prompt Δ, intervals from the
    counts, ``n_components``/``n_effective``/``effective_frac`` recomputed from the stored arrays
    (docs/method.md §4) — or None ("n/a") where the arrays are not there, never the old figure, which
    counted in other units."""
    out: dict[str, dict[str, Any]] = {split: dict(m) for split, m in bundle.metrics.items()}
    if all("n_components" in m for m in out.values()):
        return out
    counts = recompute_minimality(bundle)
    splits = [str(row.get("split", "")) for row in bundle.dataset]
    base = bundle.deltas().get("base")
    for split, m in out.items():
        m["n_components"], m["n_effective"] = counts if counts else (None, None)
        m["effective_frac"] = counts[1] / counts[0] if counts and counts[0] else None
        rows = [i for i, s in enumerate(splits) if s == split]
        if "acc_base" not in m and base is not None and len(base) == len(splits) and rows:
            m["acc_base"] = float((base[rows] > 0).double().mean())
        n = m.get("n_prompts")
        for name in RATE_NAMES:
            if f"{name}_ci95" not in m and isinstance(m.get(name), float) and isinstance(n, int):
                m[f"{name}_ci95"] = [round(x, 6) for x in wilson_interval(round(m[name] * n), n)]
    return out


def recompute_minimality(bundle: RunBundle) -> tuple[int, int] | None:
    """(n_components, n_effective) of docs/method.md §4 from a bundle's stored arrays; None when an
    array it needs is not stored."""
    method = run_method(bundle)
    tau = float(bundle.config["tau"])
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
                    "unmodified prefers a+": rate_text(g, "acc_base"),
                    "flip β = +1": rate_text(g, "flip_acc_pos"),
                    "flip β = −1": rate_text(g, "flip_acc_neg"),
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


def _data_seed(config: Mapping[str, Any]) -> Any:
    # A config that leaves data_seed unset draws its prompts with the seed.
    value = config.get("data_seed")
    return config.get("seed") if value is None else value


def same_split(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two run configs drew the same prompts into the same split (`SPLIT_KEYS`)."""
    if _data_seed(a) != _data_seed(b):
        return False
    return all(a.get(k) == b.get(k) for k in SPLIT_KEYS if k != "data_seed")


def default_comparison(rows: list[RunListing]) -> list[str]:
    """What Compare opens on: for the newest readable run's task and model, the latest run of
    each method (methods in the order their latest runs were made), preferring, per method, a
    run on the newest run's split and seed, then on its split, then on its seed. ``rows``:
    newest first, as `RunStore.list` orders them."""
    rows = [r for r in rows if r.ok]
    if not rows:
        return []
    newest = rows[0].config
    pool = [
        r for r in rows if r.config.get("task") == newest.get("task") and r.config.get("model") == newest.get("model")
    ]
    chosen: dict[str, str] = {}
    best: dict[str, tuple[bool, bool, bool]] = {}
    for r in pool:  # newest first: among equal scores the first one seen (the latest) is kept
        split, seed = same_split(r.config, newest), r.config.get("seed") == newest.get("seed")
        score = (split and seed, split, seed)
        method = str(r.config.get("method"))
        if method not in best or score > best[method]:
            best[method], chosen[method] = score, r.run_id
    return list(chosen.values())
