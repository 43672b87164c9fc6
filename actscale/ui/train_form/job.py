"""The Train page's live panel of a background job: progress, the validation result as soon as it
exists, live curves, the outcome and links to the stored runs."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from actscale.engine.config import TrainConfig
from actscale.runs.jobs import Job
from actscale.ui import common, navigation
from actscale.ui.keys import Keys
from actscale.ui.progress import job_progress, time_left
from actscale.views import plots, report
from actscale.views.analysis import flips_text, target_text
from actscale.views.words import counted


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
        training_status,
        cancel_label="Cancel",
        cancel_key="cancel_training",
        cancelling="Cancelling…",
        below=_live_curves,
        wait_for_news=True,
    )


def _current_rows(job: Job) -> list[dict]:
    """The step rows of the config being trained."""
    return [r for r in job.steps if r.get("run") == job.current]


def training_status(job: Job) -> str:
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
        flips = flips_text(first["split"], first)
        status = f"Trained {which}{config.method}. {flips[0].upper()}{flips[1:]}. Evaluating the other prompts…"
    else:
        status = _training_line(job, config, which, rows[-1])
    left = time_left(job)
    return f"{status} — {left}" if left else status


def _training_line(job: Job, config: TrainConfig, which: str, row: dict) -> str:
    """The status while the current run trains, or after its last step (``row``: the last
    step's); with the step that first reached the validation target, once one has. A run that
    needs another cycle counts its steps to that cycle's end (the row's ``n_steps``)."""
    step, of = row["step"], row.get("n_steps", config.steps)
    done = step >= of
    head = f"Trained {which}{config.method}" if done else f"Training {which}{config.method}, step {step} of {of}"
    if (reached := job.target_results.get(job.current)) is None:
        return f"{head}; evaluating…" if done else head
    target = (
        f"Target ({config.target:.2f}) reached after step {reached['step']}: {flips_text(reached['split'], reached)}"
    )
    return (
        f"{head}. {target}. Evaluating…" if done else f"{head}. {target}; training on for faithfulness and minimality"
    )


def _live_curves(job: Job) -> None:
    """The current run's curves so far, redrawn with the panel: an SVG image the browser draws
    at once (a plotly figure redrawn with the panel costs the browser far more, and a browser on a
    2-core machine takes it from the training: docs/measured.md), nothing before the first step."""
    rows = _current_rows(job)
    if not rows:
        return
    fig = plots.plot_history(pd.DataFrame(rows))
    svg = plots.figure_svg(fig)
    if svg is None:  # not drawn by `figure_svg` (lines only): plotly
        st.plotly_chart(fig, width="stretch", key=f"live-{job.id}")
    else:
        st.image(svg, width="stretch")


def done_text(trained: int) -> str:
    """The outcome's first words, "Done: 1 run trained" (`make bench` (g) waits for them)."""
    return f"Done: {counted(trained, 'run')} trained"


def _outcome(job: Job) -> None:
    if job.state == "cancelled":
        if job.run_ids:
            n = len(job.run_ids)
            st.warning(
                f"Cancelled — the {counted(n, 'run')} finished before it {'was' if n == 1 else 'were'} kept; "
                "the rest was not stored."
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
            done_text(trained)
            + (f", {len(job.run_ids) - trained} already stored" if trained < len(job.run_ids) else "")
            + "."
        )
    show_run_links(job.run_ids)
    _unmet_targets(job.run_ids)
    curves = pd.DataFrame([r for r in job.steps if r.get("run") == len(job.run_ids) - 1])
    if len(curves):
        common.show_figure(plots.plot_history(curves), f"training-{job.run_ids[-1]}", key=f"final-{job.id}")


def _unmet_targets(run_ids: list[str]) -> None:
    """A warning for each run that did not reach its validation target, with what to try."""
    for run_id in run_ids:
        bundle = common.load_bundle(run_id)
        if (unmet := target_text(bundle.summary, bundle.record.config)) is not None:
            st.warning(f"Run {run_id} ({bundle.method}): {unmet}", icon=":material/warning:")


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
