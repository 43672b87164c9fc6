"""What the Train page's test modules share: the page opened on the tiny model through Streamlit's
AppTest, and its widgets found by label. Their store is conftest's `train_store`."""

from __future__ import annotations

import threading
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TRAIN = "app_pages/1_Train.py"


def train_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["model_name"] = "tiny-llama"
    at.session_state["device"] = "cpu"
    at.run()
    return at.switch_page(TRAIN).run()


def number(at: AppTest, label_start: str):
    return next(w for w in at.number_input if w.label.startswith(label_start))


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def held_after_the_first_step(monkeypatch) -> tuple[threading.Event, threading.Event]:
    """The page's jobs run in a thread (a job beside the page), each held after its first step
    until the test sets the second event; the first is set at that step."""
    from actscale.runs import api

    monkeypatch.setenv("ACTSCALE_JOBS", "thread")
    first_step, release = threading.Event(), threading.Event()
    real = api.train_run

    def held(config, model, *, observer, **kwargs):
        heard = observer.step

        def step(info) -> None:
            heard(info)
            first_step.set()
            assert release.wait(60), "the test never released the job"

        observer.step = step
        return real(config, model, observer=observer, **kwargs)

    monkeypatch.setattr(api, "train_run", held)
    return first_step, release


def panel_by_its_timer(job_id: str) -> AppTest:
    """Train's live panel (its fragment) run as its timer runs it, not inside a run of the page:
    where it stays and waits for its job's news."""

    def script(job_id: str) -> None:
        from actscale.ui import progress
        from actscale.ui.train_form.job import _live_curves, training_status

        progress._live_panel(job_id, training_status, _live_curves, True)

    return AppTest.from_function(script, args=(job_id,), default_timeout=60)
