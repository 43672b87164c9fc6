"""Explore's "Does the map mean anything?" section: the map checks of a run (docs/method.md §7),
drawn from its bundle, and the launcher that runs them as a background job where a model may
be loaded."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import streamlit as st

from actscale.checks import CheckOptions, check_asked
from actscale.runs.bundle import RunBundle
from actscale.runs.jobs import Job
from actscale.ui import common, deployment
from actscale.ui.keys import Keys
from actscale.ui.progress import job_progress
from actscale.views import analysis, plots
from actscale.views.precision import PASS_COST, emulated_sentence

FigureFn = Callable[..., None]


def show(bundle: RunBundle, checks: dict[str, Any] | None, figure: FigureFn) -> None:
    """The checks' figures and tables (each downloadable), then the launcher."""
    job = common.jobs().get(st.session_state.get(Keys.CHECKS_JOB))
    if job is not None and job.subject != bundle.run_id:
        job = None  # this session's checks job is another run's
    if job is not None and not job.done:
        _progress(job)
        return
    if job is not None and job.done and st.session_state.get("checks_job_seen") != job.id:
        st.session_state["checks_job_seen"] = job.id
        if job.state == "cancelled":
            st.warning("The checks were cancelled; nothing was written.")
        elif job.state == "failed":
            st.error(f"The checks failed: {job.error}")
    if not checks or "map" not in checks:
        st.caption(
            "Sufficiency (keep only the top-k components), necessity (remove them), a random control "
            "(the same magnitudes on random components), zero- and mean-ablation of the same components, "
            "stability over seeds, generalisation across groups and side effects on neutral text "
            "(docs/method.md §7). Forward passes only; about a minute for a default run on two CPU cores."
        )
    else:
        _draw(bundle, checks, figure)
    _launcher(bundle, checks)


def _draw(bundle: RunBundle, checks: dict[str, Any], figure: FigureFn) -> None:
    _draw_map(bundle, checks, figure)
    _draw_free(bundle, checks, figure)
    _draw_stability(bundle, checks, figure)
    _draw_generalisation(bundle, checks, figure)
    _draw_side_effects(bundle, checks)


def _draw_map(bundle: RunBundle, checks: dict[str, Any], figure: FigureFn) -> None:
    """Sufficiency, necessity, the random control and the knock-outs, with what they cannot show."""
    m = checks["map"]
    agree = m.get("precision_agreement") or {}
    prec = f"Forward passes in {m['precision']}" + (
        f"; the sign of Δ agrees with the run's own evaluation on {agree['agree']} of {agree['n']} "
        f"prompt-directions (largest change of Δ {agree.get('max_abs_delta_change', 0):.2f})."
        if agree.get("agree") is not None
        else "."
    )
    st.caption(
        f"On {analysis.prompts_text(m['prompts'])}, the same prompts for every variant (k90 chosen on "
        f"{analysis.prompts_text(m.get('choose') or m['prompts'])}). Components ranked by {m['magnitude']} "
        f"(relative size, docs/method.md §4). {prec} "
        "What this cannot show: that the components are the model's own mechanism (scaling can steer "
        "through components the unmodified model does not use), or anything beyond these prompts."
    )
    figure(plots.plot_sufficiency, key="checks-sufficiency")
    name = bundle.run_id
    with st.expander("Sufficiency and necessity per k (table)"):
        common.show_table(analysis.sufficiency_table(checks), f"{name}-sufficiency", "checks-suff", hide_index=True)
    c1, c2 = st.columns(2)
    with c1:
        st.markdown("**Random control**")
        common.show_table(analysis.random_table(checks), f"{name}-random-control", "checks-random", hide_index=True)
    with c2:
        st.markdown("**Knock-outs of the same components**")
        common.show_table(analysis.ablation_table(checks), f"{name}-ablation", "checks-ablation", hide_index=True)


def _draw_free(bundle: RunBundle, checks: dict[str, Any], figure: FigureFn) -> None:
    """The maps the field gets without training, on the run's cells, and how they rank the cells
    against the learned map (checks stored before they existed have none)."""
    if analysis.free_part(checks) is None:
        return
    st.markdown("**Next to the maps the field gets for free: gradient × activation (AtP)**")
    st.caption(analysis.free_text(checks))
    common.show_table(analysis.free_table(checks), f"{bundle.run_id}-free-maps", "checks-free", hide_index=True)
    sites = list(bundle.sites)
    for start in range(0, len(sites), 2):  # two to a row, like the learned maps above
        for site, column in zip(sites[start : start + 2], st.columns(2)):
            with column:
                figure(plots.plot_free_map, "atp", site, key=f"free-atp-{site}")
    _draw_patching(bundle, checks, figure)
    if analysis.localisation_part(checks) is not None:
        st.markdown("**Which ranking localises the answer**")
        st.caption(analysis.localisation_text(checks))
        figure(plots.plot_localisation, key="free-localisation")
        table = analysis.localisation_table(checks)
        common.show_table(table, f"{bundle.run_id}-localisation", "checks-localisation", hide_index=True)


def _draw_patching(bundle: RunBundle, checks: dict[str, Any], figure: FigureFn) -> None:
    """Exact activation patching: what it measured, its map per site, its verification table."""
    part = analysis.patching_part(checks)
    if part is None:
        return
    st.markdown("**Exact activation patching**")
    st.caption(analysis.patching_text(checks))
    if not part["rankings"]:
        return
    sites = list(bundle.sites)
    for start in range(0, len(sites), 2):
        for site, column in zip(sites[start : start + 2], st.columns(2)):
            with column:
                figure(plots.plot_free_map, "patch", site, key=f"free-patch-{site}")
    table = analysis.patching_table(checks)
    common.show_table(table, f"{bundle.run_id}-patching", "checks-patching", hide_index=True)


def _draw_stability(bundle: RunBundle, checks: dict[str, Any], figure: FigureFn) -> None:
    name = bundle.run_id
    st.markdown("**Stability across seeds**")
    if "stability" in checks:
        s = checks["stability"]
        st.caption(
            f"{len(s['runs'])} runs ({analysis.vary_text(s)}). {s['n_selected_all']} components selected "
            f"(> τ = {s['tau']}) in every seed, {s['n_selected_any']} in any; {analysis.spearman_text(s)}. "
            "One run's map is one draw: trust what every seed selects."
        )
        for site in bundle.sites:
            figure(plots.plot_stability_map, site, key=f"checks-stability-{site}")
        runs, pairs, stable = analysis.stability_tables(checks)
        c1, c2 = st.columns(2)
        with c1:
            common.show_table(pairs, f"{name}-stability-pairs", "checks-pairs", hide_index=True)
        with c2:
            common.show_table(runs, f"{name}-stability-runs", "checks-runs", hide_index=True)
        if not stable.empty:
            with st.expander(f"The {len(stable)} components selected in every seed, by consensus size"):
                common.show_table(stable, f"{name}-stable-components", "checks-stable", hide_index=True)
    else:
        st.caption("Not run: choose a number of seeds below (the runs are trained, or reused from the store).")


def _draw_generalisation(bundle: RunBundle, checks: dict[str, Any], figure: FigureFn) -> None:
    name = bundle.run_id
    st.markdown("**Generalisation across groups**")
    if "generalisation" in checks:
        c1, c2 = st.columns(2)
        with c1:
            figure(plots.plot_generalisation, "flip_acc_neg", key="checks-gen-neg")
        with c2:
            figure(plots.plot_generalisation, "flip_acc_pos", key="checks-gen-pos")
        common.show_table(
            analysis.generalisation_table(checks), f"{name}-generalisation", "checks-gen", hide_index=True
        )
    else:
        st.caption("Not run: tick “generalisation” below (trains one run per group).")


def _draw_side_effects(bundle: RunBundle, checks: dict[str, Any]) -> None:
    name = bundle.run_id
    st.markdown("**Side effects on neutral text**")
    if "side_effects" in checks:
        s = checks["side_effects"]
        st.caption(
            f"The run applied at every position of {s['n_sentences']} neutral sentences ({s['n_tokens']} predicted "
            "tokens, none about the task): per-token KL from the unmodified model and perplexity."
        )
        common.show_table(analysis.side_effects_table(checks), f"{name}-side-effects", "checks-side", hide_index=True)
    elif analysis.run_method(bundle).fixed_length:
        st.caption("Needs a run of any length (DynScalar): this run's parameters are tied to its prompts' positions.")
    else:
        st.caption("Not run.")


def _progress(job: Job) -> None:
    def status(j: Job) -> str:
        state = "waiting for the model (another session is using it)" if j.state == "waiting" else j.state
        return f"Checks {state}: {j.stage}" if j.stage else f"Checks {state}"

    job_progress(
        job.id,
        status,
        cancel_label="Cancel the checks",
        cancel_key="checks-cancel",
        cancelling="Cancelling: nothing will be written.",
    )


def _launcher(bundle: RunBundle, checks: dict[str, Any] | None) -> None:
    if deployment.readonly():  # the checks are written into the bundle: a write
        st.caption(
            "This deployment is read-only: run the checks with "
            f"`python -m actscale analyse --run {bundle.run_id} --seeds 3` where the model is, then refresh."
        )
        return
    label = "Run the checks again" if checks and "map" in checks else "Run the checks"
    with st.expander(label, expanded=not checks):
        fields = _form(bundle, label)
        if fields is not None:
            with common.user_errors():
                options = CheckOptions(**fields)
                check_asked(bundle, options)  # before the job: the map check's minutes are not lost with it
                model = common.resident_model(bundle.record.config.model)
                job = common.jobs().submit_checks(bundle, model, common.store(), options)
                st.session_state[Keys.CHECKS_JOB] = job.id
                if not job.done:
                    time.sleep(0.2)
                st.rerun()


def _form(bundle: RunBundle, label: str) -> dict[str, Any] | None:
    """The launcher's form; the CheckOptions fields it was submitted with, None until then. A
    run trained under bfloat16 autocast has its checks' passes in it unless "Passes in float32"
    is ticked, and where this server's device emulates bfloat16 the form says what that costs."""
    run_bf16 = bundle.record.config.autocast == "bf16"
    with st.form("checks-form", border=False):
        c1, c2, c3 = st.columns(3)
        seeds = c1.selectbox("Seeds for stability", [0, 3, 5], index=0, help="0: no stability check")
        vary = c2.radio(
            "Vary",
            ["auto", "data", "seed"],
            horizontal=True,
            help="data: the data seed (other prompts and split); seed: the training seed on the same data, which "
            "changes only the batch order; auto: data where the task draws its data, seed for a dataset file",
        )
        gen = c3.checkbox("Generalisation across groups", help="trains one run per group")
        prompts = c1.number_input("Test prompts", min_value=8, max_value=1000, value=CheckOptions.prompts, step=8)
        draws = c2.number_input("Random draws", min_value=5, max_value=200, value=CheckOptions.draws, step=5)
        full = c3.checkbox(
            "Patch every cell", help="exact activation patching of every cell, not only each map's top 64 (slower)"
        )
        float32 = run_bf16 and c3.checkbox(
            "Passes in float32",
            help="this run was trained under bfloat16 autocast, and its checks' passes run in it unless this is "
            "ticked: another computation, whose flips the checks compare with the run's own (docs/checks.md)",
        )
        note = _emulation_note() if run_bf16 else None
        if note:
            st.caption(note)
        if not st.form_submit_button(label, type="primary"):
            return None
    return {
        "prompts": int(prompts),
        "draws": int(draws),
        "seeds": int(seeds),
        "vary": str(vary),
        "generalisation": bool(gen),
        "patching": "full" if full else "top",
        "precision": "float32" if float32 else "run",
    }


def _emulation_note() -> str | None:
    """What a bf16 run's check passes cost on this server's device where it emulates bfloat16
    (the resident model's device, else the session's choice); None elsewhere."""
    from actscale.engine.models import resolve_device
    from actscale.errors import ActscaleError

    model = common.loaded_model_or_none()
    try:
        device = model.device if model is not None else resolve_device(st.session_state.get(Keys.DEVICE, "auto"))
    except ActscaleError:  # a device this machine lacks: the launch says so
        return None
    what = "The checks' passes (in this run's precision: it was trained under bfloat16 autocast)"
    sentence = emulated_sentence(True, device, what, PASS_COST, "“Passes in float32” runs them in float32")
    return None if sentence is None else f"{sentence}."
