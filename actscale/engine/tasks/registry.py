"""The tasks, each carrying its own behaviour (docs/method.md §5), as the methods do theirs.

A task says where its prompts come from (a generator or the user's file), which config fields
are its own (the others are reset to their defaults, so a run id never depends on another
task's options), how its prompts are split and grouped, and what it cannot do. Code outside
this module asks the task (`task_spec(config.task)`) and never compares the task's name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from actscale.engine.tasks.examples import Example
from actscale.engine.tasks.files import read_dataset
from actscale.engine.tasks.generated import IOI_FAMILY_OF, IOI_TEMPLATES, ccc_split_examples, ioi_split_examples
from actscale.errors import ActscaleError

if TYPE_CHECKING:
    from actscale.engine.config import TrainConfig

# The config fields one task reads and another may not: a task lists those it reads.
TASK_FIELDS = ("templates", "test_templates", "memory_is_correct", "n_prompts", "n_test", "test_frac")


@dataclass(frozen=True)
class TaskSpec:
    """One task.

    ``from_file``: the prompts are the user's file (``--dataset``): it is read once where the
    run is planned, its own split column and a share of it (``test_frac``) make the test set,
    a group never spans two splits, and a prompt's positions count back from its answer.
    Otherwise the task generates its prompts from the config, test prompts drawn apart.
    ``fields``: the entries of `TASK_FIELDS` the task reads. ``draw``: the examples for a config,
    ``oversample`` times as many for a caller that keeps only one prompt length."""

    name: str
    label: str
    from_file: bool
    fields: tuple[str, ...]
    draw: Callable[[TrainConfig, int], list[Example]]

    @property
    def default_positions(self) -> str:
        """How ``positions="auto"`` resolves: a file's prompts have many lengths (``answer``);
        generated ones keep one (``absolute``)."""
        return "answer" if self.from_file else "absolute"

    def check(self, config: TrainConfig) -> None:
        """ActscaleError (one line) where the config cannot run this task."""
        if self.from_file and not config.dataset:
            raise ActscaleError(f"the {self.name} task needs a dataset file (--dataset FILE)")

    def file_examples(self, config: TrainConfig) -> list[Example] | None:
        """The config's file, read now (a malformed file fails before a model loads, and a worker
        elsewhere cannot read this machine's files); None for a generated task."""
        return read_dataset(config.dataset) if self.from_file else None

    def canonical_templates(self, templates: tuple[str, ...]) -> tuple[str, ...]:
        """The IOI templates in one spelling: every template is ``()``."""
        return () if templates == tuple(IOI_TEMPLATES) else templates

    def trained_on(self, config: TrainConfig, group: str, groups: list[str]) -> TrainConfig:
        """The config trained on ``group`` alone and tested on the rest of ``groups`` (a row of
        the generalisation matrix): every other group held out for test. IOI draws its prompts
        from its templates rather than from the run's, so there the templates are narrowed to
        the families of ``groups`` as well: a run of one token length carries only the families
        that have it, and the others would have trained beside ``group``."""
        config = config.replace(test_groups=tuple(g for g in groups if g != group))
        if "templates" not in self.fields:
            return config
        used = config.templates or tuple(IOI_TEMPLATES)
        return config.replace(templates=tuple(t for t in used if IOI_FAMILY_OF[t] in groups))


def _ioi(config: TrainConfig, oversample: int) -> list[Example]:
    return ioi_split_examples(
        oversample * config.n_prompts,
        oversample * config.n_test,
        config.data_seed,
        config.templates,
        config.test_templates,
        config.test_groups,
    )


def _ccc(config: TrainConfig, oversample: int) -> list[Example]:
    return ccc_split_examples(
        oversample * config.n_prompts,
        oversample * config.n_test,
        config.data_seed,
        config.val_frac,
        config.memory_is_correct,
        config.test_groups,
    )


def _file(config: TrainConfig, oversample: int) -> list[Example]:  # noqa: ARG001 (a file is what it is)
    return read_dataset(config.dataset)


TASK_REGISTRY: dict[str, TaskSpec] = {
    "ioi": TaskSpec(
        "ioi", "IOI (indirect objects)", False, ("templates", "test_templates", "n_prompts", "n_test"), _ioi
    ),
    "ccc": TaskSpec(
        "ccc", "CCC (country–capital conflicts)", False, ("memory_is_correct", "n_prompts", "n_test"), _ccc
    ),
    "custom": TaskSpec("custom", "Upload a CSV / JSONL", True, ("test_frac",), _file),
}
TASKS: tuple[str, ...] = tuple(TASK_REGISTRY)


def task_spec(name: str) -> TaskSpec:
    """The registered task; ActscaleError (one line) for an unknown name."""
    try:
        return TASK_REGISTRY[name]
    except (KeyError, TypeError):
        raise ActscaleError(f"unknown task {name!r}: choose from {', '.join(TASKS)}") from None
