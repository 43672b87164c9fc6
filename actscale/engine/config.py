"""The configuration of a run: plain data, validated on construction, serialised to the
bundle's ``config.json``. The method's own defaults come from its class (`interventions`)."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal, get_args

from actscale.engine.config_fields import CONFIG_FIELDS, NUMBER_FIELDS
from actscale.engine.sites import DEFAULT_SITES, SITES, parse_sites
from actscale.engine.tasks.registry import TASK_FIELDS, task_spec
from actscale.errors import ActscaleError

if TYPE_CHECKING:
    from actscale.engine.interventions import Intervention

Autocast = Literal["auto", "off", "bf16"]
AUTOCASTS: tuple[str, ...] = get_args(Autocast)
# Fields a run's config.json leaves out at these values (TrainConfig.to_record).
# A run of one cycle (the only kind before cycles existed) leaves both out, so its id is the one it
# had; the target cannot matter then (`_canonicalise`).
OMITTED_AT_DEFAULT: dict[str, object] = {"autocast": "off", "cycles": 1, "target": 0.9}
Schedule = Literal["cosine", "constant"]
SCHEDULES: tuple[str, ...] = get_args(Schedule)
# How ActivScalar's and SteerVec's position index meets a prompt (docs/method.md §2): "absolute"
# counts from the first token (all prompts of one run share one length), "answer" counts back
# from the last token (prompts of every length, left-padded); "auto" is answer-aligned for a
# user's file and absolute for the generated tasks, whose templates share one length per run.
Positions = Literal["auto", "absolute", "answer"]
POSITIONS: tuple[str, ...] = get_args(Positions)
# The built-in methods; `interventions.registered_methods()` also lists any registered later.
BuiltinMethod = Literal["activscalar", "steervec", "dynscalar"]

# The fields a method sets when left at None (`MethodDefaults`).
METHOD_DEFAULT_FIELDS: tuple[str, ...] = ("steps", "lr", "batch_size", "lambda_m")
FLOAT_FIELDS = ("lr", "margin", "lambda_f", "lambda_m", "test_frac", "val_frac", "tau", "target")
INT_FIELDS = ("steps", "batch_size", "seed", "n_prompts", "n_test", "early_stop", "data_seed", "cycles")
# Cycles of the method's step count a default run may train (docs/method.md §3, "How long a run
# trains"); a run whose steps are given trains exactly those unless its cycles are given too.
DEFAULT_CYCLES = 4


BETA_MAX = 1000.0  # a steering strength past this only overflows the activations


def checked_beta(beta: Any, *, signed: bool = True) -> float:
    """A steering strength a user gave (the API's ``beta``, ``eval --beta``) as a float; one
    line of ActscaleError unless it is a number in [−1000, 1000], or in [0, 1000] where +β and
    −β are both evaluated (``signed=False``, where a negative β would only name them twice). A
    NaN or an infinity steers to NaN logits, which would count as no flip."""
    lo = -BETA_MAX if signed else 0.0
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not lo <= float(beta) <= BETA_MAX:
        both = "" if signed else " (+beta and -beta are both evaluated)"
        raise ActscaleError(f"beta must be a number in [{lo:g}, {BETA_MAX:g}]{both}, got {beta!r}")
    return float(beta)


def _whole_number(value: Any) -> int | None:
    """``value`` as an int when it is a whole number (3, 3.0, numpy's int64), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run; plain data, validated on construction.

    Defaults (ours, docs/method.md §3) are the ones the acceptance targets were measured with; see
    docs/usage.md's table. ``method`` is any registered method's name.
    """

    model: str = "bundled"
    task: str = "ioi"
    method: str = "activscalar"
    sites: tuple[str, ...] = DEFAULT_SITES
    # Given as None, steps, lr, batch_size and lambda_m take the method's default (its `defaults`)
    # in __post_init__, and data_seed the seed, so a constructed config always holds numbers; the
    # annotations say what a config holds.
    steps: int = None  # type: ignore[assignment]
    lr: float = None  # type: ignore[assignment]
    batch_size: int = None  # type: ignore[assignment]
    margin: float = 2.0
    lambda_f: float = 1.0
    lambda_m: float = None  # type: ignore[assignment]
    seed: int = 0  # the intervention's training: batch order (and any init)
    n_prompts: int = 48  # generated tasks: train + validation prompts
    test_frac: float = 0.2  # custom data: the share of prompts for test
    dataset: str = ""  # custom task: path of the CSV/JSONL file
    device: str = "auto"
    tau: float = 0.05  # n_effective threshold (docs/method.md §4)
    normalize: bool = True  # DynScalar: dot product with h/‖h‖ (ours)
    memory_is_correct: bool = True  # CCC: a+ is the remembered capital
    templates: tuple[str, ...] = ()  # IOI templates to use; () = all
    test_templates: tuple[str, ...] = ()  # IOI templates held out for the test split
    early_stop: int = 0  # stop after this many steps in a row with L_E = 0 on validation (0 = off)
    schedule: str = "cosine"  # learning rate: "cosine" decay to 0 over the steps, or "constant"
    # Training runs cycles of ``steps`` (the schedule restarts with each) until, at the end of a
    # cycle, the validation prompts' flip rates reach ``target`` in both directions, for at most
    # ``cycles`` cycles. None: DEFAULT_CYCLES where the steps are the method's default, else 1 (the
    # steps given are the steps run). config.json leaves both out for a run of one cycle
    # (OMITTED_AT_DEFAULT), so runs stored before they existed read as what they were.
    cycles: int = None  # type: ignore[assignment]
    target: float = 0.9
    val_frac: float = 0.2  # the share of the non-test prompts held out for validation
    n_test: int = 200  # generated tasks: test prompts, drawn apart from the n_prompts
    data_seed: int = None  # type: ignore[assignment]  # draws the prompts and the split; None: the seed
    prepend_bos: bool | None = None  # None: the model's own default (models.LoadedModel.prepend_bos)
    test_groups: tuple[str, ...] = ()  # groups held out for test (IOI families, CCC countries, custom groups)
    # Resolved in __post_init__ ("auto" never reaches config.json), so the run id says which
    # alignment a run used. Methods whose parameters are not per position ignore it.
    positions: str = "auto"
    # "off" (the default): float32 on every machine, so the same command gives the same run id
    # and the same numbers on any CPU. "bf16": the frozen model runs under torch.autocast in
    # bfloat16; the intervention's parameters, the loss and the optimiser stay float32 (its own
    # run id). "auto" is resolved against the loaded model before a run id is computed
    # (`resources.resolve_autocast`): bf16 where the device computes it natively and the model is
    # wide enough for it to pay (`models.bf16_pays`), else "off". So config.json and the run id
    # always name the precision a run used. Left out of config.json at "off"
    # (OMITTED_AT_DEFAULT), so runs stored before the option existed keep their run ids.
    autocast: str = "off"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sites", parse_sites(self.sites))
        defaults = _method_class(self.method).defaults.as_dict()  # ActscaleError for an unknown method
        fitted = _method_class(self.method).fitted
        if fitted:  # set without gradient steps: the optimiser's fields cannot matter
            for name in ("steps", "lr", "batch_size", "lambda_m", "cycles"):
                object.__setattr__(self, name, None)
        if self.cycles is None:
            object.__setattr__(self, "cycles", DEFAULT_CYCLES if self.steps is None and not fitted else 1)
        # Fields left at None take the method's default, so config.json holds real values.
        for name in METHOD_DEFAULT_FIELDS:
            if getattr(self, name) is None:
                object.__setattr__(self, name, defaults[name])
        if self.data_seed is None:
            object.__setattr__(self, "data_seed", self.seed)
        self._canonicalise()
        if self.autocast not in AUTOCASTS:
            raise ActscaleError(f"unknown autocast {self.autocast!r}: choose auto, off or bf16")
        if self.schedule not in SCHEDULES:
            raise ActscaleError(f"unknown schedule {self.schedule!r}: choose cosine or constant")
        task = task_spec(self.task)  # ActscaleError for an unknown task
        if self.positions not in POSITIONS:
            raise ActscaleError(f"unknown positions {self.positions!r}: choose auto, absolute or answer")
        if self.positions == "auto" or not self.fixed_length:  # a method of any length reads no positions
            object.__setattr__(self, "positions", task.default_positions)
        task.check(self)
        for ok, message in self._range_checks():
            if not ok:
                raise ActscaleError(message)

    def _canonicalise(self) -> None:
        """One spelling per experiment, so its run id does not depend on how it was asked for:
        numbers as float or int, sites in their canonical order, held-out sets sorted, the full
        template list as (), and options that cannot matter (another task's or method's) at
        their defaults."""
        for name in FLOAT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ActscaleError(f"{name} must be a number")
            object.__setattr__(self, name, float(value))
        for name in INT_FIELDS:
            whole = _whole_number(getattr(self, name))
            if whole is None:
                raise ActscaleError(f"{name} must be a whole number")
            object.__setattr__(self, name, whole)
        object.__setattr__(self, "sites", tuple(s for s in SITES if s in self.sites))
        object.__setattr__(self, "test_templates", tuple(sorted(set(self.test_templates))))
        object.__setattr__(self, "test_groups", tuple(sorted(set(self.test_groups))))
        task = task_spec(self.task)
        object.__setattr__(self, "templates", task.canonical_templates(tuple(self.templates)))
        defaults = {f.name: f.default for f in fields(self)}
        for name in self._unused():
            object.__setattr__(self, name, defaults[name])

    def _unused(self, optimiser: bool = False) -> dict[str, str]:
        """The fields this config's task and method do not read, each with why: they are kept at
        their defaults (so they never change a run id), and an option given for one is ignored.
        ``optimiser``: a fitted method's optimiser fields too, which are not reset but set from
        the method (`__post_init__`)."""
        method, task = _method_class(self.method), task_spec(self.task)
        unused = {name: f"the {task.name} task does not read it" for name in TASK_FIELDS if name not in task.fields}
        if "normalize" not in method.options:
            unused["normalize"] = f"the {self.method} method has no such option"
        if self.cycles == 1:
            unused["target"] = "a run of one cycle has no target (the steps given are the run; give --cycles)"
        if method.fitted:  # no loss, no steps
            more = (*METHOD_DEFAULT_FIELDS, "cycles") if optimiser else ()
            for name in ("margin", "lambda_f", "early_stop", "schedule", "target", *more):
                unused[name] = f"the {self.method} method is fitted, not trained"
        return unused

    def ignored(self, asked: dict[str, Any]) -> list[tuple[str, str]]:
        """Of the fields ``asked`` for (a command line's options, by field name), those set away
        from their defaults that this config does not read, each with why (the command says so
        rather than ignore them unsaid), a fitted method's optimiser fields among them."""
        defaults = {f.name: f.default for f in fields(self)}
        unused = self._unused(optimiser=True)
        return [(n, unused[n]) for n in unused if n in asked and asked[n] not in (defaults[n], None)]

    def _range_checks(self) -> list[tuple[bool, str]]:
        # The ranges are the fields' description's (config_fields): upper bounds keep every number
        # well inside float32 and the run within reason; past them a value is a typo, and one
        # line says so instead of an overflow deep in torch.
        checks = [
            (CONFIG_FIELDS[name].in_range(getattr(self, name)), CONFIG_FIELDS[name].range_error())
            for name in NUMBER_FIELDS
        ]
        if "test_frac" in task_spec(self.task).fields:  # the generated tasks draw their test prompts apart
            checks.append(
                (self.test_frac + self.val_frac < 1, "test_frac + val_frac must be below 1 (some prompts must train)")
            )
        return checks

    @property
    def fixed_length(self) -> bool:
        """Whether the method is tied to prompts of one token length."""
        return _method_class(self.method).fixed_length

    @property
    def bf16(self) -> bool:
        """Whether the frozen model runs under bfloat16 autocast; "auto" must be resolved
        against a model first (`resources.resolve_autocast`)."""
        if self.autocast == "auto":
            raise RuntimeError('autocast "auto" is resolved against the loaded model before it is used')
        return self.autocast == "bf16"

    @property
    def one_length(self) -> bool:
        """Whether the run keeps only the prompts of one token length: a fixed-length method
        with absolute positions (answer-aligned positions take every length)."""
        return self.fixed_length and self.positions == "absolute"

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    def to_record(self) -> dict[str, Any]:
        """The fields as a run's config.json records them: those in ``OMITTED_AT_DEFAULT`` are
        left out at their default, so runs stored before the option existed keep their ids."""
        return {k: v for k, v in self.to_dict().items() if k not in OMITTED_AT_DEFAULT or v != OMITTED_AT_DEFAULT[k]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return cls(**kwargs)

    @classmethod
    def from_bundle(cls, data: dict[str, Any]) -> TrainConfig:
        """The config of a stored run (its config.json in today's format: runs/migrations); a
        field config.json leaves out (OMITTED_AT_DEFAULT) had that value, not today's default."""
        return cls.from_dict({**OMITTED_AT_DEFAULT, **data})

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes``; switching the method also switches to the new method's
        defaults for the fields not given in ``changes``, switching the task resolves
        ``positions`` afresh (answer-aligned for a file, absolute for a generated task), and new
        steps (or the method's) resolve ``cycles`` afresh unless it is given."""
        data = self.to_dict()
        if changes.get("method", self.method) != self.method:
            for name in METHOD_DEFAULT_FIELDS:
                data[name] = None
        if "cycles" not in changes and ("steps" in changes or data["steps"] is None):
            data["cycles"] = None  # resolved afresh: the default adapts, a step count given is kept
        if changes.get("task", self.task) != self.task:
            data["positions"] = "auto"
        return TrainConfig.from_dict({**data, **changes})


def _method_class(method: str) -> type[Intervention]:
    """The registered method's class (ActscaleError for an unknown name). The registry is
    imported when a config is made, not when this module is: the command line's ``--help`` reads
    the fields' defaults without loading torch."""
    from actscale.engine.interventions import method_class

    return method_class(method)
