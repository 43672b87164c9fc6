"""The executors (where a list of configs runs: in this process or on Ray) by name, and what
an executor reports about each run. Free of torch: the command line's --help reads the names."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from actscale.engine.training import StepInfo

ExecutorName = Literal["local", "ray"]
EXECUTOR_NAMES: tuple[str, ...] = get_args(ExecutorName)
RAY_ADDRESS_ENV = "ACTSCALE_RAY_ADDRESS"

# The executor's state of one run, as `RunProgress.state` reports it.
RunState = Literal["queued", "running", "done", "reused", "retrying"]


@dataclass(frozen=True)
class RunProgress:
    """One event of one run of `run_configs`: ``index`` is the config's position in the list.

    ``state`` is ``running`` after each training step (``step`` of ``n_steps``, ``info`` the
    step's figures), ``done`` when the run is stored (``run_id``) and ``reused`` when it was
    stored already and opened without training, ``retrying`` when the Ray worker training it was
    lost and the run starts again on another (``message`` says so; on ``done``, it says where the
    run replaced a stored one, trained again on purpose). Runs of a Ray sweep progress
    side by side, so events of different indices interleave.
    """

    index: int
    state: RunState
    step: int = 0
    n_steps: int = 0
    run_id: str = ""
    info: StepInfo | None = None
    message: str = ""
    worker_pid: int = 0  # Ray: the process training the run (0 in this process)


ProgressCallback = Callable[[RunProgress], None]


class SweepObserver:
    """What `executors.run_configs` tells its caller about each of its runs, and how the caller
    stops them all: one object in place of callbacks, in this process and on Ray (each run's
    own `engine.observer.RunObserver` reports into it). The base hears nothing and never
    cancels."""

    def progress(self, event: RunProgress) -> None:
        """A step of run ``event.index``, or that run stored or reused."""

    def waiting(self) -> None:
        """In this process only: a step waits for another session's use of the model."""

    def cancelled(self) -> bool:
        """Asked before each run and at every step: True stops the sweep (the running runs at
        their next step, the queued ones never start; finished runs are kept)."""
        return False
