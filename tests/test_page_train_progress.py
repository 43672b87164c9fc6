"""The Train page's live panel and status line through Streamlit's AppTest, on the tiny test model:
news that comes while the panel waits, the validation result before the other splits, and the
step that reached the target while training goes on."""

from __future__ import annotations

from train_page_helpers import button, held_after_the_first_step, number, train_page

from actscale.engine.training import TrainConfig


def test_the_live_panel_shows_news_that_comes_while_it_waits(train_store, monkeypatch):
    """The panel, once drawn, waits for the job's news and redraws its status line in place: a
    target reached during the wait is on the page at the end of that run, not a refresh later."""
    from actscale.ui import common

    first_step, release = held_after_the_first_step(monkeypatch)
    at = train_page()
    number(at, "Steps").set_value(100_000)
    number(at, "Early stop").set_value(0)
    button(at, "Train").click().run()
    assert first_step.wait(60), "the job never took a step"
    job = common.jobs().get(at.session_state["job_id"])
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
    at.run()  # as the fragment's timer would
    try:
        assert not at.exception
        assert waits == [0.7]
        (bar,) = at.get("progress")  # one bar, redrawn in place
        assert "step 1 of 100000. Target (0.90) reached after step 1: validation flips" in bar.proto.text
    finally:
        job.cancel()
        release.set()
        assert job.wait(60) and job.state == "cancelled"


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
