"""A store's runs as a table: one row per run with its headline test metrics."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pandas as pd

from actscale.runs.bundle import RunListing
from actscale.runs.records import SplitMetrics
from actscale.views.analysis import (
    rate_text,
)

# Columns of the runs table, in order. Headline metrics are the test split's (docs/method.md §4).
RUN_COLUMNS = (
    "run_id", "status", "created", "model", "task", "method", "sites", "steps",
    "test_acc_base", "test_flip_acc_pos", "test_flip_acc_neg", "test β = +1", "test β = −1", "test_n",
    "test_faithfulness_kl", "n_effective", "n_components", "effective_frac", "n_params", "reason",
)  # fmt: skip


def short_date(created: Any) -> str:
    """``2026-11-24T05:12:01+00:00`` -> ``2026-11-24 05:12`` (UTC, as stored); '' if unreadable."""
    try:
        return datetime.fromisoformat(str(created)).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return ""


def run_row(listing: RunListing) -> dict[str, Any]:
    """One row of the runs table; a broken run keeps its id and the reason, nothing else."""
    record = listing.record
    if not listing.ok or record is None:
        return {"run_id": listing.run_id, "status": "broken", "reason": listing.reason}
    c, test = record.config, record.split("test")
    any_split = test if "test" in record.splits else next(iter(record.splits.values()), SplitMetrics())
    return {
        "run_id": listing.run_id,
        "status": "ok",
        "created": short_date(record.provenance.created),
        "model": c.model,
        "task": c.task,
        "method": c.method,
        "sites": ",".join(c.sites),
        "steps": c.steps,
        "test_acc_base": test.acc_base,
        "test_flip_acc_pos": test.flip_acc_pos,
        "test_flip_acc_neg": test.flip_acc_neg,
        # Each flip rate after the unmodified model's rate, with its interval (docs/method.md §4).
        "test β = +1": rate_text(test, "flip_acc_pos"),
        "test β = −1": rate_text(test, "flip_acc_neg"),
        "test_n": test.n_prompts,
        "test_faithfulness_kl": test.faithfulness_kl,
        # Runs stored before components were counted: their n_effective used other units (n/a).
        "n_effective": any_split.n_effective if any_split.n_components is not None else None,
        "n_components": any_split.n_components,
        "effective_frac": any_split.effective_frac,
        "n_params": any_split.n_params,
        "reason": "",
    }


def runs_frame(listings: Iterable[RunListing]) -> pd.DataFrame:
    """The runs table (newest first, as `RunStore.list` orders them), broken runs included."""
    return pd.DataFrame([run_row(r) for r in listings], columns=list(RUN_COLUMNS))


def headline_frame(listings: Iterable[RunListing]) -> pd.DataFrame:
    """The Home page's short table: readable runs with their headline metrics, formatted."""
    df = runs_frame(r for r in listings if r.ok)

    def effective(row: pd.Series) -> str:
        ok = pd.notna(row["n_effective"]) and pd.notna(row["n_components"])
        return f"{int(row['n_effective'])} / {int(row['n_components'])}" if ok else "n/a"

    return pd.DataFrame(
        {
            "run": df["run_id"],
            "created": df["created"],
            "model": df["model"],
            "task": df["task"],
            "method": df["method"],
            "test flip β=+1 (unmodified → steered)": df["test β = +1"],
            "test flip β=−1 (unmodified → steered)": df["test β = −1"],
            "faithfulness KL": df["test_faithfulness_kl"].map(lambda v: f"{v:.3g}" if pd.notna(v) else ""),
            "effective / components": df.apply(effective, axis=1) if len(df) else pd.Series(dtype=str),
        }
    )


def human_size(n_bytes: int) -> str:
    """``4.9 MB``, ``812 kB``, ``97 B`` (decimal units, as browsers show downloads)."""
    if n_bytes >= 1_000_000:
        return f"{n_bytes / 1_000_000:.1f} MB"
    if n_bytes >= 1_000:
        return f"{n_bytes / 1_000:.0f} kB"
    return f"{n_bytes} B"
