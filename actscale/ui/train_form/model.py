"""The Train page's model picker: the bundled model, a Hugging Face id, a folder or a GGUF file."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import streamlit as st

from actscale.engine.config import TrainConfig
from actscale.engine.interventions import method_class
from actscale.engine.models import LoadedModel, is_gguf_name
from actscale.engine.tasks.registry import TASK_REGISTRY
from actscale.errors import ActscaleError, one_line
from actscale.ui import common
from actscale.ui.keys import Keys

MODEL_SOURCES = ("bundled", "Hugging Face id", "Local folder", "GGUF file")
MODEL_HINTS = {
    "Hugging Face id": "gpt2, EleutherAI/pythia-160m, … (tiny-llama: the test model)",
    "Local folder": "/path/to/checkpoint",
    "GGUF file": "/path/to/model.Q4_K_M.gguf (llama.cpp, LM Studio, Ollama; converted once)",
}
DEVICES = ("auto", "cpu", "cuda", "mps")
TASK_LABELS = {name: task.label for name, task in TASK_REGISTRY.items()}


def method_label(method: str) -> str:
    return method_class(method).label or method


# Class defaults (None where each method has its own, `Intervention.defaults`).
FIELD_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(TrainConfig)}

# The TrainConfig fields each part of the page sets; a test checks that together they cover
# every field, so a new hyperparameter cannot go missing from the page.
MODEL_FIELDS = ("model", "device")
DATASET_FIELDS = (
    "task",
    "n_prompts",
    "seed",
    "test_frac",
    "dataset",
    "memory_is_correct",
    "templates",
    "test_templates",
    "method",
    "n_test",
    "val_frac",
    "data_seed",
    "prepend_bos",
    "test_groups",
    "positions",
)
FORM_FIELDS = (
    "sites",
    "steps",
    "lr",
    "batch_size",
    "cycles",
    "target",
    "early_stop",
    "schedule",
    "margin",
    "lambda_f",
    "lambda_m",
    "tau",
    "normalize",
    "autocast",
)


def model_picker() -> LoadedModel | None:
    """Pick and load the session's model (through the one resident model). A failed load is
    shown as one line and not retried until the user asks again."""
    current = st.session_state.get(Keys.MODEL, common.DEFAULT_MODEL)
    if Keys.TRAIN_MODEL_SOURCE not in st.session_state:
        _start_from(current)
    left, mid, right = st.columns([2, 3, 1])
    source = left.radio("Model", MODEL_SOURCES, key=Keys.TRAIN_MODEL_SOURCE, horizontal=True)
    if source == "bundled":
        mid.text_input("Model name", value="SmolLM2-135M-Instruct (shipped with the package)", disabled=True)
        name = "bundled"
    else:
        name = mid.text_input(
            source,
            key=Keys.TRAIN_MODEL_NAME,
            placeholder=MODEL_HINTS[source],
            help="A .gguf file is de-quantised once into the cache (about 30 s per 135M parameters), "
            "keyed by the file's hash; later loads are fast."
            if source == "GGUF file"
            else None,
        ).strip()
    device = right.selectbox("Device", DEVICES, key=Keys.TRAIN_DEVICE)
    if st.button("Load model", disabled=not name) and name:
        st.session_state[Keys.MODEL], st.session_state[Keys.DEVICE] = name, device
        st.session_state.pop(Keys.MODEL_ERROR, None)

    return _load(st.session_state.get(Keys.MODEL, current), st.session_state.get(Keys.DEVICE, "auto"))


def _start_from(current: str) -> None:
    """The picker's first state: the source and name of the session's current model."""
    source = (
        "bundled"
        if current == "bundled"
        else "GGUF file"
        if is_gguf_name(current)
        else "Local folder"
        if Path(current).expanduser().is_dir()
        else "Hugging Face id"
    )
    st.session_state[Keys.TRAIN_MODEL_SOURCE] = source
    st.session_state[Keys.TRAIN_MODEL_NAME] = "" if current == "bundled" else current
    st.session_state[Keys.TRAIN_DEVICE] = st.session_state.get(Keys.DEVICE, "auto")


def _load(name: str, device: str) -> LoadedModel | None:
    """The resident model ``name`` on ``device``, or None after showing why it failed (a failed
    load is not retried until the user asks again)."""
    failed = st.session_state.get(Keys.MODEL_ERROR)
    if failed and tuple(failed[:2]) == (name, device):
        st.error(failed[2])
        return None
    try:
        model = common.resident_model(name, device)
    except ActscaleError as exc:
        st.session_state[Keys.MODEL_ERROR] = (name, device, str(exc))
        st.error(str(exc))
        return None
    except Exception as exc:  # noqa: BLE001 - a loader failure is one line, never a traceback
        message = f"could not load model {name!r}: {one_line(exc)}"
        st.session_state[Keys.MODEL_ERROR] = (name, device, message)
        st.error(message)
        return None
    st.caption(common.model_status_line(model))
    return model
