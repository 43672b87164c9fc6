"""A stored run as tables and arrays: what the figures draw and the pages list, computed from
a bundle alone (no model). Nothing here depends on which method made the run: what a
component is and how large it is comes from the method's class (`interventions`)."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from actscale.engine.interventions import Intervention, effective_counts, method_class
from actscale.engine.objective import RATE_NAMES, wilson_interval
from actscale.runs.store import RunBundle, RunListing


def run_method(bundle: RunBundle) -> type[Intervention]:
    """The class of the method that made ``bundle``."""
    return method_class(bundle.method)


def position_labels(bundle: RunBundle) -> list[str]:
    """A label per position of a fixed-length run, as stored at training time: ``"3:Mary…"``
    with absolute positions, ``"−1: in"`` / ``"−9: The (40%)"`` counted back from the answer;
    plain numbers for a bundle that has none."""
    labels = bundle.summary.get("position_labels")
    n_pos = int(bundle.config["n_pos"])
    if isinstance(labels, list) and len(labels) == n_pos:
        return [str(x) for x in labels]
    return [str(i) for i in range(n_pos)]


def position_coverage(bundle: RunBundle) -> list[float] | None:
    """Per position, the share of training prompts long enough to reach it (answer-aligned
    runs reach their early positions through long prompts only), as stored at training time;
    None for a bundle that has none."""
    coverage = bundle.summary.get("position_coverage")
    n_pos = int(bundle.config["n_pos"])
    if isinstance(coverage, list) and len(coverage) == n_pos and all(isinstance(c, (int, float)) for c in coverage):
        return [float(c) for c in coverage]
    return None


def rare_positions(bundle: RunBundle, below: float = 0.5) -> list[str]:
    """The labels of the positions fewer than ``below`` of the training prompts reach: their
    parameters were learned from few prompts (or none)."""
    coverage = position_coverage(bundle)
    if coverage is None:
        return []
    labels = position_labels(bundle)
    return [label for label, share in zip(labels, coverage) if share < below]


def layer_labels(n: int) -> list[str]:
    return [str(i) for i in range(n)]


def component_values(bundle: RunBundle, site: str) -> np.ndarray:
    """The size of each component at ``site`` (|α| for ActivScalar, ‖v‖/‖h‖ for SteerVec, ...)
    shaped by the method's `component_axes`."""
    return run_method(bundle).component_values(bundle.params, bundle.analysis, site).detach().float().numpy()


def head_values(bundle: RunBundle, position: int | None) -> np.ndarray:
    """[layer head] values of the head site at one position, or summed over positions (None).
    Methods whose components have no position (DynScalar) give theirs as they are."""
    values = component_values(bundle, "head")
    axes = run_method(bundle).component_axes("head")
    if "position" not in axes:
        return values
    at = axes.index("position")
    return values.sum(at) if position is None else np.take(values, position, axis=at)


def dyn_prompt_scalars(bundle: RunBundle, site: str, index: int) -> tuple[np.ndarray, list[str]]:
    """The scalars α DynScalar produced on dataset prompt ``index`` (β = +1): [layer pos]."""
    stored = bundle.dynalpha(site)
    if stored is None:
        raise KeyError(f"dynalpha.{site}")
    alpha = stored[index]  # [layer pos (head)], left-padded
    if alpha.dim() == 3:
        alpha = alpha.mean(-1)
    tokens = bundle.str_tokens()
    toks = tokens[index] if index < len(tokens) else []
    n_real = len(toks) or alpha.shape[1]
    return alpha[:, -n_real:].numpy(), [f"{i}:{t}" for i, t in enumerate(toks)] or [str(i) for i in range(n_real)]


def top_components(bundle: RunBundle, k: int = 20) -> pd.DataFrame:
    """The ``k`` components with the largest size (method's `component_values`), one row each
    with its site, layer and, where the method has them, position (and its token) and head."""
    method = run_method(bundle)
    labels = position_labels(bundle)
    parts = []
    for site in bundle.sites:
        values = component_values(bundle, site)
        flat = np.abs(values).reshape(-1)
        if flat.size == 0:
            continue
        # Only the k largest of each site can make the overall top k (ties at the cut kept).
        cut = np.partition(flat, -min(k, flat.size))[-min(k, flat.size)] if k > 0 else np.inf
        chosen = np.flatnonzero(flat >= cut)  # ascending: the order np.ndindex would give
        index = dict(zip(method.component_axes(site), np.unravel_index(chosen, values.shape)))
        part: dict = {
            "site": site,
            "layer": index["layer"],
            "value": values.reshape(-1)[chosen].astype(float),
            "metric": method.magnitude_name,
        }
        if "position" in index:
            part["position"] = index["position"]
            part["token"] = [labels[i] for i in index["position"]]
        part["head"] = index.get("head")
        parts.append(pd.DataFrame(part))
    if not parts:
        return pd.DataFrame()
    df = pd.concat(parts, ignore_index=True)
    df["head"] = df["head"].astype("Int64")  # empty outside the head site
    df["abs"] = df["value"].abs()
    return df.sort_values(["abs", "site", "layer"], ascending=[False, True, True]).head(k).reset_index(drop=True)


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


# ---------------------------------------------------------------- rates read against their base
def base_rate(metrics: Mapping[str, Any], name: str) -> float | None:
    """What a rate is read against (docs/method.md §4): ``flip_acc_pos`` against the share of prompts
    the unmodified model already answers with a+ (``acc_base``), ``flip_acc_neg`` against the
    share it already answers with a− (1 − ``acc_base``)."""
    base = metrics.get("acc_base")
    if not _is_number(base):
        return None
    return {"flip_acc_pos": float(base), "flip_acc_neg": 1.0 - float(base)}.get(name)  # type: ignore[arg-type]


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value  # not NaN


def rate_text(metrics: Mapping[str, Any], name: str, digits: int = 2) -> str:
    """``"0.00 → 0.97 [0.94, 0.99] (n = 200)"``: a rate after its base and with its 95% interval;
    what is not stored is left out; "" without the rate."""
    rate = metrics.get(name)
    if not _is_number(rate):
        return ""
    base = base_rate(metrics, name)
    text = (f"{base:.{digits}f} → " if base is not None else "") + f"{rate:.{digits}f}"
    ci = metrics.get(f"{name}_ci95")  # metrics.json may be hand-edited: only numbers are used
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_is_number(x) for x in ci):
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


def train_token_mask(bundle: RunBundle) -> torch.Tensor:
    """[n pos] bool: the real tokens of the training prompts, from the stored token strings
    (prompts are left-padded to the bundle's width)."""
    tokens, n_pos = bundle.str_tokens(), int(bundle.config.get("n_pos", 0))
    width = max([n_pos, *(len(t) for t in tokens)]) if tokens else n_pos
    mask = torch.zeros(len(bundle.dataset), width, dtype=torch.bool)
    for i, row in enumerate(bundle.dataset):
        if row.get("split") == "train" and i < len(tokens):
            mask[i, width - len(tokens[i]) :] = True
    return mask


def recompute_minimality(bundle: RunBundle) -> tuple[int, int] | None:
    """(n_components, n_effective) of docs/method.md §4 from a bundle's stored arrays; None when an
    array it needs is not stored."""
    method = run_method(bundle)
    tau = float(bundle.config.get("tau", 0.05))
    try:
        return effective_counts(method, bundle.sites, bundle.params, bundle.analysis, train_token_mask(bundle), tau)
    except (KeyError, RuntimeError, ValueError, IndexError):
        return None


# ---------------------------------------------------------------- per-example reliability
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


# ---------------------------------------------------------------- the map checks (docs/method.md §7)
def run_checks_data(bundle: RunBundle) -> dict[str, Any] | None:
    """The run's checks.json content, or None until the checks were run."""
    found = bundle.checks()
    return found[0] if found else None


def checks_tensor(bundle: RunBundle, name: str) -> torch.Tensor | None:
    found = bundle.checks()
    return found[1].get(name) if found else None


def _interval(ci: Any) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if isinstance(ci, list) and len(ci) == 2 else ""


def k90_text(checks: Mapping[str, Any]) -> str:
    """One sentence: how many components carry the flips, against the random control."""
    m = checks.get("map") or {}
    if "k90" not in m:
        return ""
    k90, n = m["k90"], m["n_components"]
    rand = next((r for r in m.get("random", []) if r["k"] == k90), None)
    learned: dict[str, Any] = next((r for r in m["sufficiency"] if r["k"] == k90), {})
    text = (
        f"k90 = {k90} of {n:,} components ({100 * k90 / n:.1f}%): keeping only the top {k90} reaches "
        f"{learned.get('mean_flip', float('nan')):.2f} mean flip rate, 90% of the full run's "
        f"{m['full']['mean_flip']:.2f} (on {m['prompts']['n']} test prompts)."
    )
    if rand:
        text += (
            f" The same {k90} magnitudes on random components: median {rand['mean_flip_median']:.2f}, "
            f"95th percentile {rand['mean_flip_p95']:.2f} over {rand['draws']} draws"
            + (
                " — the learned components beat every draw but the top 5%."
                if m.get("learned_above_random_p95")
                else " — the learned components do NOT beat the random control's 95th percentile."
            )
        )
    return text


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
                    "95% CI (+1)": _interval(r.get("flip_acc_pos_ci95")),
                    "flip β = −1": round(r["flip_acc_neg"], 3),
                    "95% CI (−1)": _interval(r.get("flip_acc_neg_ci95")),
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
        rows.append(
            {
                "k": r["k"],
                "draws": r["draws"],
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
                "95% CI": _interval(r.get("prefers_pos_ci95")),
                "prefers a−": round(r["prefers_neg"], 3),
                "Δ": round(r["logit_diff"], 3),
                "KL (full vocabulary)": round(r["kl_full"], 4),
                "scaling them: flip β = −1": round(s.get("flip_acc_neg", float("nan")), 3),
                "scaling them: flip β = +1": round(s.get("flip_acc_pos", float("nan")), 3),
            }
        )
    return pd.DataFrame(rows)


def stability_tables(checks: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(runs, pairs, components selected in every seed) of the stability check."""
    s = checks.get("stability") or {}
    runs = pd.DataFrame(s.get("runs", []))
    pairs = pd.DataFrame(
        [
            {
                "seed a": p["seed_a"],
                "seed b": p["seed_b"],
                "rank correlation (Spearman)": round(p["spearman"], 3),
                f"top-{s.get('k_top')} shared": p["top_k_shared"],
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
                "95% CI (+1)": _interval(c.get("flip_acc_pos_ci95")),
                "flip β = −1": c.get("flip_acc_neg"),
                "95% CI (−1)": _interval(c.get("flip_acc_neg_ci95")),
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


# ---------------------------------------------------------------- the default comparison
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


# ---------------------------------------------------------------- one component, by its indices
def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def component_label(bundle: RunBundle, site: str, index: tuple[int, ...]) -> str:
    """``"layer 12 · position 3:Mary · head 2"``: a component named along the method's axes."""
    labels = position_labels(bundle) if "position" in run_method(bundle).component_axes(site) else []
    parts = []
    for axis, i in zip(run_method(bundle).component_axes(site), index):
        parts.append(f"position {labels[i]}" if axis == "position" else f"{axis} {i}")
    return " · ".join(parts)


def components(bundle: RunBundle, site: str) -> list[tuple[tuple[int, ...], float]]:
    """Every component at ``site`` as (its indices along the method's axes, its value), the
    largest in absolute value first (ties in index order)."""
    values = component_values(bundle, site)
    flat = values.reshape(-1)
    order = np.argsort(-np.abs(flat), kind="stable")
    return [(tuple(int(i) for i in np.unravel_index(k, values.shape)), float(flat[k])) for k in order]


def describe_component(bundle: RunBundle, site: str, index: tuple[int, ...]) -> str:
    """One sentence on a component: its value, its rank by size among the site's components,
    and whether it counts as effective (its relative magnitude above τ), from the bundle alone."""
    method = run_method(bundle)
    values = component_values(bundle, site)
    value = float(values[index])
    rank = int((np.abs(values) > abs(value)).sum()) + 1
    text = (
        f"{method.magnitude_label} at {site}, {component_label(bundle, site, index)} = {value:+.4g}: "
        f"the {'' if rank == 1 else _ordinal(rank) + ' '}largest in size of the {values.size:,} components at this site"
    )
    try:
        relative = method.relative_magnitude(bundle.params, bundle.analysis, site, train_token_mask(bundle))
        rel = float(relative.detach().float().numpy()[index])
    except (KeyError, ValueError, IndexError, RuntimeError, TypeError):
        return text + "."
    tau = float(bundle.config.get("tau", 0.05))
    verdict = "effective" if rel > tau else "not effective"
    return text + f"; it changes its activation by {rel:.3g} of its size ({verdict} at τ = {tau:g})."


def checks_frame(bundles: list[RunBundle]) -> pd.DataFrame:
    """One row per run with map checks: k90 (count and share of components), the learned top-k
    against the random control, necessity, stability: what Compare shows next to the metrics."""
    rows = []
    for b in bundles:
        data = run_checks_data(b)
        if not data or "map" not in data:
            continue
        m = data["map"]
        rand: dict[str, Any] = next((r for r in m.get("random", []) if r["k"] == m["k90"]), {})
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
                "beats random": bool(m.get("learned_above_random_p95")),
                "without top-k90": round(nec.get("mean_flip", float("nan")), 3),
                "full run": round(m["full"]["mean_flip"], 3),
                "seeds": len(stab.get("runs", [])) or None,
                "selected in every seed": stab.get("n_selected_all"),
                "mean rank correlation": None if not stab else round(stab["mean_spearman"], 3),
                "prompts": m["prompts"]["n"],
            }
        )
    return pd.DataFrame(rows)
