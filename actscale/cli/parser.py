"""The command line's options: one parser with a subcommand per command."""

from __future__ import annotations

import argparse
from dataclasses import fields
from types import SimpleNamespace
from typing import Any

from actscale.engine.config import TrainConfig, checked_beta
from actscale.engine.config_fields import CONFIG_FIELDS, FieldSpec
from actscale.errors import ActscaleError
from actscale.runs.progress import EXECUTOR_NAMES, RAY_ADDRESS_ENV

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT = 0, 1, 2


class Parser(argparse.ArgumentParser):
    """argparse exits with status 2 on bad arguments already; keep its message to one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        # ``prog`` is "python -m actscale" or "python -m actscale train": the usage hint is the same.
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see `{self.prog} --help`)\n")


def _add_run_options(t: argparse.ArgumentParser, d: Any, sweep: bool) -> None:
    """The options that define a run, one per described config field (`config_fields`):
    ``train``'s, and ``sweep``'s base configuration, where the fields with a sweep flag (m, λ_F,
    λ_M, the seed) take comma-separated lists."""
    for spec in CONFIG_FIELDS.values():
        if sweep and spec.sweep_flag:
            default = "" if spec.optional else str(getattr(d, spec.name))
            shown = spec.help if spec.optional else f"{spec.help} (default %(default)s)"
            metavar = spec.sweep_flag.lstrip("-").upper().replace("-", "_")
            t.add_argument(
                spec.sweep_flag,
                dest=spec.name,
                default=default,
                metavar=metavar,
                help=f"comma-separated values; {shown}",
            )
        else:
            _add_field_option(t, spec, getattr(d, spec.name))
    t.add_argument("--store", default=None, help="where bundles go (default $ACTSCALE_STORE, else ./runs)")
    t.add_argument("--no-reuse", action="store_true", help="train even if the same run is stored, and replace it")


def _add_field_option(t: argparse.ArgumentParser, spec: FieldSpec, default: Any) -> None:
    """One config field's option, from its description."""
    if spec.kind == "switch":
        t.add_argument(spec.cli_flag, dest=spec.name, action="store_true", help=spec.help)
        return
    if spec.optional:  # its help says what empty means
        help_text = spec.help
    elif spec.kind == "names" or default == "":
        help_text = spec.help + (f" (default {','.join(default)})" if default else "")
    else:
        help_text = f"{spec.help} (default %(default)s)"
    kwargs: dict[str, Any] = {"dest": spec.name, "help": help_text}
    if spec.kind in ("int", "float"):
        kwargs.update(type=int if spec.kind == "int" else float, default=None if spec.optional else default)
    elif spec.kind == "choice":
        kwargs.update(choices=list(spec.choices), default=spec.choice_of(default))
    elif spec.kind == "names":
        kwargs.update(default=",".join(default))
    else:
        kwargs.update(default=default)
    t.add_argument(spec.cli_flag, **kwargs)


def config_fields_of(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields the parsed run options describe (a sweep's listed fields as given:
    the sweep command reads them)."""
    out: dict[str, Any] = {}
    for spec in CONFIG_FIELDS.values():
        value = getattr(args, spec.name)
        if spec.kind == "switch":
            out[spec.name] = spec.switch_to if value else not spec.switch_to
        elif spec.kind == "choice":
            out[spec.name] = spec.value_of(value)
        elif spec.kind == "names":
            out[spec.name] = tuple(s.strip() for s in value.split(",") if s.strip())
        else:
            out[spec.name] = value
    return out


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


def _beta(text: str) -> float:
    """``--beta``'s value: `checked_beta`'s rule, said by argparse as a bad value."""
    try:
        return checked_beta(float(text), signed=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    except ActscaleError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_eval_options(e: argparse.ArgumentParser) -> None:
    e.add_argument("--run", required=True, help="a run folder, or a run id in --store")
    e.add_argument("--dataset", default=None, help="evaluate on this CSV/JSONL instead of the run's data")
    e.add_argument(
        "--beta", type=_beta, default=1.0, help="steering strength in [0, 1000] (evaluated at +beta and -beta)"
    )
    e.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    e.add_argument("--store", default=None)


def _add_analyse_options(a: argparse.ArgumentParser) -> None:
    a.add_argument("--run", required=True, help="a run folder, or a run id in --store")
    a.add_argument(
        "--seeds", type=int, default=0, help="stability over this many seeds, the run's own included (0: none)"
    )
    a.add_argument(
        "--vary",
        default="auto",
        choices=["auto", "data", "seed"],
        help="stability: vary the data seed (other prompts and split; the default where the task draws its data) "
        "or the training seed on the same data (only the batch order; the default for a dataset file)",
    )
    a.add_argument(
        "--generalisation", action="store_true", help="train one run per group and test it on every other group"
    )
    a.add_argument("--no-side-effects", action="store_true", help="skip the neutral-text check (runs of any length)")
    a.add_argument(
        "--prompts",
        type=int,
        default=16,
        help="validation prompts k90 is chosen on, and test prompts (drawn with the checks' seed) "
        "every figure is reported on",
    )
    a.add_argument("--draws", type=int, default=20, help="random placements per k")
    a.add_argument(
        "--patching",
        default="top",
        choices=["top", "full"],
        help="exact activation patching of each ranking's top 64 cells (default), or of every cell",
    )
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
