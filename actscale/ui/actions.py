"""What the Compare and Playground pages do besides drawing: parse a sweep's values, launch it
(here or on Ray), open a run on another page, and build a run's intervention once per model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import streamlit as st
from streamlit.errors import StreamlitAPIException

from actscale.engine.models import LoadedModel
from actscale.errors import ActscaleError
from actscale.runs import sweeps
from actscale.runs.api import build_task, intervention_from_bundle
from actscale.runs.bundle import RunBundle, check_run_id
from actscale.runs.executors import RAY_ADDRESS_ENV, resolve_executor
from actscale.runs.jobs import Job
from actscale.ui import common, deployment
from actscale.ui.keys import Keys
from actscale.ui.navigation import EXPLORE


def parse_values(text: str, name: str) -> list[float]:
    """Comma-separated numbers from a text box (``"0.001, 0.01"``), duplicates removed, order
    kept. Raises ActscaleError naming the box for anything that is not a finite number >= 0."""
    values: list[float] = []
    for part in str(text).replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise ActscaleError(f"{name}: {part[:30]!r} is not a number (give comma-separated numbers)") from None
        if value != value or value in (float("inf"), float("-inf")) or value < 0:
            raise ActscaleError(f"{name}: {part[:30]!r} must be a finite number >= 0")
        if value not in values:
            values.append(value)
    if not values:
        raise ActscaleError(f"{name}: give at least one value")
    return values


def open_run(run_id: str, page: str = EXPLORE.path) -> None:
    """Switch to ``page`` with ``?run=<run_id>``; where the page is not part of this app (a page
    run on its own, as in tests), keep the run for this session and say where to go."""
    st.session_state[Keys.RUN] = check_run_id(run_id)
    try:
        st.switch_page(page, query_params={"run": run_id})
    except StreamlitAPIException:
        st.query_params["run"] = run_id
        st.info(f"Run {run_id} is selected: open the **{Path(page).stem.split('_', 1)[-1]}** page to see it.")


def default_ray_address() -> str:
    """What the sweep form's Ray address starts as: ``$ACTSCALE_RAY_ADDRESS``, else ``auto``."""
    return (os.environ.get(RAY_ADDRESS_ENV) or "").strip() or "auto"


def launch_sweep(
    bundle: RunBundle,
    lambda_ms: list[float],
    lambda_fs: list[float],
    margins: list[float],
    steps: int,
    executor: str = "local",
    ray_address: str | None = None,
) -> Job:
    """Train every combination of λ_M, λ_F and m (`sweeps.sweep_configs`) on ``bundle``'s
    configuration, prompts and split, as one job: on the resident model (``local``), or on a
    Ray cluster (``ray``, at ``ray_address``; ``auto`` starts a local one), whose workers load
    the model themselves. Raises ActscaleError."""
    deployment.check_writable("A sweep")
    limit = sweeps.MAX_SWEEP if executor == "local" else sweeps.MAX_CLUSTER_SWEEP
    configs = sweeps.sweep_configs(bundle.record.config, lambda_ms, lambda_fs, margins, steps=int(steps), limit=limit)
    examples = sweeps.base_examples(bundle.dataset)
    if executor != "local":
        _, address = resolve_executor(executor, ray_address)
        return common.jobs().submit_runs(configs, common.store(), examples, executor=executor, ray_address=address)
    model = common.resident_model(bundle.record.config.model)
    return common.jobs().submit(
        configs, model, common.store(), task_for=lambda config: build_task(model, config, examples)
    )


@st.cache_resource(max_entries=8, show_spinner=False)
def _run_intervention(
    path: str,  # noqa: ARG001 - path, stamp, weights_hash and device: the cache's key
    stamp: float,  # noqa: ARG001
    weights_hash: str,  # noqa: ARG001
    device: str,  # noqa: ARG001
    _bundle: RunBundle,
    _model: LoadedModel,
) -> Any:
    return intervention_from_bundle(_bundle, _model)


def run_intervention(bundle: RunBundle, model: LoadedModel) -> Any:
    """The run's trained intervention for ``model``, cached. Shared by sessions: it is only ever
    attached inside ``model.lock``. Raises ActscaleError when the run was made on another model."""
    try:
        stamp = bundle.path.stat().st_mtime
    except OSError:
        stamp = 0.0
    return _run_intervention(str(bundle.path), stamp, model.weights_hash, str(model.device), bundle, model)
