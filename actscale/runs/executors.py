"""Who trains a list of configurations: this process (``local``) or a Ray cluster (``ray``).

`run_configs` is the one entry point. The sweep command, the Compare page's sweep launcher and
the stability and generalisation checks all call it with a list of `TrainConfig`s and get the
stored bundles back in the same order. Whatever the executor, a run lands in the same store
through the same atomic writes (`RunStore`), a configuration already stored is opened instead
of retrained, and the run ids and parameters are those of an in-process run.

The local executor never imports Ray; the Ray executor lives in `actscale.runs.ray_executor` and is
imported only when asked for.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from actscale.engine.models import LoadedModel, load_model
from actscale.engine.observer import RunObserver
from actscale.engine.tasks import Example
from actscale.engine.tasks.registry import task_spec
from actscale.engine.training import StepInfo, TrainConfig
from actscale.errors import ActscaleError, TrainingCancelled
from actscale.runs import api
from actscale.runs.bundle import RunBundle
from actscale.runs.progress import EXECUTOR_NAMES, RAY_ADDRESS_ENV, ExecutorName, RunProgress, SweepObserver
from actscale.runs.store import RunStore


def resolve_executor(executor: str | None, ray_address: str | None = None) -> tuple[ExecutorName, str | None]:
    """The executor and Ray address to use: ``executor`` None means Ray when an address is given
    or ``$ACTSCALE_RAY_ADDRESS`` is set, else local; Ray's address defaults to
    ``$ACTSCALE_RAY_ADDRESS``, else ``auto`` (start a local cluster). Raises ActscaleError for an
    unknown executor, or an address given to the local executor."""
    address = (ray_address or "").strip() or None
    env = (os.environ.get(RAY_ADDRESS_ENV) or "").strip() or None
    name = executor or ("ray" if address or env else "local")
    if name not in EXECUTOR_NAMES:
        raise ActscaleError(f"unknown executor {name!r}: choose local or ray")
    if name == "local":
        if address:
            raise ActscaleError("a Ray address was given with the local executor: drop it, or use --executor ray")
        return "local", None
    return "ray", address or env or "auto"


def run_configs(
    configs: Sequence[TrainConfig],
    *,
    executor: str | None = "local",
    ray_address: str | None = None,
    store: RunStore | str | Path | None = None,
    examples: Sequence[Example] | None = None,
    observer: SweepObserver | None = None,
    reuse: bool = True,
    model: LoadedModel | None = None,
    workers: int | None = None,
    checked: bool = False,
) -> list[RunBundle]:
    """Train (or open, when stored) every config and return the bundles in the order of ``configs``.

    executor: ``local`` (this process, one run after another; never imports Ray) or ``ray``
        (one actor per worker loads each model once and keeps it; runs go to the actors as they
        free up). None: Ray when ``ray_address`` or ``$ACTSCALE_RAY_ADDRESS`` is given, else local.
    ray_address: a Ray cluster's address (``host:6379``, ``ray://host:10001``) or ``auto`` to
        start a local cluster; default ``$ACTSCALE_RAY_ADDRESS``, else ``auto``. A process that
        has already called ``ray.init`` keeps its connection.
    store: where bundles go (default ``$ACTSCALE_STORE``, else ``runs/``); only this process
        writes it (Ray workers send their bundles back).
    examples: train every config on these prompts with their splits (a base run's dataset);
        default: each config's own (generated, or its ``dataset`` file read here once).
    observer: hears a `RunProgress` after every step of every run and when a run is stored or
        reused (from this thread for Ray, from the training thread locally) and, locally, each
        wait for ``model``; its ``cancelled()`` stops the sweep: the running runs stop at their
        next step, the queued ones never start, runs already stored are kept, and
        TrainingCancelled is raised.
    reuse: open stored runs instead of retraining them.
    model: local only: the model to train every config on (the dashboard's resident model);
        default: each config's ``model`` loaded once on its ``device``.
    workers: Ray only: how many actors (default: one per GPU of the cluster when the configs
        may use CUDA and it has any, else one per CPU; never more than the runs).
    checked: runs a user asked for: a config whose held-out groups or templates leave no test
        prompt is refused before it trains (`api.checked_task`, as ``train`` does). The checks'
        own runs leave it off (the generalisation matrix shows a cell of none).

    Raises ActscaleError for bad input (the first run's error, one line), TrainingCancelled.
    """
    name, address = resolve_executor(executor, ray_address)
    store = store if isinstance(store, RunStore) else RunStore(store)
    configs = list(configs)
    observer = observer or SweepObserver()
    check_executor_options(name, workers, model)
    store.check_writable()  # before any run trains (Ray's come back to this process's store)
    if name == "local":
        return _run_local(configs, store, examples, observer, reuse, model, checked)
    return _run_ray(configs, address or "auto", store, examples, observer, reuse, workers, checked)


def _run_ray(
    configs: list[TrainConfig],
    address: str,
    store: RunStore,
    examples: Sequence[Example] | None,
    observer: SweepObserver,
    reuse: bool,
    workers: int | None,
    checked: bool,
) -> list[RunBundle]:
    from actscale.runs import ray_executor  # imported only here: the local path never imports Ray

    return ray_executor.run_on_ray(
        configs,
        address=address,
        store=store,
        examples=examples_for(configs, examples),
        observer=observer,
        reuse=reuse,
        workers=workers,
        checked=checked,
    )


def check_executor_options(name: str, workers: int | None, model: LoadedModel | None) -> None:
    """ActscaleError where an option of one executor is given to the other."""
    if name == "local" and workers is not None:
        raise ActscaleError("workers is an option of the Ray executor; the local executor runs one run at a time")
    if name == "ray" and model is not None:
        raise ActscaleError("the Ray executor loads its own models: pass no model")


def examples_for(configs: Sequence[TrainConfig], examples: Sequence[Example] | None) -> list[list[Example] | None]:
    """Per config, the examples a worker trains it on: ``examples`` for every config when
    given; a custom config's file, read here once per file (a worker on another machine cannot
    read it); None for a generated task (the worker generates it from the config)."""
    if examples is not None:
        shared = list(examples)
        return [shared for _ in configs]
    files: dict[str, list[Example] | None] = {}
    out: list[list[Example] | None] = []
    for config in configs:
        task = task_spec(config.task)
        key = f"{task.name}:{config.dataset}"
        if key not in files:
            files[key] = task.file_examples(config)
        out.append(files[key])
    return out


def train_one(
    config: TrainConfig,
    model: LoadedModel,
    store: RunStore,
    examples: Sequence[Example] | None,
    *,
    index: int = 0,
    observer: SweepObserver | None = None,
    reuse: bool = True,
    checked: bool = False,
) -> RunBundle:
    """One config on ``model``: the stored run, or a new one, reporting `RunProgress` events
    for ``index`` to the sweep's observer (``checked``: see `run_configs`)."""
    observer = observer or SweepObserver()
    config, task, run_id = api.plan_run(config, model, examples, checked)
    if reuse and store.exists(run_id):
        try:
            bundle = store.load(run_id)
        except ActscaleError:
            pass  # a broken copy is retrained below (the store replaces it)
        else:
            observer.progress(RunProgress(index, "reused", config.steps, config.steps, run_id))
            return bundle
    had_checks = None if reuse else store.replacing(run_id)
    run_observer = SweepRunObserver(index, observer)
    bundle = api.train_run(config, model, store=store, task=task, observer=run_observer, reuse=reuse)
    said = store.replaced(bundle.run_id, had_checks)
    observer.progress(RunProgress(index, "done", config.steps, config.steps, bundle.run_id, message=said))
    return bundle


class SweepRunObserver(RunObserver):
    """Run ``index`` of a sweep in this process: its steps become `RunProgress` events of the
    sweep's observer, which also hears its waits for the model and may cancel it."""

    def __init__(self, index: int, sweep: SweepObserver) -> None:
        self.index, self.sweep = index, sweep

    def step(self, info: StepInfo) -> None:
        self.sweep.progress(RunProgress(self.index, "running", info.step, info.n_steps, info=info))

    def waiting(self) -> None:
        self.sweep.waiting()

    def cancelled(self) -> bool:
        return self.sweep.cancelled()


def _run_local(
    configs: list[TrainConfig],
    store: RunStore,
    examples: Sequence[Example] | None,
    observer: SweepObserver,
    reuse: bool,
    model: LoadedModel | None,
    checked: bool,
) -> list[RunBundle]:
    models: dict[tuple[str, str], LoadedModel] = {}
    bundles = []
    for index, config in enumerate(configs):
        if observer.cancelled():
            raise TrainingCancelled(f"cancelled before run {index + 1} of {len(configs)}")
        if model is None:
            key = (config.model, config.device)
            if key not in models:
                models[key] = load_model(*key)
            run_model = models[key]
        else:
            run_model = model
        bundles.append(
            train_one(config, run_model, store, examples, index=index, observer=observer, reuse=reuse, checked=checked)
        )
    return bundles
