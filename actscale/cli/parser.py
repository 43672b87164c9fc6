"""The command line's options: one parser with a subcommand per command."""

from __future__ import annotations

import argparse
from dataclasses import fields
from types import SimpleNamespace
from typing import Any, get_args

from actscale.engine.config import BuiltinMethod, TrainConfig
from actscale.engine.sites import SITES
from actscale.engine.tasks.registry import TASK_REGISTRY
from actscale.runs.progress import EXECUTOR_NAMES, RAY_ADDRESS_ENV

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT = 0, 1, 2


class Parser(argparse.ArgumentParser):
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
    t.add_argument("--task", default=d.task, choices=list(TASK_REGISTRY))
    t.add_argument(
        "--method",
        default=d.method,
        help=f"a registered method: built in, {', '.join(get_args(BuiltinMethod))} (default %(default)s)",
    )
    t.add_argument("--sites", default=",".join(d.sites), help=f"comma-separated, from {','.join(SITES)}")
    t.add_argument("--steps", type=int, default=None, help="default: the method's (see docs/usage.md)")
    t.add_argument("--lr", type=float, default=None, help="default: the method's (see docs/usage.md)")
    t.add_argument("--batch-size", type=int, default=None, help="default: the method's (see docs/usage.md)")
    _add_objective_options(t, d, sweep)
    _add_data_options(t, d)
    _add_precision_and_method_options(t, d)


def _add_objective_options(t: argparse.ArgumentParser, d: Any, sweep: bool) -> None:
    """m, λ_F, λ_M and the seed: one value for ``train``, comma-separated lists for ``sweep``."""
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


def _add_data_options(t: argparse.ArgumentParser, d: Any) -> None:
    """The prompts: how many, how split, which held out, from where; and where the run goes."""
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
    t.add_argument("--templates", default="", help="IOI: comma-separated template ids to use")
    t.add_argument("--test-templates", default="", help="IOI: template ids held out for the test split")
    t.add_argument("--ccc-context-is-correct", action="store_true", help="CCC: a+ is the context's capital")


def _add_precision_and_method_options(t: argparse.ArgumentParser, d: Any) -> None:
    """Early stopping, positions, precision and the methods' own options."""
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
        "stay float32. auto (default): bfloat16 where the device computes it natively and the model is wide "
        "enough for it to pay, and the method allows it, else float32 (docs/usage.md, Defaults); the run's "
        "config records which",
    )
    t.add_argument("--raw-dot", action="store_true", help="DynScalar: dot product with the raw activation")
    t.add_argument("--no-reuse", action="store_true", help="train even if the same run is stored")


def build_parser() -> argparse.ArgumentParser:
    # The fields' defaults, read without making a config (which would load the methods and torch).
    d = SimpleNamespace(**{f.name: f.default for f in fields(TrainConfig)})
    parser = Parser(prog="python -m actscale", description="Train and inspect activation-scaling interventions.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    t = sub.add_parser("train", help="train an intervention and store its run bundle")
    _add_run_options(t, d, sweep=False)

    w = sub.add_parser("sweep", help="train a grid of λ_M, λ_F, m and seeds, in this process or on Ray")
    _add_run_options(w, d, sweep=True)
    _add_sweep_executor_options(w)
    _add_eval_options(sub.add_parser("eval", help="evaluate a stored run"))
    _add_analyse_options(
        sub.add_parser(
            "analyse", help="check what a run's map means (docs/method.md §7) and store the checks in its bundle"
        )
    )
    ls = sub.add_parser("list", help="list the runs in a store")
    ls.add_argument("--store", default=None)
    return parser


def _add_sweep_executor_options(w: argparse.ArgumentParser) -> None:
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


def _add_eval_options(e: argparse.ArgumentParser) -> None:
    e.add_argument("--run", required=True, help="a run folder, or a run id in --store")
    e.add_argument("--dataset", default=None, help="evaluate on this CSV/JSONL instead of the run's data")
    e.add_argument("--beta", type=float, default=1.0, help="steering strength (evaluated at +beta and -beta)")
    e.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    e.add_argument("--store", default=None)


def _add_analyse_options(a: argparse.ArgumentParser) -> None:
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
