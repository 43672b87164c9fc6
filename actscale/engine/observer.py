"""One observer per run: what a run tells its caller, and how the caller stops it.

`training.train` and `api.train_run` take a `RunObserver` instead of separate callbacks; the
jobs (the dashboard), the executors (a sweep in this process) and the Ray actor each pass one
of their own. Subclass it and override what you need: the base hears nothing and never cancels.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actscale.engine.training import StepInfo


class RunObserver:
    def step(self, info: StepInfo) -> None:
        """After every training step, with its figures."""

    def first_result(self, split: str, metrics: dict[str, Any]) -> None:
        """The validation prompts' flip rates, as soon as they are evaluated (before the other
        splits): the run's first result."""

    def waiting(self) -> None:
        """A step waits for another session's use of the model (the dashboard shares one)."""

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
