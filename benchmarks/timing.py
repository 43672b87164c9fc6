"""What the bench's parts share: the device in words, a command in a new process, and the
engine's training steps timed one by one."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
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
    wall, result, _ = json_process_lines(*args)
    return wall, result


def json_process_lines(*args: str) -> tuple[float, Any, list[tuple[float, str]]]:
    """`json_process`, with each line the process wrote to stderr and the seconds from its start
    at which it arrived: what someone watching the command sees, and when (the process's exit
    comes after its last line)."""
    t0 = time.perf_counter()
    lines: list[tuple[float, str]] = []
    with tempfile.TemporaryFile("w+") as out:  # a file, not a pipe: no wait on a full buffer
        proc = subprocess.Popen([sys.executable, *args], stdout=out, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append((time.perf_counter() - t0, line.rstrip("\n")))
        code = proc.wait()
        wall = time.perf_counter() - t0
        out.seek(0)
        stdout = out.read().strip()
    if code != 0:
        last = [text for _, text in lines if text.strip()]
        return wall, {"error": last[-1] if last else f"exit {code}"}, lines
    return wall, json.loads(stdout.splitlines()[-1]), lines


def cli(*args: str) -> tuple[float, dict]:
    """``python -m actscale ARGS`` in a new process: (wall seconds, its JSON or {"error": line})."""
    return json_process("-m", "actscale", *args)


def cli_lines(*args: str) -> tuple[float, dict, list[tuple[float, str]]]:
    """`cli`, with its stderr lines as `json_process_lines` gives them."""
    return json_process_lines("-m", "actscale", *args)


def first_line_at(lines: list[tuple[float, str]], prefix: str) -> float | None:
    """The seconds at which the first of ``lines`` starting with ``prefix`` arrived, or None
    (unrounded, so that it compares with the process's wall time; the report rounds)."""
    return next((t for t, text in lines if text.startswith(prefix)), None)
