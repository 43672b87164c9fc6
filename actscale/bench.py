"""``python -m actscale.bench`` (``make bench``): speed figures measured side by side in one run.

(a) the engine's training-step time divided by a plain-PyTorch floor: the same Hugging Face
    weights, batch and sites, with bare ``register_forward_hook`` hooks on the Hugging Face
    modules and the same loss, measured alternately in the same process;
(b) wall time from a cold start (a new process) to a trained IOI ActivScalar run, with its
    held-out metrics, checked against the targets;
(c) cold (GGUF de-quantisation into an empty cache) and warm (converted copy) model loads.

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

import torch


def _floor_model(folder: Path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _floor_steps(hf, task, config, base_logits: torch.Tensor, n_steps: int) -> list[float]:
    """Plain PyTorch: ActivScalar on attn_out and mlp_out through bare module hooks."""
    from actscale.objective import objective

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
            logits = hf(task.tokens[rows].repeat(2, 1), logits_to_keep=1).logits[:, -1, :]
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
    from actscale.training import train

    stamps: list[float] = []
    train(
        model,
        task,
        config.replace(steps=n_steps, early_stop=0),
        on_step=lambda _info: stamps.append(time.perf_counter()),
    )
    return [b - a for a, b in zip(stamps, stamps[1:])]


def bench_step_ratio(rounds: int, n_steps: int) -> dict:
    from actscale.api import build_task
    from actscale.models import bundled_model_folder, load_model
    from actscale.training import TrainConfig, base_pass

    config = TrainConfig()
    model = load_model("bundled", "cpu")
    task = build_task(model, config)
    hf = _floor_model(bundled_model_folder())
    base_logits = base_pass(model, task, config.sites).logits  # shared, as in training
    engine, floor = [], []
    _engine_steps(model, task, config, 2)  # warm-up both paths
    _floor_steps(hf, task, config, base_logits, 2)
    for _ in range(rounds):  # alternate, so both see the same machine load
        engine += _engine_steps(model, task, config, n_steps + 1)
        floor += _floor_steps(hf, task, config, base_logits, n_steps)
    e, f = statistics.median(engine), statistics.median(floor)
    return {
        "engine_step_s": round(e, 4),
        "floor_step_s": round(f, 4),
        "step_ratio": round(e / f, 3),
        "batch": f"{config.batch_size} prompts x 2 betas x {task.n_pos} tokens",
        "steps_timed": len(engine),
    }


def bench_time_to_target(store: Path) -> dict:
    """A new process, as a user runs it: imports, warm model load, task, training, evaluation."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "actscale",
            "train",
            "--task",
            "ioi",
            "--method",
            "activscalar",
            "--no-reuse",
            "--store",
            str(store),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    result = json.loads(out.stdout.strip().splitlines()[-1])
    test = result["metrics"]["test"]
    met = test["flip_acc_pos"] >= 0.9 and test["flip_acc_neg"] >= 0.9 and test["n_effective"] <= 0.2 * test["n_params"]
    return {
        "wall_s": round(wall, 2),
        "flip_acc_pos": test["flip_acc_pos"],
        "flip_acc_neg": test["flip_acc_neg"],
        "n_effective": test["n_effective"],
        "n_params": test["n_params"],
        "targets_met": met,
    }


def bench_loads() -> dict:
    # The libraries (torch, transformers, TransformerLens) are imported first and timed apart:
    # a process pays for them once, whatever it loads; the load is what a model costs.
    code = (
        "import time; t=time.perf_counter(); import transformers, transformers.modeling_utils, "
        "transformer_lens.model_bridge; from actscale.models import load_model; i=time.perf_counter();"
        "load_model('bundled','cpu'); e=time.perf_counter(); print(i-t, e-i)"
    )
    with tempfile.TemporaryDirectory() as cold_cache:
        env = {**os.environ, "ACTSCALE_CACHE": cold_cache}
        cold = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        warm = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    c_import, c_load = map(float, cold.stdout.split()[-2:])
    w_import, w_load = map(float, warm.stdout.split()[-2:])
    return {
        "cold_load_s": round(c_load, 2),
        "warm_load_s": round(w_load, 2),
        "import_s": round(w_import, 2),
        "cold_over_warm": round(c_load / w_load, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actscale.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    results = {}
    print("(c) model loads ...", file=sys.stderr, flush=True)
    results["loads"] = bench_loads()
    print("(a) step time, engine vs plain PyTorch ...", file=sys.stderr, flush=True)
    results["step"] = bench_step_ratio(args.rounds, args.steps)
    print("(b) time to a trained IOI ActivScalar ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as store:
        results["time_to_target"] = bench_time_to_target(Path(store))
    s, t, loads = results["step"], results["time_to_target"], results["loads"]
    print(
        f"(a) step time ratio engine/floor: {s['step_ratio']}  ({s['engine_step_s']} s vs {s['floor_step_s']} s, "
        f"{s['batch']}; target <= 1.10)"
    )
    if "error" in t:
        print(f"(b) time to target: failed: {t['error']}")
    else:
        print(
            f"(b) time to trained IOI ActivScalar: {t['wall_s']} s (target <= 60 s); held-out flips "
            f"+{t['flip_acc_pos']:.2f} / -{t['flip_acc_neg']:.2f}, n_effective {t['n_effective']}/{t['n_params']}; "
            f"targets met: {t['targets_met']}"
        )
    print(
        f"(c) model load: cold {loads['cold_load_s']} s, warm {loads['warm_load_s']} s (target <= 3 s), "
        f"cold/warm {loads['cold_over_warm']}x; library imports before the load, once per process: "
        f"{loads['import_s']} s"
    )
    print(json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
