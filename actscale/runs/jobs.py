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
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, get_args

from actscale import checks
from actscale.checks import CheckOptions
from actscale.engine.models import LoadedModel
from actscale.engine.observer import RunObserver
from actscale.engine.tasks import Example, PreparedTask
from actscale.engine.training import StepInfo, TrainConfig
from actscale.errors import ActscaleError, TrainingCancelled, one_line

# Through the module (api.train_run, not a name bound here), so that a test's monkeypatch of
# actscale.runs.api reaches the jobs. api never imports jobs: no cycle.
from actscale.runs import api
from actscale.runs.bundle import RunBundle
from actscale.runs.executors import run_configs
from actscale.runs.progress import RunProgress, SweepObserver
from actscale.runs.store import RunStore

JobState = Literal["queued", "waiting", "running", "done", "cancelled", "failed"]
STATES: tuple[JobState, ...] = get_args(JobState)
FINAL_STATES: tuple[JobState, ...] = ("done", "cancelled", "failed")


@dataclass
class Job:
    """One background job; its fields are read by pages while the worker thread writes them."""

    id: str
    configs: list[TrainConfig]
    state: JobState = "queued"
    kind: str = "train"  # "train" (configs in turn) or "checks" (a run's map checks)
    fraction: float = 0.0  # a checks job's progress, in [0, 1]
    stage: str = ""  # a checks job's current stage, in words
    subject: str = ""  # a checks job's run id
    current: int = 0  # index of the config being trained
    steps: list[dict] = field(default_factory=list)  # StepInfo rows, with "run" = config index
    run_ids: list[str] = field(default_factory=list)
    reused: list[bool] = field(default_factory=list)
    error: str = ""
    executor: str = "local"  # "ray": the runs go to a Ray cluster, side by side
    run_steps: dict[int, int] = field(default_factory=dict)  # config index -> steps done so far
    runs_done: set[int] = field(default_factory=set)  # config indices stored (trained or reused)
    retries: list[str] = field(default_factory=list)  # Ray: a line per run restarted after its worker was lost
    # config index -> its first result: {"split": "val", **flip_metrics}, before the other splits' evaluation
    first_results: dict[int, dict] = field(default_factory=dict)
    # config index -> the step first seen to reach its validation target, while it trains on:
    # {"step": k, "split": "val", **flip_metrics} (`validation.TargetWatch`)
    target_results: dict[int, dict] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    finished: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)
    thread: threading.Thread | None = field(default=None, repr=False)
    # Counts what a page shows as soon as it happens (`announce`): a step that reached the
    # validation target, a first result, a run stored or restarted, the job's end.
    news: int = 0
    _news: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def announce(self) -> None:
        """One more piece of news: wake the pages waiting for it (`wait_news`)."""
        with self._news:
            self.news += 1
            self._news.notify_all()

    def wait_news(self, seen: int, timeout: float) -> bool:
        """Block until there is news after ``seen`` (a value of ``news``): True, or False once
        ``timeout`` seconds have passed without any."""
        with self._news:
            return self._news.wait_for(lambda: self.news > seen, timeout)

    def cancel(self) -> None:
        self.cancel_event.set()

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES

    def progress(self) -> float:
        """Fraction of all steps of all configs done, in [0, 1] (a stored run counts whole)."""
        if self.state == "done":
            return 1.0
        if self.kind == "checks":
            return self.fraction
        total = sum(c.steps for c in self.configs) or 1
        done = sum(
            c.steps if i in self.runs_done else min(c.steps, self.run_steps.get(i, 0))
            for i, c in enumerate(self.configs)
        )
        return min(1.0, done / total)

    def record_step(self, info: StepInfo) -> None:
        """A step of the config being trained: one more row of the curves, tagged with its index."""
        self.record_progress(RunProgress(self.current, "running", info.step, info.n_steps, info=info))

    def record_progress(self, event: RunProgress) -> None:
        """`executors.run_configs`' ``on_progress``: a step of run ``event.index`` (a row of the
        curves), or that run stored (trained, or reused without a step)."""
        if event.state == "running" and event.info is not None:
            self.state = "running"
            self.run_steps[event.index] = event.step
            self.steps.append({"run": event.index, **event.info.__dict__})
        elif event.state == "retrying":
            self.run_steps.pop(event.index, None)
            self.retries.append(event.message)
            self.announce()
        elif event.state in ("done", "reused") and event.index not in self.runs_done:
            self.runs_done.add(event.index)
            self.run_ids.append(event.run_id)
            self.reused.append(event.state == "reused")
            self.announce()

    def record_target(self, index: int, step: int, split: str, metrics: dict) -> None:
        """Config ``index`` reached its validation target after ``step``, with these flip rates."""
        self.target_results[index] = {"step": step, "split": split, **metrics}
        self.announce()

    def record_result(self, index: int, split: str, metrics: dict) -> None:
        """Config ``index``'s first result: its validation flip rates."""
        self.first_results[index] = {"split": split, **metrics}
        self.announce()

    def runs_running(self) -> list[int]:
        """Indices of the configs with steps done but not yet stored (several on Ray)."""
        return sorted(i for i in self.run_steps if i not in self.runs_done)

    def mark_waiting(self) -> None:
        """Another session's step or request holds the model."""
        self.state = "waiting"

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job is over (at once for a job run inline); True if it is."""
        if self.thread is not None:
            self.thread.join(timeout)
        return self.done

    def seconds_left(self) -> float | None:
        """Seconds to the last step, roughly, from the mean step time so far (early stopping can
        only shorten it); None before the first step and once every step is done (a run's
        evaluation after its steps is not estimated)."""
        if not self.steps:
            return None
        elapsed = time.time() - self.started
        fraction = self.progress()
        return None if fraction <= 0 or fraction >= 1 else elapsed / fraction - elapsed


# A launcher starts a job's work, given a name for it, and returns the thread it started, if
# any. (An "executor", elsewhere, is where a sweep's runs train: this process or Ray.)
Launcher = Callable[[Callable[[], None], str], threading.Thread | None]


def thread_launcher(work: Callable[[], None], name: str) -> threading.Thread:
    """The default: the work runs in a daemon thread and ``submit`` returns at once."""
    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    return thread


def inline_launcher(work: Callable[[], None], name: str) -> None:  # noqa: ARG001 - a launcher's signature (the thread's name)
    """The work runs inline: ``submit`` returns the finished job. Page tests use it, so they
    need not poll a thread; a page that submits through it blocks until the job is over."""
    work()


LAUNCHERS: dict[str, Launcher] = {"thread": thread_launcher, "inline": inline_launcher}


class JobManager:
    """Keeps the jobs of one server process; thread-safe.

    ``launch`` starts each job's work: ``"thread"`` (the default, in the background),
    ``"inline"`` (for tests), or any `Launcher`."""

    def __init__(self, max_jobs: int = 50, launch: str | Launcher = "thread") -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._max_jobs = max_jobs
        if isinstance(launch, str) and launch not in LAUNCHERS:
            raise ValueError(f"unknown job launcher {launch!r}; one of {', '.join(LAUNCHERS)}")
        self._launch = LAUNCHERS[launch] if isinstance(launch, str) else launch

    def get(self, job_id: str | None) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id or "")

    def submit(
        self,
        configs: list[TrainConfig],
        model: LoadedModel,
        store: RunStore,
        task_for: Callable[[TrainConfig], PreparedTask] | None = None,
    ) -> Job:
        """Train ``configs`` one after another through the launcher (by default in a
        background thread, returning at once). ``task_for(config)`` gives the prepared task of
        a config (default: built from the config)."""
        job = Job(id=uuid.uuid4().hex[:12], configs=list(configs))
        self._keep(job)
        job.thread = self._launch(partial(run_job, job, model, store, task_for), f"actscale-job-{job.id}")
        return job

    def submit_checks(self, bundle: RunBundle, model: LoadedModel, store: RunStore, options: CheckOptions) -> Job:
        """Run the map checks of ``bundle`` (docs/method.md §7) through the launcher; the job's
        ``run_ids`` holds the run checked, and any run the seeds or groups trained."""
        job = Job(id=uuid.uuid4().hex[:12], configs=[], kind="checks", subject=bundle.run_id)
        self._keep(job)
        job.thread = self._launch(
            partial(run_checks_job, job, bundle, model, store, options), f"actscale-checks-{job.id}"
        )
        return job

    def submit_runs(
        self,
        configs: list[TrainConfig],
        store: RunStore,
        examples: list[Example] | None = None,
        *,
        executor: str = "ray",
        ray_address: str | None = None,
    ) -> Job:
        """Train ``configs`` through `executors.run_configs` on ``executor`` (a Ray cluster,
        where each worker loads its own model: nothing here holds the resident model), every
        config on ``examples`` when given. Cancel cancels the Ray tasks; runs already stored
        are kept."""
        job = Job(id=uuid.uuid4().hex[:12], configs=list(configs), executor=executor)
        self._keep(job)
        work = partial(run_configs_job, job, store, examples, executor, ray_address)
        job.thread = self._launch(work, f"actscale-job-{job.id}")
        return job

    def _keep(self, job: Job) -> None:
        """Register ``job``, forgetting the oldest finished jobs beyond ``max_jobs``."""
        with self._lock:
            self._jobs[job.id] = job
            finished = [j for j in self._jobs.values() if j.done]
            for old in finished[: max(0, len(self._jobs) - self._max_jobs)]:
                self._jobs.pop(old.id, None)


def run_job(
    job: Job, model: LoadedModel, store: RunStore, task_for: Callable[[TrainConfig], PreparedTask] | None
) -> None:
    """A job's work: each config in turn. Never raises: the outcome is ``job.state`` (and
    ``job.error``), which the pages read."""

    def work() -> None:
        for index, config in enumerate(job.configs):
            _train_one(job, index, config, model, store, task_for)

    _run_to_outcome(job, work)


def run_configs_job(
    job: Job, store: RunStore, examples: list[Example] | None, executor: str, ray_address: str | None
) -> None:
    """A job's work through `executors.run_configs` (the Ray executor). Never raises."""

    def work() -> None:
        job.state = "running"
        bundles = run_configs(
            job.configs,
            executor=executor,
            ray_address=ray_address,
            store=store,
            examples=examples,
            observer=JobSweepObserver(job),
        )
        job.run_ids = [b.run_id for b in bundles]  # in the grid's order, as a local job has them

    _run_to_outcome(job, work)


def _run_to_outcome(job: Job, work: Callable[[], None]) -> None:
    """Run ``work``; its outcome becomes ``job.state`` and ``job.error``."""
    try:
        work()
        job.state = "done"
    except TrainingCancelled:
        job.state = "cancelled"
    except ActscaleError as exc:
        job.error, job.state = str(exc), "failed"
    except Exception as exc:  # noqa: BLE001 - shown to the user as one line
        job.error, job.state = one_line(exc), "failed"
        traceback.print_exc()
    finally:
        job.finished = time.time()
        job.announce()


def run_checks_job(job: Job, bundle: RunBundle, model: LoadedModel, store: RunStore, options: CheckOptions) -> None:
    """A checks job's work; never raises (the outcome is ``job.state``), writes nothing when
    cancelled or failed."""

    def progress(fraction: float, what: str) -> None:
        job.state, job.fraction = "running", fraction
        if what:
            job.stage = what

    def work() -> None:
        _wait_for_model(job, model)
        job.state = "running"
        checks.run_checks(model, bundle, options, store=store, on_progress=progress, cancel=job.cancel_event)
        job.run_ids.append(bundle.run_id)

    _run_to_outcome(job, work)


def _train_one(
    job: Job,
    index: int,
    config: TrainConfig,
    model: LoadedModel,
    store: RunStore,
    task_for: Callable[[TrainConfig], PreparedTask] | None,
) -> None:
    """Config ``index`` of the job: its task, the model's turn, training (or the stored run)."""
    job.current = index
    if job.cancel_event.is_set():
        raise TrainingCancelled("cancelled before it started")
    task = task_for(config) if task_for else api.build_task(model, config)
    _wait_for_model(job, model)
    job.state = "running"
    bundle = api.train_run(config, model, store=store, task=task, observer=JobObserver(job, index))
    # A stored run is opened without a single training step.
    reused = not any(row["run"] == index for row in job.steps)
    job.record_progress(RunProgress(index, "reused" if reused else "done", config.steps, config.steps, bundle.run_id))


class JobObserver(RunObserver):
    """Config ``index`` of ``job`` as its run's observer: steps become rows of the curves, the
    first result and waits for the model show on the page, and the job's Cancel stops the run."""

    watches_target = True  # the Train page shows the step that reaches the target

    def __init__(self, job: Job, index: int) -> None:
        self.job, self.index = job, index

    def step(self, info: StepInfo) -> None:
        self.job.record_step(info)

    def target_reached(self, step: int, split: str, metrics: dict[str, Any]) -> None:
        self.job.record_target(self.index, step, split, metrics)

    def first_result(self, split: str, metrics: dict[str, Any]) -> None:
        self.job.record_result(self.index, split, metrics)

    def waiting(self) -> None:
        self.job.mark_waiting()

    def cancelled(self) -> bool:
        return self.job.cancel_event.is_set()


class JobSweepObserver(SweepObserver):
    """A job's runs on an executor: each event updates the job, and its Cancel stops them."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def progress(self, event: RunProgress) -> None:
        self.job.record_progress(event)

    def cancelled(self) -> bool:
        return self.job.cancel_event.is_set()


def _wait_for_model(job: Job, model: LoadedModel) -> None:
    """Return once the model is free (it is not kept: each step takes it again), reporting
    ``waiting`` meanwhile. Polls, so that Cancel works while waiting (another run may take
    minutes). Raises TrainingCancelled."""
    if not model.lock.acquire(blocking=False):
        job.mark_waiting()  # another session is using the model
        while not model.lock.acquire(timeout=0.1):
            if job.cancel_event.is_set():
                raise TrainingCancelled("cancelled while waiting for the model")
    model.lock.release()
