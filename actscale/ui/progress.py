"""The live panel of a background job, shared by Train (a training), Compare (a sweep) and
Explore (the checks): a progress bar with its status line and a Cancel button, a fragment (not the
whole page) run every `REFRESH_S` seconds; Train's stays, waiting for its job's news and redrawing
in place. Once the job is over, the whole page reruns and draws the outcome."""

from __future__ import annotations

import threading
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
# ... and a run of the fragment by its timer stays for this many such waits, redrawing the bar and
# what is below it in place as the job moves on (a step, news), rather than ending to be run again
# every second: the start and end of a fragment's run redraw the page's running state, and on a
# 2-core machine the training pays for the browser's work (Chromium's renderer 1.5-1.7 s of CPU in
# 10 s of training against 1.13-1.21 s in place; docs/measured.md, "The live panel in place").
# About 21 s a run; the timer's next run follows at once. Streamlit queues a click inside a
# fragment behind the fragment's current run, so Cancel is drawn outside it: its click reruns the
# page, which ends a staying run at its next redraw (within NEWS_WAIT_S). A run of the whole page
# draws the panel once, without waiting.
LIVE_WAITS = 30
_page = threading.local()  # ``drawing``: the panel is being drawn by a run of the whole page


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
    """``status(job)`` is the progress bar's text; ``below(job)`` draws more under the bar
    (Train's live curves); a Cancel button (``cancel_label``) under them shows ``cancelling``
    when pressed. With ``wait_for_news``, a run of the panel by its timer stays for `LIVE_WAITS`
    waits of up to `NEWS_WAIT_S` for the job's news, redrawing the bar after each and ``below``
    after each new step: news is shown at once."""
    job = common.jobs().get(job_id)
    if job is None:
        return
    _page.drawing = True
    try:
        _live_panel(job_id, status, below, wait_for_news)
    finally:
        _page.drawing = False
    slot = st.empty()
    if slot.button(cancel_label, key=cancel_key, disabled=job.cancel_event.is_set()):
        job.cancel()
        slot.button(cancel_label, key=f"{cancel_key}-pressed", disabled=True)
        st.info(cancelling)


@st.fragment(run_every=REFRESH_S)
def _live_panel(job_id: str, status: Callable[[Job], str], below: Callable[[Job], None] | None, stays: bool) -> None:
    """The bar and ``below``: drawn once in a run of the whole page; in a run of its own (the
    timer's), drawn and, where it ``stays``, redrawn in place as the job moves on."""
    job = common.jobs().get(job_id)
    if job is None:
        return
    seen = job.news
    panel = _Panel(job, status, below)
    for _ in range(0 if getattr(_page, "drawing", False) or not stays else LIVE_WAITS):
        if job.wait_news(seen, NEWS_WAIT_S):
            seen = job.news
        panel.redraw()


class _Panel:
    """The bar and the area below it, drawn and then drawn again in place (`redraw`); the whole
    page reruns once the job is done (its form comes back and the outcome is drawn)."""

    def __init__(self, job: Job, status: Callable[[Job], str], below: Callable[[Job], None] | None) -> None:
        self.job, self.status, self.below = job, status, below
        self.bar, self.area, self.steps = st.empty(), st.empty(), -1
        self.redraw()

    def redraw(self) -> None:
        """The bar each time, ``below`` after a new step (the curves change with the steps). The
        bar's redraw is also where Streamlit ends a staying run for a click elsewhere on the page
        (each element sent is such a point): so within `NEWS_WAIT_S`, in every phase of the job."""
        job = self.job
        if job.done:
            st.rerun()
        self.bar.progress(job.progress(), text=self.status(job))
        if self.below is not None and len(job.steps) != self.steps:
            self.steps = len(job.steps)
            with self.area.container():
                self.below(job)


def time_left(job: Job) -> str:
    """``"about 40 s to the last step"``, or ``""`` before the first step and after the last (the
    evaluation that follows is not estimated: "about 0 s left" while it ran read as done)."""
    left = job.seconds_left()
    return "" if left is None else f"about {left:.0f} s to the last step"
