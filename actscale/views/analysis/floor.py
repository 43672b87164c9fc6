"""The logit-bias floor beside the runs Compare shows (`engine.floor`): one per dataset and split
among them, in the rows of `metrics_frame`, and the sentence that says what it is worth."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from actscale.engine.floor import logit_bias_floor
from actscale.runs.bundle import RunBundle
from actscale.runs.records import SplitMetrics
from actscale.views.analysis.tables import flips_text

FLOOR_METHOD = "logit-bias floor"


def floor_result(bundle: RunBundle) -> dict[str, Any] | None:
    """The floor on ``bundle``'s prompts and split (None where the run stores no per-prompt Δ)."""
    delta = bundle.analysis.get("delta.base")
    splits = [str(r.get("split") or "") for r in bundle.dataset]
    if delta is None or delta.numel() != len(splits):
        return None
    groups = [str(r.get("group") or "") for r in bundle.dataset]
    return logit_bias_floor(delta, splits, bundle.record.config.margin, groups)


def floor_frame(bundles: Iterable[RunBundle]) -> pd.DataFrame:
    """One floor per dataset (its prompts and split: the dataset hash) and margin among
    ``bundles``, as `metrics_frame` rows: method `FLOOR_METHOD`, run_id that of the first run on
    that dataset followed by ":floor"."""
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, float]] = set()
    for bundle in bundles:
        config = bundle.record.config
        key = (bundle.record.provenance.dataset_hash, config.margin)
        floor = None if key in seen else floor_result(bundle)
        if floor is None:
            continue
        seen.add(key)
        for split, metrics in floor["splits"].items():
            values = SplitMetrics.from_json(metrics).to_json()
            rows.append(
                {
                    "run_id": f"{bundle.run_id}:floor",
                    "method": FLOOR_METHOD,
                    "task": config.task,
                    "split": split,
                    "margin": config.margin,
                    **values,
                    "flip_acc": (values["flip_acc_pos"] + values["flip_acc_neg"]) / 2,
                    "base_pos": values["acc_base"],
                    "base_neg": 1 - values["acc_base"],
                }
            )
    return pd.DataFrame(rows)


def floor_text(bundles: Iterable[RunBundle]) -> str:
    """What the floor is and is worth, with its bias and test rates; "" without one."""
    found = next(((b, f) for b in bundles if (f := floor_result(b)) is not None), None)
    if found is None:
        return ""
    bundle, floor = found
    test: Mapping[str, Any] | None = floor["splits"].get("test")
    rates = f" Its {flips_text('test', test)} (unmodified → steered [95% Wilson interval])." if test else ""
    return (
        f"The **{FLOOR_METHOD}** adds ±{floor['bias']:.2f} to the two answer logits (one parameter: the largest "
        f"|Δ| of the {floor['n']} {floor['split']} prompts plus the margin {bundle.record.config.margin:g}, "
        f"chosen without reading test).{rates} It is effective and faithful (KL 0 on every other token) by "
        "construction and names no component: a method's rates mean something beyond it only with a map that "
        "passes its checks."
    )
