"""What an executor reports about each run of a list of configs (in-process or on Ray)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from actscale.engine.training import StepInfo

# The executor's state of one run, as `RunProgress.state` reports it.
RunState = Literal["queued", "running", "done", "reused"]


@dataclass(frozen=True)
class RunProgress:
    """One event of one run of `run_configs`: ``index`` is the config's position in the list.

    ``state`` is ``running`` after each training step (``step`` of ``n_steps``, ``info`` the
    step's figures), ``done`` when the run is stored (``run_id``) and ``reused`` when it was
    stored already and opened without training. Runs of a Ray sweep progress side by side, so
    events of different indices interleave.
    """

    index: int
    state: RunState
    step: int = 0
    n_steps: int = 0
    run_id: str = ""
    info: StepInfo | None = None


ProgressCallback = Callable[[RunProgress], None]
