"""The Train page's parts: the model picker, the dataset picker with its validation preview, the
hyperparameter form and the live panel of a background job.

Each part returns plain data (a model, a dict of TrainConfig fields, a list of TrainConfigs);
the page wires them: widgets → configs → the engine (jobs) → bundles.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from actscale.engine.config import AUTOCASTS, METHOD_DEFAULT_FIELDS, TrainConfig
from actscale.engine.interventions import float32_under_auto, method_class, registered_methods
from actscale.engine.models import LoadedModel, auto_precision_rule, bf16_pays, is_gguf_name
from actscale.engine.sites import DEFAULT_SITES, SITES
from actscale.engine.tasks import IOI_FAMILIES, IOI_TEMPLATES, PreparedTask, ccc_countries
from actscale.errors import ActscaleError, DatasetError, one_line
from actscale.runs.api import build_task, expected_run_id
from actscale.runs.jobs import Job
from actscale.runs.store import RunStore
from actscale.ui import common, navigation
from actscale.ui.keys import Keys
from actscale.ui.progress import job_progress, time_left
from actscale.views import plots, report
from actscale.views.analysis import rate_text
from actscale.views.preview import dropped_frame, preview_task

MODEL_SOURCES = ("bundled", "Hugging Face id", "Local folder", "GGUF file")
_MODEL_HINTS = {
    "Hugging Face id": "gpt2, EleutherAI/pythia-160m, … (tiny-llama: the test model)",
    "Local folder": "/path/to/checkpoint",
    "GGUF file": "/path/to/model.Q4_K_M.gguf (llama.cpp, LM Studio, Ollama; converted once)",
}
DEVICES = ("auto", "cpu", "cuda", "mps")
TASK_LABELS = {
    "ioi": "IOI (indirect objects)",
    "ccc": "CCC (country–capital conflicts)",
    "custom": "Upload a CSV / JSONL",
}


def method_label(method: str) -> str:
    return method_class(method).label or method


UPLOAD_DIR = Path(tempfile.gettempdir()) / "actscale-uploads"
# Class defaults (None where each method has its own, `Intervention.defaults`).
_FIELD_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


# ---------------------------------------------------------------- model
def model_picker() -> LoadedModel | None:
    """Pick and load the session's model (through the one resident model). A failed load is
    shown as one line and not retried until the user asks again."""
    current = st.session_state.get(Keys.MODEL, common.DEFAULT_MODEL)
    if Keys.TRAIN_MODEL_SOURCE not in st.session_state:
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
    left, mid, right = st.columns([2, 3, 1])
    source = left.radio("Model", MODEL_SOURCES, key=Keys.TRAIN_MODEL_SOURCE, horizontal=True)
    if source == "bundled":
        mid.text_input("Model name", value="SmolLM2-135M-Instruct (shipped with the package)", disabled=True)
        name = "bundled"
    else:
        name = mid.text_input(
            source,
            key=Keys.TRAIN_MODEL_NAME,
            placeholder=_MODEL_HINTS[source],
            help="A .gguf file is de-quantised once into the cache (about 30 s per 135M parameters), "
            "keyed by the file's hash; later loads are fast."
            if source == "GGUF file"
            else None,
        ).strip()
    device = right.selectbox("Device", DEVICES, key=Keys.TRAIN_DEVICE)
    if st.button("Load model", disabled=not name) and name:
        st.session_state[Keys.MODEL], st.session_state[Keys.DEVICE] = name, device
        st.session_state.pop(Keys.MODEL_ERROR, None)

    name = st.session_state.get(Keys.MODEL, current)
    device = st.session_state.get(Keys.DEVICE, "auto")
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


# ---------------------------------------------------------------- dataset
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
    fields: dict[str, Any] = {"task": task}
    if task == "ioi":
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
        fields.update(
            templates=tuple(t for t in templates if t in IOI_TEMPLATES),
            test_templates=tuple(t for t in held_out if t in templates),
            test_groups=tuple(families),
        )
    elif task == "ccc":
        side = st.radio(
            "The correct answer a+ is",
            ("memory", "context"),
            key="train_ccc_side",
            horizontal=True,
            format_func={"memory": "the true capital (memory)", "context": "the capital named in the context"}.get,
        )
        fields["memory_is_correct"] = side == "memory"
        fields["test_groups"] = tuple(
            st.multiselect(
                "Test countries (optional)",
                list(ccc_countries()),
                key="train_test_groups",
                help="No country is asked about in two splits. "
                "Empty: a third of the countries, drawn by the data seed.",
            )
        )
    else:
        upload = st.file_uploader(
            "Dataset file: columns prompt, correct, wrong and optionally split (train/test)",
            type=["csv", "jsonl", "json"],
            key="train_upload",
        )
        if upload is None:
            st.info("Upload a CSV or JSONL file to continue.")
            return None
        try:
            fields["dataset"] = str(save_upload(upload.name, upload.getvalue()))
        except (ActscaleError, OSError) as exc:
            st.error(str(exc) if isinstance(exc, ActscaleError) else f"could not keep the upload: {exc}")
            return None
    fields.update(split_fields(task))
    methods = st.multiselect(
        "Method(s): several train on the same split and seed, to compare",
        list(registered_methods()),
        default=[_FIELD_DEFAULTS["method"]],
        key="train_methods",
        format_func=method_label,
    )
    if not methods:
        st.warning("Choose at least one method.")
        return None
    fields["positions"] = positions_picker(methods)
    return fields, methods


POSITION_LABELS = {
    "auto": "auto: answer-aligned for a file, absolute for IOI / CCC",
    "absolute": "absolute: one prompt length, counted from the first token",
    "answer": "answer-aligned: every length, counted back from the last token",
}


def positions_picker(methods: list[str]) -> str:
    """How a fixed-length method's positions meet the prompts (docs/method.md §2); only asked when
    such a method is chosen (the others read every prompt at its own last token)."""
    if not any(method_class(m).fixed_length for m in methods):
        return _FIELD_DEFAULTS["positions"]
    return str(
        st.radio(
            "Positions (" + " / ".join(_fixed_length_names()) + ")",
            list(POSITION_LABELS),
            format_func=POSITION_LABELS.get,
            key="train_positions",
            horizontal=True,
            help="Absolute keeps only the prompts of the most common token length. Answer-aligned keeps "
            "prompts of every length, left-padded; position −1 is the token before the answer, pads are "
            "never edited. The preview below says how many prompts each keeps.",
        )
    )


def _fixed_length_names() -> list[str]:
    return [method_class(m).__name__ for m in registered_methods() if method_class(m).fixed_length]


def split_fields(task: str) -> dict[str, Any]:
    """How many prompts, how they are split, the seeds and the BOS token."""
    d = _FIELD_DEFAULTS
    fields: dict[str, Any] = {}
    c1, c2, c3, c4 = st.columns(4)
    if task != "custom":
        fields["n_prompts"] = int(
            c1.number_input("Train + validation prompts", 2, 5000, d["n_prompts"], step=8, key="train_n_prompts")
        )
        fields["n_test"] = int(
            c2.number_input(
                "Test prompts",
                1,
                5000,
                d["n_test"],
                step=50,
                key="train_n_test",
                help="Drawn apart from the training prompts; evaluation is forward-only, "
                "so a large test set costs little.",
            )
        )
    else:
        fields["test_frac"] = float(
            c1.slider(
                "Test fraction",
                0.0,
                0.9,
                d["test_frac"],
                0.05,
                key="train_test_frac",
                help="Ignored for prompts whose split the file sets.",
            )
        )
    fields["val_frac"] = float(
        c3.slider(
            "Validation fraction",
            0.0,
            0.5,
            d["val_frac"],
            0.05,
            key="train_val_frac",
            help="Held out from training for early stopping and for choosing settings; "
            "the test split is only ever reported.",
        )
    )
    fields["seed"] = int(
        c4.number_input(
            "Seed",
            0,
            2**31 - 1,
            d["seed"],
            key="train_seed",
            help="Fixes the training order, and the prompts and split unless a data seed is set.",
        )
    )
    c1, c2 = st.columns(2)
    data_seed = c1.number_input(
        "Data seed (optional)",
        0,
        2**31 - 1,
        value=None,
        key="train_data_seed",
        placeholder="same as the seed",
        help="Draws the prompts and the split apart from the training seed, to tell data "
        "variance from optimisation variance.",
    )
    fields["data_seed"] = None if data_seed is None else int(data_seed)
    bos = c2.radio(
        "BOS token in front of each prompt",
        ("model", "yes", "no"),
        key="train_prepend_bos",
        horizontal=True,
        format_func={"model": "the model's default", "yes": "yes", "no": "no"}.get,
        help="On SmolLM2-Instruct the prepended token is the chat-start token, which carries very large "
        "activations at position 0.",
    )
    fields["prepend_bos"] = {"model": None, "yes": True, "no": False}[bos]
    return fields


@dataclass
class Preview:
    task: PreparedTask
    prompts: pd.DataFrame
    dropped: pd.DataFrame


@st.cache_resource(max_entries=16, show_spinner=False)
def _preview(_model: LoadedModel, model_key: str, config_json: str) -> Preview:  # noqa: ARG001 - model_key: a cache key
    # Keyed by strings; the model is passed along unhashed. Shared by sessions: never mutated.
    config = TrainConfig.from_dict(json.loads(config_json))
    task = build_task(_model, config)
    return Preview(task, preview_task(_model, task), dropped_frame(task))


def model_key(model: LoadedModel) -> str:
    return f"{model.name}|{model.device}|{model.weights_hash}"


def _prompts_key(config: TrainConfig) -> str:
    # The key drops what cannot change the prompts (the form's hyperparameters) and keeps the
    # rest, so a field added to TrainConfig later is in the key by default. Prompts depend on
    # the method only through fixed_length.
    data = {k: v for k, v in config.to_dict().items() if k not in FORM_FIELDS and k != "device"}
    data["method"] = next(m for m in registered_methods() if method_class(m).fixed_length == config.fixed_length)
    return json.dumps(data, sort_keys=True)


def prepared(model: LoadedModel, config: TrainConfig) -> Preview:
    """The task ``config`` trains on, with its preview tables (cached). Raises ActscaleError."""
    return _preview(model, model_key(model), _prompts_key(config))


@st.cache_resource(max_entries=16, show_spinner=False)
def _alignment_counts(_model: LoadedModel, model_key: str, config_json: str) -> str:  # noqa: ARG001 - model_key: a cache key
    config = TrainConfig.from_dict(json.loads(config_json))
    parts = []
    for positions, what in (("absolute", "absolute positions keep"), ("answer", "answer-aligned positions keep")):
        try:
            task = build_task(_model, config.replace(positions=positions))
        except ActscaleError as exc:  # e.g. too few prompts of one length for the split
            parts.append(f"{what} none ({exc})")
            continue
        lengths = sorted({len(t) for t in task.str_tokens})
        span = f"{lengths[0]}" if len(lengths) == 1 else f"{lengths[0]}–{lengths[-1]}"
        parts.append(f"{what} {len(task.examples)} of {len(task.examples) + len(task.dropped)} prompts ({span} tokens)")
    return "; ".join(parts)


def alignment_counts(model: LoadedModel, config: TrainConfig) -> str:
    """One line: how many prompts each alignment of a fixed-length method would keep (cached;
    tokenising only, no model pass)."""
    return _alignment_counts(model, model_key(model), _prompts_key(config))


def show_preview(model: LoadedModel, fields: dict[str, Any], methods: list[str]) -> bool:
    """The validation preview, once per prompt set the chosen methods use. False on bad input."""
    kinds = []
    for fixed in (True, False):
        chosen = [m for m in methods if method_class(m).fixed_length == fixed]
        if chosen:  # one preview for every method of this kind: they share the prompts
            names = " / ".join(
                method_class(m).__name__ for m in registered_methods() if method_class(m).fixed_length == fixed
            )
            kinds.append((chosen[0], names))
    ok = True
    with st.expander("Validation preview: the prompts as the model sees them", expanded=True):
        for method, names in kinds:
            counts = ""
            try:
                config = TrainConfig(model=model.name, method=method, **fields)
                with st.spinner("Tokenising the prompts and running the unmodified model on them…"):
                    # First: when one alignment leaves too few prompts, the counts say what the other keeps.
                    counts = alignment_counts(model, config) if config.fixed_length else ""
                    pv = prepared(model, config)
            except ActscaleError as exc:
                st.error(str(exc))
                if counts:
                    st.caption(f"Alignment: {counts}.")
                ok = False
                continue
            except Exception as exc:  # noqa: BLE001 - any input gives one line, never a traceback
                st.error(f"could not prepare the prompts: {one_line(exc)}")
                ok = False
                continue
            df = pv.prompts
            picks = float((df["delta_base"] > 0).mean()) if len(df) else 0.0
            st.markdown(
                f"**{names} ({_prompt_set(config)})** — {pv.task.summary()}; the unmodified model prefers a+ "
                f"on {100 * picks:.0f}% of them."
            )
            if counts:
                st.caption(f"Alignment: {counts}.")
            st.dataframe(
                df,
                hide_index=True,
                width="stretch",
                height=240,
                column_config={
                    "delta_base": st.column_config.NumberColumn(
                        "Δ base", format="%.3f", help="logit(a+) − logit(a−), unmodified model"
                    ),
                    "prediction": st.column_config.TextColumn("predicts", help="the base model's top next token"),
                },
            )
            if len(pv.dropped):
                st.caption(f"Dropped {len(pv.dropped)} prompt(s):")
                st.dataframe(pv.dropped, hide_index=True, width="stretch", height=160)
    return ok


def _prompt_set(config: TrainConfig) -> str:
    """Which prompts a method of ``config``'s kind trains on, in a few words."""
    if not config.fixed_length:
        return "prompts of any length"
    return "one prompt length" if config.one_length else "every length, positions counted back from the answer"


# ---------------------------------------------------------------- hyperparameters
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
    "early_stop",
    "schedule",
    "margin",
    "lambda_f",
    "lambda_m",
    "tau",
    "normalize",
    "autocast",
)


def _method_default_help(name: str) -> str:
    per_method = ", ".join(f"{m} {method_class(m).defaults.as_dict()[name]:g}" for m in registered_methods())
    return f"Empty: each method's default ({per_method})."


def _optional_number(column, label: str, name: str, min_value, max_value, fmt: str | None = None):
    """A number input that may stay empty: the method's own default (TrainConfig takes None)."""
    if name in METHOD_DEFAULT_FIELDS:
        return column.number_input(
            label,
            min_value,
            max_value,
            value=None,
            format=fmt,
            placeholder="method default",
            help=_method_default_help(name),
        )
    return column.number_input(label, min_value, max_value, value=_FIELD_DEFAULTS[name], format=fmt)


def _auto_precision_label(model: LoadedModel) -> str:
    """What autocast "auto" means on ``model``, naming the methods it keeps in float32."""
    if not bf16_pays(model):
        return "auto: float32 here"
    kept = float32_under_auto()
    return "auto: bfloat16 here" + (f" ({', '.join(kept)}: float32)" if kept else "")


def hyperparameter_form(model: LoadedModel, job_running: bool) -> dict[str, Any] | None:
    """Sites and every training hyperparameter, in one form; the fields on submit, else None.
    ``model``: the loaded model, for what the precision "auto" means on it."""
    d = _FIELD_DEFAULTS
    with st.form("train_form"):
        sites = st.multiselect(
            "Sites",
            list(SITES),
            default=list(DEFAULT_SITES),
            help="attn_out and mlp_out are the paper's; head is one scalar per attention head.",
        )
        c1, c2, c3, c4 = st.columns(4)
        steps = _optional_number(c1, "Steps", "steps", 1, 100_000)
        lr = _optional_number(c2, "Learning rate", "lr", 1e-6, 10.0, "%g")
        batch = _optional_number(c3, "Batch size", "batch_size", 1, 4096)
        schedule = c4.selectbox(
            "Learning-rate schedule",
            ("cosine", "constant"),
            index=("cosine", "constant").index(d["schedule"]) if d["schedule"] in ("cosine", "constant") else 0,
        )
        c1, c2, c3, c4 = st.columns(4)
        margin = c1.number_input("Margin m", 0.0, 100.0, float(d["margin"]), format="%g")
        lambda_f = c2.number_input("λ_F (faithfulness)", 0.0, 1000.0, float(d["lambda_f"]), format="%g")
        lambda_m = _optional_number(c3, "λ_M (minimality)", "lambda_m", 0.0, 1000.0, "%g")
        tau = c4.number_input("τ (n_effective threshold)", 0.0, 100.0, float(d["tau"]), format="%g")
        c1, c3, c2 = st.columns([1, 1, 2])
        early = c1.number_input("Early stop after (steps with L_E = 0; 0 = off)", 0, 1000, int(d["early_stop"]))
        autocast = c3.selectbox(
            "Frozen model's precision",
            AUTOCASTS,
            index=AUTOCASTS.index(d["autocast"]),
            format_func=lambda v: {
                "auto": _auto_precision_label(model),
                "off": "float32",
                "bf16": "bfloat16 autocast",
            }[v],
            help="bfloat16 autocast runs the frozen model in bfloat16; the intervention's parameters stay "
            f"float32. auto (default): {auto_precision_rule(float32_under_auto())}. The run's config records "
            "which.",
        )
        normalize = c2.checkbox(
            "DynScalar: dot product with the unit activation h/‖h‖ (ours; off = raw h)", value=bool(d["normalize"])
        )
        submitted = st.form_submit_button("Train", type="primary", disabled=job_running)
    if not submitted:
        return None
    return {
        "sites": tuple(sites),
        "steps": None if steps is None else int(steps),
        "lr": None if lr is None else float(lr),
        "batch_size": None if batch is None else int(batch),
        "early_stop": int(early),
        "schedule": schedule,
        "margin": float(margin),
        "lambda_f": float(lambda_f),
        "lambda_m": None if lambda_m is None else float(lambda_m),
        "tau": float(tau),
        "normalize": bool(normalize),
        "autocast": autocast,
    }


def make_configs(
    model: LoadedModel, device: str, fields: dict[str, Any], methods: list[str], hyper: dict[str, Any]
) -> list[TrainConfig]:
    """One TrainConfig per method, all on the same dataset, split and seed. Raises ActscaleError."""
    return [TrainConfig(model=model.name, method=m, device=device, **fields, **hyper) for m in methods]


def stored_run_ids(model: LoadedModel, configs: list[TrainConfig], store: RunStore) -> list[str | None]:
    """The run id of each config if it is already in the store, else None."""
    out = []
    for config in configs:
        run_id = expected_run_id(model, prepared(model, config).task, config)
        out.append(run_id if store.exists(run_id) else None)
    return out


# ---------------------------------------------------------------- the job
def job_panel(job_id: str | None) -> None:
    """Live progress of this session's job, then its outcome."""
    job = common.jobs().get(job_id)
    if job is None:
        return
    if job.done:
        _outcome(job)
    else:
        _live(job.id)


def _live(job_id: str) -> None:
    job_progress(
        job_id,
        _training_status,
        cancel_label="Cancel",
        cancel_key="cancel_training",
        cancelling="Cancelling…",
        below=_live_curves,
    )


def _current_rows(job: Job) -> list[dict]:
    """The step rows of the config being trained."""
    return [r for r in job.steps if r.get("run") == job.current]


def _training_status(job: Job) -> str:
    if job.cancel_event.is_set():
        return "Cancelling…"
    config = job.configs[min(job.current, len(job.configs) - 1)]
    n = len(job.configs)
    which = f"run {job.current + 1} of {n}: " if n > 1 else ""
    rows = _current_rows(job)
    if job.state == "waiting":
        status = "Waiting for the model: another session is using it…"
    elif job.state == "queued" or not rows:
        status = f"Preparing {which}{config.method} (tokenising, base model pass)…"
    elif (first := job.first_results.get(job.current)) is not None:
        split = {"val": "validation", "train": "training"}.get(first["split"], first["split"])
        status = (
            f"Trained {which}{config.method}. {split.capitalize()} flips: β = +1 {rate_text(first, 'flip_acc_pos')}, "
            f"β = −1 {rate_text(first, 'flip_acc_neg')}. Evaluating the other prompts…"
        )
    elif rows[-1]["step"] >= config.steps:
        status = f"Trained {which}{config.method}; evaluating…"
    else:
        status = f"Training {which}{config.method}, step {rows[-1]['step']} of {config.steps}"
    left = time_left(job)
    return f"{status} — {left}" if left else status


def _live_curves(job: Job) -> None:
    st.plotly_chart(plots.plot_history(pd.DataFrame(_current_rows(job))), width="stretch", key=f"live-{job.id}")


def _outcome(job: Job) -> None:
    if job.state == "cancelled":
        if job.run_ids:
            st.warning(
                f"Cancelled — the {len(job.run_ids)} run(s) finished before it were kept; the rest was not stored."
            )
        else:
            st.warning("Cancelled — nothing was stored.")
    elif job.state == "failed":
        st.error(job.error or "the training failed")
    if not job.run_ids:
        return
    if job.state == "done":
        trained = sum(not r for r in job.reused)
        st.success(
            f"Done: {trained} run(s) trained"
            + (f", {len(job.run_ids) - trained} already stored" if trained < len(job.run_ids) else "")
            + "."
        )
    show_run_links(job.run_ids)
    curves = pd.DataFrame([r for r in job.steps if r.get("run") == len(job.run_ids) - 1])
    if len(curves):
        common.show_figure(plots.plot_history(curves), f"training-{job.run_ids[-1]}", key=f"final-{job.id}")


def show_run_links(run_ids: list[str]) -> None:
    """Headline metrics of the runs and a link to each on Explore; the last one becomes the session's run."""
    listings = [r for r in common.list_runs() if r.run_id in set(run_ids)]
    if listings:
        st.dataframe(report.headline_frame(listings), hide_index=True, width="stretch")
    for run_id in run_ids:
        common.nav_link(
            navigation.EXPLORE.path, f"Open run {run_id} on Explore", icon=":material/search:", run_id=run_id
        )
    st.session_state[Keys.RUN] = run_ids[-1]
