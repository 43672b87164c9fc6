"""The Train page's live panel and status line through Streamlit's AppTest, on the tiny test model:
news that comes while the panel waits, its redraws in place while it stays, the validation result
before the other splits, and the step that reached the target while training goes on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from conftest import svg_images
from streamlit.testing.v1 import AppTest
from train_page_helpers import button, held_after_the_first_step, number, panel_by_its_timer, train_page

from actscale.engine.training import TrainConfig
from actscale.runs.jobs import Job


@contextmanager
def held_training(monkeypatch, live_waits: int) -> Iterator[tuple[AppTest, Job]]:
    """The Train page after its Train click and its job, held after its first step (100,000 steps
    of the default form), with the panel's `LIVE_WAITS` set; the job cancelled and let go after."""
    from actscale.ui import common, progress

    monkeypatch.setattr(progress, "LIVE_WAITS", live_waits)
    first_step, release = held_after_the_first_step(monkeypatch)
    at = train_page()
    number(at, "Steps").set_value(100_000)
    number(at, "Early stop").set_value(0)
    button(at, "Train").click().run()
    assert first_step.wait(60), "the job never took a step"
    job = common.jobs().get(at.session_state["job_id"])
    try:
        yield at, job
    finally:
        job.cancel()
        release.set()
        assert job.wait(60) and job.state == "cancelled"


def test_the_live_panel_shows_news_that_comes_while_it_waits(train_store, monkeypatch):
    """The panel, run by its timer, waits for the job's news and redraws its status line in
    place: a target reached during a wait is on the page at the end of that wait."""
    with held_training(monkeypatch, live_waits=1) as (at, job):
        waits: list[float] = []
        real_wait = job.wait_news

        def news_during_the_wait(seen: int, timeout: float) -> bool:
            waits.append(timeout)
            if len(waits) == 1:  # as if the run reached its target just after the panel was drawn
                job.record_target(0, 1, "val", {"acc_base": 0.5, "flip_acc_pos": 1.0, "flip_acc_neg": 1.0,
                                                "n_prompts": 2, "flip_acc_pos_ci95": [0.34, 1.0],
                                                "flip_acc_neg_ci95": [0.34, 1.0]})  # fmt: skip
            return real_wait(seen, timeout)

        monkeypatch.setattr(job, "wait_news", news_during_the_wait)
        at.run()  # a run of the whole page draws the panel once, without waiting
        panel = panel_by_its_timer(job.id).run()
        assert not at.exception and not panel.exception
        assert waits == [0.7]
        (bar,) = panel.get("progress")  # one bar, redrawn in place
        assert "step 1 of 100000. Target (0.90) reached after step 1: validation flips" in bar.proto.text
        assert "Target" not in at.get("progress")[0].proto.text


def test_the_live_panel_stays_and_redraws_in_place_as_steps_come(train_store, monkeypatch):
    """A run of the panel by its timer stays for `LIVE_WAITS` waits for news and redraws the bar
    and the curves in place after each new step: one bar and one image on the page, the latest."""
    import pandas as pd

    from actscale.views.plots import lines_svg, plot_history

    with held_training(monkeypatch, live_waits=3) as (_, job):
        waits: list[float] = []
        real_wait = job.wait_news

        def a_step_in_each_wait(seen: int, timeout: float) -> bool:
            waits.append(timeout)
            row = {**job.steps[-1], "step": job.steps[-1]["step"] + 1}  # the held job's next step, as it would be
            job.steps.append(row)
            job.run_steps[0] = row["step"]
            return real_wait(seen, 0)  # no news

        monkeypatch.setattr(job, "wait_news", a_step_in_each_wait)
        panel = panel_by_its_timer(job.id).run()
        assert not panel.exception
        assert waits == [0.7, 0.7, 0.7]
        (bar,) = panel.get("progress")
        assert bar.proto.text.startswith("Training activscalar, step 4 of 100000")
        assert svg_images(panel) == [lines_svg(plot_history(pd.DataFrame(job.steps)))]


def test_a_staying_panel_sends_its_bar_after_every_wait(train_store, monkeypatch):
    """Even when nothing changed (no step, no news: the evaluation's seconds), a staying run sends
    its bar after each wait: each element sent is where Streamlit ends the run for a click
    elsewhere on the page, so a click waits no longer than one wait."""
    from streamlit.delta_generator import DeltaGenerator

    with held_training(monkeypatch, live_waits=3) as (_, job):
        monkeypatch.setattr(job, "wait_news", lambda seen, timeout: False)  # nothing new in any wait
        monkeypatch.setattr(job, "seconds_left", lambda: None)  # nor in the status line's time left
        sent = []
        real_progress = DeltaGenerator.progress
        monkeypatch.setattr(
            DeltaGenerator, "progress", lambda self, *a, **k: sent.append(a) or real_progress(self, *a, **k)
        )
        panel = panel_by_its_timer(job.id).run()
        assert not panel.exception
        assert len(sent) == 4  # drawn, then after each of the 3 waits


def test_the_status_line_shows_the_validation_result_before_the_other_splits():
    """Between the last step and the stored run, the progress line says what the validation
    prompts showed, while the training and test prompts are still being evaluated."""
    from actscale.runs.jobs import Job
    from actscale.ui.train_form import training_status as _training_status

    config = TrainConfig(model="tiny-llama", steps=2)
    job = Job(id="j", configs=[config], state="running")
    job.steps = [{"run": 0, "step": 1}]
    assert _training_status(job).startswith("Training activscalar, step 1 of 2")
    job.steps.append({"run": 0, "step": 2})
    assert _training_status(job).startswith("Trained activscalar; evaluating…")
    job.record_result(
        0,
        "val",
        {"acc_base": 0.8, "flip_acc_pos": 1.0, "flip_acc_pos_ci95": [0.72, 1.0], "n_prompts": 10,
         "flip_acc_neg": 0.9, "flip_acc_neg_ci95": [0.6, 0.98]},
    )  # fmt: skip
    assert _training_status(job).startswith(
        "Trained activscalar. Validation flips: β = +1 0.80 → 1.00 [0.72, 1.00] (n = 10), "
        "β = −1 0.20 → 0.90 [0.60, 0.98] (n = 10). Evaluating the other prompts…"
    )


def test_the_status_line_shows_the_step_that_reached_the_target_while_training_goes_on():
    from actscale.runs.jobs import Job, JobObserver
    from actscale.ui.train_form import training_status as _training_status

    config = TrainConfig(model="tiny-llama", steps=4, cycles=2)
    job = Job(id="j", configs=[config], state="running")
    job.steps = [{"run": 0, "step": 1}, {"run": 0, "step": 2}, {"run": 0, "step": 3}]
    observer = JobObserver(job, 0)
    assert observer.watches_target  # the page shows it, so the run looks for it
    observer.target_reached(
        2,
        "val",
        {"acc_base": 0.8, "flip_acc_pos": 1.0, "flip_acc_pos_ci95": [0.72, 1.0], "n_prompts": 10,
         "flip_acc_neg": 0.9, "flip_acc_neg_ci95": [0.6, 0.98]},
    )  # fmt: skip
    flips = "validation flips: β = +1 0.80 → 1.00 [0.72, 1.00] (n = 10), β = −1 0.20 → 0.90 [0.60, 0.98] (n = 10)"
    assert _training_status(job) == (
        f"Training activscalar, step 3 of 4. Target (0.90) reached after step 2: {flips}; training on for "
        "faithfulness and minimality"
    )
    job.steps.append({"run": 0, "step": 4})
    assert _training_status(job) == f"Trained activscalar. Target (0.90) reached after step 2: {flips}. Evaluating…"
    job.steps.append({"run": 0, "step": 5, "n_steps": 8})  # a second cycle: its steps counted to its end
    assert _training_status(job).startswith("Training activscalar, step 5 of 8. Target (0.90) reached after step 2")
