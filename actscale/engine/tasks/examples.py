"""An `Example` (a prompt, its two answers, its split and group) and how examples are split."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from actscale.errors import DatasetError

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
    group in ``test_groups`` goes to test; where any example is then in test, no other joins it
    (``test_frac`` is for data that names no test prompt), and so for val (``val_frac``); the
    rest is shuffled
    by ``seed``: round(test_frac·n) to test (at least one when n >= 2 and no prompt is in test yet),
    round(val_frac·n) to val, the others to train (at least one). With ``by_group`` and every
    free example carrying a group, whole groups are assigned, so no group spans two splits; a
    group joins test or val only where that brings the split nearer its share (one group of 28
    and one of 2 at test_frac 0.2: the 2 test), and where every group would overshoot, the
    smallest tests."""
    splits = [ex.split for ex in examples]
    held_out = False
    if test_templates or test_groups:
        for i, ex in enumerate(examples):
            if not splits[i] and (ex.template in test_templates or (ex.group and ex.group in test_groups)):
                splits[i] = "test"
        held_out, test_frac = True, 0.0
    free = [i for i, s in enumerate(splits) if not s]
    if "test" in splits:  # a test split given with the data (or held out above): no other prompt joins it
        held_out, test_frac = True, 0.0
    if "val" in splits:  # so for a validation split given with the data
        val_frac = 0.0
    members = _units(examples, free, by_group, test_frac)
    units = list(members)
    random.Random(seed).shuffle(units)
    n = len(free)
    n_test = round(test_frac * n) if held_out or len(units) < 2 else max(round(test_frac * n), 1)
    for unit, split in _assigned(units, members, n_test, round(val_frac * n)).items():
        for i in members[unit]:
            splits[i] = split
    return splits


def _units(examples: list[Example], free: list[int], by_group: bool, test_frac: float) -> dict[str, list[int]]:
    """The free examples as the units the split assigns, in the order it shuffles: whole groups
    by name (``by_group``, where every free example has one), else one unit a prompt in the
    examples' order. DatasetError where one group holds them all and a test share is asked for:
    a group never spans two splits; and where some carry a group and some do not (the split by
    groups would be dropped unsaid for one blank cell)."""
    grouped = [i for i in free if examples[i].group]
    if by_group and grouped and len(grouped) < len(free):
        first = next(examples[i] for i in free if not examples[i].group)
        raise DatasetError(
            f"{len(free) - len(grouped)} of {len(free)} prompts to split "
            f"{'has' if len(free) - len(grouped) == 1 else 'have'} no group"
            f"{f' (the first: {first.source})' if first.source else ''}, so the file cannot be split by whole "
            "groups: give each a group, or leave the group column empty"
        )
    if not (by_group and free and len(grouped) == len(free)):
        return {str(i): [i] for i in free}
    members: dict[str, list[int]] = {}
    for i in free:
        members.setdefault(examples[i].group, []).append(i)
    if len(members) == 1 and round(test_frac * len(free)):
        raise DatasetError(
            f"every prompt to split is in the group {next(iter(members))!r}, and a group never spans two splits: "
            "none is left for test; give the file more groups or a split column, or set test_frac to 0"
        )
    return {group: members[group] for group in sorted(members)}


def _assigned(units: list[str], members: dict[str, list[int]], n_test: int, n_val: int) -> dict[str, str]:
    """Each unit's split, the units taken in ``units``' order: test while it is short of
    ``n_test`` prompts, then val (`_nearer`), the rest train, the last unit always; where no unit
    joined test though some should, the smallest training unit (ties: the first drawn)."""
    taken = {"test": 0, "val": 0}
    chosen: dict[str, str] = {}
    for k, unit in enumerate(units):
        size, last = len(members[unit]), k == len(units) - 1  # the last one trains: at least one does
        if not last and _nearer(taken["test"], size, n_test):
            chosen[unit] = "test"
        elif not last and _nearer(taken["val"], size, n_val):
            chosen[unit] = "val"
        else:
            chosen[unit] = "train"
        if chosen[unit] != "train":
            taken[chosen[unit]] += size
    training = [u for u in units if chosen[u] == "train"]
    if n_test and not taken["test"] and len(training) > 1:  # every group would have overshot the share
        chosen[min(training, key=lambda u: len(members[u]))] = "test"
    return chosen


def _nearer(taken: int, size: int, target: int) -> bool:
    """Whether a unit of ``size`` prompts joins a split holding ``taken`` of its ``target``:
    while the split is short, and only where it ends no farther from the target than it was (a
    prompt always does; a large group that would overshoot by more than it fills does not)."""
    return taken < target and taken + size - target <= target - taken
