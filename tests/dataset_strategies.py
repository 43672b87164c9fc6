"""Hypothesis strategies for hostile datasets (test_fuzz_datasets): words the tiny tokenizer knows,
answers and prompts of every kind, rows, JSON values; and a table's bytes as CSV or JSONL."""

from __future__ import annotations

import csv
import io
import json

from hypothesis import strategies as st

from actscale.engine.tasks import task_vocabulary

N_CTX = 256  # the tiny models' context
SUFFIXES = st.sampled_from([".csv", ".jsonl", ".json", ".CSV", ".txt", ""])
WORDS = [w for w in task_vocabulary() if w.isalpha()]
SINGLE = st.sampled_from(WORDS).map(lambda w: " " + w)  # one token for the tiny tokenizer
MULTI = st.lists(st.sampled_from(WORDS), min_size=2, max_size=4).map(lambda ws: " " + " ".join(ws))
UNKNOWN = st.text(alphabet="qxzjk", min_size=5, max_size=8).map(lambda w: " " + w)  # one [UNK] token
BLANK = st.sampled_from(["", " ", "\t", "  "])
ANSWER = st.one_of(SINGLE, SINGLE, MULTI, UNKNOWN, BLANK, st.text(max_size=12))
SHORT_PROMPT = st.lists(st.sampled_from(WORDS), min_size=1, max_size=20).map(" ".join)
LONG_PROMPT = st.integers(N_CTX, N_CTX + 60).map(lambda n: " ".join(["Mary"] * n))  # > context with BOS
PROMPT = st.one_of(SHORT_PROMPT, SHORT_PROMPT, LONG_PROMPT, BLANK, st.text(max_size=40))
SPLIT = st.sampled_from(["", "train", "test", "TEST", " train ", "validation", None])
COLUMN = st.sampled_from(["prompt", "correct", "wrong", "split", " prompt ", "Prompt", "answer", "", "x"])


@st.composite
def rows(draw, min_size: int = 0, max_size: int = 8):
    out = []
    for _ in range(draw(st.integers(min_size, max_size))):
        row = {"prompt": draw(PROMPT), "correct": draw(ANSWER)}
        row["wrong"] = draw(st.one_of(ANSWER, st.just(row["correct"])))  # sometimes identical
        split = draw(SPLIT)
        if split is not None:
            row["split"] = split
        out.append(row)
    return out


def csv_bytes(header: list[str], body: list[list[str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(body)
    return buf.getvalue().encode("utf-8")


def dataset_bytes(table: list[dict], fmt: str, ascii_json: bool = True) -> bytes:
    if fmt == ".jsonl":
        return "".join(json.dumps(r, ensure_ascii=ascii_json) + "\n" for r in table).encode("utf-8")
    header = ["prompt", "correct", "wrong", "split"]
    return csv_bytes(header, [[r.get(c, "") for c in header] for r in table])


JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
