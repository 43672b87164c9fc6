"""The Ray executor of `actscale.runs.executors.run_configs`: a sweep's runs on a Ray cluster.

Imported only when a caller asks for Ray (``pip install "actscale[ray]"``). One actor per
worker loads each model once and keeps it; runs go to whichever actor is free. A worker trains
with the same code as this process (`api.plan_run`, `api.train_run`) into a scratch
store of its own and sends the finished bundle back as the zip the Runs page exports; this
process adds it to the store through `RunStore.import_zip` (verified, written atomically), so
the store need only be reachable from here, and a worker never writes to it. Only plain data
(configs, examples, bytes, dicts of numbers) crosses between processes.

Progress: every worker step is pushed to a small sink actor that this process drains while it
waits. Cancel: ``ray.cancel`` on every run not yet finished; a queued run never starts, and a
running one sees `ray.get_runtime_context().is_canceled()` at its next step and stops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from actscale.engine.observer import RunObserver
from actscale.engine.tasks import Example
from actscale.engine.training import StepInfo, TrainConfig
from actscale.errors import ActscaleError, TrainingCancelled, one_line
from actscale.runs.api import plan_run
from actscale.runs.bundle import RunBundle
from actscale.runs.progress import SweepObserver
from actscale.runs.ray_dispatch import Sweep
from actscale.runs.ray_sink import ProgressSink
from actscale.runs.store import RunStore


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ActscaleError('the Ray executor needs Ray: pip install "actscale[ray]" (or ray==2.60.0)') from None
    return ray


# Sweeps of several dashboard sessions share this process's one Ray connection: the sweep that
# made it leaves it up until the last sweep using it is over.
_CONNECTION_LOCK = threading.Lock()
_USERS = [0]  # sweeps running on the connection


class _Owner:
    """The thread that connects to Ray and, at the end, disconnects. A local cluster's processes
    are started with Linux's parent-death signal, which fires when the *thread* that started
    them ends: connected from a job's own thread, the cluster would die with the first sweep
    that finished while another still ran on it. This thread lives as long as the connection."""

    def __init__(self, address: str, num_cpus: int | None) -> None:
        self.ready, self.stop = threading.Event(), threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(address, num_cpus), name="actscale-ray", daemon=True)
        self.thread.start()
        self.ready.wait()
        if self.error is not None:
            raise self.error

    def _run(self, address: str, num_cpus: int | None) -> None:
        try:
            connect(address, num_cpus)
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that asked
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        self.stop.wait()
        import_ray().shutdown()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


_OWNER: list[_Owner | None] = [None]  # the connection a sweep of this process made, if any


def connect(address: str, num_cpus: int | None = None) -> bool:
    """Connect this process to the Ray cluster at ``address`` (``auto``: start a local one with
    ``num_cpus`` CPUs, default all). A process already connected keeps its connection. Returns
    whether this call connected. Raises ActscaleError. (A sweep connects through `connection`.)"""
    ray = import_ray()
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    try:
        if address == "auto":
            # The workers of a local cluster import this very actscale (a worktree or a checkout,
            # not only an installed copy), so their runs are the ones this process would train.
            package_parent = str(Path(__file__).resolve().parents[2])
            path = os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH", "")) if p)
            ray.init(
                address="local",
                num_cpus=num_cpus or os.cpu_count() or 1,
                include_dashboard=False,
                runtime_env={"env_vars": {"PYTHONPATH": path}},
                **quiet,
            )
        else:
            ray.init(address=address, **quiet)
    except Exception as exc:  # noqa: BLE001 - a cluster that cannot be reached is one line
        raise ActscaleError(f"could not connect to the Ray cluster at {address!r}: {one_line(exc, 200)}") from None
    return True


@contextlib.contextmanager
def connection(address: str) -> Iterator[Any]:
    """Ray, connected for the duration of the block. The connection a sweep made (in a thread
    of its own, `_Owner`) is ended when the last sweep of this process using it is over; one
    the caller made (``ray.init`` before the sweep) is left as it is. Raises ActscaleError."""
    ray = import_ray()
    with _CONNECTION_LOCK:
        if not ray.is_initialized():
            _OWNER[0] = _Owner(address, None)
        _USERS[0] += 1
    try:
        yield ray
    finally:
        with _CONNECTION_LOCK:
            _USERS[0] -= 1
            owner = _OWNER[0]
            if _USERS[0] == 0 and owner is not None:
                _OWNER[0] = None
                owner.close()


SCRATCH_PREFIX = "actscale-ray-"  # a worker's scratch store: actscale-ray-<pid>-<random>


def remove_stale_scratch(root: str | Path | None = None) -> list[Path]:
    """Remove the scratch stores of workers whose process is gone (a worker killed mid-run
    cannot remove its own); those of running processes are kept. Returns what was removed."""
    removed = []
    for path in sorted(Path(root or tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*-*")):
        pid = path.name[len(SCRATCH_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


class SweepWorker:
    """A Ray actor: keeps the models it has loaded and trains one config per call."""

    def __init__(self, threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self._models: dict[tuple[str, str], Any] = {}

    def _model(self, name: str, device: str) -> Any:
        from actscale.engine.models import load_model

        key = (name, device)
        if key not in self._models:
            self._models.clear()  # one model at a time: a worker's memory holds one
            self._models[key] = load_model(name, device)
        return self._models[key]

    def run(
        self,
        index: int,
        config: TrainConfig,
        examples: list[Example] | None,
        known: frozenset[str],
        sink: Any,
        checked: bool = False,
    ) -> dict[str, Any]:
        """Train config ``index`` (or find it among the ``known`` stored run ids; ``checked``:
        see `executors.run_configs`). Returns
        ``{"status": "ok", "run_id", "bundle": zip bytes or None when known}``, or
        ``{"status": "error" | "failed" | "cancelled", "message"}``: an exception's class need
        not travel."""
        import ray

        from actscale.runs import api

        observer = _ActorRunObserver(ray, index, sink)

        try:
            model = self._model(config.model, config.device)
            config, task, run_id = plan_run(config, model, examples, checked)
            if run_id in known:
                return {"status": "ok", "run_id": run_id, "bundle": None}
            remove_stale_scratch()
            with tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-") as scratch:
                store = RunStore(scratch)
                bundle = api.train_run(config, model, store=store, task=task, observer=observer)
                data = store.export_zip(bundle.run_id)
            if observer.last:
                ray.get(observer.last[0])  # this run's step events reach the sink before its result
            return {"status": "ok", "run_id": bundle.run_id, "bundle": data}
        except TrainingCancelled as exc:
            return {"status": "cancelled", "message": str(exc)}
        except ActscaleError as exc:
            return {"status": "error", "message": str(exc)}
        except Exception as exc:  # noqa: BLE001 - a bug on a worker is one line here, its traceback in the worker's log
            traceback.print_exc()
            return {"status": "failed", "message": one_line(exc)}


class _ActorRunObserver(RunObserver):
    """Run ``index`` on a worker: each step goes to the driver's progress sink, and Ray's
    cancel of the task stops the run."""

    def __init__(self, ray: Any, index: int, sink: Any) -> None:
        self.ray, self.index, self.sink = ray, index, sink
        self.last: list[Any] = []  # the latest step event's ref, awaited before the result

    def step(self, info: StepInfo) -> None:
        event = {"index": self.index, "step": info.step, "n_steps": info.n_steps, "info": asdict(info)}
        event["pid"] = os.getpid()
        self.last[:] = [self.sink.push.remote(event)]

    def cancelled(self) -> bool:
        return bool(self.ray.get_runtime_context().is_canceled())


def worker_count(ray: Any, configs: Sequence[TrainConfig], workers: int | None) -> tuple[int, bool]:
    """How many actors, and whether each takes a GPU: one per GPU of the cluster when a config
    may use CUDA and the cluster has GPUs, else one per CPU; ``workers`` asks for fewer. Never
    more than the cluster holds (an actor that could never start would keep its runs waiting)
    nor than the runs."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    use_gpu = gpus > 0 and any(c.device == "auto" or c.device.startswith("cuda") for c in configs)
    if workers is not None and workers < 1:
        raise ActscaleError("workers must be at least 1")
    capacity = gpus if use_gpu else max(1, int(resources.get("CPU", 1)))
    return max(1, min(workers or capacity, capacity, len(configs))), use_gpu


def run_on_ray(
    configs: list[TrainConfig],
    *,
    address: str,
    store: RunStore,
    examples: list[list[Example] | None],
    observer: SweepObserver,
    reuse: bool,
    workers: int | None,
    checked: bool = False,
) -> list[RunBundle]:
    """`executors.run_configs` on Ray (see there)."""
    if not configs:
        return []
    with connection(address) as ray:
        actors: list[Any] = []
        sink = None
        try:
            n_workers, use_gpu = worker_count(ray, configs, workers)
            known = frozenset(r.run_id for r in store.list() if r.ok) if reuse else frozenset()
            sink = ray.remote(num_cpus=0)(ProgressSink).remote()
            actor_class = ray.remote(num_cpus=1, num_gpus=1 if use_gpu else 0)(SweepWorker)
            actors = [actor_class.remote(1) for _ in range(n_workers)]
            sweep = Sweep(
                ray, configs, examples, known, store, actors, sink, observer, lambda: actor_class.remote(1),
                replace=not reuse, checked=checked,
            )  # fmt: skip
            return sweep.dispatch()
        finally:
            for actor in [*actors, sink]:
                if actor is not None:
                    ray.kill(actor)
