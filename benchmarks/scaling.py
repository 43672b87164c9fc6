"""``make bench`` (d): how cost grows, step time and peak step memory against tokens per batch
(the bundled model) and against depth (tiny Llama models), with fitted growth exponents and the
pre-training memory estimate against the measured peak."""

from __future__ import annotations

import ctypes
import json
import math
import re
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.timing import engine_steps, json_process


def growth_exponent(xs: list[float], ys: list[float]) -> float:
    """The least-squares slope of log y against log x: y grows as x to this power."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def _status_bytes(key: str) -> int:
    """A ``kB`` line of /proc/self/status (Linux), in bytes."""
    found = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    if found is None:
        raise OSError(f"no {key} in /proc/self/status")
    return int(found.group(1)) * 1024


def step_peak_bytes(model, task, config) -> int | None:
    """Peak memory of one training step (a full batch, forward and backward) beyond what was in
    use before it: on CUDA the allocator's peak; on a Linux CPU the process's resident peak
    (VmHWM, reset through /proc/self/clear_refs after returning freed memory to the system),
    which is what the operating system kills a process for; None elsewhere. A first step is not
    measured (one-off allocations); on a CPU the largest of the next three is the figure, each
    from a trimmed heap: the heap may still serve part of a step from freed memory it kept, so
    a single reading can come out low."""
    from actscale.engine.evaluation import base_pass
    from actscale.engine.resources import resolve_autocast
    from actscale.engine.training import _BatchOrder, _train_step, new_intervention

    config = resolve_autocast(config, model)
    base = base_pass(model, task, config.sites, autocast=config.bf16)
    intervention = new_intervention(model, task, config)
    rows = _BatchOrder(task.split_indices("train"), config.batch_size, config.seed).next()

    def step() -> None:
        terms, _ = _train_step(model, task, base, intervention, config, rows, 1)
        terms.total.backward()

    step()
    if model.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - before)
    try:
        return max(_resident_peak(step) for _ in range(3))
    except OSError:
        return None


def _resident_peak(step) -> int:
    """The resident peak of ``step()`` above the resident size before it, the heap trimmed first."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # resets the resident peak to the current size
    before = _status_bytes("VmRSS")
    step()
    return _status_bytes("VmHWM") - before


def peak_in_new_process(model: str, device: str, fields: dict, layers: int = 0, width: int = 0) -> int | None:
    """`step_peak_bytes` measured in a new process that loads ``model`` (``tiny``: a tiny Llama
    of ``layers`` × ``width``), builds the task of ``TrainConfig(**fields)`` and runs the
    unmodified model's pass before its steps, as a user's training process does. Measured in the
    bench's own process, after the other points' steps, the resident peak of the ×4 point read
    about a fifth lower (the heap kept and reused their freed memory); after a whole training's
    warm-up (its evaluation included) the tiny 4 × 256 model's read 67.6–103 MB in new
    processes, against 96–105 MB without it (docs/measured.md, "The memory estimate's check")."""
    spec = json.dumps({"model": model, "device": device, "fields": fields, "layers": layers, "width": width})
    code = (
        "import json, sys; from benchmarks import scaling; "
        "print(json.dumps(scaling.child_peak(json.loads(sys.argv[1]))))"
    )
    _, result = json_process("-c", code, spec)
    if isinstance(result, dict) and "error" in result:
        print(f"  peak not measured: {result['error']}", file=sys.stderr, flush=True)
        return None
    return result


def child_peak(spec: dict) -> int | None:
    from actscale.engine.models import load_model, tiny_model
    from actscale.engine.training import TrainConfig
    from actscale.runs.api import build_task

    if spec["model"] == "tiny":
        model = tiny_model(spec["layers"], spec["width"], spec["device"])
        config = TrainConfig(**{**spec["fields"], "model": model.name})
    else:
        model = load_model(spec["model"], spec["device"])
        config = TrainConfig(**spec["fields"])
    task = build_task(model, config)
    return step_peak_bytes(model, task, config)


def _scaling_point(model, task, config, n_steps: int, peak: int | None) -> dict:
    from actscale.engine.resources import resolve_autocast, step_memory_bytes

    config = resolve_autocast(config, model)
    engine_steps(model, task, config, 2)  # warm-up: one-off costs of a new model or batch shape
    times = engine_steps(model, task, config, n_steps + 1)
    estimate = step_memory_bytes(model, task.n_pos, config.batch_size, bf16=config.bf16)
    return {
        "tokens": 2 * config.batch_size * task.n_pos,
        "precision": "bf16 autocast" if config.bf16 else "float32",
        "step_s": round(statistics.median(times), 4),
        "peak_mb": None if peak is None else round(peak / 1e6, 2),
        "estimate_mb": round(estimate / 1e6, 2),
        "estimate_over_peak": None if not peak else round(estimate / peak, 2),
    }


def bench_scaling(device: str, n_steps: int, depths: tuple[int, ...], width: int, bundled: bool) -> dict:
    """(d): cost against tokens per batch (bundled model, ×1, ×2, ×4 prompts per batch) and
    against depth (tiny models), with fitted exponents and the memory estimate's ratio."""
    from actscale.engine.models import load_model, tiny_model
    from actscale.engine.training import TrainConfig
    from actscale.runs.api import build_task

    out: dict = {}
    # 128 training prompts: batches of 8, 16 and 32 all come full, so every timed step has the
    # batch it is labelled with. Each model at its default precision ("auto": on a device with
    # native bf16 the bundled model steps in bf16, the 256-wide tiny models in float32).
    fields: dict[str, Any] = dict(
        task="ioi", method="activscalar", n_prompts=160, val_frac=0.2, n_test=8, early_stop=0, batch_size=8
    )
    base = TrainConfig(**fields)
    if bundled:
        model = load_model("bundled", device)
        task = build_task(model, base)
        points = []
        for factor in (1, 2, 4):
            config = base.replace(batch_size=base.batch_size * factor)
            print(f"  bundled model, {config.batch_size} prompts per batch ...", file=sys.stderr, flush=True)
            peak = peak_in_new_process("bundled", device, {**fields, "batch_size": config.batch_size})
            points.append({"factor": factor, **_scaling_point(model, task, config, n_steps, peak)})
        out["tokens"] = {"model": model.describe(), "points": points, **_exponents(points, "tokens")}
        del model
    points = []
    for n_layers in depths:
        model = tiny_model(n_layers, width, device)
        config = base.replace(model=model.name)
        task = build_task(model, config)
        print(f"  {model.name} ...", file=sys.stderr, flush=True)
        peak = peak_in_new_process("tiny", device, fields, n_layers, width)
        points.append({"layers": n_layers, **_scaling_point(model, task, config, n_steps, peak)})
    out["depth"] = {"width": width, "points": points, **_exponents(points, "layers")}
    return out


def _exponents(points: list[dict], x: str) -> dict:
    xs = [float(p[x]) for p in points]
    peaks = [p["peak_mb"] for p in points]
    return {
        "time_exponent": round(growth_exponent(xs, [p["step_s"] for p in points]), 2),
        "memory_exponent": None if None in peaks else round(growth_exponent(xs, peaks), 2),
    }
