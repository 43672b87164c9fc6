"""``python -m benchmarks.bench`` (``make bench``): speed figures measured side by side in one run.

(a) the engine's training-step time divided by a plain-PyTorch floor: the same Hugging Face
    weights, batch, sites and precision (the default run's: ``autocast="auto"`` resolved on this
    machine), with bare ``register_forward_hook`` hooks on the Hugging Face modules and the same
    loss, measured alternately in the same process;
(b) wall time from a cold start (a new process) to a trained IOI ActivScalar run with its
    validation metrics (the first result), where that time goes (start and imports, load, task,
    base pass, steps, evaluation of the training and validation prompts), and the evaluation on
    the test prompts timed apart, with the held-out metrics checked against the targets;
(c) cold (GGUF de-quantisation into an empty cache) and warm (converted copy) model loads;
(d) how cost grows: step time and peak step memory against tokens per batch (×1, ×2, ×4 prompts
    per batch on the bundled model) and against depth (tiny Llama models of 2, 4, 8 and 16
    layers at one width), each with its fitted growth exponent, and the pre-training memory
    estimate (`resources.step_memory_bytes`) against the measured peak;
(e) the map checks (``analyse``) of the run of (b);
(f) that run's Explore page in Chromium: a fresh page on a warm server, until its maps and until
    every figure is drawn, and the floor: the same maps on a page with only a title, visited in
    turn, Explore's maps as a multiple of it (`explore_timing`).

Everything runs on the device it prints first (CUDA when there is one, else the CPU).

The engine is imported inside the functions that time it, so the library imports are timed
apart from the model load.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from actscale.machine import cpu_description


def _floor_model(folder: Path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _floor_steps(hf, task, config, base_logits: torch.Tensor, n_steps: int) -> list[float]:
    """Plain PyTorch: ActivScalar on attn_out and mlp_out through bare module hooks."""
    from actscale.engine.objective import objective

    layers = hf.model.layers
    n_layers, n_pos = len(layers), task.n_pos
    alpha = {s: torch.zeros(n_layers, n_pos, requires_grad=True) for s in ("attn_out", "mlp_out")}
    opt = torch.optim.Adam(list(alpha.values()), lr=config.lr)
    state: dict = {}

    def make(site: str, layer: int):
        def hook(_module, _inputs, output):
            h = output[0] if isinstance(output, tuple) else output
            h = h * (1 + state["beta"][:, None, None] * alpha[site][layer][None, :, None])
            return (h, *output[1:]) if isinstance(output, tuple) else h

        return hook

    handles = [layers[i].self_attn.register_forward_hook(make("attn_out", i)) for i in range(n_layers)]
    handles += [layers[i].mlp.register_forward_hook(make("mlp_out", i)) for i in range(n_layers)]
    train_idx = task.split_indices("train")
    times = []
    try:
        for step in range(n_steps):
            rows = train_idx[(torch.arange(config.batch_size) + step * config.batch_size) % len(train_idx)]
            b = rows.numel()
            t0 = time.perf_counter()
            state["beta"] = torch.cat([torch.ones(b), -torch.ones(b)])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):  # the run's precision
                logits = hf(task.tokens[rows].repeat(2, 1), logits_to_keep=1).logits[:, -1, :].float()
            l1 = sum((a.abs().sum() for a in alpha.values()), torch.zeros(()))
            terms = objective(
                logits,
                base_logits[rows].repeat(2, 1),
                task.correct_ids[rows].repeat(2),
                task.wrong_ids[rows].repeat(2),
                state["beta"],
                l1,
                margin=config.margin,
                lambda_f=config.lambda_f,
                lambda_m=config.lambda_m,
            )
            opt.zero_grad(set_to_none=True)
            terms.total.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
    finally:
        for h in handles:
            h.remove()
    return times


def _engine_steps(model, task, config, n_steps: int) -> list[float]:
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


def bench_step_ratio(rounds: int, n_steps: int) -> dict:
    from actscale.engine.evaluation import base_pass
    from actscale.engine.models import bundled_model_folder, load_model
    from actscale.engine.resources import resolve_autocast
    from actscale.engine.training import TrainConfig
    from actscale.runs.api import build_task

    model = load_model("bundled", "cpu")
    config = resolve_autocast(TrainConfig(), model)  # the default run's precision (float32)
    task = build_task(model, config)
    hf = _floor_model(bundled_model_folder())
    base_logits = base_pass(model, task, config.sites, autocast=config.bf16).logits  # shared, as in training
    engine, floor, ratios = [], [], []
    _engine_steps(model, task, config, 2)  # warm-up both paths
    _floor_steps(hf, task, config, base_logits, 2)
    for _ in range(rounds):  # alternate, so both see the same machine load
        e_round = _engine_steps(model, task, config, n_steps + 1)
        f_round = _floor_steps(hf, task, config, base_logits, n_steps)
        engine += e_round
        floor += f_round
        # A ratio per round (each side's median), so a slow spell of a shared host that falls
        # on one round moves that round's ratio, not the figure.
        ratios.append(statistics.median(e_round) / statistics.median(f_round))
    return {
        "engine_step_s": round(statistics.median(engine), 4),
        "floor_step_s": round(statistics.median(floor), 4),
        "step_ratio": round(statistics.median(ratios), 3),
        "round_ratios": [round(r, 3) for r in ratios],
        "batch": f"{config.batch_size} prompts x 2 betas x {task.n_pos} tokens, "
        f"{'bf16 autocast' if config.bf16 else 'float32'}",
        "steps_timed": len(engine),
    }


def device_description(device: str) -> str:
    """The device the figures were measured on, in words."""
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        return f"{device}: {props.name}, {props.total_memory / 2**30:.0f} GiB"
    return f"cpu: {cpu_description()}, torch threads {torch.get_num_threads()}"


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
    which is what the operating system kills a process for; None elsewhere. The step runs
    twice and the second is measured, so one-off allocations are not counted."""
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
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")  # resets the resident peak to the current size
        before = _status_bytes("VmRSS")
        step()
        return _status_bytes("VmHWM") - before
    except OSError:
        return None


def peak_in_new_process(model: str, device: str, fields: dict, layers: int = 0, width: int = 0) -> int | None:
    """`step_peak_bytes` measured in a new process that loads ``model`` (``tiny``: a tiny Llama
    of ``layers`` × ``width``), builds the task of ``TrainConfig(**fields)`` and takes two
    warm-up steps first, as a user's training process does. Measured in the bench's own
    process, after the other points' steps, the resident peak of the ×4 point read about a
    fifth lower (the heap kept and reused their freed memory)."""
    spec = json.dumps({"model": model, "device": device, "fields": fields, "layers": layers, "width": width})
    code = (
        "import json, sys; from benchmarks import bench; print(json.dumps(bench.child_peak(json.loads(sys.argv[1]))))"
    )
    _, result = _json_process("-c", code, spec)
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
    _engine_steps(model, task, config, 2)
    return step_peak_bytes(model, task, config)


def _scaling_point(model, task, config, n_steps: int, peak: int | None) -> dict:
    from actscale.engine.resources import resolve_autocast, step_memory_bytes

    config = resolve_autocast(config, model)
    _engine_steps(model, task, config, 2)  # warm-up: one-off costs of a new model or batch shape
    times = _engine_steps(model, task, config, n_steps + 1)
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


def _json_process(*args: str) -> tuple[float, Any]:
    """``python ARGS`` in a new process: (wall seconds, the JSON of its last output line, or
    {"error": its last line of stderr} when it fails)."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        return wall, {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return wall, json.loads(out.stdout.strip().splitlines()[-1])


def _cli(*args: str) -> tuple[float, dict]:
    """``python -m actscale ARGS`` in a new process: (wall seconds, its JSON or {"error": line})."""
    return _json_process("-m", "actscale", *args)


# (b)'s runs: the default (float32 on every machine), then the same under bfloat16 autocast,
# which pays where the device computes bf16 natively (docs/measured.md).
TARGET_VARIANTS = (
    ("time_to_target", "", ()),
    ("time_to_target_bf16", " (--autocast bf16)", ("--autocast", "bf16")),
)


def bench_time_to_target(store: Path, model: str = "bundled", extra: tuple[str, ...] = ()) -> dict:
    """A new process, as a user runs it: imports, warm model load, task, training, evaluation."""
    wall, result = _cli(
        "train",
        "--model",
        model,
        "--task",
        "ioi",
        "--method",
        "activscalar",
        "--no-reuse",
        "--store",
        str(store),
        *extra,
    )
    if "error" in result:
        return result
    metrics = result["metrics"]
    test = metrics["test"]
    met = test["flip_acc_pos"] >= 0.9 and test["flip_acc_neg"] >= 0.9 and test["effective_frac"] <= 0.2
    timing = result["timing"]
    in_process = timing["load_s"] + timing["task_s"] + timing["run_s"]
    # The process's start and its library imports: what the command's own clock did not see.
    phases = {"start_and_imports_s": round(wall - in_process, 2)}
    for key in ("load_s", "task_s", "base_pass_s", "steps_s", "eval_s"):
        phases[key] = round(timing[key], 2)
    first = sum(phases.values())
    # After the first result: the training and test prompts' evaluation, the bundle's write, the exit.
    phases["rest_eval_s"] = round(timing["rest_eval_s"], 2)
    phases["store_s"] = round(wall - first - timing["rest_eval_s"], 2)
    return {
        "run_id": result["run_id"],
        "dtype": json.loads((Path(result["bundle"]) / "config.json").read_text())["dtype"],
        "wall_s": round(wall, 2),
        "first_result_s": round(first, 2),
        "rest_eval_s": phases["rest_eval_s"],
        "n_val": metrics["val"]["n_prompts"],
        "n_rest": sum(m["n_prompts"] for split, m in metrics.items() if split != "val"),
        "n_test": test["n_prompts"],
        "phases": phases,
        "val_flip_acc_pos": metrics["val"]["flip_acc_pos"],
        "val_flip_acc_neg": metrics["val"]["flip_acc_neg"],
        "flip_acc_pos": test["flip_acc_pos"],
        "flip_acc_neg": test["flip_acc_neg"],
        "n_effective": test["n_effective"],
        "n_components": test["n_components"],
        "targets_met": met,
    }


def bench_checks(store: Path, run_id: str, model: str = "bundled") -> dict:
    """A new process running the map checks (``analyse``, default options) on a stored run."""
    wall, result = _cli("analyse", "--run", run_id, "--store", str(store))
    if "error" in result:
        return result
    free = json.loads((store / run_id / "checks.json").read_text())["map"].get("free") or {}
    return {
        "wall_s": round(wall, 2),
        "checks_s": result["seconds"],
        "k90": result["k90"],
        "of": result["n_components"],
        "free_maps_s": free.get("seconds"),
        "localisation_s": (free.get("localisation") or {}).get("seconds"),
        "patching_s": (free.get("patching") or {}).get("seconds"),
        "patched": (free.get("patching") or {}).get("patched"),
        "diffmean_fit_s": bench_diffmean_fit(store, model),
    }


def bench_diffmean_fit(store: Path, model: str) -> float | None:
    """DiffMean on the default IOI prompts in a new process: the seconds of its fit (what it has
    instead of training steps), as stored with the run."""
    from actscale.runs.store import RunStore

    _, result = _cli("train", "--model", model, "--task", "ioi", "--method", "diffmean", "--store", str(store))
    if "run_id" not in result:
        return None
    return RunStore(store).load(result["run_id"]).info["fit"]["seconds"]


def explore_part(store: Path, run_id: str) -> dict:
    """(f): the run's Explore page in a browser (`explore_timing`); the maps are the figures of
    its first panel."""
    from benchmarks.explore_timing import bench_explore

    return bench_explore(store, run_id)


def bench_loads() -> dict:
    # The libraries (torch, transformers, TransformerLens) are imported first and timed apart:
    # a process pays for them once, whatever it loads; the load is what a model costs.
    code = (
        "import time; t=time.perf_counter(); import transformers, transformers.modeling_utils, "
        "transformer_lens.model_bridge; from actscale.engine.models import load_model; "
        "from actscale.engine.models.wiring import check_wiring; i=time.perf_counter();"
        "m=load_model('bundled','cpu'); e=time.perf_counter(); check_wiring(m); w=time.perf_counter(); "
        "print(i-t, e-i, w-e)"
    )
    with tempfile.TemporaryDirectory() as cold_cache:
        env = {**os.environ, "ACTSCALE_CACHE": cold_cache}
        cold = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        warm = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    c_import, c_load, _ = map(float, cold.stdout.split()[-3:])
    w_import, w_load, wiring = map(float, warm.stdout.split()[-3:])
    return {
        "cold_load_s": round(c_load, 2),
        "warm_load_s": round(w_load, 2),
        "wiring_check_s": round(wiring, 2),
        "import_s": round(w_import, 2),
        "cold_over_warm": round(c_load / w_load, 1),
    }


PARTS = ("loads", "step", "target", "checks", "explore", "scaling")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="(a): alternated rounds of engine and floor steps")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"which figures, from {','.join(PARTS)}")
    parser.add_argument("--scale-steps", type=int, default=3, help="(d): timed steps per point")
    parser.add_argument("--depths", default="2,4,8,16", help="(d): layers of the tiny models")
    parser.add_argument("--width", type=int, default=256, help="(d): d_model of the tiny models")
    parser.add_argument("--no-bundled-scaling", action="store_true", help="(d): the tiny models only (a quick run)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--markdown", type=Path, help="also write the figures, dated, to this Markdown file")
    parser.add_argument(
        "--target-model", default="bundled", help="(b): the model (tiny-llama: a quick check of the bench)"
    )
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {', '.join(unknown)}: choose from {', '.join(PARTS)}")
    from actscale.engine.models import resolve_device

    device = resolve_device(args.device)
    torch.manual_seed(0)
    print(f"device {device_description(device)}")
    results: dict = {"device": device_description(device)}
    if "loads" in parts:
        print("(c) model loads ...", file=sys.stderr, flush=True)
        results["loads"] = bench_loads()
    if "step" in parts:
        print("(a) step time, engine vs plain PyTorch ...", file=sys.stderr, flush=True)
        results["step"] = bench_step_ratio(args.rounds, args.steps)
    if "target" in parts:
        print("(b) time to a trained IOI ActivScalar ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as store:
            # A store per variant: where two variants are the same run (autocast "auto" resolving
            # to float32), a shared store would keep the first bundle and report its timings.
            for key, label, extra in TARGET_VARIANTS:
                if extra:
                    print(f"(b) the same with {' '.join(extra)} ...", file=sys.stderr, flush=True)
                results[key] = bench_time_to_target(Path(store) / key, args.target_model, extra)
            if "checks" in parts and "run_id" in results["time_to_target"]:
                print("(e) the map checks of that run ...", file=sys.stderr, flush=True)
                run_id = results["time_to_target"]["run_id"]
                results["checks"] = bench_checks(Path(store) / "time_to_target", run_id, args.target_model)
            if "explore" in parts and "run_id" in results["time_to_target"]:
                print("(f) that run's Explore page in a browser ...", file=sys.stderr, flush=True)
                results["explore"] = explore_part(Path(store) / "time_to_target", results["time_to_target"]["run_id"])
    if "scaling" in parts:
        print("(d) how cost grows ...", file=sys.stderr, flush=True)
        depths = tuple(int(d) for d in args.depths.split(","))
        results["scaling"] = bench_scaling(device, args.scale_steps, depths, args.width, not args.no_bundled_scaling)
    lines = report_lines(results)
    for line in lines:
        print(line)
    if args.markdown is not None:
        write_markdown(args.markdown, results["device"], lines)
    print(json.dumps(results, sort_keys=True))
    return 0


def write_markdown(path: Path, device: str, lines: list[str]) -> None:
    """The figures as a dated Markdown page naming the machine (``make bench`` regenerates
    docs/bench-latest.md with it): seconds depend on the CPU, ratios much less."""
    stamp = time.strftime("%Y-%m-%d %H:%M %Z")
    body = [
        "# The latest `make bench`",
        "",
        f"Measured {stamp} on {device}. Regenerated by `make bench`; the dated figures of earlier",
        "sessions, and what each part measures, are in [measured.md](measured.md).",
        "",
        "```",
        *lines,
        "```",
        "",
    ]
    path.write_text("\n".join(body), encoding="utf-8")


def report_lines(results: dict) -> list[str]:
    """The figures of ``results`` as lines a person reads (the JSON follows them)."""
    lines = []
    if "step" in results:
        s = results["step"]
        spread = s.get("round_ratios") or []
        rounds = f", {len(spread)} rounds {min(spread)}-{max(spread)}" if spread else ""
        lines.append(
            f"(a) step time ratio engine/floor: {s['step_ratio']}  (median; {s['engine_step_s']} s vs "
            f"{s['floor_step_s']} s{rounds}, {s['batch']}; target <= 1.05)"
        )
    for key, label, _ in TARGET_VARIANTS:
        if key not in results:
            continue
        t = results[key]
        if "error" in t:
            lines.append(f"(b){label} time to target: failed: {t['error']}")
        else:
            lines.append(
                f"(b){label} new process -> trained IOI ActivScalar with its validation metrics "
                f"({t['n_val']} prompts; {t['dtype']}): {t['first_result_s']} s (target <= 15 s); then the other "
                f"{t['n_rest']} prompts' evaluation (training, and {t['n_test']} test): {t['rest_eval_s']} s; "
                f"whole command {t['wall_s']} s"
            )
            where = ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v} s" for k, v in t["phases"].items())
            lines.append(f"    where the time goes: {where}")
            lines.append(
                f"    validation flips +{t['val_flip_acc_pos']:.2f} / -{t['val_flip_acc_neg']:.2f}; "
                f"test flips +{t['flip_acc_pos']:.2f} / -{t['flip_acc_neg']:.2f}, n_effective "
                f"{t['n_effective']}/{t['n_components']}; targets met (test flips >= 0.9, effective <= 20%): "
                f"{t['targets_met']}"
            )
            if key == "time_to_target" and "step" in results:  # seconds depend on the CPU: in floor steps too
                floor = results["step"]["floor_step_s"]
                lines.append(
                    f"    the first result in plain-PyTorch floor steps (the float32 floor step of (a), {floor} s): "
                    f"{t['first_result_s'] / floor:.1f} (target <= 12)"
                )
    if "checks" in results:
        c = results["checks"]
        if "error" in c:
            lines.append(f"(e) map checks: failed: {c['error']}")
        else:
            lines.append(
                f"(e) map checks (analyse, defaults) of that run: {c['checks_s']} s of checks, {c['wall_s']} s for the "
                f"whole command (target <= 60 s); k90 {c['k90']} of {c['of']}; of the checks, the AtP maps "
                f"{c.get('free_maps_s')} s (target: a few s) and the localisation curves {c.get('localisation_s')} s"
                + (
                    f"; exact patching of {c['patched']} cells {c['patching_s']} s (target <= 60 s)"
                    if c.get("patching_s") is not None
                    else ""
                )
                + (f"; DiffMean's fit {c['diffmean_fit_s']} s (target: a few s)" if c.get("diffmean_fit_s") else "")
            )
    if "explore" in results:
        e = results["explore"]
        if "error" in e:
            lines.append(f"(f) Explore in a browser: not measured: {e['error']}")
        else:
            plotly = e["interactive"]
            lines.append(
                f"(f) Explore in Chromium, a fresh page on a warm server (median of {len(e['page_each_s'])}): the "
                f"run's {e['n_maps']} maps (SVG images) drawn {e['maps_s']} s after the navigation starts, the whole "
                f"page ({e['figures']} figures) {e['page_s']} s (targets 1.5 s and 3 s); with interactive figures "
                f"(plotly, visits alternated) {plotly['maps_s']} s and {plotly['page_s']} s "
                f"({plotly['figures']} figures)"
            )
            if "floor" in e:
                lines.append(
                    f"    the floor, a Streamlit page with only a title and these {e['n_maps']} maps as images (visits "
                    f"alternated): {e['floor']['maps_s']} s; Explore's maps take {e['maps_over_floor']} x the floor"
                )
    if "loads" in results:
        loads = results["loads"]
        lines.append(
            f"(c) model load: cold {loads['cold_load_s']} s, warm {loads['warm_load_s']} s (target <= 3 s), "
            f"cold/warm {loads['cold_over_warm']}x; library imports before the load, once per process: "
            f"{loads['import_s']} s; the hook wiring check each load runs: {loads['wiring_check_s']} s (target < 1 s)"
        )
    if "scaling" in results:
        sc = results["scaling"]
        for key, label, unit in (("tokens", "tokens per batch", "tokens"), ("depth", "depth", "layers")):
            if key not in sc:
                continue
            part = sc[key]
            what = part.get("model", f"tiny Llama, width {part.get('width')}")
            lines.append(
                f"(d) {label} ({what}): step time ~ {unit}^{part['time_exponent']}, "
                f"peak memory ~ {unit}^{part['memory_exponent']}"
            )
            for p in part["points"]:
                x = f"x{p['factor']}" if "factor" in p else f"{p['layers']} layers"
                ratio = p["estimate_over_peak"]
                ok = "n/a" if ratio is None else "within +-30%" if abs(ratio - 1) <= 0.3 else "OUTSIDE +-30%"
                lines.append(
                    f"    {x}: {p['tokens']} tokens, {p.get('precision', 'float32')}, step {p['step_s']} s, "
                    f"peak {p['peak_mb']} MB; estimate "
                    f"{p['estimate_mb']} MB = {ratio} x measured ({ok})"
                )
    return lines


if __name__ == "__main__":
    sys.exit(main())
