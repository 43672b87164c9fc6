"""Tests for actscale.engine.tasks.prepare_task: tokenising, left padding, positions, and the
prompts dropped with their reasons."""

from __future__ import annotations

import json

import pytest
import torch
from word_tokenizer import WordTokenizer, ex

from actscale.engine.tasks import (
    Example,
    prepare_task,
    read_dataset,
)
from actscale.errors import DatasetError


# ---------------------------------------------------------------- prepare_task
def test_left_padding_mask_and_ids():
    tok = WordTokenizer()
    examples = [ex("x y z", split="train"), ex("x y", " c", " d", split="test")]
    task = prepare_task(examples, tok, prepend_bos=True, fixed_length=False)
    # Answers are tokenised before the prompt, so " a"=3, " b"=4, "x"=5, " y"=6, " z"=7, " c"=8, " d"=9
    assert task.tokens.tolist() == [[1, 5, 6, 7], [0, 1, 5, 6]]
    assert task.attention_mask.tolist() == [[1, 1, 1, 1], [0, 1, 1, 1]]
    assert task.correct_ids.tolist() == [3, 8] and task.wrong_ids.tolist() == [4, 9]
    assert task.str_tokens == [["<bos>", "x", " y", " z"], ["<bos>", "x", " y"]]
    assert task.n_pos == 4 and task.tokens.dtype == torch.long and task.attention_mask.dtype == torch.long
    no_bos = prepare_task(examples, tok, prepend_bos=False, fixed_length=False)
    assert no_bos.tokens.tolist() == [[5, 6, 7], [0, 5, 6]]


def test_pad_falls_back_to_eos():
    task = prepare_task(
        [ex("x y", split="train"), ex("x", split="test")],
        WordTokenizer(pad=False),
        prepend_bos=False,
        fixed_length=False,
    )
    assert task.tokens[1, 0].item() == 2


def test_drop_reasons_and_summary():
    examples = [
        ex("p q r"),
        ex("p q s"),
        ex("p q t"),
        ex("p q", " Mary Ann", " b"),  # multi-token correct
        ex("p q", " a", " Johnson Jr"),  # multi-token wrong
        ex("p q", " a", " a "),  # different strings, same token (" a " splits to " a")
        ex("p q r s t u v"),  # longer than max_len
        ex("p q"),
        ex("p q r s"),  # lengths 3 and 5 vs the most common 4
    ]
    task = prepare_task(examples, WordTokenizer(), prepend_bos=True, fixed_length=True, max_len=6)
    assert [r for _, r in task.dropped] == [
        "answer ' Mary Ann' is 2 tokens",
        "answer ' Johnson Jr' is 2 tokens",
        "correct and wrong are the same token",
        "longer than the model's context (6 tokens)",
        "length 3, not the most common length 4",
        "length 5, not the most common length 4",
    ]
    assert [e.prompt for e in task.examples] == ["p q r", "p q s", "p q t"]
    assert task.summary() == (
        "kept 3 of 9 prompts (2 train, 1 test); dropped 6: 2 multi-token answer, "
        "1 correct and wrong are the same token, 1 longer than the model's context (6 tokens), "
        "1 length 3 not the most common length 4, 1 length 5 not the most common length 4"
    )


def test_position_labels_by_alignment_and_coverage():
    """Absolute (one length): labels from the first token. Answer-aligned (every length,
    left-padded): counted back from the last token, with the share of train prompts that
    reach a position where not all do."""
    examples = [
        ex("The city x is in", split="train"),
        ex("The town y is in", split="train"),
        ex("A z is in", split="train"),
        ex("w is in", split="train"),
        ex("v u t s is in", split="test"),
    ]
    aligned = prepare_task(examples, WordTokenizer(), prepend_bos=False, fixed_length=False)
    assert aligned.n_pos == 6 and len(aligned.examples) == 5
    assert aligned.position_labels() == [
        "−6:",
        "−5: The (50%)",
        "−4: A… (75%)",  # ties: the last in string order, as for absolute labels
        "−3: w…",
        "−2: is",
        "−1: in",
    ]
    assert aligned.position_coverage() == [0.0, 0.5, 0.75, 1.0, 1.0, 1.0]
    one = prepare_task(examples[:2], WordTokenizer(), prepend_bos=False, fixed_length=True, test_frac=0.0)
    assert one.position_labels() == ["0:The", "1: town…", "2: y…", "3: is", "4: in"]
    assert one.position_coverage() == [1.0] * 5


def test_pad_to_a_runs_width_drops_longer_prompts():
    examples = [ex("p q"), ex("p q r s t"), ex("p")]
    task = prepare_task(examples, WordTokenizer(), prepend_bos=False, fixed_length=False, test_frac=0.0, n_pos=4)
    assert task.n_pos == 4 and task.attention_mask.tolist() == [[0, 0, 1, 1], [0, 0, 0, 1]]
    assert [r for _, r in task.dropped] == ["longer than the run's 4 positions"]


def test_fixed_length_tie_goes_to_shorter_and_counts():
    examples = [ex("a b")] * 3 + [ex("a b c")] * 3 + [ex("a")] * 2
    task = prepare_task(examples, WordTokenizer(), prepend_bos=False, fixed_length=True)
    assert len(task.examples) == 3 and task.n_pos == 2 and task.attention_mask.all()
    assert task.summary() == (
        "kept 3 of 8 prompts (2 train, 1 test); dropped 5: "
        "3 length 3 not the most common length 2, 2 length 1 not the most common length 2"
    )
    free = prepare_task(examples, WordTokenizer(), prepend_bos=False, fixed_length=False)
    assert (
        len(free.examples) == 8
        and free.n_pos == 3
        and free.summary() == "kept 8 of 8 prompts (6 train, 2 test); dropped 0"
    )


def test_nothing_usable_and_empty():
    with pytest.raises(DatasetError) as info:
        prepare_task(
            [ex("p", " a b"), ex("p", " a b"), ex("q", " a", " a")],
            WordTokenizer(),
            prepend_bos=True,
            fixed_length=False,
        )
    assert str(info.value) == "no usable prompts: 2 multi-token answer, 1 correct and wrong are the same"
    with pytest.raises(DatasetError, match="^no usable prompts: 1 empty prompt$"):
        prepare_task([ex("")], WordTokenizer(), prepend_bos=False, fixed_length=False)
    with pytest.raises(DatasetError, match="^the dataset is empty$"):
        prepare_task([], WordTokenizer(), prepend_bos=True, fixed_length=False)
    with pytest.raises(DatasetError, match="^no training prompts: the 2 kept prompts are all in the test split$"):
        prepare_task(
            [ex("p", split="test"), ex("q", split="test")], WordTokenizer(), prepend_bos=True, fixed_length=False
        )
    # A file naming every row val (or val and test) had been said to hold only test prompts.
    named = [ex("p", split="val"), ex("q", split="test"), ex("r", split="val")]
    with pytest.raises(
        DatasetError, match=r"^no training prompts: the 3 kept prompts are in the val \(2\) and test \(1\) splits$"
    ):
        prepare_task(named, WordTokenizer(), prepend_bos=True, fixed_length=False)


def test_a_files_repeated_rows_are_dropped_with_the_row_they_repeat(tiny_llama, tmp_path):
    """Thirty copies of one row had been split 18 / 6 / 6: the test split was the training
    prompt. A file's task keeps the first of a prompt-and-answers, whatever its split or group;
    the same prompt with other answers is another row. A worker handed the file's rows (Ray)
    builds the same task as this process (one dataset hash, so one run id)."""
    from actscale.engine.training import TrainConfig
    from actscale.runs.api import build_task

    ex = [Example(" a b c", " x", " y", source=f"row {i}") for i in (2, 3)]
    ex += [Example(" a b c", " x", " z", source="row 4"), Example(" a b c", " x", " y", split="test", source="row 5")]
    task = prepare_task(ex, WordTokenizer(), prepend_bos=False, fixed_length=False, test_frac=0.0, unique=True)
    assert [e.source for e in task.examples] == ["row 2", "row 4"]
    assert [(e.source, why) for e, why in task.dropped] == [
        ("row 3", "a repeat of row 2"),
        ("row 5", "a repeat of row 2"),
    ]
    assert task.drop_summary() == "dropped 2: 2 repeated row"
    assert len(prepare_task(ex, WordTokenizer(), prepend_bos=False, fixed_length=False, test_frac=0.0).examples) == 4

    rows = [{"prompt": f"When Amy and Tom went out, Tom gave a {w} to", "correct": " Amy", "wrong": " Tom"} for w in
            ("ball", "book", "pen", "key", "cup", "hat", "map", "box", "toy", "jar")]  # fmt: skip
    path = tmp_path / "repeats.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows + rows[:3] * 2))
    config = TrainConfig(model="tiny-llama", task="custom", dataset=str(path), method="dynscalar")
    task = build_task(tiny_llama, config)
    assert len(task.examples) == 10 and task.drop_summary() == "dropped 6: 6 repeated row"
    assert [why for _, why in task.dropped] == [f"a repeat of line {i}" for i in (1, 2, 3, 1, 2, 3)]
    assert build_task(tiny_llama, config, read_dataset(path)).dataset_hash == task.dataset_hash
