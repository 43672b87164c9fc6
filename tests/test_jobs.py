"""The job manager's launcher seam: the inline launcher runs the work inside `submit`."""

from __future__ import annotations

import threading
import time

import pytest

from actscale.engine.training import TrainConfig
from actscale.errors import ActscaleError
from actscale.runs.jobs import STATES, JobManager

CONFIG = TrainConfig(model="tiny-llama", steps=2, n_prompts=8, seed=21, early_stop=0)


def test_states():
    assert STATES == ("queued", "waiting", "running", "done", "cancelled", "failed")


def test_inline_launcher_returns_the_finished_job(tiny_llama, store):
    manager = JobManager(launch="inline")
    job = manager.submit([CONFIG], tiny_llama, store)
    assert job.state == "done", job.error
    assert job.thread is None and job.wait() is True
    assert [s["step"] for s in job.steps] == [1, 2] and job.reused == [False]
    assert job.run_ids == [r.run_id for r in store.list()]
    assert manager.get(job.id) is job and job.progress() == 1.0
    # The validation prompts' flip rates arrived before the other splits' evaluation.
    val = store.load(job.run_ids[0]).metrics["val"]
    assert job.first_results == {0: {"split": "val", **{k: v for k, v in val.items() if k in job.first_results[0]}}}
    assert job.first_results[0]["n_prompts"] == val["n_prompts"] == 2
    again = manager.submit([CONFIG], tiny_llama, store)  # the stored run, no step
    assert again.state == "done" and again.run_ids == job.run_ids and again.reused == [True] and not again.steps
    assert again.first_results == {}


def test_a_page_waiting_for_news_wakes_when_it_comes(tiny_llama, store):
    """A page waits for the job's news (`Job.wait_news`) rather than polling for it: a target
    reached, a first result, a run stored and the job's end each wake it."""
    from actscale.runs.jobs import Job

    job = Job(id="j", configs=[CONFIG])
    assert job.news == 0 and job.wait_news(0, 0.01) is False
    threading.Timer(0.05, job.record_target, args=(0, 2, "val", {})).start()
    assert job.wait_news(0, 60) is True and job.news == 1
    assert job.wait_news(0, 0) is True and job.wait_news(1, 0) is False  # news already there, and none newer
    # A whole job: its first result, its run stored, its end; no step is news.
    done = JobManager(launch="inline").submit([CONFIG], tiny_llama, store)
    assert done.state == "done" and len(done.steps) == 2 and done.news == 3


def test_thread_launcher_is_the_default(tiny_llama, store):
    job = JobManager().submit([CONFIG], tiny_llama, store)
    assert isinstance(job.thread, threading.Thread) and job.thread.name == f"actscale-job-{job.id}"
    assert job.wait(120) and job.state == "done", job.error


def test_a_custom_launcher_gets_the_work_and_its_name(tiny_llama, store):
    calls = []

    def later(work, name):
        calls.append((work, name))

    job = JobManager(launch=later).submit([CONFIG], tiny_llama, store)
    assert job.state == "queued" and [n for _, n in calls] == [f"actscale-job-{job.id}"]
    calls[0][0]()
    assert job.state == "done", job.error


def test_failures_become_the_job_state(tiny_llama, store):
    manager = JobManager(launch="inline")

    def bad_input(config):
        raise ActscaleError("no such\n  dataset")

    def bug(config):
        raise KeyError("x" * 500)

    failed = manager.submit([CONFIG], tiny_llama, store, task_for=bad_input)
    assert (failed.state, failed.error) == ("failed", "no such dataset")
    crashed = manager.submit([CONFIG], tiny_llama, store, task_for=bug)
    assert crashed.state == "failed" and crashed.error == "KeyError: '" + "x" * 299
    assert crashed.finished is not None and store.list() == []


def test_unknown_launcher_name():
    with pytest.raises(ValueError, match="unknown job launcher 'ray'"):
        JobManager(launch="ray")


def test_the_time_left_is_to_the_last_step_and_not_claimed_after_it():
    """Each run's evaluation follows its steps and is not estimated: once every step is done the
    job claims no time left (it had said "about 0 s left" while a default run's evaluation took
    about as long as its steps)."""
    from actscale.engine.training import StepInfo
    from actscale.runs.jobs import Job

    job = Job(id="j", configs=[CONFIG, CONFIG], started=time.time() - 10)  # two runs of two steps, 10 s ago
    assert job.seconds_left() is None  # no step yet
    row = dict(loss=1.0, effectiveness=1.0, faithfulness=0.0, minimality=0.0, flip_acc_pos=1.0, flip_acc_neg=0.0)
    job.record_step(StepInfo(step=1, n_steps=2, elapsed=1.0, **row))
    left = job.seconds_left()
    assert job.progress() == 0.25 and left == pytest.approx(30, abs=0.5)  # a quarter in 10 s: 30 s to go
    job.record_step(StepInfo(step=2, n_steps=2, elapsed=2.0, **row))
    job.current = 1
    job.record_step(StepInfo(step=1, n_steps=2, elapsed=1.0, **row))
    job.record_step(StepInfo(step=2, n_steps=2, elapsed=2.0, **row))
    assert job.progress() == 1.0 and job.state == "running" and job.seconds_left() is None
    from actscale.ui.progress import time_left

    assert time_left(job) == ""
