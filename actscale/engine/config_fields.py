"""One description of the run config's fields: the label, help text, range and choices that the
command line's options (`cli.parser`), the Train form's widgets (`ui.train_form.widgets`) and the
config's own range checks (`TrainConfig`) all read. The defaults stay on `TrainConfig` itself.

Importing this module loads no torch: ``python -m actscale --help`` reads it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from actscale.engine.sites import SITES
from actscale.engine.tasks.registry import TASK_REGISTRY

Kind = Literal["int", "float", "text", "choice", "names", "switch"]
METHOD_DEFAULT = "default: the method's (see docs/usage.md)"


@dataclass(frozen=True)
class FieldSpec:
    """How one TrainConfig field is asked for and checked.

    kind: ``int``/``float`` (a number in [low, high], ``low_open``/``high_open`` excluding the
    end), ``text``, ``choice`` (one of ``choices``; ``values`` are what the config holds for
    them where they differ, ``labels`` what the form shows), ``names`` (a comma-separated list
    on the command line, a tuple in the config) or ``switch`` (a command-line flag that sets
    the field to ``switch_to``). ``noun`` names the field in range errors; ``optional``: the
    field may stay empty (None), whose meaning ``help`` says; ``sweep_flag``: the sweep
    command's option taking comma-separated values; ``step``: the form's step."""

    name: str
    label: str
    help: str
    kind: Kind
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    values: tuple[Any, ...] = ()
    labels: tuple[str, ...] = ()
    flag: str = ""
    switch_to: Any = None
    noun: str = ""
    optional: bool = False
    sweep_flag: str = ""
    range_message: str = ""
    step: float | None = None  # the form's step (and its gap to an open end of the range)
    empty: str = "empty"  # what an optional field left empty shows in the form: what it then means

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def value_of(self, choice: str) -> Any:
        """The config's value for a ``choice`` field's choice."""
        return self.values[self.choices.index(choice)] if self.values else choice

    def choice_of(self, value: Any) -> str:
        """The choice naming a config value (the inverse of `value_of`)."""
        return self.choices[self.values.index(value)] if self.values else value

    def label_of(self, choice: str) -> str:
        return self.labels[self.choices.index(choice)] if self.labels else choice

    def in_range(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def range_error(self) -> str:
        """The one line a value outside [low, high] gets."""
        if self.range_message:
            return self.range_message
        noun = self.noun or self.name
        if self.kind == "int":
            return f"{noun} must be between {int(self.low):,} and {int(self.high):,}"  # type: ignore[arg-type]
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"{noun} must be a number in {left}{_shown(self.low)}, {_shown(self.high)}{right}"


def _shown(value: float | None) -> str:
    """1000 as "1000", 1e6 as "1e6", 0.5 as "0.5"."""
    if value is None:
        return "∞"
    if value >= 1e5 and math.log10(value).is_integer():
        return f"1e{int(math.log10(value))}"
    return f"{value:g}"


def _fields() -> tuple[FieldSpec, ...]:
    return (
        *_what_fields(),
        *_optimiser_fields(),
        *_stopping_fields(),
        *_objective_fields(),
        *_data_fields(),
        *_draw_fields(),
        *_run_fields(),
    )


def _what_fields() -> tuple[FieldSpec, ...]:
    return (
        FieldSpec(
            "model",
            "Model",
            "'bundled' (SmolLM2-135M-Instruct, shipped with the package), a Hugging Face id, a local folder, "
            "or a .gguf file",
            "text",
        ),
        FieldSpec(
            "task", "Dataset", "the prompts: " + ", ".join(TASK_REGISTRY), "choice", choices=tuple(TASK_REGISTRY)
        ),
        FieldSpec(
            "method",
            "Methods",
            "a registered method; built in: activscalar, steervec, dynscalar",
            "text",
        ),
        FieldSpec(
            "sites",
            "Sites",
            f"comma-separated, from {','.join(SITES)}; attn_out and mlp_out are the paper's, head is one "
            "scalar per attention head",
            "names",
            choices=SITES,
        ),
        FieldSpec("device", "Device", "where the model runs", "choice", choices=("auto", "cpu", "cuda", "mps")),
    )


def _optimiser_fields() -> tuple[FieldSpec, ...]:
    return (
        FieldSpec("steps", "Steps", METHOD_DEFAULT, "int", 1, 1_000_000, optional=True),
        FieldSpec(
            "lr",
            "Learning rate",
            METHOD_DEFAULT,
            "float",
            0,
            10,
            low_open=True,
            noun="the learning rate",
            optional=True,
        ),
        FieldSpec("batch_size", "Batch size", METHOD_DEFAULT, "int", 1, 100_000, noun="batch size", optional=True),
        FieldSpec(
            "schedule",
            "Learning-rate schedule",
            "cosine: decays to 0 over the steps; constant: the same rate throughout",
            "choice",
            choices=("cosine", "constant"),
        ),
    )


def _stopping_fields() -> tuple[FieldSpec, ...]:
    return (
        FieldSpec(
            "cycles",
            "Cycles",
            "train cycles of the steps (the schedule restarts with each) until validation reaches the "
            "target, at most this many; default: 4 at the method's steps, 1 where the steps are given",
            "int",
            1,
            1000,
            optional=True,
            empty="4, or 1 with steps given",
        ),
        FieldSpec(
            "target",
            "Validation target",
            "the flip rate the validation prompts must reach in both directions to end the run after a "
            "cycle (0: one cycle is enough)",
            "float",
            0,
            1,
            step=0.05,
        ),
        FieldSpec(
            "early_stop",
            "Early stop after (steps with L_E = 0; 0 = off)",
            "stop after this many steps in a row with zero effectiveness loss on validation (0 = off)",
            "int",
            0,
            1_000_000,
        ),
    )


def _objective_fields() -> tuple[FieldSpec, ...]:
    return (
        FieldSpec(
            "margin",
            "Margin m",
            "the logit-difference margin (docs/method.md §3)",
            "float",
            0,
            1000,
            noun="the margin",
            sweep_flag="--margin",
        ),
        FieldSpec(
            "lambda_f", "λ_F (faithfulness)", "the faithfulness weight", "float", 0, 1e6, sweep_flag="--lambda-f"
        ),
        FieldSpec(
            "lambda_m", "λ_M (minimality)", METHOD_DEFAULT, "float", 0, 1e6, optional=True, sweep_flag="--lambda-m"
        ),
        FieldSpec(
            "tau", "τ (n_effective threshold)", "a component counts as effective above this magnitude", "float", 0, 1000
        ),
        FieldSpec(
            "seed",
            "Seed",
            "fixes the training order, and the prompts and split unless a data seed is set",
            "int",
            0,
            2**63,
            high_open=True,
            sweep_flag="--seeds",
            range_message="seeds must be integers in [0, 2^63)",
        ),
    )


def _data_fields() -> tuple[FieldSpec, ...]:
    return (
        FieldSpec(
            "n_prompts",
            "Train + validation prompts",
            "generated tasks: train and validation prompts",
            "int",
            2,
            1_000_000,
            step=8,
        ),
        FieldSpec(
            "n_test",
            "Test prompts",
            "generated tasks: test prompts, drawn apart from the training prompts (forward passes only, so "
            "a large test set costs little)",
            "int",
            1,
            1_000_000,
            step=50,
        ),
        FieldSpec(
            "test_frac",
            "Test fraction",
            "custom data: the share of prompts for test (a file's split column wins)",
            "float",
            0,
            1,
            high_open=True,
            step=0.05,
        ),
        FieldSpec(
            "val_frac",
            "Validation fraction",
            "the share of the non-test prompts held out for validation (early stopping, choices); "
            "the test split is only ever reported",
            "float",
            0,
            1,
            high_open=True,
            step=0.05,
        ),
    )


def _draw_fields() -> tuple[FieldSpec, ...]:
    return (
        FieldSpec(
            "data_seed",
            "Data seed",
            "draws the prompts and the split apart from the training seed, to tell data variance from "
            "optimisation variance (default: the seed)",
            "int",
            0,
            2**63,
            high_open=True,
            optional=True,
            range_message="seeds must be integers in [0, 2^63)",
            empty="the seed",
        ),
        FieldSpec(
            "dataset", "Dataset file", "CSV/JSONL with prompt,correct,wrong[,split][,group] (task custom)", "text"
        ),
        FieldSpec("templates", "IOI templates", "IOI: comma-separated template ids to use (default: all)", "names"),
        FieldSpec("test_templates", "Held-out templates", "IOI: template ids held out for the test split", "names"),
        FieldSpec(
            "test_groups",
            "Held-out groups",
            "groups held out for test: IOI template families, CCC countries, a file's groups",
            "names",
        ),
        FieldSpec(
            "memory_is_correct",
            "Correct answer",
            "CCC: a+ is the context's capital (default: the remembered one)",
            "switch",
            flag="--ccc-context-is-correct",
            switch_to=False,
        ),
    )


def _run_fields() -> tuple[FieldSpec, ...]:
    return (
        FieldSpec(
            "prepend_bos",
            "BOS token in front of each prompt",
            "put the tokenizer's BOS token in front of each prompt (on SmolLM2-Instruct it is the chat-start "
            "token, which carries very large activations at position 0)",
            "choice",
            choices=("model", "yes", "no"),
            values=(None, True, False),
            labels=("the model's default", "yes", "no"),
        ),
        FieldSpec(
            "positions",
            "Positions",
            "ActivScalar/SteerVec: 'absolute' keeps one prompt length and counts from the first token; "
            "'answer' keeps every length and counts back from the last token; 'auto': answer for a "
            "dataset file, absolute for the generated tasks",
            "choice",
            choices=("auto", "absolute", "answer"),
        ),
        FieldSpec(
            "autocast",
            "Frozen model's precision",
            "off (the default): float32, the same numbers on every machine; bf16: the frozen model runs in "
            "bfloat16 under torch.autocast, the intervention's parameters stay float32 (faster where the CPU or "
            "GPU computes bf16 natively; its own run id); auto: bf16 where the device computes it natively and "
            "the model is wide enough for it to pay, and the method allows it, else float32 (docs/usage.md); the "
            "run's config records which",
            "choice",
            choices=("auto", "off", "bf16"),
            labels=("auto", "float32", "bfloat16 autocast"),
        ),
        FieldSpec(
            "normalize",
            "DynScalar: dot product with the unit activation h/‖h‖ (ours; off = raw h)",
            "DynScalar: dot product with the raw activation",
            "switch",
            flag="--raw-dot",
            switch_to=False,
        ),
    )


CONFIG_FIELDS: dict[str, FieldSpec] = {spec.name: spec for spec in _fields()}
NUMBER_FIELDS = tuple(name for name, spec in CONFIG_FIELDS.items() if spec.kind in ("int", "float"))
