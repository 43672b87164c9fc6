"""The live panel of a background job, shared by Train (a training) and Compare (a sweep): a
progress bar with its status line and a Cancel button, redrawn every `REFRESH_S` seconds as a
fragment (not the whole page); once the job is over, the whole page reruns and draws the outcome."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from actscale.runs.jobs import Job
from actscale.ui import common

# Each redraw costs the server and the browser a little CPU, and on a 2-core machine the training
# pays for it: every second with Streamlit's collection after each script run (a full
# `gc.collect`, 0.3-0.5 s holding the GIL with the model resident) the default run's 18 steps took
# 43-49 s; with that collection off (.streamlit/config.toml) 27-32 s, as every 2 s, and the first
# result came 10.3 s after the click (median of 3) against 12.5 s as before (every 2 s, collection
# on; docs/measured.md, "The live panel's cost").
REFRESH_S = 1.0
# Where the page asks for it (Train), each redraw then waits this long for the job's news (a step
# that reached the validation target, a first result, the job's end) and redraws the status line
# at once: shown 0.05-0.48 s after it happened rather than at the next redraw (0.23-1.11 s), and
# the wait takes no core (docs/measured.md, "The live panel's wait for news"). A click in the
# session (Cancel, another page) is answered when the wait ends: up to NEWS_WAIT_S later.
NEWS_WAIT_S = 0.7


@st.fragment(run_every=REFRESH_S)
def job_progress(
    job_id: str,
    status: Callable[[Job], str],
    *,
    cancel_label: str,
    cancel_key: str,
    cancelling: str,
    below: Callable[[Job], None] | None = None,
    wait_for_news: bool = False,
) -> None:
    """``status(job)`` is the progress bar's text; ``cancelling`` is shown when Cancel is
    pressed; ``below(job)`` draws more under the bar (Train's live curves). With
    ``wait_for_news``, news that comes within `NEWS_WAIT_S` of the redraw is shown at once."""
    job = common.jobs().get(job_id)
    if job is None:
        return
    seen = job.news
    bar = st.empty()

    def show() -> None:
        if job.done:
            st.rerun()  # the whole page: the form comes back and the outcome is drawn
        bar.progress(job.progress(), text=status(job))  # drawn again in place with news

    show()
    if st.button(cancel_label, key=cancel_key, disabled=job.cancel_event.is_set()):
        job.cancel()
        st.info(cancelling)
    if below is not None:
        below(job)
    if wait_for_news and job.wait_news(seen, NEWS_WAIT_S):
        show()


def time_left(job: Job) -> str:
    """``"about 40 s to the last step"``, or ``""`` before the first step and after the last (the
    evaluation that follows is not estimated: "about 0 s left" while it ran read as done)."""
    left = job.seconds_left()
    return "" if left is None else f"about {left:.0f} s to the last step"
