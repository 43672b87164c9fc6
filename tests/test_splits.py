"""Tests for how a task's prompts fall into train, validation and test: random, given with the
data, by template and by group."""

from __future__ import annotations

import dataclasses

import pytest
from word_tokenizer import WordTokenizer, ex

from actscale.engine.tasks import (
    Example,
    PreparedTask,
    assign_splits,
    prepare_task,
)
from actscale.errors import DatasetError


def test_random_split_deterministic_and_sized():
    examples = [ex(f"w{i} x") for i in range(10)]
    a = prepare_task(examples, WordTokenizer(), prepend_bos=True, fixed_length=True, seed=3, test_frac=0.3)
    b = prepare_task(examples, WordTokenizer(), prepend_bos=True, fixed_length=True, seed=3, test_frac=0.3)
    c = prepare_task(examples, WordTokenizer(), prepend_bos=True, fixed_length=True, seed=4, test_frac=0.3)
    assert [e.split for e in a.examples] == [e.split for e in b.examples]
    assert [e.split for e in a.examples] != [e.split for e in c.examples]
    assert a.split_indices("test").numel() == 3 and a.split_indices("train").numel() == 7
    assert sorted(a.split_indices("train").tolist() + a.split_indices("test").tolist()) == list(range(10))
    # At least one in each split, even for tiny sets or extreme fractions.
    two = prepare_task(examples[:2], WordTokenizer(), prepend_bos=True, fixed_length=True, test_frac=0.0)
    assert sorted(e.split for e in two.examples) == ["test", "train"]
    one = prepare_task(examples[:1], WordTokenizer(), prepend_bos=True, fixed_length=True)
    assert [e.split for e in one.examples] == ["train"]


def test_given_splits_kept_and_template_routing():
    examples = [ex("a b", template=f"t{i % 3}") for i in range(9)] + [ex("a b", split="test", template="t0")]
    task = prepare_task(examples, WordTokenizer(), prepend_bos=False, fixed_length=True, test_templates=("t2",))
    assert [e.split for e in task.examples] == ["train", "train", "test"] * 3 + ["test"]
    assert task.split_indices("test").tolist() == [2, 5, 8, 9]
    assert task.summary() == "kept 10 of 10 prompts (6 train, 4 test); dropped 0"


def test_a_files_groups_never_span_two_splits():
    """Files with a group column are split by whole groups (a country, a speaker): a test prompt
    must not share its group with a training one. Seven groups of unequal size, three seeds."""
    sizes = {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7}
    ex = [Example(f" p{g}{i} q", " x", " y", group=g) for g, n in sizes.items() for i in range(n)]
    for seed in (0, 1, 2):
        task = prepare_task(ex, WordTokenizer(), prepend_bos=False, fixed_length=False, seed=seed, test_frac=0.2,
                            val_frac=0.2, by_group=True)  # fmt: skip
        split_of: dict[str, set[str]] = {}
        for e in task.examples:
            split_of.setdefault(e.group, set()).add(e.split)
        assert all(len(s) == 1 for s in split_of.values()) and set(split_of) == set(sizes)
        assert {"train", "test"} <= {e.split for e in task.examples}
    free = prepare_task(ex, WordTokenizer(), prepend_bos=False, fixed_length=False, test_frac=0.2, by_group=False)
    assert any(len({e.split for e in free.examples if e.group == g}) > 1 for g in sizes)  # without: groups split


def test_a_group_joins_test_only_where_it_brings_the_split_nearer_its_share():
    """One group of 28 prompts and one of 2 at test_frac 0.2 (6 of 30): the large group drawn
    first had taken test, 28 prompts, leaving 2 to train on. Where every group would overshoot
    (two of 15), the smallest tests, so there is a test split. Without groups every prompt is a
    unit of one, and the rule is the one before (round(0.2 · 30) = 6 test prompts)."""
    ex = [Example(f" p{i} q", " x", " y", group="big" if i < 28 else "small") for i in range(30)]
    for seed in range(4):  # whichever group is drawn first
        splits = assign_splits(ex, seed, 0.2, by_group=True)
        assert (splits.count("train"), splits[28:]) == (28, ["test", "test"])
    even = [Example(f" p{i} q", " x", " y", group="one" if i < 15 else "two") for i in range(30)]
    for seed in range(4):
        splits = assign_splits(even, seed, 0.2, by_group=True)
        assert sorted(splits.count(s) for s in ("train", "test")) == [15, 15] and len(set(splits[:15])) == 1
    assert assign_splits(ex, 0, 0.2, by_group=False).count("test") == 6


def test_a_test_split_given_with_the_data_is_the_whole_test_split():
    """Three rows marked test and 27 blank: the blank rows had been split by test_frac too, so 5
    more prompts joined the test split the file had named (as the code's own comment said they
    must not). Now the 27 go to training and validation (val_frac) only."""
    ex = [Example(f" p{i} q", " x", " y", split="test" if i < 3 else "") for i in range(30)]
    splits = assign_splits(ex, 0, 0.2, val_frac=0.2)
    assert (splits[:3], splits.count("test"), splits.count("val"), splits.count("train")) == (["test"] * 3, 3, 5, 22)
    blank = [Example(f" p{i} q", " x", " y") for i in range(30)]  # no test named: test_frac makes one
    assert [assign_splits(blank, 0, 0.2, val_frac=0.2).count(s) for s in ("test", "val", "train")] == [6, 6, 18]


def test_a_validation_split_given_with_the_data_is_the_whole_validation_split():
    """Four rows marked val and 26 blank: 5 blank rows had joined the file's validation split
    by val_frac. Now the blank rows go to test (test_frac) and training only."""
    ex = [Example(f" p{i} q", " x", " y", split="val" if i < 4 else "") for i in range(30)]
    splits = assign_splits(ex, 0, 0.2, val_frac=0.2)
    assert (splits[:4], splits.count("val"), splits.count("test"), splits.count("train")) == (["val"] * 4, 4, 5, 21)
    both = [Example(f" p{i} q", " x", " y", split="val" if i < 4 else "test" if i < 7 else "") for i in range(30)]
    assert [assign_splits(both, 0, 0.2, val_frac=0.2).count(s) for s in ("val", "test", "train")] == [4, 3, 23]


def test_a_file_with_a_group_missing_on_some_rows_says_so():
    """59 rows of eight groups and one row without: the file had been split prompt by prompt,
    each group in training and validation alike, without a word, for one blank cell."""
    ex = [Example(f" p{i} q", " x", " y", group="" if i in (7, 9) else f"g{i % 8}", source=f"row {i + 1}")
          for i in range(60)]  # fmt: skip
    with pytest.raises(DatasetError) as raised:
        assign_splits(ex, 0, 0.2, val_frac=0.2, by_group=True)
    assert str(raised.value) == (
        "2 of 60 prompts to split have no group (the first: row 8), so the file cannot be split by whole groups: "
        "give each a group, or leave the group column empty"
    )
    # a row whose split the file names needs no group; without by_group (generated tasks) nothing is asked
    named = [dataclasses.replace(e, split="test") if not e.group else e for e in ex]
    splits = assign_splits(named, 0, 0.2, val_frac=0.2, by_group=True)
    assert (splits[7], splits[9], splits.count("test")) == ("test", "test", 2)
    assert assign_splits(ex, 0, 0.2, val_frac=0.2).count("test") == 12


def test_a_file_of_one_group_cannot_be_split_and_says_so():
    """Thirty rows of one group had all trained (no test, no validation split) without a word."""
    ex = [Example(f" p{i} q", " x", " y", group="g") for i in range(30)]
    with pytest.raises(DatasetError) as raised:
        assign_splits(ex, 0, 0.2, val_frac=0.2, by_group=True)
    assert str(raised.value) == (
        "every prompt to split is in the group 'g', and a group never spans two splits: none is left for test; give "
        "the file more groups or a split column, or set test_frac to 0"
    )
    assert set(assign_splits(ex, 0, 0.0, val_frac=0.2, by_group=True)) == {"train"}  # asked for no test
    marked = [Example(" t q", " x", " y", split="test", group="g"), *ex]  # the file names its test rows
    assert assign_splits(marked, 0, 0.2, by_group=True).count("test") == 1


def test_the_preview_says_how_the_groups_fall_into_the_splits():
    """The Train page's preview names the groups per split, so a file's groups are seen to be read
    and held apart, and a generated task's shared groups are said."""
    from actscale.views.preview import groups_text

    def task(rows: list[tuple[str, str]]) -> PreparedTask:
        ex = [Example(f" p{i} q", " x", " y", split=s, group=g) for i, (s, g) in enumerate(rows)]
        return prepare_task(ex, WordTokenizer(), prepend_bos=False, fixed_length=False)

    apart = [("train", "a"), ("train", "b"), ("train", "a"), ("val", "c"), ("test", "d")]
    assert groups_text(task(apart)) == "4 groups: 2 in train, 1 in val, 1 in test; none is in two splits"
    shared = [("train", "a"), ("train", "b"), ("test", "a"), ("test", "b")]
    assert groups_text(task(shared)) == "2 groups: 2 in train, 2 in test; test shares groups with training"
    val_only = [("train", "a"), ("val", "a"), ("test", "b")]
    assert groups_text(task(val_only)) == "2 groups: 1 in train, 1 in val, 1 in test; some are in two splits"
    one = [("train", "a"), ("test", "")]
    assert groups_text(task(one)) == "1 group: 1 in train; none is in two splits"
    assert groups_text(task([("train", ""), ("test", "")])) == ""
