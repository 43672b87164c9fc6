"""The generalisation matrix over groups (docs/method.md §7.6): one run per group, tested
on every other group."""

from __future__ import annotations

from typing import Any

from actscale.checks.options import MAX_GENERALISATION_GROUPS
from actscale.checks.over_seeds import Trainer
from actscale.engine.config import TrainConfig
from actscale.engine.tasks import Example
from actscale.engine.tasks.registry import task_spec
from actscale.errors import ActscaleError
from actscale.runs.bundle import RunBundle
from actscale.runs.records import SplitMetrics


def run_groups(bundle: RunBundle) -> list[str]:
    """The groups of a run's prompts (IOI template families, CCC countries, a file's groups)."""
    return sorted({str(r.get("group") or "") for r in bundle.dataset} - {""})


def generalisation_configs(bundle: RunBundle) -> list[tuple[str, TrainConfig]]:
    """One configuration per group: trained on that group alone, every other group held out
    for test (each run's per-group test metrics are one row of the matrix; `TaskSpec.trained_on`)."""
    groups = run_groups(bundle)
    if len(groups) < 2:
        carry = f"one group ({groups[0]!r})" if groups else "no group"
        raise ActscaleError(f"run {bundle.run_id}'s prompts carry {carry}: the generalisation matrix needs at least 2")
    if len(groups) > MAX_GENERALISATION_GROUPS:
        raise ActscaleError(
            f"run {bundle.run_id}'s prompts carry {len(groups)} groups; the matrix trains one run per group, "
            f"so it takes at most {MAX_GENERALISATION_GROUPS}"
        )
    base = bundle.record.config
    return [(g, task_spec(base.task).trained_on(base, g, groups)) for g in groups]


def generalisation(bundle: RunBundle, trainer: Trainer) -> dict[str, Any]:
    """The matrix of docs/method.md §7.6: row = the group trained on, column = the group tested on
    (the diagonal: the trained group's own validation prompts), flip rates with intervals."""
    groups = run_groups(bundle)
    pairs = generalisation_configs(bundle)
    # A file's prompts, their splits cleared: each run splits them by its own held-out groups.
    examples = (
        [Example.from_record({**r, "split": ""}) for r in bundle.dataset]
        if task_spec(bundle.record.config.task).from_file
        else None
    )
    runs = trainer([cfg for _, cfg in pairs], examples)
    cells = []
    for (train_group, _), run in zip(pairs, runs, strict=True):
        by_group = {(g["split"], g["group"]): g for g in run.info.get("group_metrics", [])}
        for test_group in groups:
            split = "val" if test_group == train_group else "test"
            g = by_group.get((split, test_group))
            cell: dict[str, Any] = {"train": train_group, "test": test_group, "split": split, "run_id": run.run_id}
            if g is None or not g.get("n_prompts"):
                cell["n_prompts"] = 0  # e.g. no prompt of the run's one length in that group
            else:
                cell.update({k: g[k] for k in g if k not in ("split", "group")})
                cell["mean_flip"] = SplitMetrics.from_json(g).mean_flip
            cells.append(cell)
    return {"groups": groups, "method": bundle.method, "cells": cells}
