"""One observer per run: what a run tells its caller, and how the caller stops it.

`training.train` and `api.train_run` take a `RunObserver` instead of separate callbacks; the
jobs (the dashboard), the executors (a sweep in this process) and the Ray actor each pass one
of their own. Subclass it and override what you need: the base hears nothing and never cancels.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actscale.engine.training import StepInfo


class RunObserver:
    # True: the run looks for the step that reaches its validation target and calls
    # `target_reached` (a few validation passes, `validation.TargetWatch`); a caller that does
    # not show it to anyone (a sweep, a test) leaves it False and pays nothing.
    watches_target = False

    def step(self, info: StepInfo) -> None:
        """After every training step, with its figures."""

    def target_reached(self, step: int, split: str, metrics: dict[str, Any]) -> None:
        """While the training goes on: ``step`` is the first after which the validation prompts
        (``split``: "train" for a task without any) flip at least the run's target both ways,
        with their `flip_metrics` then (`validation.TargetWatch`)."""

    def first_result(self, split: str, metrics: dict[str, Any]) -> None:
        """The trained run's validation flip rates, as soon as they are evaluated (before the
        other splits): the trained run's first result."""

    def waiting(self) -> None:
        """A step (or a look for the target) waits for another session's use of the model (the
        dashboard shares one)."""

    def cancelled(self) -> bool:
        """Asked before every step and after the evaluation: True stops the run with
        TrainingCancelled, and nothing is stored."""
        return False


class CancelOn(RunObserver):
    """An observer that only cancels: when ``event`` is set (Ctrl-C on the command line, say)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def cancelled(self) -> bool:
        return self.event.is_set()


@contextlib.contextmanager
def holding(lock: threading.RLock, observer: RunObserver) -> Iterator[None]:
    """Hold ``lock`` (a model's); if another session holds it, tell the observer first, then wait."""
    if not lock.acquire(blocking=False):
        observer.waiting()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
