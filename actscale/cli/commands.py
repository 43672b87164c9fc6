"""The commands: each takes the parsed options and returns the JSON object printed last."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from actscale.cli.parser import config_fields_of
from actscale.cli.precision import say_emulated, say_emulated_training
from actscale.engine.observer import CancelOn  # no torch: --help stays fast
from actscale.errors import ActscaleError
from actscale.runs.progress import SweepObserver
from actscale.views.precision import PASS_COST
from actscale.views.words import counted

if TYPE_CHECKING:  # annotations only: the commands import torch when they run
    from actscale.engine.config import TrainConfig
    from actscale.engine.models import LoadedModel
    from actscale.engine.tasks import PreparedTask
    from actscale.runs.records import SplitMetrics
    from actscale.runs.store import RunStore


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


def _flips(split: str, metrics: dict | SplitMetrics, beta: float = 1.0) -> str:
    """A split's flip rates in one line, as the pages write them but with an ASCII minus."""
    from actscale.views.analysis import flips_text

    return flips_text(split, metrics, minus="-", beta=beta)


def _config(args: argparse.Namespace, **grid_values: Any) -> Any:
    """The TrainConfig the options describe; ``grid_values``: margin, λ_F, λ_M and the seed."""
    from actscale.engine.training import TrainConfig

    return TrainConfig(**{**config_fields_of(args), **grid_values})


def _say_ignored(config: Any, args: argparse.Namespace, grid: dict[str, list] | None = None) -> None:
    """A line on stderr for each option given that the config's task or method does not read
    (`TrainConfig.ignored`): `--templates` for CCC, `--target` for a run of one cycle. ``grid``:
    a sweep's listed values by field (one given away from its default counts as given)."""
    from actscale.engine.config_fields import CONFIG_FIELDS

    asked, defaults = config_fields_of(args), {f.name: f.default for f in dataclasses.fields(config)}
    for name, values in (grid or {}).items():
        asked[name] = next((v for v in values if v != defaults[name]), None)
    for name, why in config.ignored(asked):
        flag = CONFIG_FIELDS[name].sweep_flag if grid and name in grid else CONFIG_FIELDS[name].cli_flag
        print(f"note: {flag} is ignored: {why}", file=sys.stderr, flush=True)


def _task_first(config: Any) -> None:
    """A broken dataset file, or a generated task's bad template, family or country, is reported
    before the model load, which can take half a minute (drawing the prompts takes milliseconds)."""
    from actscale.engine.tasks.registry import task_spec

    spec = task_spec(config.task)
    if spec.from_file:
        spec.file_examples(config)
    else:
        spec.draw(config, 1)


class _TrainObserver(CancelOn):
    """The train command's run observer: a progress line per step and the first result on
    stderr; Ctrl-C cancels."""

    watches_target = True  # the step that reaches the validation target gets a line

    def __init__(self, event: threading.Event) -> None:
        super().__init__(event)
        self.steps_seen: list[int] = []

    def step(self, info: Any) -> None:
        self.steps_seen.append(info.step)
        _progress(info)

    def target_reached(self, step: int, split: str, metrics: dict) -> None:
        print(
            f"step {step}: the target reached, {_flips(split, metrics)}; training on for faithfulness "
            "and minimality ...",
            file=sys.stderr,
            flush=True,
        )

    def first_result(self, split: str, metrics: dict) -> None:
        print(f"trained: {_flips(split, metrics)}; evaluating the other prompts ...", file=sys.stderr, flush=True)


def cmd_train(args: argparse.Namespace) -> dict:
    from actscale.engine.models import load_model
    from actscale.runs.api import checked_task, train_run
    from actscale.runs.store import RunStore
    from actscale.views.analysis import target_text

    config = _config(args, margin=args.margin, lambda_f=args.lambda_f, lambda_m=args.lambda_m, seed=args.seed)
    _say_ignored(config, args)
    _task_first(config)
    store = RunStore(args.store)
    store.check_writable()  # before the model loads
    print(f"loading model {config.model} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    model = load_model(config.model, config.device)
    loaded = time.perf_counter()
    say_emulated_training(config, model.device)
    task = checked_task(model, config)
    built = time.perf_counter()
    print(task.summary(), file=sys.stderr, flush=True)
    stored = _stored_checks(store, model, task, config) if args.no_reuse else None
    with _cancel_on_interrupt() as cancel:
        observer = _TrainObserver(cancel)
        bundle = train_run(config, model, store=store, task=task, observer=observer, reuse=not args.no_reuse)
    done = time.perf_counter()
    if said := store.replaced(bundle.run_id, stored):
        print(said, file=sys.stderr, flush=True)
    if (unmet := target_text(bundle.summary, bundle.record.config)) is not None:
        print(unmet, file=sys.stderr, flush=True)
    # Where this process's time went (a reused run: only the load and the task were this process's).
    timing = {"load_s": round(loaded - started, 3), "task_s": round(built - loaded, 3), "run_s": round(done - built, 3)}
    if observer.steps_seen and isinstance(bundle.info.get("timing"), dict):
        timing.update(bundle.info["timing"])
    return {
        "run_id": bundle.run_id,
        "bundle": str(bundle.path),
        "method": bundle.method,
        "n_params": int(next(iter(bundle.metrics.values()))["n_params"]),
        "metrics": bundle.metrics,
        "target": bundle.info.get("target"),
        "timing": timing,
    }


def _stored_checks(store: RunStore, model: LoadedModel, task: PreparedTask, config: TrainConfig) -> bool | None:
    """`RunStore.replacing` for the run of ``config``: whether its stored run has map checks;
    None where none is stored."""
    from actscale.runs.api import expected_run_id

    return store.replacing(expected_run_id(model, task, config.replace(model=model.name)))


def _numbers(text: str, name: str, kind: type = float) -> list:
    """A comma-separated list of numbers; ActscaleError (exit 2) for anything else."""
    try:
        values = [kind(v) for v in _split(text)]
    except ValueError:
        example = "0,1" if kind is int else "0.01,0.05"
        raise ActscaleError(f"--{name} takes comma-separated numbers, e.g. {example}; got {text!r}") from None
    if not values:
        raise ActscaleError(f"--{name} needs at least one value")
    return values


@contextlib.contextmanager
def _cancel_on_interrupt() -> Iterator[threading.Event]:
    """An event that Ctrl-C sets (the run stops at its next step, stored runs are kept) instead
    of raising KeyboardInterrupt mid-step; the previous handler is restored on exit."""
    cancel = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: cancel.set())
    try:
        yield cancel
    finally:
        signal.signal(signal.SIGINT, previous)


def _sweep_grid(args: argparse.Namespace, limit: int) -> tuple[list, dict[str, list[float]]]:
    """The sweep's configurations, λ_M × λ_F × m × seed around the base options, and the values
    listed for λ_M, λ_F and m by field name (none for an empty ``--lambda-m``: the method's)."""
    from actscale.runs.sweeps import sweep_configs

    base = _config(args, margin=2.0, lambda_f=1.0, lambda_m=None, seed=0)
    listed = {
        "lambda_m": _numbers(args.lambda_m, "lambda-m") if args.lambda_m.strip() else [],
        "lambda_f": _numbers(args.lambda_f, "lambda-f"),
        "margin": _numbers(args.margin, "margin"),
    }
    configs = sweep_configs(
        base,
        listed["lambda_m"] or [base.lambda_m],
        listed["lambda_f"],
        listed["margin"],
        seeds=_numbers(args.seed, "seeds", int),
        limit=limit,
    )
    if args.data_seed is None:  # each run's data seed follows its seed, as in `train`
        configs = [c.replace(data_seed=c.seed) for c in configs]
    return configs, listed


class _SweepObserver(SweepObserver):
    """The sweep command's observer: a line per step and per stored run on stderr; Ctrl-C
    cancels."""

    def __init__(self, interrupt: threading.Event, n: int) -> None:
        self.interrupt, self.n = interrupt, n

    def progress(self, event: Any) -> None:
        head = f"[run {event.index + 1}/{self.n}]"
        if event.state == "running" and event.info is not None:
            print(f"{head} ", end="", file=sys.stderr)
            _progress(event.info)
            return
        # retrying: why; done or reused: the run's id, then whether it replaced a stored one (--no-reuse)
        lines = [event.message] if event.state == "retrying" else [f"{event.state} {event.run_id}", event.message]
        for line in filter(None, lines):
            print(f"{head} {line}", file=sys.stderr, flush=True)

    def cancelled(self) -> bool:
        return self.interrupt.is_set()


def cmd_sweep(args: argparse.Namespace) -> dict:
    from actscale.runs.executors import check_executor_options, resolve_executor, run_configs
    from actscale.runs.store import RunStore
    from actscale.runs.sweeps import MAX_CLUSTER_SWEEP, MAX_SWEEP

    executor, address = resolve_executor(args.executor, args.ray_address)
    check_executor_options(executor, args.workers, None)  # before the grid is built
    store = RunStore(args.store)
    store.check_writable()
    configs, listed = _sweep_grid(args, MAX_SWEEP if executor == "local" else MAX_CLUSTER_SWEEP)
    _say_ignored(configs[0], args, listed)
    _task_first(configs[0])  # the grid's runs differ in seeds and weights, not in their task's inputs
    if executor == "local":  # a cluster's workers may have other processors
        from actscale.engine.models import resolve_device

        say_emulated_training(configs[0], resolve_device(configs[0].device))
    where = "in this process" if executor == "local" else f"on Ray ({address})"
    print(f"sweep of {counted(len(configs), 'run')} {where} ...", file=sys.stderr, flush=True)
    with _cancel_on_interrupt() as cancel:
        bundles = run_configs(
            configs,
            executor=executor,
            ray_address=address,
            store=store,
            observer=_SweepObserver(cancel, len(configs)),
            reuse=not args.no_reuse,
            workers=args.workers,
            checked=True,  # held-out prompts that leave no test split are refused, as in `train`
        )
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
    from actscale.engine.tasks import read_dataset
    from actscale.runs.api import evaluate_file, evaluate_run, load_run
    from actscale.runs.store import RunStore

    bundle = load_run(args.run, RunStore(args.store))
    if args.dataset is not None:
        read_dataset(args.dataset)  # a broken file is reported before the model load
    model = load_model(bundle.record.config.model, args.device)
    what = f"run {bundle.run_id}'s passes (it was trained under bfloat16 autocast)"
    say_emulated(bundle.record.config.autocast == "bf16", model.device, what, PASS_COST)
    extra: dict[str, Any] = {}
    if args.dataset is None:
        metrics = evaluate_run(bundle, model, beta=args.beta)
    else:
        metrics, task = evaluate_file(bundle, model, args.dataset, beta=args.beta)
        total = len(task.examples) + len(task.dropped)
        extra["dataset"] = {"path": str(args.dataset), "rows": total, "evaluated": len(task.examples)}
        extra["dataset"]["dropped"] = task.drop_summary()
        print(f"{args.dataset}: evaluated {len(task.examples)} of {total} rows; {task.drop_summary()}", file=sys.stderr)
    for split, split_metrics in metrics.items():
        print(f"evaluated: {_flips(split, split_metrics, args.beta)}", file=sys.stderr)
    return {
        **extra,
        "run_id": bundle.run_id,
        "bundle": str(bundle.path),
        "method": bundle.method,
        "n_params": int(next(iter(metrics.values()))["n_params"]),
        "beta": args.beta,
        "metrics": metrics,
    }


def cmd_analyse(args: argparse.Namespace) -> dict:
    from actscale.checks import CheckOptions, check_asked, run_checks
    from actscale.engine.models import load_model
    from actscale.runs.api import load_run
    from actscale.runs.store import RunStore
    from actscale.views.analysis import k90_text

    options = CheckOptions(
        prompts=args.prompts,
        draws=args.draws,
        patching=args.patching,
        seeds=args.seeds,
        vary=args.vary,
        generalisation=args.generalisation,
        side_effects=not args.no_side_effects,
        precision=args.precision,
        executor=args.executor,
        ray_address=args.ray_address,
    )
    bundle = load_run(args.run, RunStore(args.store))
    store = RunStore(args.store) if args.store else RunStore(bundle.path.parent)
    store.check_writable()  # before the model loads
    check_asked(bundle, options)
    model = load_model(bundle.record.config.model, args.device)
    bf16 = options.precision_for(bundle.record.config.autocast) == "bf16"
    what = f"the checks' passes (--precision {options.precision})"
    say_emulated(bf16, model.device, what, PASS_COST, "--precision float32 runs them in float32")

    def progress(fraction: float, what: str) -> None:
        print(f"checks {100 * fraction:5.1f}%  {what}", file=sys.stderr, flush=True)

    checks = run_checks(model, bundle, options, store=store, on_progress=progress)
    if said := k90_text(checks):  # what the map check found, as Explore says it
        print(f"map check: {said}", file=sys.stderr)
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
    if store.root.exists() and not store.root.is_dir():
        raise ActscaleError(f"the run store {store.root} is a file, not a folder of runs")
    runs = []
    for row in store.list():
        entry = {"run_id": row.run_id, "ok": row.ok}
        if row.ok and row.record is not None:
            c, created = row.record.config, row.record.provenance.created
            entry.update(
                model=c.model, task=c.task, method=c.method, created=created, test=row.record.split("test").to_json()
            )
            test = row.record.split("test")
            flips = _flips("test", test) if test.flip_acc_pos is not None else "no test split"
            print(f"{row.run_id}  {c.model}  {c.task}  {c.method}  {created}  {flips}", file=sys.stderr)
        else:
            entry["reason"] = row.reason
            print(f"{row.run_id}  BROKEN: {row.reason}", file=sys.stderr)
        runs.append(entry)
    if not runs:
        print(
            f"no runs in {store.root}" if store.root.exists() else f"no runs: there is no folder {store.root}",
            file=sys.stderr,
        )
    return {"store": str(store.root), "runs": runs}
