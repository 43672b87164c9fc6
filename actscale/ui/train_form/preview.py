"""The Train page's preview before training: the prompts as tokens, the unmodified model's Δ,
what was dropped and why, and how many prompts each alignment keeps."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

from actscale.engine.config import TrainConfig
from actscale.engine.interventions import method_class, registered_methods
from actscale.engine.models import LoadedModel
from actscale.engine.resources import resolve_autocast
from actscale.engine.tasks import PreparedTask
from actscale.errors import ActscaleError, one_line
from actscale.runs.api import build_task, checked_task
from actscale.ui.train_form.model import FORM_FIELDS
from actscale.views.preview import dropped_frame, groups_text, preview_task
from actscale.views.words import counted


@dataclass
class Preview:
    task: PreparedTask
    prompts: pd.DataFrame
    dropped: pd.DataFrame


@st.cache_resource(max_entries=16, show_spinner=False)
def _preview(_model: LoadedModel, model_key: str, config_json: str) -> Preview:  # noqa: ARG001 - model_key: a cache key
    # Keyed by strings; the model is passed along unhashed. Shared by sessions: never mutated.
    # The key leaves out the form's fields, so the config has the default sites and precision:
    # a run of the default form finds this pass of the unmodified model in `base_pass`'s cache.
    config = resolve_autocast(TrainConfig.from_dict(json.loads(config_json)), _model)
    task = checked_task(_model, config)
    return Preview(task, preview_task(_model, task, config.sites, config.bf16), dropped_frame(task))


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


def previewed_tasks(model: LoadedModel, configs: list[TrainConfig]) -> Callable[[TrainConfig], PreparedTask]:
    """Each config's task as the preview tokenised it (`prepared`, cached by the time Train is
    pressed): what the page's stored-run check reads the run ids from and the job's ``task_for``,
    so that the job does not tokenise the prompts again before its first step (0.17-0.2 s for
    IOI's 248 default prompts on the bundled model)."""
    tasks = {_prompts_key(config): prepared(model, config).task for config in configs}
    return lambda config: tasks[_prompts_key(config)]


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
    kinds = _prompt_sets(methods)
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
            _show_prompt_set(pv, names, config, counts)
    return ok


def _prompt_sets(methods: list[str]) -> list[tuple[str, str]]:
    """One (method, names of its kind) per prompt set the chosen methods use: fixed-length
    methods share one set, the others another."""
    kinds = []
    for fixed in (True, False):
        chosen = [m for m in methods if method_class(m).fixed_length == fixed]
        if chosen:
            names = " / ".join(
                method_class(m).__name__ for m in registered_methods() if method_class(m).fixed_length == fixed
            )
            kinds.append((chosen[0], names))
    return kinds


def _show_prompt_set(pv: Preview, names: str, config: TrainConfig, counts: str) -> None:
    """One prompt set: how many prompts, the unmodified model's preference, the prompts as
    tokens with their base Δ, and what was dropped and why."""
    df = pv.prompts
    picks = float((df["delta_base"] > 0).mean()) if len(df) else 0.0
    st.markdown(
        f"**{names} ({prompt_set(config)})** — {pv.task.summary()}; the unmodified model prefers a+ "
        f"on {100 * picks:.0f}% of them."
    )
    groups = groups_text(pv.task)
    if groups:
        st.caption(f"{groups}.")
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
        st.caption(f"Dropped {counted(len(pv.dropped), 'prompt')}:")
        st.dataframe(pv.dropped, hide_index=True, width="stretch", height=160)


def prompt_set(config: TrainConfig) -> str:
    """Which prompts a method of ``config``'s kind trains on, in a few words."""
    if not config.fixed_length:
        return "prompts of any length"
    return "one prompt length" if config.one_length else "every length, positions counted back from the answer"
