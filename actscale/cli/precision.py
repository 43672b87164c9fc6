"""The command line's note where bfloat16 autocast is asked of a device that only emulates it:
the work goes on, many times slower than in float32; a user who did not know reads why, and the
option that avoids it (the sentence: `actscale.views.precision`)."""

from __future__ import annotations

import sys
from typing import Any

from actscale.views.precision import TRAIN_COST, emulated_sentence


def say_emulated(bf16: bool, device: str, what: str, cost: str, instead: str = "") -> None:
    """One note on stderr where ``what`` runs in bfloat16 autocast on a ``device`` that only
    emulates it (`emulated_sentence`); nothing elsewhere."""
    sentence = emulated_sentence(bf16, device, what, cost, instead)
    if sentence is not None:
        print(f"note: {sentence}", file=sys.stderr, flush=True)


def say_emulated_training(config: Any, device: str) -> None:
    """`say_emulated` for a run that ``config`` trains (train, a local sweep)."""
    instead = "--autocast off (the default) trains in float32"
    say_emulated(config.autocast == "bf16", device, "--autocast bf16", TRAIN_COST, instead)
