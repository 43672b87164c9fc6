"""The live panel of a background job, shared by Train (a training) and Compare (a sweep): a
progress bar with its status line and a Cancel button, redrawn every second as a fragment (not
the whole page); once the job is over, the whole page reruns and draws the outcome."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from actscale.runs.jobs import Job
from actscale.ui import common


@st.fragment(run_every=1.0)
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
