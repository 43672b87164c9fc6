"""Tests for actscale.engine.tasks.read_dataset: CSV and JSONL files, their errors (one line each),
rows dropped with the reason."""

from __future__ import annotations

import pytest
import torch
from word_tokenizer import WordTokenizer

from actscale.engine.tasks import (
    Example,
    prepare_task,
    read_dataset,
)
from actscale.errors import DatasetError


# ---------------------------------------------------------------- read_dataset
def test_read_csv(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('prompt,correct,wrong,split\n"Hi, A gave to", Mary, John,train\nX is, Y, Z,\nP, Q, R, TEST ,, \n')
    assert read_dataset(path) == [
        Example("Hi, A gave to", " Mary", " John", "train"),
        Example("X is", " Y", " Z", ""),
        Example("P", " Q", " R", "test"),
    ]


def test_read_jsonl(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(
        '{"prompt": "A to", "correct": " B", "wrong": " C"}\n\n'
        '{"prompt": "D", "correct": " E", "wrong": " F", "split": "test", "extra": 1}\n'
    )
    assert read_dataset(path) == [Example("A to", " B", " C"), Example("D", " E", " F", "test")]


CSV_ERRORS = [
    (b"", "d.csv: file is empty"),
    (b"  \n", "d.csv: file is empty"),
    (b"\xff\xfeprompt", "d.csv: not UTF-8 text (bad byte at offset 0)"),
    (b"prompt,correct,wrong\n", "d.csv: no rows"),
    (b"prompt,answer\nx,y\n", "d.csv: missing column(s) correct, wrong (found: prompt, answer)"),
    (b"prompt,correct,wrong,split\na, b, c,holdout\n", "d.csv: split 'holdout' in row 1 is not train, val or test"),
    (b'prompt,correct,wrong\n"a\x00,b', "d.csv: malformed CSV: unexpected end of data"),
    (b'prompt,correct,wrong\n"a"x,b,c\n', "d.csv: malformed CSV: ',' expected after '\"'"),
    (
        b"prompt,correct,wrong\nA, b, c\nThe capital of France, is, Paris, London\n",
        "d.csv: row 2 has 4 fields, the header 3; quote a prompt or answer that holds a comma",
    ),
    (
        b"prompt,correct,wrong,split\na, b, c,,x,\n",
        "d.csv: row 1 has 6 fields, the header 4; quote a prompt or answer that holds a comma",
    ),
]


@pytest.mark.parametrize("content, message", CSV_ERRORS)
def test_read_csv_errors(tmp_path, content, message):
    (tmp_path / "d.csv").write_bytes(content)
    with pytest.raises(DatasetError) as info:
        read_dataset(tmp_path / "d.csv")
    assert str(info.value) == message and "\n" not in str(info.value)


JSONL_ERRORS = [
    (
        '{"prompt": "a", "correct": " b", "wrong": " c"}\n{"prompt": ',
        "d.jsonl: malformed JSON on line 2: Expecting value",
    ),
    ("[1, 2]\n", "d.jsonl: line 1 is not a JSON object"),
    ('{"prompt": "a"}\n', "d.jsonl: missing column(s) correct, wrong on line 1"),
    ('{"prompt": "a", "correct": 1, "wrong": " c"}\n', "d.jsonl: correct in line 1 is not a string (got int)"),
    (
        '{"prompt": "a", "correct": " b", "wrong": " c", "split": 3}\n',
        "d.jsonl: split in line 1 is not a string (got int)",
    ),
    (
        '{"prompt": "a", "correct": " b", "wrong": " c", "split": "val\\nx"}\n',
        "d.jsonl: split 'val\\nx' in line 1 is not train, val or test",
    ),
    ("\n\n", "d.jsonl: file is empty"),
]


@pytest.mark.parametrize("content, message", JSONL_ERRORS)
def test_read_jsonl_errors(tmp_path, content, message):
    (tmp_path / "d.jsonl").write_text(content)
    with pytest.raises(DatasetError) as info:
        read_dataset(tmp_path / "d.jsonl")
    assert str(info.value) == message and "\n" not in str(info.value)


def test_row_level_problems_are_read_and_dropped_with_the_row(tmp_path):
    """Issue 12: an empty field or equal answers cost the row, never the file; the row is named."""
    path = tmp_path / "d.csv"
    path.write_text("prompt,correct,wrong\na x, b, c\n , b, c\na y, b\na z, b, b\na w, ,c\na v, b, d\n")
    examples = read_dataset(path)
    assert examples == [
        Example("a x", " b", " c"),
        Example(" ", " b", " c"),
        Example("a y", " b", ""),
        Example("a z", " b", " b"),
        Example("a w", " ", "c"),
        Example("a v", " b", " d"),
    ]
    assert [e.source for e in examples] == [f"row {k}" for k in range(1, 7)]
    task = prepare_task(examples, WordTokenizer(), prepend_bos=False, fixed_length=False, test_frac=0.0)
    assert [(e.source, r) for e, r in task.dropped] == [
        ("row 2", "empty prompt"),
        ("row 3", "empty wrong answer"),
        ("row 4", "correct and wrong are the same"),
        ("row 5", "empty correct answer"),
    ]
    assert [e.prompt for e in task.examples] == ["a x", "a v"]
    assert task.summary() == (
        "kept 2 of 6 prompts (1 train, 1 test); dropped 4: "
        "2 empty answer, 1 empty prompt, 1 correct and wrong are the same"
    )
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(
        '{"prompt": "", "correct": " b", "wrong": " c"}\n{"prompt": "q", "correct": " b", "wrong": " c"}\n'
    )
    assert [(e.prompt, e.source) for e in read_dataset(jsonl)] == [("", "line 1"), ("q", "line 2")]


def test_read_file_level_errors(tmp_path):
    with pytest.raises(DatasetError, match=r"^nope\.csv: file not found$"):
        read_dataset(tmp_path / "nope.csv")
    big = tmp_path / "big.csv"
    big.write_text("prompt,correct,wrong\n" + "a,b,c\n" * 10)
    with pytest.raises(DatasetError, match=r"^big\.csv: file is 81 bytes, more than the limit of 50$"):
        read_dataset(big, max_bytes=50)
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"^d\.txt: unknown file type '\.txt'; use \.csv or \.jsonl$"):
        read_dataset(tmp_path / "d.txt")


def test_read_random_bytes_never_raw(tmp_path):
    gen = torch.Generator().manual_seed(0)
    for i in range(50):
        for suffix in (".csv", ".jsonl"):
            path = tmp_path / f"r{i}{suffix}"
            path.write_bytes(bytes(torch.randint(0, 256, (200,), generator=gen).tolist()))
            with pytest.raises(DatasetError):
                read_dataset(path)
