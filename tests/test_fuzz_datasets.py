"""Hostile datasets (issue 4, part 3): property-based tests with Hypothesis.

Random bytes, non-UTF-8 text, wrong or missing columns, empty and huge files, answers that are
multi-token, identical or empty, prompts longer than the model's context. Whatever the input,
`read_dataset`, `prepare_task` and `build_task` either succeed (with the documented invariants)
or raise DatasetError / ActscaleError with a one-line message: never another exception, never a
traceback, never a partial run in the store (the command line's exit 2 and one error line:
test_hostile_datasets_cli; the strategies: dataset_strategies).
"""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path

import pytest
from dataset_strategies import (
    ANSWER,
    COLUMN,
    JSON_VALUE,
    LONG_PROMPT,
    MULTI,
    N_CTX,
    PROMPT,
    SHORT_PROMPT,
    SINGLE,
    SPLIT,
    SUFFIXES,
    UNKNOWN,
    csv_bytes,
    dataset_bytes,
    rows,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from actscale.engine.tasks import Example, PreparedTask, prepare_task, read_dataset
from actscale.engine.training import TrainConfig
from actscale.errors import ActscaleError, DatasetError
from actscale.runs.api import build_task, train_run
from actscale.runs.store import RunStore

# Generated inputs per test (Hypothesis's max_examples); their sum is the figure the issue asks
# for, and test_inputs_fuzzed_total checks that they really ran.
MAX_EXAMPLES = {
    "random_bytes": 250,
    "non_utf8": 100,
    "csv_columns": 200,
    "jsonl_values": 200,
    "empty_files": 60,
    "huge_files": 100,
    "answers_and_prompts": 250,
    "end_to_end": 40,
}
FUZZED: dict[str, int] = {}


def fuzz_settings(name: str):
    return settings(
        max_examples=MAX_EXAMPLES[name],
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def _count(name: str) -> None:
    FUZZED[name] = FUZZED.get(name, 0) + 1


@pytest.fixture(scope="module")
def fuzz_dir():
    with tempfile.TemporaryDirectory(prefix="actscale-fuzz-") as d:
        yield Path(d)


def _write(folder: Path, data: bytes, suffix: str) -> Path:
    path = folder / f"data-{uuid.uuid4().hex[:8]}{suffix}"
    path.write_bytes(data)
    return path


def _one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message, f"{type(exc).__name__} with an empty message"
    assert len(message.splitlines()) == 1 and "\n" not in message and "\r" not in message, repr(message)
    assert "Traceback" not in message
    return message


def checked_read(path: Path, **kwargs) -> list[Example] | None:
    """read_dataset's contract: a clean list of examples, or a one-line DatasetError."""
    try:
        examples = read_dataset(path, **kwargs)
    except DatasetError as exc:
        _one_line(exc)
        return None
    assert examples and all(isinstance(e, Example) for e in examples)
    for e in examples:  # empty fields and equal answers are read: prepare_task drops the row
        assert e.split in ("", "train", "val", "test")
    return examples


def checked_prepare(examples: list[Example], model, fixed_length: bool) -> PreparedTask | None:
    """prepare_task's contract: a consistent task (every kept prompt fits the context, every
    answer is one token, every drop has a reason), or a one-line DatasetError."""
    try:
        task = prepare_task(
            examples,
            model.tokenizer,
            prepend_bos=model.prepend_bos,
            fixed_length=fixed_length,
            seed=0,
            test_frac=0.2,
            max_len=model.n_ctx,
        )
    except DatasetError as exc:
        _one_line(exc)
        return None
    assert len(task.examples) + len(task.dropped) == len(examples)
    assert 1 <= task.n_pos <= model.n_ctx
    assert task.tokens.shape == task.attention_mask.shape == (len(task.examples), task.n_pos)
    assert bool((task.correct_ids != task.wrong_ids).all())
    for e in task.examples:  # a row with an empty field or equal answers is never kept
        assert e.prompt.strip() and e.correct.strip() and e.wrong.strip() and e.correct != e.wrong
    assert task.split_indices("train").numel() >= 1
    if fixed_length:
        assert bool(task.attention_mask.all())
    for e in task.examples:
        assert len(model.tokenizer(e.correct, add_special_tokens=False).input_ids) == 1
        assert len(model.tokenizer(e.wrong, add_special_tokens=False).input_ids) == 1
    for _, reason in task.dropped:
        assert reason and "\n" not in reason
    _one_line(ValueError(task.summary()))
    return task


@fuzz_settings("random_bytes")
@given(data=st.binary(max_size=3000), suffix=SUFFIXES)
@example(data=b"\x00" * 64, suffix=".csv")
@example(data=b"prompt,correct,wrong\n\x00,\x00,\x01\n", suffix=".csv")
@example(data=b'prompt,correct,wrong\n"unclosed, a, b\n', suffix=".csv")
@example(data=b'{"prompt": ' + b"1" * 5000 + b', "correct": "a", "wrong": "b"}\n', suffix=".jsonl")
@example(data=b"[" * 100_000, suffix=".jsonl")
def test_random_bytes(fuzz_dir, tiny_llama, data, suffix):
    _count("random_bytes")
    examples = checked_read(_write(fuzz_dir, data, suffix))
    if examples:
        checked_prepare(examples, tiny_llama, fixed_length=True)


INVALID_UTF8 = st.sampled_from([b"\xff", b"\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\x80", b"\xe9"])


@fuzz_settings("non_utf8")
@given(
    table=rows(min_size=1),
    fmt=st.sampled_from([".csv", ".jsonl"]),
    bad=INVALID_UTF8,
    where=st.floats(0, 1),
    latin1=st.booleans(),
)
def test_non_utf8(fuzz_dir, table, fmt, bad, where, latin1):
    _count("non_utf8")
    data = dataset_bytes(table, fmt)
    if latin1:  # a file saved in Latin-1 by a spreadsheet
        data = data.decode("utf-8").replace("a", "\u00e9").encode("latin-1", errors="replace")
    else:
        cut = int(where * len(data))
        data = data[:cut] + bad + data[cut:]
    try:
        data.decode("utf-8-sig")
        valid = True
    except UnicodeDecodeError:
        valid = False
    try:
        read_dataset(_write(fuzz_dir, data, fmt))
    except DatasetError as exc:
        message = _one_line(exc)
        if not valid:
            assert "UTF-8" in message
        return
    assert valid, "invalid UTF-8 was accepted"


@fuzz_settings("csv_columns")
@given(
    header=st.lists(st.one_of(COLUMN, st.text(max_size=6)), max_size=6),
    body=st.lists(st.lists(st.one_of(SHORT_PROMPT, ANSWER), max_size=7), max_size=6),
)
@example(header=["prompt", "correct"], body=[["a b", " Mary"]])
@example(header=["prompt", "correct", "wrong"], body=[["When Mary", " Mary"]])  # a short row
@example(header=["prompt", "correct", "wrong"], body=[])  # header only
def test_csv_columns(fuzz_dir, tiny_llama, header, body):
    _count("csv_columns")
    examples = checked_read(_write(fuzz_dir, csv_bytes(header, body), ".csv"))
    present = {h.strip() for h in header}
    if not {"prompt", "correct", "wrong"} <= present:
        assert examples is None, "a CSV without the required columns was accepted"
    if examples:
        checked_prepare(examples, tiny_llama, fixed_length=False)


@fuzz_settings("jsonl_values")
@given(
    lines=st.lists(
        st.one_of(
            JSON_VALUE.map(json.dumps),
            st.fixed_dictionaries(
                {"prompt": st.one_of(PROMPT, JSON_VALUE), "correct": st.one_of(ANSWER, JSON_VALUE)},
                optional={"wrong": st.one_of(ANSWER, JSON_VALUE), "split": st.one_of(SPLIT, JSON_VALUE)},
            ).map(json.dumps),
            st.text(max_size=30),
        ),
        min_size=0,
        max_size=6,
    )
)
def test_jsonl_values(fuzz_dir, tiny_llama, lines):
    _count("jsonl_values")
    examples = checked_read(_write(fuzz_dir, "\n".join(lines).encode("utf-8", errors="surrogatepass"), ".jsonl"))
    if examples:
        checked_prepare(examples, tiny_llama, fixed_length=False)


@fuzz_settings("empty_files")
@given(
    blank=st.text(alphabet=" \t\r\n\x0b\x0c", max_size=50),
    bom=st.booleans(),
    suffix=st.sampled_from([".csv", ".jsonl", ".json"]),
)
def test_empty_files(fuzz_dir, blank, bom, suffix):
    _count("empty_files")
    data = (b"\xef\xbb\xbf" if bom else b"") + blank.encode()
    with pytest.raises(DatasetError) as info:
        read_dataset(_write(fuzz_dir, data, suffix))
    assert "empty" in _one_line(info.value)


@fuzz_settings("huge_files")
@given(
    limit=st.integers(1, 4000),
    extra=st.integers(1, 2000),
    fill=st.binary(min_size=1, max_size=64),
    suffix=st.sampled_from([".csv", ".jsonl"]),
)
def test_huge_files(fuzz_dir, limit, extra, fill, suffix):
    """Over the size limit: refused before the file is read (the real limit is 50 MB; a small
    limit makes the test fast)."""
    _count("huge_files")
    data = (fill * ((limit + extra) // len(fill) + 1))[: limit + extra]
    with pytest.raises(DatasetError) as info:
        read_dataset(_write(fuzz_dir, data, suffix), max_bytes=limit)
    assert "limit" in _one_line(info.value)


def _clean(row: dict) -> bool:
    """A row read_dataset must accept: a known split (empty fields and equal answers are read
    as written and dropped row by row by prepare_task)."""
    return row.get("split", "").strip().lower() in ("", "train", "val", "validation", "dev", "test")


def _row_problem(row: dict) -> str:
    """The reason prepare_task must give for a row with an empty field or equal answers."""
    if not row["prompt"].strip():
        return "empty prompt"
    for name in ("correct", "wrong"):
        if not row[name].strip():
            return f"empty {name} answer"
    return "correct and wrong are the same" if row["correct"] == row["wrong"] else ""


@fuzz_settings("answers_and_prompts")
@given(
    table=rows(min_size=1, max_size=10),
    fmt=st.sampled_from([".csv", ".jsonl"]),
    fixed=st.booleans(),
    ascii_json=st.booleans(),
)
@example(
    table=[{"prompt": "When Mary\u2028and John\x85went", "correct": " Mary", "wrong": " John"}],
    fmt=".jsonl",
    fixed=False,
    ascii_json=False,
)
def test_answers_and_prompts(fuzz_dir, tiny_llama, table, fmt, fixed, ascii_json):
    """Multi-token, identical, empty and unknown answers; prompts longer than the context: each
    costs its row (dropped with the reason), never the file."""
    _count("answers_and_prompts")
    examples = checked_read(_write(fuzz_dir, dataset_bytes(table, fmt, ascii_json), fmt))
    if all(_clean(r) for r in table):  # a file with known splits is read back exactly as written
        assert examples is not None, "a valid dataset was refused"
        assert [(e.prompt, e.correct, e.wrong) for e in examples] == [
            (r["prompt"], r["correct"], r["wrong"]) for r in table
        ]
    if not examples:
        return
    task = checked_prepare(examples, tiny_llama, fixed_length=fixed)
    if task is not None:
        reasons = [r for _, r in task.dropped]
        assert [r for r in reasons if r in {_row_problem(row) for row in table}] == [
            _row_problem(row) for row in table if _row_problem(row)
        ], "a row with an empty field or equal answers was not dropped with its reason"
    for ex in examples:
        if _row_problem({"prompt": ex.prompt, "correct": ex.correct, "wrong": ex.wrong}):
            continue  # reported before any tokenising
        n_prompt = 1 + len(tiny_llama.tokenizer(ex.prompt, add_special_tokens=False).input_ids)
        if n_prompt > N_CTX and task is not None:
            assert all(e.prompt != ex.prompt for e in task.examples)
            reasons = [r for e, r in task.dropped if e == ex]
            assert reasons, "a prompt longer than the context was neither kept nor dropped"
            ids = [tiny_llama.tokenizer(a, add_special_tokens=False).input_ids for a in (ex.correct, ex.wrong)]
            if all(len(i) == 1 for i in ids) and ids[0] != ids[1]:  # else an answer problem is reported first
                assert "context" in reasons[0], reasons


@st.composite
def mostly_usable_rows(draw):
    """Rows a user might really upload: single-token answers with some multi-token or unknown
    ones, and some prompts too long for the context, so that runs both train and fail."""
    out = []
    for _ in range(draw(st.integers(1, 8))):
        correct = draw(st.one_of(SINGLE, SINGLE, SINGLE, MULTI, UNKNOWN))
        wrong = draw(st.one_of(SINGLE, SINGLE, SINGLE, MULTI, UNKNOWN).filter(lambda w: w != correct))
        out.append(
            {
                "prompt": draw(st.one_of(SHORT_PROMPT, SHORT_PROMPT, LONG_PROMPT)),
                "correct": correct,
                "wrong": wrong,
                "split": draw(st.sampled_from(["", "", "train", "test"])),
            }
        )
    return out


@fuzz_settings("end_to_end")
@given(
    table=mostly_usable_rows(),
    fmt=st.sampled_from([".csv", ".jsonl"]),
    method=st.sampled_from(["activscalar", "steervec", "dynscalar"]),
)
def test_build_task_and_train_never_leave_a_partial_run(fuzz_dir, tiny_llama, table, fmt, method):
    _count("end_to_end")
    path = _write(fuzz_dir, dataset_bytes(table, fmt), fmt)
    store = RunStore(fuzz_dir / f"store-{uuid.uuid4().hex[:8]}")
    config = TrainConfig(model="tiny-llama", task="custom", dataset=str(path), method=method, steps=1, early_stop=0)
    try:
        task = build_task(tiny_llama, config)
        bundle = train_run(config, tiny_llama, store=store, task=task)
    except ActscaleError as exc:
        _one_line(exc)
        assert not store.root.exists() or not any(store.root.iterdir()), "a failed run left files"
        return
    assert [p.name for p in store.root.iterdir()] == [bundle.run_id]  # complete, and nothing else
    assert [r.ok for r in store.list()] == [True]
    _count("end_to_end_trained")


def test_inputs_fuzzed_total():
    """The figure for the issue: at least 1,000 generated inputs (checked when all ran)."""
    assert sum(MAX_EXAMPLES.values()) >= 1000
    trained = FUZZED.pop("end_to_end_trained", 0)
    if set(FUZZED) != set(MAX_EXAMPLES):
        pytest.skip("only some fuzz tests ran")
    total = sum(FUZZED.values())
    print(
        f"\ninputs fuzzed: {total} ({', '.join(f'{k} {v}' for k, v in FUZZED.items())}); "
        f"{trained} of the end-to-end inputs trained and stored a complete run"
    )
    assert total >= 1000
    assert trained >= 5, "the end-to-end inputs hardly ever reached training"
