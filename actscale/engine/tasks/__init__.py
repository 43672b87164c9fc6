"""Tasks: prompts with an answer pair (docs/method.md §5), and their tokenisation for training.

Three sources produce `Example`s (`examples`): the IOI and CCC generators (`generated`) and a
user's CSV/JSONL file (`files`). `prepare_task` (`prepared`) turns them into left-padded token
tensors, drops what cannot be used (saying why) and assigns the deterministic train/test split.
A problem of one row (an empty or multi-token answer, equal answers, a prompt too long) drops
that row with its reason; only a problem of the file (its type, its columns, nothing left to
train on) fails the whole file."""

from typing import TYPE_CHECKING, Any

from actscale.engine.tasks.examples import SPLIT_NAMES, SPLITS, Example, assign_splits
from actscale.engine.tasks.files import read_dataset
from actscale.engine.tasks.generated import (
    CCC_TEMPLATE,
    IOI_FAMILIES,
    IOI_FAMILY_OF,
    IOI_TEMPLATES,
    NAMES,
    OBJECTS,
    PLACES,
    ccc_countries,
    ccc_split_examples,
    generate_ccc,
    generate_ioi,
    ioi_split_examples,
    task_vocabulary,
)

if TYPE_CHECKING:
    from actscale.engine.tasks.prepared import PreparedTask, prepare_task
    from actscale.engine.tokens import left_pad

# The tokenised task needs torch; the examples, generators and files do not, and the config and
# the command line's --help read them without loading torch.
_PREPARED = ("PreparedTask", "prepare_task")


def __getattr__(name: str) -> Any:
    if name in _PREPARED:
        from actscale.engine.tasks import prepared

        return getattr(prepared, name)
    if name == "left_pad":  # its home is actscale.engine.tokens; kept here for earlier callers
        from actscale.engine.tokens import left_pad

        return left_pad
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CCC_TEMPLATE",
    "Example",
    "IOI_FAMILIES",
    "IOI_FAMILY_OF",
    "IOI_TEMPLATES",
    "NAMES",
    "OBJECTS",
    "PLACES",
    "PreparedTask",
    "SPLITS",
    "SPLIT_NAMES",
    "assign_splits",
    "ccc_countries",
    "ccc_split_examples",
    "generate_ccc",
    "generate_ioi",
    "ioi_split_examples",
    "left_pad",
    "prepare_task",
    "read_dataset",
    "task_vocabulary",
]
