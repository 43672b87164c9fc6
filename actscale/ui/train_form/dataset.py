"""The Train page's dataset picker: IOI, CCC or an uploaded file, its split and held-out
groups, and how fixed-length methods' positions meet the prompts."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from actscale.engine.interventions import method_class, registered_methods
from actscale.engine.tasks import IOI_FAMILIES, IOI_TEMPLATES, ccc_countries
from actscale.engine.tasks.registry import task_spec
from actscale.errors import ActscaleError, DatasetError
from actscale.ui.train_form.model import FIELD_DEFAULTS, TASK_LABELS, method_label
from actscale.ui.train_form.widgets import choice_input, field_input

UPLOAD_DIR = Path(tempfile.gettempdir()) / "actscale-uploads"


def save_upload(name: str, data: bytes) -> Path:
    """Keep an uploaded dataset on disk for the background job, named by its content (the same
    upload maps to the same file; run ids depend on the content, never on this path)."""
    suffix = Path(name).suffix.lower()
    if suffix not in (".csv", ".jsonl", ".json"):
        raise DatasetError(f"{name}: unknown file type {suffix or '(none)'!r}; use .csv or .jsonl")
    UPLOAD_DIR.mkdir(parents=True, exist_ok=True)
    path = UPLOAD_DIR / f"{hashlib.sha256(data).hexdigest()[:16]}{suffix}"
    if not path.is_file():
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def dataset_picker() -> tuple[dict[str, Any], list[str]] | None:
    """The dataset and the method(s): TrainConfig fields that decide which prompts are used.

    Returns (fields, methods), or None while an upload is missing. The methods are chosen here,
    not in the form, because they decide the prompts (ActivScalar and SteerVec keep one length).
    """
    task = st.radio("Dataset", list(TASK_LABELS), format_func=TASK_LABELS.get, key="train_task", horizontal=True)
    own = _TASK_FIELDS[task]()
    if own is None:
        return None
    fields: dict[str, Any] = {"task": task, **own, **split_fields(task)}
    methods = st.multiselect(
        "Method(s): several train on the same split and seed, to compare",
        list(registered_methods()),
        default=[FIELD_DEFAULTS["method"]],
        key="train_methods",
        format_func=method_label,
    )
    if not methods:
        st.warning("Choose at least one method.")
        return None
    fields["positions"] = positions_picker(methods)
    return fields, methods


def _ioi_fields() -> dict[str, Any]:
    """IOI's own fields: the templates, and the families or templates held out for test."""
    templates = st.multiselect(
        "Templates",
        list(IOI_TEMPLATES),
        default=list(IOI_TEMPLATES),
        key="train_templates",
        format_func=lambda t: f"{t}: {IOI_TEMPLATES[t]}",
        help="{A} is the indirect object (the answer a+), {B} the subject (a−).",
    )
    left, right = st.columns(2)
    families = left.multiselect(
        "Held-out test families (optional)",
        list(IOI_FAMILIES),
        key="train_test_groups",
        format_func=lambda f: f"{f} ({', '.join(IOI_FAMILIES[f])})",
        help="Templates of one sentence structure, several lengths each. The test prompts come only from "
        "these families and the training prompts never do: a method tested on a structure it never saw.",
    )
    held_out = right.multiselect(
        "Held-out test templates (optional)",
        templates,
        key="train_test_templates",
        help="Prompts of these templates form the test split (instead of the same templates as training).",
    )
    if not templates:
        st.caption("No template chosen: all of them are used.")
    return dict(
        templates=tuple(t for t in templates if t in IOI_TEMPLATES),
        test_templates=tuple(t for t in held_out if t in templates),
        test_groups=tuple(families),
    )


def _ccc_fields() -> dict[str, Any]:
    """CCC's own fields: which capital is a+, and the test countries."""
    side = st.radio(
        "The correct answer a+ is",
        ("memory", "context"),
        key="train_ccc_side",
        horizontal=True,
        format_func={"memory": "the true capital (memory)", "context": "the capital named in the context"}.get,
    )
    test_groups = tuple(
        st.multiselect(
            "Test countries (optional)",
            list(ccc_countries()),
            key="train_test_groups",
            help="No country is asked about in two splits. Empty: a third of the countries, drawn by the data seed.",
        )
    )
    return {"memory_is_correct": side == "memory", "test_groups": test_groups}


FILE_LABEL = "Dataset file: columns prompt, correct, wrong; optional split (train, val or test), group, counterfactual"
FILE_HELP = (
    "A row's split wins over the fractions below. A file with a group column is split by whole groups (every "
    "row to split needs one), so no group is in two splits. A counterfactual (a prompt of the same token "
    "length) is what the map checks' activation patching reads."
)


def _file_fields() -> dict[str, Any] | None:
    """A user's file: the upload, kept on disk for the run (None until there is one)."""
    upload = st.file_uploader(
        FILE_LABEL,
        type=["csv", "jsonl", "json"],
        key="train_upload",
        help=FILE_HELP,
    )
    if upload is None:
        st.info("Upload a CSV or JSONL file to continue.")
        return None
    try:
        return {"dataset": str(save_upload(upload.name, upload.getvalue()))}
    except (ActscaleError, OSError) as exc:
        st.error(str(exc) if isinstance(exc, ActscaleError) else f"could not keep the upload: {exc}")
        return None


# Each dataset's own widgets, by task: they return its TrainConfig fields (None: not ready).
_TASK_FIELDS: dict[str, Callable[[], dict[str, Any] | None]] = {
    "ioi": _ioi_fields,
    "ccc": _ccc_fields,
    "custom": _file_fields,
}


POSITION_LABELS = {
    "auto": "auto: answer-aligned for a file, absolute for IOI / CCC",
    "absolute": "absolute: one prompt length, counted from the first token",
    "answer": "answer-aligned: every length, counted back from the last token",
}


def positions_picker(methods: list[str]) -> str:
    """How a fixed-length method's positions meet the prompts (docs/method.md §2); only asked when
    such a method is chosen (the others read every prompt at its own last token)."""
    if not any(method_class(m).fixed_length for m in methods):
        return FIELD_DEFAULTS["positions"]
    return str(
        st.radio(
            "Positions (" + " / ".join(fixed_length_names()) + ")",
            list(POSITION_LABELS),
            format_func=POSITION_LABELS.get,
            key="train_positions",
            horizontal=True,
            help="Absolute keeps only the prompts of the most common token length. Answer-aligned keeps "
            "prompts of every length, left-padded; position −1 is the token before the answer, pads are "
            "never edited. The preview below says how many prompts each keeps.",
        )
    )


def fixed_length_names() -> list[str]:
    return [method_class(m).__name__ for m in registered_methods() if method_class(m).fixed_length]


def split_fields(task: str) -> dict[str, Any]:
    """How many prompts, how they are split, the seeds and the BOS token."""
    c1, c2, c3, c4 = st.columns(4)
    if task_spec(task).from_file:  # a file: its test share; generated tasks: how many to draw
        fields = {"test_frac": field_input(c1, "test_frac", key="train_test_frac")}
    else:
        fields = {name: field_input(c, name, key=f"train_{name}") for c, name in ((c1, "n_prompts"), (c2, "n_test"))}
    fields["val_frac"] = field_input(c3, "val_frac", key="train_val_frac")
    fields["seed"] = field_input(c4, "seed", key="train_seed")
    c1, c2 = st.columns(2)
    fields["data_seed"] = field_input(c1, "data_seed", key="train_data_seed")
    fields["prepend_bos"] = choice_input(c2, "prepend_bos", key="train_prepend_bos", radio=True)
    return fields
