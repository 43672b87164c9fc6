"""Compare runs: the methods side by side (docs/method.md §6.3), parameter counts, and sweeps of
λ_M, λ_F and m with their trade-off plots (§6.4), where clicking a point opens that run.

Reads each run's stored bundle (no model): its metrics, its map checks and the per-prompt Δ of
the unmodified model the logit-bias floor is computed from; only a sweep trains, on the resident
model in the background.
"""

import time

import pandas as pd
import streamlit as st

from actscale.engine.config_fields import CONFIG_FIELDS
from actscale.errors import ActscaleError
from actscale.runs.bundle import check_run_id
from actscale.runs.jobs import Job
from actscale.runs.records import SplitMetrics
from actscale.ui import actions, common, deployment, links
from actscale.ui.keys import Keys
from actscale.ui.progress import job_progress, time_left
from actscale.ui.train_form.widgets import number_range
from actscale.views import analysis, plots, report

common.page_header(
    "Compare runs",
    "Effectiveness, faithfulness and minimality per method, train and test side by side; sweeps of "
    "λ_M, λ_F and m and their trade-offs. Click a point of a trade-off plot to open that run.",
)

# The job is read before the store is listed: a sweep that finishes in between must find
# all its runs in the listing.
job = common.jobs().get(st.session_state.get(Keys.SWEEP_JOB))
job_done = job is not None and job.done
rows = [r for r in common.list_runs() if r.ok]
if not rows:
    st.info(
        "No runs in this store."
        if deployment.readonly()
        else "No runs in the store yet: train some on the **Train** page."
    )
    st.stop()
ids = [r.run_id for r in rows]
labels = {r.run_id: common.run_label(r) for r in rows}

# A finished sweep adds its runs to the comparison, once.
if job_done and st.session_state.get(Keys.SWEEP_SEEN) != job.id:
    st.session_state[Keys.SWEEP_SEEN] = job.id
    st.session_state[Keys.COMPARE] = list(dict.fromkeys(st.session_state.get(Keys.COMPARE, []) + job.run_ids))
    st.session_state.pop(Keys.COMPARE_PICK, None)


def runs_from_link(raw: str) -> list[str]:
    """``?runs=<id>,<id>``: every id well-formed; ids not in this store are named and left out."""
    wanted = [check_run_id(part.strip()) for part in raw.split(",") if part.strip()]
    known = [i for i in dict.fromkeys(wanted) if i in ids]
    if not known:
        raise ActscaleError("none of these runs is in this store")
    if len(known) < len(wanted):
        missing = [i for i in wanted if i not in ids]
        st.warning(f"Runs not in this store (or broken), left out of the comparison: {', '.join(missing)}")
    return known


# The selection comes from the link (?runs=), else survives visits to other pages (widget state
# does not), else opens on the default comparison: the latest run of each method.
default = analysis.default_comparison(rows)
saved = [i for i in st.session_state.get(Keys.COMPARE) or [] if i in ids]
links.from_link(Keys.COMPARE_PICK, "runs", runs_from_link, saved or default)
st.session_state[Keys.COMPARE_PICK] = [i for i in st.session_state[Keys.COMPARE_PICK] if i in ids]
chosen = st.multiselect(
    "Runs to compare",
    ids,
    format_func=labels.get,
    key=Keys.COMPARE_PICK,
    help="Opens on the latest run of each method for the newest run's task and model (on its split and seed "
    "where such a run exists). The address keeps the selection, so the link reproduces this comparison.",
)
st.session_state[Keys.COMPARE] = list(chosen)
links.to_link("runs", ",".join(chosen) or None)
if chosen and list(chosen) == default:
    newest = rows[0].config
    st.caption(
        f"The latest run of each method on **{newest.get('task')}** with model `{newest.get('model')}`, on the "
        "newest run's split and seed where such a run exists. Add or remove runs above."
    )
selected = [r for r in rows if r.run_id in chosen]

with common.guarded("Comparing these runs"):
    df = analysis.metrics_frame(selected, metrics_of=common.completed_metrics)
    if df.empty:
        st.info("Choose at least one run.")
    else:
        st.subheader("Methods compared")
        bundles = [common.load_bundle(r.run_id) for r in selected]
        # the logit-bias floor beside the runs, on each dataset and split among them (not a run: no
        # trade-off point, never "best")
        shown = pd.concat([df, analysis.floor_frame(bundles)], ignore_index=True)
        common.show_figure(plots.plot_method_comparison(shown), "methods-compared", "methods")
        st.caption(analysis.floor_text(bundles))
        left, right = st.columns(2)
        with left:
            common.show_figure(plots.plot_param_counts(shown), "parameter-counts", "params")
        with right:
            st.markdown("**Comparison table** (one row per run and split)")
            # Each flip rate after the unmodified model's, with its 95% interval and n.
            rows_read = [SplitMetrics.from_json(row) for _, row in shown.iterrows()]
            shown["β = +1"] = [analysis.rate_text(m, "flip_acc_pos") for m in rows_read]
            shown["β = −1"] = [analysis.rate_text(m, "flip_acc_neg") for m in rows_read]
            wanted = (
                "run_id",
                "method",
                "split",
                "β = +1",
                "β = −1",
                "acc_base",
                "flip_acc_pos",
                "flip_acc_neg",
                "n_prompts",
                "faithfulness_kl",
                "kl_full",
                "l1",
                "n_params",
                "n_components",
                "n_effective",
                "effective_frac",
                "cells_effective_frac",
                "lambda_m",
                "lambda_f",
                "margin",
                "task",
            )
            columns = [c for c in wanted if c in shown.columns]
            common.show_table(shown[columns], "comparison", "comparison", hide_index=True)

        best = analysis.best_on_validation(df)
        if best is not None:
            test = df[(df["run_id"] == best) & (df["split"] == "test")]
            row = SplitMetrics.from_json(test.iloc[0]) if len(test) else None
            st.markdown(
                f"**Best on validation:** run `{best}` (highest mean validation flip rate, then lowest KL; chosen "
                "without reading test)"
                + (
                    f" — on test β = +1 {analysis.rate_text(row, 'flip_acc_pos')}, β = −1 "
                    f"{analysis.rate_text(row, 'flip_acc_neg')}."
                    if row is not None
                    else "."
                )
            )

        st.subheader("Do the maps mean anything?")
        checked = analysis.checks_frame(bundles)
        if checked.empty:
            st.caption(
                "None of these runs has its map checks yet (Explore → “Does the map mean anything?”, or "
                "`python -m actscale analyse --run RUN`)."
            )
        else:
            st.caption(
                "k90: the fewest top components keeping 90% of the run's effect above the unmodified model in "
                "each direction it moves (none where it moves neither); the random control puts "
                "the same magnitudes on random components. A map whose top-k does not beat the random control's "
                "95th percentile carries no claim about *which* components matter."
            )
            common.show_table(checked, "map-checks", "map-checks", hide_index=True)
            common.show_figure(
                plots.plot_sufficiency_overlay([common.load_bundle(r) for r in checked["run_id"]]),
                "sufficiency-compared",
                "sufficiency-compared",
            )

        st.subheader("Trade-offs")
        c1, c2, c3 = st.columns(3)
        split = c1.radio("Split", ["test", "val", "train"], horizontal=True, key="compare_split")
        minimality = c2.selectbox(
            "Minimality measure",
            ["l1", "effective_frac", "n_effective"],
            key="compare_minimality",
            help="‖θ‖₁, the fraction of effective components, or their number (docs/method.md §4).",
        )
        colour = c3.selectbox("Colour by", ["method", "lambda_m", "lambda_f", "margin"], key="compare_colour")
        part = df[df["split"] == split]
        if part.empty:
            st.info(f"None of these runs has a {split} split.")
        else:
            gen = st.session_state.get(Keys.TRADEOFF_GEN, 0)
            clicked: list = []
            left, right = st.columns(2)
            with left:
                event = common.show_figure(
                    plots.plot_tradeoff(part, minimality, colour=colour),
                    "tradeoff-minimality",
                    f"tradeoff-min-{gen}",
                    selectable=True,
                )
                clicked += common.selected_customdata(event)
            with right:
                event = common.show_figure(
                    plots.plot_tradeoff(part, "faithfulness_kl", colour=colour),
                    "tradeoff-faithfulness",
                    f"tradeoff-faith-{gen}",
                    selectable=True,
                )
                clicked += common.selected_customdata(event)
            st.caption("Click a point to open that run on **Explore**.")
            if clicked and str(clicked[0]) in ids:
                st.session_state[Keys.TRADEOFF_GEN] = gen + 1
                actions.open_run(str(clicked[0]))

        st.markdown("**A report of these runs**")
        wanted = tuple(chosen)
        if st.button(
            "Make an HTML report of these runs",
            key="compare_report_make",
            help="One file: the comparison, what differs measurably, and each run's figures; opens with no network.",
        ):
            st.session_state[Keys.COMPARE_REPORT] = wanted
        if st.session_state.get(Keys.COMPARE_REPORT) == wanted:
            page = common.report_bytes(wanted)
            a, b = st.columns([2, 3], vertical_alignment="center")
            a.download_button(
                "Download the report of these runs (HTML)",
                page,
                file_name=f"actscale-compare-{len(wanted)}-runs.html",
                mime="text/html",
                key="dl-compare-report",
            )
            b.caption(f"{report.human_size(len(page))}: {len(wanted)} runs in one HTML file, plotly.js included once")

        with st.form("open_run_form", border=False):
            a, b = st.columns([4, 1], vertical_alignment="bottom")
            target = a.selectbox("Open run", list(chosen), format_func=labels.get, key="compare_open")
            if b.form_submit_button("Open on Explore") and target:
                actions.open_run(target)

st.subheader("Sweep λ_M, λ_F and m")


def sweep_status(job: Job) -> str:
    n = len(job.configs)
    state = "waiting for the model (another session is using it)" if job.state == "waiting" else job.state
    left = time_left(job)
    if job.executor == "local":
        where = f"run {min(job.current + 1, n)} of {n}"
    else:  # runs side by side on the cluster: say which
        running = ", ".join(str(i + 1) for i in job.runs_running())
        where = f"{len(job.runs_done)} of {n} runs stored" + (f", running: {running}" if running else "")
        where += f" · {job.retries[-1]}" if job.retries else ""
    return f"Sweep {state}: {where}" + (f" · {left}" if left else "")


def sweep_per_run(job: Job) -> None:
    """Ray: one line per run started, its steps so far (runs progress side by side)."""
    if job.executor == "local":
        return
    for i, config in enumerate(job.configs):
        if i in job.runs_done:
            st.caption(f"run {i + 1}: stored")
        elif i in job.run_steps:
            st.progress(
                min(1.0, job.run_steps[i] / config.steps),
                text=f"run {i + 1}: step {job.run_steps[i]} of {config.steps}",
            )


with common.guarded("The sweep"):
    if deployment.readonly():
        st.caption("Sweeps train new runs: not available in this read-only deployment.")
    elif job is not None and not job_done:
        # Once the sweep is over the whole page reruns: its new runs join the comparison.
        job_progress(
            job.id,
            sweep_status,
            cancel_label="Cancel sweep",
            cancel_key="sweep_cancel",
            cancelling="Cancelling after the current step; finished runs are kept.",
            below=sweep_per_run,
        )
    else:
        if job is not None:
            new = sum(not r for r in job.reused)
            if job.state == "done":
                st.success(f"The last sweep finished: {len(job.run_ids)} runs ({new} new), added to the comparison.")
            elif job.state == "cancelled":
                st.warning(f"The last sweep was cancelled; {len(job.run_ids)} runs had finished and are kept.")
            else:
                st.error(f"The last sweep failed: {job.error}")
        base_choices = list(chosen) or ids
        base_id = st.selectbox(
            "Based on run",
            base_choices,
            format_func=labels.get,
            key="sweep_base",
            help="The sweep copies this run's configuration, prompts and split; only "
            "λ_M, λ_F, m and the number of steps change.",
        )
        cfg = next(r.record.config for r in rows if r.run_id == base_id and r.record is not None)
        with st.form(f"sweep_form_{base_id}"):
            c1, c2, c3, c4 = st.columns(4)
            lm, lf, mg = (
                c.text_input(CONFIG_FIELDS[name].label, f"{getattr(cfg, name):g}", help=f"Comma-separated, e.g. {eg}")
                for c, name, eg in (
                    (c1, "lambda_m", "0.001, 0.01, 0.1"),
                    (c2, "lambda_f", "0.5, 1"),
                    (c3, "margin", "1, 2"),
                )
            )
            low, high = number_range(CONFIG_FIELDS["steps"])
            steps = c4.number_input("Steps per run", min_value=low, max_value=high, value=cfg.steps)
            r1, r2 = st.columns([1, 3])
            where = r1.radio(
                "Run on",
                ["this server", "Ray cluster"],
                index=1 if actions.default_ray_address() != "auto" else 0,
                key="sweep_executor",
                help="This server trains the runs one after another on the resident model; a Ray cluster "
                "trains them side by side, one worker per CPU (or GPU), each loading the model once.",
            )
            address = r2.text_input(
                "Ray address",
                actions.default_ray_address(),
                key="sweep_ray_address",
                help="host:6379 or ray://host:10001 of a running cluster, or 'auto' to start one on this "
                "machine. Finished runs come back here and are stored in this server's store.",
            )
            launch = st.form_submit_button("Launch sweep", type="primary")
        if launch:
            values = [actions.parse_values(lm, "λ_M"), actions.parse_values(lf, "λ_F"), actions.parse_values(mg, "m")]
            executor = "ray" if where == "Ray cluster" else "local"
            job = actions.launch_sweep(
                common.load_bundle(base_id),
                *values,
                steps=int(steps),
                executor=executor,
                ray_address=address if executor == "ray" else None,
            )
            st.session_state[Keys.SWEEP_JOB] = job.id
            if not job.done:
                time.sleep(0.2)  # let the job start, so the progress bar shows its first state
            st.rerun()
