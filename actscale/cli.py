"""``python -m actscale train|sweep|eval|analyse|list`` (docs/interfaces.md, Command line).

The engine (torch, transformers, TransformerLens: seconds to import) is imported inside each
command, so ``--help`` and a mistyped option answer at once.

Progress goes to stderr; the last line on stdout is one JSON object. Exit status 0 on success,
2 on bad input (one line on stderr, no traceback), 1 on anything else.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from actscale.engine.interventions import float32_under_auto, registered_methods
from actscale.engine.models import auto_precision_rule
from actscale.engine.sites import SITES
from actscale.errors import ActscaleError, TrainingCancelled, one_line

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse exits with status 2 on bad arguments already; keep its message to one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        # ``prog`` is "python -m actscale" or "python -m actscale train": the usage hint is the same.
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see `{self.prog} --help`)\n")


def _add_run_options(t: argparse.ArgumentParser, d: Any, sweep: bool) -> None:
    """The options that define a run: ``train``'s, and ``sweep``'s base configuration (where
    λ_M, λ_F, m and the seed take comma-separated lists)."""
    t.add_argument(
        "--model", default=d.model, help="'bundled' (default), a Hugging Face id, a local folder, or a .gguf file"
    )
    t.add_argument("--task", default=d.task, choices=["ioi", "ccc", "custom"])
    t.add_argument("--method", default=d.method, choices=list(registered_methods()))
    t.add_argument("--sites", default=",".join(d.sites), help=f"comma-separated, from {','.join(SITES)}")
    t.add_argument("--steps", type=int, default=None, help="default: the method's (see docs/usage.md)")
    t.add_argument("--lr", type=float, default=None, help="default: the method's (see docs/usage.md)")
    t.add_argument("--batch-size", type=int, default=None, help="default: the method's (see docs/usage.md)")
    if sweep:
        t.add_argument("--margin", default=str(d.margin), help="comma-separated values (default %(default)s)")
        t.add_argument("--lambda-f", default=str(d.lambda_f), help="comma-separated values (default %(default)s)")
        t.add_argument("--lambda-m", default="", help="comma-separated values (default: the method's)")
        t.add_argument("--seeds", default=str(d.seed), help="comma-separated seeds (default %(default)s)")
    else:
        t.add_argument("--margin", type=float, default=d.margin)
        t.add_argument("--lambda-f", type=float, default=d.lambda_f)
        t.add_argument("--lambda-m", type=float, default=None, help="default: the method's (see docs/usage.md)")
        t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument("--n-prompts", type=int, default=d.n_prompts)
    t.add_argument("--test-frac", type=float, default=d.test_frac, help="custom data: the share of prompts for test")
    t.add_argument(
        "--val-frac",
        type=float,
        default=d.val_frac,
        help="the share of the non-test prompts held out for validation (early stopping, choices)",
    )
    t.add_argument("--n-test", type=int, default=d.n_test, help="generated tasks: test prompts, drawn apart")
    t.add_argument(
        "--data-seed",
        type=int,
        default=None,
        help="draws the prompts and the split (default: each run's seed)",
    )
    t.add_argument(
        "--prepend-bos",
        default="model",
        choices=["model", "yes", "no"],
        help="put the tokenizer's BOS token in front of each prompt (default: the model's own default)",
    )
    t.add_argument(
        "--test-groups",
        default="",
        help="groups held out for test: IOI template families, CCC countries, a file's groups",
    )
    t.add_argument("--dataset", default="", help="CSV/JSONL with prompt,correct,wrong[,split] (task custom)")
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    t.add_argument("--store", default=None, help="where bundles go (default $ACTSCALE_STORE, else ./runs)")
    t.add_argument(
        "--early-stop",
        type=int,
        default=d.early_stop,
        help="stop after this many steps in a row with zero effectiveness loss (0 = off)",
    )
    t.add_argument(
        "--positions",
        default="auto",
        choices=["auto", "absolute", "answer"],
        help="ActivScalar/SteerVec: 'absolute' keeps one prompt length and counts from the first token; "
        "'answer' keeps every length and counts back from the last token; 'auto' (default): answer for "
        "a --dataset file, absolute for the generated tasks",
    )
    t.add_argument(
        "--autocast",
        default=d.autocast,
        choices=["auto", "off", "bf16"],
        help="bf16: the frozen model runs in bfloat16 under torch.autocast; the intervention's parameters "
        f"stay float32. auto (default): {auto_precision_rule(float32_under_auto())}; the run's config records "
        "which",
    )
    t.add_argument("--raw-dot", action="store_true", help="DynScalar: dot product with the raw activation")
    t.add_argument("--ccc-context-is-correct", action="store_true", help="CCC: a+ is the context's capital")
    t.add_argument("--templates", default="", help="IOI: comma-separated template ids to use")
    t.add_argument("--test-templates", default="", help="IOI: template ids held out for the test split")
    t.add_argument("--no-reuse", action="store_true", help="train even if the same run is stored")


def build_parser() -> argparse.ArgumentParser:
    from actscale.engine.training import TrainConfig
    from actscale.runs.executors import EXECUTOR_NAMES, RAY_ADDRESS_ENV

    d = TrainConfig()
    parser = _Parser(prog="python -m actscale", description="Train and inspect activation-scaling interventions.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train an intervention and store its run bundle")
    _add_run_options(t, d, sweep=False)

    w = sub.add_parser("sweep", help="train a grid of λ_M, λ_F, m and seeds, in this process or on Ray")
    _add_run_options(w, d, sweep=True)
    w.add_argument(
        "--executor",
        default=None,
        choices=list(EXECUTOR_NAMES),
        help=f"local (this process, the default) or ray (the default when ${RAY_ADDRESS_ENV} is set)",
    )
    w.add_argument(
        "--ray-address",
        default=None,
        help="the Ray cluster (host:6379, ray://host:10001) or 'auto' to start a local one; "
        f"default ${RAY_ADDRESS_ENV}, else auto",
    )
    w.add_argument(
        "--workers", type=int, default=None, help="Ray: how many workers (default: one per GPU, else one per CPU)"
    )

    e = sub.add_parser("eval", help="evaluate a stored run")
    e.add_argument("--run", required=True, help="a run folder, or a run id in --store")
    e.add_argument("--dataset", default=None, help="evaluate on this CSV/JSONL instead of the run's data")
    e.add_argument("--beta", type=float, default=1.0, help="steering strength (evaluated at +beta and -beta)")
    e.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    e.add_argument("--store", default=None)

    a = sub.add_parser(
        "analyse", help="check what a run's map means (docs/method.md §7) and store the checks in its bundle"
    )
    a.add_argument("--run", required=True, help="a run folder, or a run id in --store")
    a.add_argument(
        "--seeds", type=int, default=0, help="stability over this many seeds, the run's own included (0: none)"
    )
    a.add_argument(
        "--vary",
        default="seed",
        choices=["seed", "data"],
        help="stability: vary the training seed on the same data (default) or the data seed",
    )
    a.add_argument(
        "--generalisation", action="store_true", help="train one run per group and test it on every other group"
    )
    a.add_argument("--no-side-effects", action="store_true", help="skip the neutral-text check (runs of any length)")
    a.add_argument("--prompts", type=int, default=16, help="test prompts every variant is evaluated on")
    a.add_argument("--draws", type=int, default=20, help="random placements per k")
    a.add_argument(
        "--precision",
        default="run",
        choices=["run", "bf16", "float32"],
        help="the passes' precision: the run's own (default: bfloat16 autocast for a run trained under it, "
        "else float32), bf16 or float32; their agreement with the run's own evaluation is reported",
    )
    a.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    a.add_argument(
        "--executor",
        default="local",
        choices=["local", "ray"],
        help="where the seeds' and groups' runs train: this process (default) or a Ray cluster",
    )
    a.add_argument("--ray-address", default=None, help="the Ray cluster (default $ACTSCALE_RAY_ADDRESS, else auto)")
    a.add_argument("--store", default=None, help="where the seeds' and groups' runs go (default: the run's store)")

    ls = sub.add_parser("list", help="list the runs in a store")
    ls.add_argument("--store", default=None)
    return parser


def _split(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def _progress(info) -> None:
    print(
        f"step {info.step}/{info.n_steps} loss {info.loss:.4f} (E {info.effectiveness:.4f} "
        f"F {info.faithfulness:.4f} M {info.minimality:.2f}) flip +{info.flip_acc_pos:.2f} "
        f"-{info.flip_acc_neg:.2f} {info.elapsed:.1f}s",
        file=sys.stderr,
        flush=True,
    )


def _first_result(split: str, m: dict) -> str:
    """A trained run's first result in one line: the flip rates after the unmodified model's,
    with their 95% intervals."""
    from actscale.views.analysis import rate_text

    name = {"val": "validation", "train": "training"}.get(split, split)
    return f"{name} flips: β = +1 {rate_text(m, 'flip_acc_pos')}, β = -1 {rate_text(m, 'flip_acc_neg')}"


def _config(args: argparse.Namespace, **grid_values: Any) -> Any:
    """The TrainConfig the options describe; ``grid_values``: margin, λ_F, λ_M and the seed."""
    from actscale.engine.training import TrainConfig

    return TrainConfig(
        model=args.model,
        task=args.task,
        method=args.method,
        sites=args.sites,
        steps=args.steps,
        lr=args.lr,
        batch_size=args.batch_size,
        n_prompts=args.n_prompts,
        test_frac=args.test_frac,
        dataset=args.dataset,
        val_frac=args.val_frac,
        n_test=args.n_test,
        data_seed=args.data_seed,
        test_groups=_split(args.test_groups),
        prepend_bos={"model": None, "yes": True, "no": False}[args.prepend_bos],
        device=args.device,
        early_stop=args.early_stop,
        normalize=not args.raw_dot,
        memory_is_correct=not args.ccc_context_is_correct,
        templates=_split(args.templates),
        test_templates=_split(args.test_templates),
        positions=args.positions,
        autocast=args.autocast,
        **grid_values,
    )


def cmd_train(args: argparse.Namespace) -> dict:
    from actscale.engine.models import load_model
    from actscale.runs.api import build_task, train_run
    from actscale.runs.store import RunStore

    config = _config(args, margin=args.margin, lambda_f=args.lambda_f, lambda_m=args.lambda_m, seed=args.seed)
    if config.task == "custom":
        # A broken dataset file is reported before the model load, which can take half a minute.
        from actscale.engine.tasks import read_dataset

        read_dataset(config.dataset)
    print(f"loading model {config.model} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    model = load_model(config.model, config.device)
    loaded = time.perf_counter()
    task = build_task(model, config)
    built = time.perf_counter()
    print(task.summary(), file=sys.stderr, flush=True)
    steps_seen: list[int] = []

    def on_step(info) -> None:
        steps_seen.append(info.step)
        _progress(info)

    def on_result(split: str, m: dict) -> None:
        print(f"{_first_result(split, m)}; evaluating the other prompts ...", file=sys.stderr, flush=True)

    cancel = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: cancel.set())
    try:
        bundle = train_run(
            config,
            model,
            store=RunStore(args.store),
            task=task,
            on_step=on_step,
            cancel=cancel,
            reuse=not args.no_reuse,
            on_result=on_result,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    done = time.perf_counter()
    # Where this process's time went (a reused run: only the load and the task were this process's).
    timing = {"load_s": round(loaded - started, 3), "task_s": round(built - loaded, 3), "run_s": round(done - built, 3)}
    if steps_seen and isinstance(bundle.info.get("timing"), dict):
        timing.update(bundle.info["timing"])
    return {
        "run_id": bundle.run_id,
        "bundle": str(bundle.path),
        "method": bundle.method,
        "n_params": int(next(iter(bundle.metrics.values()))["n_params"]),
        "metrics": bundle.metrics,
        "timing": timing,
    }


def _numbers(text: str, name: str, kind: type = float) -> list:
    """A comma-separated list of numbers; ActscaleError (exit 2) for anything else."""
    try:
        values = [kind(v) for v in _split(text)]
    except ValueError:
        raise ActscaleError(f"--{name} takes comma-separated numbers, e.g. 0.01,0.05; got {text!r}") from None
    if not values:
        raise ActscaleError(f"--{name} needs at least one value")
    return values


def cmd_sweep(args: argparse.Namespace) -> dict:
    from actscale.runs.executors import resolve_executor, run_configs
    from actscale.runs.store import RunStore
    from actscale.runs.sweeps import MAX_CLUSTER_SWEEP, MAX_SWEEP, sweep_configs

    executor, address = resolve_executor(args.executor, args.ray_address)
    if executor == "local" and args.workers is not None:
        raise ActscaleError("workers is an option of the Ray executor; the local executor runs one run at a time")
    base = _config(args, margin=2.0, lambda_f=1.0, lambda_m=None, seed=0)
    lambda_ms = _numbers(args.lambda_m, "lambda-m") if args.lambda_m.strip() else [base.lambda_m]
    configs = sweep_configs(
        base.to_dict(),
        lambda_ms,
        _numbers(args.lambda_f, "lambda-f"),
        _numbers(args.margin, "margin"),
        seeds=_numbers(args.seeds, "seeds", int),
        limit=MAX_SWEEP if executor == "local" else MAX_CLUSTER_SWEEP,
    )
    if args.data_seed is None:  # each run's data seed follows its seed, as in `train`
        configs = [c.replace(data_seed=c.seed) for c in configs]
    where = "in this process" if executor == "local" else f"on Ray ({address})"
    print(f"sweep of {len(configs)} runs {where} ...", file=sys.stderr, flush=True)
    n = len(configs)

    def progress(event) -> None:
        if event.state == "running" and event.info is not None:
            print(f"[run {event.index + 1}/{n}] ", end="", file=sys.stderr)
            _progress(event.info)
        else:
            print(f"[run {event.index + 1}/{n}] {event.state} {event.run_id}", file=sys.stderr, flush=True)

    cancel = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: cancel.set())
    try:
        bundles = run_configs(
            configs,
            executor=executor,
            ray_address=address,
            store=RunStore(args.store),
            on_progress=progress,
            cancel=cancel,
            reuse=not args.no_reuse,
            workers=args.workers,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    return {
        "runs": [
            {
                "run_id": b.run_id,
                "bundle": str(b.path),
                "config": {k: v for k, v in b.config.items() if k != "created"},
                "metrics": b.metrics,
            }
            for b in bundles
        ]
    }


def cmd_eval(args: argparse.Namespace) -> dict:
    from actscale.engine.models import load_model
    from actscale.runs.api import evaluate_run, load_run
    from actscale.runs.store import RunStore

    bundle = load_run(args.run, RunStore(args.store))
    model = load_model(bundle.config["model"], args.device)
    metrics = evaluate_run(bundle, model, dataset=args.dataset, beta=args.beta)
    return {
        "run_id": bundle.run_id,
        "bundle": str(bundle.path),
        "method": bundle.method,
        "n_params": int(next(iter(metrics.values()))["n_params"]),
        "beta": args.beta,
        "metrics": metrics,
    }


def cmd_analyse(args: argparse.Namespace) -> dict:
    from actscale.checks import CheckOptions, run_checks
    from actscale.engine.models import load_model
    from actscale.runs.api import load_run
    from actscale.runs.store import RunStore

    options = CheckOptions(
        prompts=args.prompts,
        draws=args.draws,
        seeds=args.seeds,
        vary=args.vary,
        generalisation=args.generalisation,
        side_effects=not args.no_side_effects,
        precision=args.precision,
        executor=args.executor,
        ray_address=args.ray_address,
    )
    bundle = load_run(args.run, RunStore(args.store))
    model = load_model(bundle.config["model"], args.device)
    store = RunStore(args.store) if args.store else RunStore(bundle.path.parent)

    def progress(fraction: float, what: str) -> None:
        print(f"checks {100 * fraction:5.1f}%  {what}", file=sys.stderr, flush=True)

    checks = run_checks(model, bundle, options, store=store, on_progress=progress)
    summary = {k: v for k, v in checks.get("map", {}).items() if k in ("k90", "k90_frac", "n_components")}
    return {
        "run_id": bundle.run_id,
        "bundle": str(bundle.path),
        "checks": sorted(k for k in checks if k in ("map", "stability", "generalisation", "side_effects")),
        "seconds": checks["seconds"],
        **summary,
    }


def cmd_list(args: argparse.Namespace) -> dict:
    from actscale.runs.store import RunStore

    store = RunStore(args.store)
    runs = []
    for row in store.list():
        entry = {"run_id": row.run_id, "ok": row.ok}
        if row.ok:
            c = row.config
            entry.update(
                model=c.get("model"),
                task=c.get("task"),
                method=c.get("method"),
                created=c.get("created"),
                test=row.metrics.get("test", {}),
            )
            print(
                f"{row.run_id}  {c.get('model')}  {c.get('task')}  {c.get('method')}  {c.get('created')}",
                file=sys.stderr,
            )
        else:
            entry["reason"] = row.reason
            print(f"{row.run_id}  BROKEN: {row.reason}", file=sys.stderr)
        runs.append(entry)
    return {"store": str(store.root), "runs": runs}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = {
        "train": cmd_train,
        "sweep": cmd_sweep,
        "eval": cmd_eval,
        "analyse": cmd_analyse,
        "list": cmd_list,
    }[args.command]
    try:
        result = command(args)
    except ActscaleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TrainingCancelled as exc:
        print(f"cancelled: {exc}; nothing was stored", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted; nothing was stored", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - status 1 with one line, as the contract says
        print(f"error: {one_line(exc, limit=500)}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(result, sort_keys=True))
    return EXIT_OK
