"""An `Example` (a prompt, its two answers, its split and group) and how examples are split."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SPLITS = ("train", "val", "test")
# What a dataset file may write in its split column.
SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "dev": "val", "test": "test"}


@dataclass(frozen=True)
class Example:
    """One prompt with its answer pair; `correct` is a+ and `wrong` is a-, each meant to be one token."""

    prompt: str
    correct: str
    wrong: str
    split: str = ""  # "train", "val", "test" or "" (unassigned)
    template: str = ""  # generator template id, e.g. "ioi-3"; "" for custom data
    group: str = ""  # IOI: the template family; CCC: the country; custom: the file's group column
    # The prompt with the information that decides between the answers replaced, token for token
    # (IOI: the three names; CCC: the context's capital; custom: the file's counterfactual column):
    # what activation patching patches from. "" where there is none.
    counterfactual: str = ""
    # Where a file's example came from ("row 5", "line 3"), to name it when it is dropped; not
    # part of the example's identity.
    source: str = dataclasses.field(default="", compare=False)

    @classmethod
    def from_record(cls, row: Mapping[str, Any]) -> Example:
        """An example from a bundle's dataset.jsonl row (the inverse of `PreparedTask.to_records`)."""
        return cls(
            str(row["prompt"]),
            str(row["correct"]),
            str(row["wrong"]),
            str(row.get("split") or ""),
            group=str(row.get("group") or ""),
            counterfactual=str(row.get("counterfactual") or ""),
        )


def assign_splits(
    examples: list[Example],
    seed: int,
    test_frac: float,
    test_templates: tuple[str, ...] = (),
    val_frac: float = 0.0,
    test_groups: tuple[str, ...] = (),
    by_group: bool = False,
) -> list[str]:
    """The split of each example. Its own split wins; a template in ``test_templates`` or a
    group in ``test_groups`` goes to test (and then no other prompt does); the rest is shuffled
    by ``seed``: round(test_frac·n) to test (at least one when n >= 2 and no prompt is in test yet),
    round(val_frac·n) to val, the others to train (at least one). With ``by_group`` and every
    free example carrying a group, whole groups are assigned, so no group spans two splits."""
    splits = [ex.split for ex in examples]
    held_out = False
    if test_templates or test_groups:
        for i, ex in enumerate(examples):
            if not splits[i] and (ex.template in test_templates or (ex.group and ex.group in test_groups)):
                splits[i] = "test"
        held_out, test_frac = True, 0.0
    free = [i for i, s in enumerate(splits) if not s]
    held_out = held_out or "test" in splits  # a test split given with the data: no other prompt joins it
    if by_group and free and all(examples[i].group for i in free):
        units = sorted({examples[i].group for i in free})  # whole groups
        members = {g: [i for i in free if examples[i].group == g] for g in units}
    else:
        units = [str(i) for i in free]
        members = {str(i): [i] for i in free}
    random.Random(seed).shuffle(units)
    n = len(free)
    n_test = round(test_frac * n) if held_out or len(units) < 2 else max(round(test_frac * n), 1)
    n_val = round(val_frac * n)
    taken = {"test": 0, "val": 0}
    for unit in units:
        rows = members[unit]
        left_for_train = len(units) - units.index(unit)  # this unit and the ones after it
        if taken["test"] < n_test and left_for_train > 1:
            split = "test"
        elif taken["val"] < n_val and left_for_train > 1:
            split = "val"
        else:
            split = "train"
        if split != "train":
            taken[split] += len(rows)
        for i in rows:
            splits[i] = split
    return splits
