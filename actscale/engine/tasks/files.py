"""A user's dataset: a CSV or JSONL file of prompt, correct, wrong[, split, group,
counterfactual] rows, read
with every problem of one row kept as that row's reason."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from actscale.engine.tasks.examples import SPLIT_NAMES, Example
from actscale.errors import DatasetError


def read_dataset(path: str | Path, max_bytes: int = 50_000_000) -> list[Example]:
    """Examples from a CSV (.csv) or JSONL (.jsonl/.json) file with prompt, correct, wrong[, split, group,
    counterfactual].

    Values are kept as written (an answer's leading space matters), also empty ones and equal
    answers: `prepare_task` drops such a row with its reason, so one bad row never costs the
    file. Split is "train", "val", "test" or empty (case and surrounding spaces ignored). A
    problem of the file's format raises DatasetError with a one-line message naming the file
    (and the row or line); never a raw parser error.
    """
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise DatasetError(f"{name}: file not found" if not path.exists() else f"{name}: not a file")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise DatasetError(f"{name}: file is {size} bytes, more than the limit of {max_bytes}")
        data = path.read_bytes()
    except OSError as e:
        raise DatasetError(f"{name}: cannot read the file ({e.strerror})") from None
    try:
        text = data.decode("utf-8-sig")  # -sig: Excel writes a byte-order mark
    except UnicodeDecodeError as e:
        raise DatasetError(f"{name}: not UTF-8 text (bad byte at offset {e.start})") from None
    if not text.strip():
        raise DatasetError(f"{name}: file is empty")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = _csv_rows(text, name)
    elif suffix in (".jsonl", ".json"):
        rows = _jsonl_rows(text, name)
    else:
        raise DatasetError(f"{name}: unknown file type '{suffix}'; use .csv or .jsonl")
    if not rows:
        raise DatasetError(f"{name}: no rows")
    return [_row_to_example(values, where, name) for where, values in rows]


def _csv_rows(text: str, name: str) -> list[tuple[str, dict]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)  # strict: report a stray quote
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in ("prompt", "correct", "wrong") if c not in header]
        if missing:
            raise DatasetError(
                f"{name}: missing column(s) {', '.join(missing)} (found: {', '.join(header) or 'nothing'})"
            )
        reader.fieldnames = header
        # A short row gives None for the missing fields: empty, dropped by prepare_task.
        rows = [(f"row {k}", row) for k, row in enumerate(reader, start=1)]
        for where, row in rows:
            _no_extra_fields(row, where, name, len(header))
        return rows
    except csv.Error as e:
        raise DatasetError(f"{name}: malformed CSV: {e}") from None


def _no_extra_fields(row: dict, where: str, name: str, n_header: int) -> None:
    """A row longer than the header is refused unless its extra fields are empty (a trailing
    comma): an unquoted comma inside a prompt shifts the answers into the wrong columns, and a
    shifted row can still hold two one-token answers that would train on the wrong pair."""
    extra = row.get(None) or []
    if any(v.strip() for v in extra):
        raise DatasetError(
            f"{name}: {where} has {n_header + len(extra)} fields, the header {n_header}; "
            "quote a prompt or answer that holds a comma"
        )


def _jsonl_rows(text: str, name: str) -> list[tuple[str, dict]]:
    rows = []
    # Split on "\n" only: splitlines() would also break at U+2028, U+0085 and friends, which JSON
    # allows raw inside strings.
    for k, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as e:
            # ValueError also covers numbers too long to convert (Python's int digit limit).
            reason = getattr(e, "msg", None) or ("nested too deeply" if isinstance(e, RecursionError) else str(e))
            raise DatasetError(f"{name}: malformed JSON on line {k}: {reason[:200]}") from None
        if not isinstance(obj, dict):
            raise DatasetError(f"{name}: line {k} is not a JSON object")
        missing = [c for c in ("prompt", "correct", "wrong") if c not in obj]
        if missing:
            raise DatasetError(f"{name}: missing column(s) {', '.join(missing)} on line {k}")
        rows.append((f"line {k}", obj))
    return rows


def _row_to_example(values: dict, where: str, name: str) -> Example:
    fields = {}
    for col in ("prompt", "correct", "wrong", "split", "group", "counterfactual"):
        v = values.get(col)
        if v is None:
            v = ""  # a short CSV row, or JSON null for an optional column
        if not isinstance(v, str):
            raise DatasetError(f"{name}: {col} in {where} is not a string (got {type(v).__name__})")
        fields[col] = v
    split = fields["split"].strip().lower()
    if split and split not in SPLIT_NAMES:
        raise DatasetError(f"{name}: split {fields['split']!r} in {where} is not train, val or test")
    return Example(
        fields["prompt"],
        fields["correct"],
        fields["wrong"],
        split=SPLIT_NAMES.get(split, ""),
        group=fields["group"].strip(),
        counterfactual=fields["counterfactual"],
        source=where,
    )
