"""What the bench's parts share: the device in words, a command in a new process, and the
engine's training steps timed one by one."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import torch

from actscale.machine import cpu_description


def device_description(device: str) -> str:
    """The device the figures were measured on, in words."""
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        return f"{device}: {props.name}, {props.total_memory / 2**30:.0f} GiB"
    return f"cpu: {cpu_description()}, torch threads {torch.get_num_threads()}"


def engine_steps(model, task, config, n_steps: int) -> list[float]:
    from actscale.engine.observer import RunObserver
    from actscale.engine.training import train

    class Stamps(RunObserver):
        def __init__(self) -> None:
            self.times: list[float] = []

        def step(self, info) -> None:  # noqa: ARG002 - the observer's signature
            self.times.append(time.perf_counter())

    stamps = Stamps()
    train(model, task, config.replace(steps=n_steps, early_stop=0), observer=stamps)
    return [b - a for a, b in zip(stamps.times, stamps.times[1:])]


def json_process(*args: str) -> tuple[float, Any]:
    """``python ARGS`` in a new process: (wall seconds, the JSON of its last output line, or
    {"error": its last line of stderr} when it fails)."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        return wall, {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return wall, json.loads(out.stdout.strip().splitlines()[-1])


def cli(*args: str) -> tuple[float, dict]:
    """``python -m actscale ARGS`` in a new process: (wall seconds, its JSON or {"error": line})."""
    return json_process("-m", "actscale", *args)


# (b)'s runs: the default (float32 on every machine), then the same under bfloat16 autocast,
# which pays where the device computes bf16 natively (docs/measured.md).
