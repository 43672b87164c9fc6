"""The live panel of a background job, shared by Train (a training) and Compare (a sweep): a
progress bar with its status line and a Cancel button, redrawn every `REFRESH_S` seconds as a
fragment (not the whole page); once the job is over, the whole page reruns and draws the outcome."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from actscale.runs.jobs import Job
from actscale.ui import common

# Each redraw costs the server and the browser a little CPU, and on a 2-core machine that also
# runs the browser, the training's two threads pay for it many times over (likely: a thread that
# loses its core stalls the other at every parallel region): the default run's first result came
# 42.8 s after the click with a redraw every second, 34.1 s every 2 s (medians of 5 and 5;
# 22 s in a new process without a browser; docs/measured.md).
REFRESH_S = 2.0


@st.fragment(run_every=REFRESH_S)
def job_progress(
    job_id: str,
    status: Callable[[Job], str],
    *,
    cancel_label: str,
    cancel_key: str,
    cancelling: str,
    below: Callable[[Job], None] | None = None,
) -> None:
    """``status(job)`` is the progress bar's text; ``cancelling`` is shown when Cancel is
    pressed; ``below(job)`` draws more under the bar (Train's live curves)."""
    job = common.jobs().get(job_id)
    if job is None:
        return
    if job.done:
        st.rerun()  # the whole page: the form comes back and the outcome is drawn
    st.progress(job.progress(), text=status(job))
    if st.button(cancel_label, key=cancel_key, disabled=job.cancel_event.is_set()):
        job.cancel()
        st.info(cancelling)
    if below is not None:
        below(job)


def time_left(job: Job) -> str:
    """``"about 40 s left"``, or ``""`` before the first step."""
    left = job.seconds_left()
    return "" if left is None else f"about {left:.0f} s left"
