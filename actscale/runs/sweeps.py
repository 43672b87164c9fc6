"""Sweeps: one base configuration trained over a grid of λ_M, λ_F, m (and seeds).

Pure functions from a base run's config and dataset to the list of configurations and the
examples they train on; who trains them (a background job, later other executors) is the
caller's business (`executors.run_configs`: this process or a Ray cluster). No Streamlit here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import product
from typing import Any

from actscale.engine.tasks import Example
from actscale.engine.training import TrainConfig
from actscale.errors import ActscaleError

MAX_SWEEP = 27  # runs one in-process sweep may launch (3 values of each of λ_M, λ_F and m)
MAX_CLUSTER_SWEEP = 1000  # runs one sweep on a Ray cluster may launch


def check_sweep_size(n_runs: int, limit: int = MAX_SWEEP) -> None:
    """Raise ActscaleError when a sweep of ``n_runs`` runs is over ``limit``."""
    if n_runs > limit:
        raise ActscaleError(f"that sweep is {n_runs} runs; at most {limit} at a time")


def sweep_configs(
    base: TrainConfig,
    lambda_ms: Sequence[float],
    lambda_fs: Sequence[float],
    margins: Sequence[float],
    seeds: Sequence[int] | None = None,
    steps: int | None = None,
    limit: int = MAX_SWEEP,
) -> list[TrainConfig]:
    """Every combination of ``lambda_ms`` × ``lambda_fs`` × ``margins`` × ``seeds`` on the
    configuration ``base`` (a stored run's: ``bundle.record.config``), in that order:
    λ_M outermost, the seed innermost. ``seeds`` defaults to the base's seed, ``steps`` to the
    base's steps. A value given twice counts once (the same run, trained once), and so does a
    combination the method does not read (DiffMean is fitted: its margins are one run). The
    size is checked against ``limit`` before anything is built.
    Raises ActscaleError (too many runs, or a value TrainConfig rejects)."""
    config = base
    lms, lfs, ms = (list(dict.fromkeys(v)) for v in (lambda_ms, lambda_fs, margins))
    seed_list = list(dict.fromkeys([config.seed] if seeds is None else seeds))
    check_sweep_size(len(lms) * len(lfs) * len(ms) * len(seed_list), limit)
    fixed = {} if steps is None else {"steps": int(steps)}
    configs = (
        config.replace(lambda_m=lm, lambda_f=lf, margin=m, seed=seed, **fixed)
        for lm, lf, m, seed in product(lms, lfs, ms, seed_list)
    )
    return list(dict.fromkeys(configs))


def base_examples(rows: Iterable[Mapping[str, Any]]) -> list[Example]:
    """The examples of a run's stored dataset rows (``bundle.dataset``), with their split, so
    every run of a sweep trains on the base run's own prompts and split (and a custom dataset
    need not still be on disk)."""
    return [Example.from_record(r) for r in rows]
