"""The command line's note where bfloat16 autocast is asked of a device that only emulates it:
the work goes on, many times slower than in float32 (docs/measured.md, "bfloat16 where it is
emulated"); a user who did not know reads why, and the option that avoids it."""

from __future__ import annotations

import sys
from typing import Any

_NO_NATIVE_BF16 = {"cpu": "a CPU without AVX512-BF16 or AMX", "cuda": "a GPU without bf16 support"}
# What emulated bfloat16 cost on a 2-core AVX2-only CPU (docs/measured.md, "bfloat16 where it is emulated").
TRAIN_COST = (
    "a training step takes many times as long as in float32 (about 20 times on a 2-core AVX2 CPU, docs/measured.md)"
)
PASS_COST = "a pass takes several times as long as in float32 (6–7 times on a 2-core AVX2 CPU, docs/measured.md)"


def say_emulated(bf16: bool, device: str, what: str, cost: str, instead: str = "") -> None:
    """One note where ``what`` runs in bfloat16 autocast on a ``device`` that only emulates it:
    the work goes on, ``cost`` says how much slower, ``instead`` the option that avoids it."""
    from actscale.engine.models import native_bf16

    kind = device.split(":")[0]
    if not bf16 or kind not in _NO_NATIVE_BF16 or native_bf16(device):
        return
    print(
        f"note: {what} on {device}, {_NO_NATIVE_BF16[kind]}: PyTorch emulates bfloat16 there, and {cost}"
        + (f"; {instead}" if instead else ""),
        file=sys.stderr,
        flush=True,
    )


def say_emulated_training(config: Any, device: str) -> None:
    """`say_emulated` for a run that ``config`` trains (train, a local sweep)."""
    instead = "--autocast off (the default) trains in float32"
    say_emulated(config.autocast == "bf16", device, "--autocast bf16", TRAIN_COST, instead)
