"""Errors a user can cause. The CLI turns them into exit status 2, the pages into `st.error`."""

from __future__ import annotations


class ActscaleError(Exception):
    """Bad input: an unknown model, a malformed dataset, a multi-token answer, ...

    The message is one line that says what was wrong and, where it helps, what to do.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class DatasetError(ActscaleError):
    """A dataset that cannot be used: unreadable, missing columns, no usable prompts."""


class BrokenBundleError(ActscaleError):
    """A bundle folder or upload that cannot be read; the message says why."""


class ModelLoadError(ActscaleError):
    """A model that cannot be loaded: unknown name, not cached and offline, broken folder."""


class TrainingCancelled(Exception):
    """Raised inside `train` when the cancel flag is set; nothing is stored."""


class TrainingDiverged(ActscaleError):
    """The loss became NaN or infinite; nothing is stored."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``"TypeName: message"`` on one line, the message cut to ``limit`` characters: how an
    unexpected error is shown to a user (the full traceback goes to the log)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:limit]}"
