"""The Train page's form: methods, sites and every hyperparameter, into TrainConfigs."""

from __future__ import annotations

from typing import Any

import streamlit as st

from actscale.engine.config import AUTOCASTS, METHOD_DEFAULT_FIELDS, TrainConfig
from actscale.engine.interventions import float32_under_auto, method_class, registered_methods
from actscale.engine.models import LoadedModel, auto_precision_rule, bf16_pays
from actscale.engine.sites import DEFAULT_SITES, SITES
from actscale.runs.api import expected_run_id
from actscale.runs.store import RunStore
from actscale.ui.train_form.model import FIELD_DEFAULTS
from actscale.ui.train_form.preview import prepared


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
    return column.number_input(label, min_value, max_value, value=FIELD_DEFAULTS[name], format=fmt)


def auto_precision_label(model: LoadedModel) -> str:
    """What autocast "auto" means on ``model``, naming the methods it keeps in float32."""
    if not bf16_pays(model):
        return "auto: float32 here"
    kept = float32_under_auto()
    return "auto: bfloat16 here" + (f" ({', '.join(kept)}: float32)" if kept else "")


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
        fields = {"sites": tuple(sites), **_optimiser_row(), **_objective_row(), **_run_row(model)}
        submitted = st.form_submit_button("Train", type="primary", disabled=job_running)
    return fields if submitted else None


def _optimiser_row() -> dict[str, Any]:
    """Steps, learning rate, batch size (empty: each method's default) and the schedule."""
    d = FIELD_DEFAULTS
    c1, c2, c3, c4 = st.columns(4)
    steps = _optional_number(c1, "Steps", "steps", 1, 100_000)
    lr = _optional_number(c2, "Learning rate", "lr", 1e-6, 10.0, "%g")
    batch = _optional_number(c3, "Batch size", "batch_size", 1, 4096)
    schedule = c4.selectbox(
        "Learning-rate schedule",
        ("cosine", "constant"),
        index=("cosine", "constant").index(d["schedule"]) if d["schedule"] in ("cosine", "constant") else 0,
    )
    return {
        "steps": None if steps is None else int(steps),
        "lr": None if lr is None else float(lr),
        "batch_size": None if batch is None else int(batch),
        "schedule": schedule,
    }


def _objective_row() -> dict[str, Any]:
    """The objective's m, λ_F and λ_M (empty: each method's default), and τ."""
    d = FIELD_DEFAULTS
    c1, c2, c3, c4 = st.columns(4)
    margin = c1.number_input("Margin m", 0.0, 100.0, float(d["margin"]), format="%g")
    lambda_f = c2.number_input("λ_F (faithfulness)", 0.0, 1000.0, float(d["lambda_f"]), format="%g")
    lambda_m = _optional_number(c3, "λ_M (minimality)", "lambda_m", 0.0, 1000.0, "%g")
    tau = c4.number_input("τ (n_effective threshold)", 0.0, 100.0, float(d["tau"]), format="%g")
    return {
        "margin": float(margin),
        "lambda_f": float(lambda_f),
        "lambda_m": None if lambda_m is None else float(lambda_m),
        "tau": float(tau),
    }


def _run_row(model: LoadedModel) -> dict[str, Any]:
    """Early stopping, the frozen model's precision and DynScalar's dot product."""
    d = FIELD_DEFAULTS
    c1, c3, c2 = st.columns([1, 1, 2])
    early = c1.number_input("Early stop after (steps with L_E = 0; 0 = off)", 0, 1000, int(d["early_stop"]))
    autocast = c3.selectbox(
        "Frozen model's precision",
        AUTOCASTS,
        index=AUTOCASTS.index(d["autocast"]),
        format_func=lambda v: {
            "auto": auto_precision_label(model),
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
    return {"early_stop": int(early), "autocast": autocast, "normalize": bool(normalize)}


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
