"""Background training jobs, so a page (and every other session) stays responsive.

A job trains one or several configurations one after another on the shared model and keeps
its progress in plain fields that a page polls. Every step takes the model's lock, so jobs
of different sessions interleave step by step and never see each other's hooks; while
another job holds the model, a job reports the state ``waiting``.
"""
from __future__ import annotations

import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Callable

from actscale.errors import ActscaleError, TrainingCancelled, one_line
from actscale.models import LoadedModel
from actscale.store import RunStore
from actscale.training import StepInfo, TrainConfig

STATES = ("queued", "waiting", "running", "done", "cancelled", "failed")


@dataclass
class Job:
    """One background job; its fields are read by pages while the worker thread writes them."""

    id: str
    configs: list[TrainConfig]
    state: str = "queued"
    current: int = 0                       # index of the config being trained
    steps: list[dict] = field(default_factory=list)   # StepInfo rows, with "run" = config index
    run_ids: list[str] = field(default_factory=list)
    reused: list[bool] = field(default_factory=list)
    error: str = ""
    started: float = field(default_factory=time.time)
    finished: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)
    thread: threading.Thread | None = field(default=None, repr=False)

    def cancel(self) -> None:
        self.cancel_event.set()

    @property
    def done(self) -> bool:
        return self.state in ("done", "cancelled", "failed")

    def progress(self) -> float:
        """Fraction of all steps of all configs done, in [0, 1]."""
        if self.state == "done":
            return 1.0
        total = sum(c.steps for c in self.configs) or 1
        before = sum(c.steps for c in self.configs[: self.current])
        last = self.steps[-1]["step"] if self.steps and self.steps[-1]["run"] == self.current else 0
        return min(1.0, (before + last) / total)

    def seconds_left(self) -> float | None:
        """A rough estimate from the mean step time so far (early stopping can only shorten it)."""
        if not self.steps:
            return None
        elapsed = time.time() - self.started
        fraction = self.progress()
        return None if fraction <= 0 else max(0.0, elapsed / fraction - elapsed)


class JobManager:
    """Keeps the jobs of one server process; thread-safe."""

    def __init__(self, max_jobs: int = 50) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._max_jobs = max_jobs

    def get(self, job_id: str | None) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id or "")

    def submit(self, configs: list[TrainConfig], model: LoadedModel, store: RunStore,
               task_for: Callable[[TrainConfig], object] | None = None) -> Job:
        """Start training ``configs`` in a background thread; returns at once."""
        from actscale.api import build_task, train_run

        job = Job(id=uuid.uuid4().hex[:12], configs=list(configs))

        def on_step(info: StepInfo) -> None:
            job.state = "running"
            job.steps.append({"run": job.current, **info.__dict__})

        def on_wait() -> None:
            job.state = "waiting"  # another session's step or request holds the model

        def work() -> None:
            try:
                for i, config in enumerate(job.configs):
                    job.current = i
                    if job.cancel_event.is_set():
                        raise TrainingCancelled("cancelled before it started")
                    task = task_for(config) if task_for else build_task(model, config)
                    if not model.lock.acquire(blocking=False):
                        job.state = "waiting"  # another session is using the model
                        # Poll, so that Cancel works while waiting (another run may take minutes).
                        while not model.lock.acquire(timeout=0.1):
                            if job.cancel_event.is_set():
                                raise TrainingCancelled("cancelled while waiting for the model")
                    model.lock.release()
                    job.state = "running"
                    bundle = train_run(config, model, store=store, task=task, on_step=on_step,
                                       cancel=job.cancel_event, on_wait=on_wait)
                    job.run_ids.append(bundle.run_id)
                    # A stored run is opened without a single training step.
                    job.reused.append(not any(row["run"] == i for row in job.steps))
                job.state = "done"
            except TrainingCancelled:
                job.state = "cancelled"
            except ActscaleError as exc:
                job.error, job.state = str(exc), "failed"
            except Exception as exc:  # noqa: BLE001 - shown to the user as one line
                job.error = one_line(exc)
                job.state = "failed"
                traceback.print_exc()
            finally:
                job.finished = time.time()

        job.thread = threading.Thread(target=work, name=f"actscale-job-{job.id}", daemon=True)
        with self._lock:
            self._jobs[job.id] = job
            finished = [j for j in self._jobs.values() if j.done]
            for old in finished[: max(0, len(self._jobs) - self._max_jobs)]:
                self._jobs.pop(old.id, None)
        job.thread.start()
        return job

