"""The Train page's form: methods, sites and every hyperparameter, into TrainConfigs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from actscale.engine.config import TrainConfig
from actscale.engine.config_fields import CONFIG_FIELDS
from actscale.engine.interventions import float32_under_auto
from actscale.engine.models import LoadedModel, bf16_pays, native_bf16
from actscale.engine.sites import DEFAULT_SITES, SITES
from actscale.engine.tasks import PreparedTask
from actscale.runs.api import expected_run_id
from actscale.runs.store import RunStore
from actscale.ui.train_form.model import FIELD_DEFAULTS
from actscale.ui.train_form.widgets import choice_input, field_input


def auto_precision_label(model: LoadedModel) -> str:
    """What autocast "auto" means on ``model``, naming the methods it keeps in float32."""
    if not bf16_pays(model):
        return "auto: float32 here"
    kept = float32_under_auto()
    return "auto: bfloat16 here" + (f" ({', '.join(kept)}: float32)" if kept else "")


def bf16_label(model: LoadedModel) -> str:
    """bfloat16 autocast, with whether this machine computes it natively (faster) or emulates it."""
    return "bfloat16 autocast" + (
        " (native here: faster)" if native_bf16(model.device) else " (emulated here: many times slower)"
    )


def hyperparameter_form(model: LoadedModel, job_running: bool) -> dict[str, Any] | None:
    """Sites and every training hyperparameter, in one form; the fields on submit, else None.
    ``model``: the loaded model, for what the precision "auto" means on it."""
    with st.form("train_form"):
        sites = st.multiselect(
            "Sites",
            list(SITES),
            default=list(DEFAULT_SITES),
            help="attn_out and mlp_out are the paper's; head is one scalar per attention head.",
        )
        fields = {
            "sites": tuple(sites),
            **_optimiser_row(),
            **_stopping_row(),
            **_objective_row(),
            **_run_row(model),
        }
        submitted = st.form_submit_button("Train", type="primary", disabled=job_running)
    return fields if submitted else None


def _optimiser_row() -> dict[str, Any]:
    """Steps, learning rate, batch size (empty: each method's default) and the schedule."""
    c1, c2, c3, c4 = st.columns(4)
    return {
        "steps": field_input(c1, "steps"),
        "lr": field_input(c2, "lr"),
        "batch_size": field_input(c3, "batch_size"),
        "schedule": choice_input(c4, "schedule"),
    }


def _stopping_row() -> dict[str, Any]:
    """How long a run trains: the most cycles (empty: 4 at the method's steps, 1 where the steps
    are given), the validation target that ends it after a cycle, and early stopping."""
    columns = st.columns(4)
    return {name: field_input(c, name) for c, name in zip(columns, ("cycles", "target", "early_stop"))}


def _objective_row() -> dict[str, Any]:
    """The objective's m, λ_F and λ_M (empty: each method's default), and τ."""
    columns = st.columns(4)
    return {name: field_input(c, name) for c, name in zip(columns, ("margin", "lambda_f", "lambda_m", "tau"))}


def _run_row(model: LoadedModel) -> dict[str, Any]:
    """The frozen model's precision and DynScalar's dot product."""
    c3, c2 = st.columns([1, 2])
    autocast = choice_input(c3, "autocast", labels={"auto": auto_precision_label(model), "bf16": bf16_label(model)})
    normalize = CONFIG_FIELDS["normalize"]
    on = c2.checkbox(normalize.label, value=bool(FIELD_DEFAULTS["normalize"]))
    return {"autocast": autocast, "normalize": bool(on)}


def make_configs(
    model: LoadedModel, device: str, fields: dict[str, Any], methods: list[str], hyper: dict[str, Any]
) -> list[TrainConfig]:
    """One TrainConfig per method, all on the same dataset, split and seed. Raises ActscaleError."""
    return [TrainConfig(model=model.name, method=m, device=device, **fields, **hyper) for m in methods]


def stored_run_ids(
    model: LoadedModel, configs: list[TrainConfig], store: RunStore, task_for: Callable[[TrainConfig], PreparedTask]
) -> list[str | None]:
    """The run id of each config (on its task, ``task_for(config)``: the preview's,
    `previewed_tasks`) if it is already in the store, else None."""
    out = []
    for config in configs:
        run_id = expected_run_id(model, task_for(config), config)
        out.append(run_id if store.exists(run_id) else None)
    return out
