"""``python -m benchmarks.bench`` (``make bench``): speed figures measured side by side in one run.

(a) the engine's training-step time divided by a plain-PyTorch floor: the same Hugging Face
    weights, batch, sites and precision (the default run's: ``autocast="auto"`` resolved on this
    machine), with bare ``register_forward_hook`` hooks on the Hugging Face modules and the same
    loss, measured alternately in the same process;
(b) wall time from a cold start (a new process) to the first result, the step first seen to
    reach the validation target with its validation flips (printed while the run trains on), and
    to the trained IOI ActivScalar run with its validation metrics; where that time goes (start
    and imports, load, task, base pass, steps, evaluation of the training and validation
    prompts), and the evaluation on the test prompts timed apart, with the held-out metrics
    checked against the targets;
(c) cold (GGUF de-quantisation into an empty cache) and warm (converted copy) model loads;
(d) how cost grows: step time and peak step memory against tokens per batch (×1, ×2, ×4 prompts
    per batch on the bundled model) and against depth (tiny Llama models of 2, 4, 8 and 16
    layers at one width), each with its fitted growth exponent, and the pre-training memory
    estimate (`resources.step_memory_bytes`) against the measured peak;
(e) the map checks (``analyse``) of the run of (b);
(f) that run's Explore page in Chromium: a fresh page on a warm server, until its maps and until
    every figure is drawn, and the floor: the same maps on a page with only a title, visited in
    turn, Explore's maps as a multiple of it (`explore_timing`);
(g) the dashboard with the model resident: from the Train page's click on the default form to
    the first result on the page (the step that reached the target) and to the trained run's
    (`dashboard_timing`).

The parts live beside this module: (d) in `scaling`, (f) and (g) in `explore_timing` and
`dashboard_timing`, the printed lines in `report`, what they share in `timing`.

Everything runs on the device it prints first (CUDA when there is one, else the CPU).

The engine is imported inside the functions that time it, so the library imports are timed
apart from the model load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.report import TARGET_VARIANTS, report_lines, write_markdown
from benchmarks.scaling import bench_scaling
from benchmarks.timing import cli, cli_lines, device_description, engine_steps, first_line_at


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
    engine_steps(model, task, config, 2)  # warm-up both paths
    _floor_steps(hf, task, config, base_logits, 2)
    for _ in range(rounds):  # alternate, so both see the same machine load
        e_round = engine_steps(model, task, config, n_steps + 1)
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


def bench_time_to_target(store: Path, model: str = "bundled", extra: tuple[str, ...] = ()) -> dict:
    """A new process, as a user runs it: imports, warm model load, task, training, evaluation.
    The results are timed when their lines arrive on stderr, as someone watching sees them; the
    run's own record (the JSON's ``timing``) says where the time in between went."""
    args = ("train", "--model", model, "--task", "ioi", "--method", "activscalar", "--no-reuse")
    wall, result, lines = cli_lines(*args, "--store", str(store), *extra)
    if "error" in result:
        return result
    trained = first_line_at(lines, "trained: ")
    if trained is None:
        return {"error": "the command printed no line with the trained run's validation flips"}
    metrics = result["metrics"]
    test = metrics["test"]
    met = test["flip_acc_pos"] >= 0.9 and test["flip_acc_neg"] >= 0.9 and test["effective_frac"] <= 0.2
    timing = result["timing"]
    phases = _phases(wall, timing, lines)
    # The step that first reached the validation target, told while the run trained on.
    target: dict[str, Any] = {"target_step": timing.get("target_step")}
    if timing.get("target_step") is not None:
        reached = first_line_at(lines, f"step {timing['target_step']}: the target reached")
        target["target_result_s"] = None if reached is None else round(reached, 2)
    return {
        "run_id": result["run_id"],
        "dtype": json.loads((Path(result["bundle"]) / "config.json").read_text())["dtype"],
        "wall_s": round(wall, 2),
        "first_result_s": round(trained, 2),
        **target,
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


def _phases(wall: float, timing: dict, lines: list[tuple[float, str]]) -> dict[str, float]:
    """Where (b)'s process spent its time: its start and imports (until the line it prints before
    the load), the run's own record of its passes, the rest of the run (``other``: its set-up,
    the metrics' arithmetic, the bundle's write), then the JSON and the exit after it."""
    loading = first_line_at(lines, "loading model ") or 0.0
    phases = {"start_and_imports_s": round(loading, 2)}
    for key in ("load_s", "task_s", "base_pass_s", "steps_s", "eval_s", "rest_eval_s"):
        phases[key] = round(timing[key], 2)
    in_run = sum(timing[k] for k in ("base_pass_s", "steps_s", "eval_s", "rest_eval_s"))
    phases["other_s"] = round(timing["run_s"] - in_run, 2)
    phases["exit_s"] = round(wall - loading - timing["load_s"] - timing["task_s"] - timing["run_s"], 2)
    return phases


def bench_checks(store: Path, run_id: str, model: str = "bundled") -> dict:
    """A new process running the map checks (``analyse``, default options) on a stored run."""
    wall, result = cli("analyse", "--run", run_id, "--store", str(store))
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

    _, result = cli("train", "--model", model, "--task", "ioi", "--method", "diffmean", "--store", str(store))
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


PARTS = ("loads", "step", "target", "checks", "explore", "dashboard", "scaling")


def _run_parts(parts: list[str], args: argparse.Namespace, device: str) -> dict:
    """Each part of ``parts`` measured, in an order that keeps (b)'s run for (e) and (f)."""
    results: dict = {}
    if "loads" in parts:
        print("(c) model loads ...", file=sys.stderr, flush=True)
        results["loads"] = bench_loads()
    if "step" in parts:
        print("(a) step time, engine vs plain PyTorch ...", file=sys.stderr, flush=True)
        results["step"] = bench_step_ratio(args.rounds, args.steps)
    if "target" in parts:
        results.update(_target_parts(parts, args.target_model, device))
    if "dashboard" in parts:
        print("(g) the dashboard's first result in a browser ...", file=sys.stderr, flush=True)
        from benchmarks.dashboard_timing import bench_dashboard_visits

        results["dashboard"] = bench_dashboard_visits(args.target_model, args.visits)
    if "scaling" in parts:
        print("(d) how cost grows ...", file=sys.stderr, flush=True)
        depths = tuple(int(d) for d in args.depths.split(","))
        results["scaling"] = bench_scaling(device, args.scale_steps, depths, args.width, not args.no_bundled_scaling)
    return results


def _target_parts(parts: list[str], model: str, device: str) -> dict:
    """(b) in a new process per variant, then (e) and (f) on its default run. The bf16 variant
    is left out where ``device`` emulates bfloat16: on the AVX2-only CPU it took 13 of the
    bench's 31 minutes to time a precision no one should train in there (docs/measured.md)."""
    from actscale.engine.models import native_bf16

    print("(b) time to a trained IOI ActivScalar ...", file=sys.stderr, flush=True)
    results: dict = {}
    with tempfile.TemporaryDirectory() as store:
        # A store per variant: where two variants are the same run (autocast "auto" resolving
        # to float32), a shared store would keep the first bundle and report its timings.
        for key, label, extra in TARGET_VARIANTS:
            if "bf16" in extra and not native_bf16(device):
                results[key] = {"skipped": f"{device} computes bfloat16 by emulation (no native bf16)"}
                continue
            if extra:
                print(f"(b) the same with {' '.join(extra)} ...", file=sys.stderr, flush=True)
            results[key] = bench_time_to_target(Path(store) / key, model, extra)
        run_id = results["time_to_target"].get("run_id")
        if "checks" in parts and run_id:
            print("(e) the map checks of that run ...", file=sys.stderr, flush=True)
            results["checks"] = bench_checks(Path(store) / "time_to_target", run_id, model)
        if "explore" in parts and run_id:
            print("(f) that run's Explore page in a browser ...", file=sys.stderr, flush=True)
            results["explore"] = explore_part(Path(store) / "time_to_target", run_id)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="(a): alternated rounds of engine and floor steps")
    parser.add_argument("--visits", type=int, default=3, help="(g): visits, each a training (their median is reported)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"which figures, from {','.join(PARTS)}")
    parser.add_argument("--scale-steps", type=int, default=3, help="(d): timed steps per point")
    parser.add_argument("--depths", default="2,4,8,16", help="(d): layers of the tiny models")
    parser.add_argument("--width", type=int, default=256, help="(d): d_model of the tiny models")
    parser.add_argument("--no-bundled-scaling", action="store_true", help="(d): the tiny models only (a quick run)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--markdown", type=Path, help="also write the figures, dated, to this Markdown file")
    parser.add_argument(
        "--target-model", default="bundled", help="(b), (g): the model (tiny-llama: a quick check of the bench)"
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
    results: dict = {"device": device_description(device), **_run_parts(parts, args, device)}
    lines = report_lines(results)
    for line in lines:
        print(line)
    if args.markdown is not None:
        write_markdown(args.markdown, results["device"], lines)
    print(json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
