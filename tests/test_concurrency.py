"""Many sessions on one shared model (issue 4, part 1).

Streamlit runs every session's script in its own thread, and all of them share one resident
model. These tests hold several trainings, jobs and playground-like forwards on ONE tiny model
at the same time and check that nobody sees anybody else's hooks: the parameters come out
bit-identical to the same runs done one after another, the unhooked model's logits never
change while others train, and no hook is left on the model afterwards.
"""

from __future__ import annotations

import os
import shutil
import threading
import time

import pytest
import torch
from conftest import signal_on

from actscale.engine import evaluation
from actscale.engine.evaluation import steered_logits
from actscale.engine.interventions import hook_count, steer
from actscale.engine.models import last_position_logits
from actscale.engine.training import TrainConfig
from actscale.runs.api import build_task, intervention_from_bundle, train_run
from actscale.runs.jobs import JobManager
from actscale.runs.store import RunStore

# One config per concurrent session: all three methods, different seeds, so that a hook of one
# session leaking into another's forward pass would change its parameters.
SESSIONS = [
    ("activscalar", 0),
    ("steervec", 1),
    ("dynscalar", 2),
    ("activscalar", 3),
    ("steervec", 4),
    ("dynscalar", 5),
]
CONFIGS = [
    TrainConfig(model="tiny-llama", task="ioi", method=m, steps=6, n_prompts=16, batch_size=4, seed=s, early_stop=0)
    for m, s in SESSIONS
]
N_CONCURRENT = len(CONFIGS)  # sessions held at once in each concurrent test (the issue asks for >= 4)
JOIN_TIMEOUT = 120.0


def _params_equal(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _run_dirs(store: RunStore) -> list[str]:
    return sorted(p.name for p in store.root.iterdir()) if store.root.is_dir() else []


@pytest.fixture(scope="module")
def sequential(tiny_llama, tmp_path_factory):
    """The reference: the same runs done one after another, alone on the model."""
    store = RunStore(tmp_path_factory.mktemp("sequential"))
    return [train_run(c, tiny_llama, store=store) for c in CONFIGS]


def _in_threads(target, n: int) -> list:
    """Run target(i) in n threads that start together; re-raise the first error."""
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = target(i)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,), name=f"session-{i}") for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a session hung"
    if errors:
        raise errors[0]
    return results


def test_concurrent_trainings_equal_sequential(tiny_llama, sequential, tmp_path):
    assert N_CONCURRENT >= 4
    store = RunStore(tmp_path / "runs")
    # Drop the cached base passes too, so the sessions also compute those concurrently.
    evaluation._BASE_CACHE.clear()
    bundles = _in_threads(lambda i: train_run(CONFIGS[i], tiny_llama, store=store), N_CONCURRENT)
    assert hook_count(tiny_llama.bridge) == 0
    for got, want in zip(bundles, sequential):
        assert got.run_id == want.run_id
        assert _params_equal(got.params, want.params), f"{got.method} seed {got.config['seed']} differs"
        assert got.metrics == want.metrics
    rows = store.list()
    assert len(rows) == N_CONCURRENT and all(r.ok for r in rows)
    assert not [n for n in _run_dirs(store) if n.startswith(".")]  # no temporary folders left


def test_concurrent_trainings_of_one_config_share_one_run(tiny_llama, sequential, tmp_path):
    """Several sessions pressing Train on the same settings at the same moment: one run."""
    store = RunStore(tmp_path / "runs")
    bundles = _in_threads(lambda i: train_run(CONFIGS[0], tiny_llama, store=store), N_CONCURRENT)
    assert {b.run_id for b in bundles} == {sequential[0].run_id}
    assert all(_params_equal(b.params, sequential[0].params) for b in bundles)
    assert _run_dirs(store) == [sequential[0].run_id]
    assert hook_count(tiny_llama.bridge) == 0


def test_save_race_on_the_final_rename(tiny_llama, sequential, tmp_path, monkeypatch):
    """Two sessions finish the same run together: the second rename finds the folder there.

    The race window is microseconds, so it is forced: another session's identical bundle
    appears just before this session's rename."""
    store = RunStore(tmp_path / "runs")
    real_replace = os.replace
    winner = sequential[0].path

    def replace(src, dst):
        if str(src).startswith(str(store.root / ".tmp-")) and not os.path.exists(dst):
            shutil.copytree(winner, dst)  # the other session won
        return real_replace(src, dst)

    monkeypatch.setattr("actscale.runs.store.os.replace", replace)
    bundle = train_run(CONFIGS[0], tiny_llama, store=store, reuse=False)
    assert bundle.run_id == sequential[0].run_id
    assert _params_equal(bundle.params, sequential[0].params)
    assert _run_dirs(store) == [sequential[0].run_id]


def test_concurrent_jobs_equal_sequential(tiny_llama, sequential, tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs")
    manager = JobManager()
    stepped = signal_on(monkeypatch, "record_step")  # a step sets the state "running"
    jobs = [manager.submit([c], tiny_llama, store) for c in CONFIGS]
    for job in jobs:
        job.wait(JOIN_TIMEOUT)
    assert [j.state for j in jobs] == ["done"] * len(jobs), [j.error for j in jobs]
    assert stepped.is_set()
    for job, want in zip(jobs, sequential):
        assert job.run_ids == [want.run_id]
        assert _params_equal(store.load(job.run_ids[0]).params, want.params)
    assert hook_count(tiny_llama.bridge) == 0


def test_job_reports_waiting_while_the_model_is_busy(tiny_llama, sequential, tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs")
    manager = JobManager()
    waiting = signal_on(monkeypatch, "mark_waiting")
    tiny_llama.lock.acquire()  # another session is using the model
    try:
        job = manager.submit([CONFIGS[1]], tiny_llama, store)
        assert waiting.wait(30)
        assert job.state == "waiting"
        time.sleep(0.2)  # the subject: a while later, still no step
        assert job.state == "waiting" and not job.steps  # it really waits: no step ran
    finally:
        tiny_llama.lock.release()
    job.thread.join(JOIN_TIMEOUT)
    assert job.state == "done", job.error
    assert _params_equal(store.load(job.run_ids[0]).params, sequential[1].params)
    assert hook_count(tiny_llama.bridge) == 0


def test_forwards_between_training_steps_never_see_hooks(tiny_llama, sequential, tmp_path):
    """A playground session runs the plain and a steered model while others train.

    Under the model's lock the model must be bare (no hook of a training session), the plain
    logits must equal the reference exactly, and a steered forward must equal its own reference.
    """
    model = tiny_llama
    task = build_task(model, CONFIGS[0])
    tokens, mask = task.tokens[:4], task.attention_mask[:4]
    with model.lock:
        reference = last_position_logits(model, tokens, mask)
    iv = intervention_from_bundle(sequential[0], model)
    steered_reference = steered_logits(model, iv, tokens, mask, beta=0.7)

    store = RunStore(tmp_path / "runs")
    manager = JobManager()
    long_configs = [c.replace(steps=20, seed=10 + i) for i, c in enumerate(CONFIGS[:3])]
    jobs = [manager.submit([c], model, store) for c in long_configs]
    checks = 0
    deadline = time.time() + JOIN_TIMEOUT
    while not all(j.done for j in jobs) and time.time() < deadline:
        with model.lock:
            assert hook_count(model.bridge) == 0, "a training hook is visible to another session"
            assert torch.equal(last_position_logits(model, tokens, mask), reference)
            with steer(model.bridge, iv, 0.7, batch=tokens.shape[0]):
                pass  # attach and remove only, the logits are checked below
            assert hook_count(model.bridge) == 0
        assert torch.equal(steered_logits(model, iv, tokens, mask, beta=0.7), steered_reference)
        checks += 1
        time.sleep(0.01)  # a real user is slower; without a pause this loop would starve the jobs
    assert [j.state for j in jobs] == ["done"] * 3, [j.error for j in jobs]
    assert checks >= 5, f"only {checks} interleaved checks ran while training"
    assert hook_count(model.bridge) == 0
    # The trainings were not disturbed by the playground either.
    alone = RunStore(tmp_path / "alone")
    for job, config in zip(jobs, long_configs):
        want = train_run(config, model, store=alone)
        assert _params_equal(store.load(job.run_ids[0]).params, want.params)


def test_job_reports_waiting_mid_run_while_another_session_holds_the_model(tiny_llama, store, monkeypatch):
    """A running job whose next step finds the model busy says 'waiting', then runs on."""
    seen = []
    manager = JobManager()
    stepped, waiting = signal_on(monkeypatch, "record_step"), signal_on(monkeypatch, "mark_waiting")
    job = manager.submit([TrainConfig(model="tiny-llama", steps=30, seed=11)], tiny_llama, store)
    assert stepped.wait(60), "the job never started"
    with tiny_llama.lock:  # another session's request holds the model
        assert waiting.wait(60)
        seen.append(job.state)
        steps_while_held = len(job.steps)
        time.sleep(0.3)  # the subject: a while later, still no step
        assert len(job.steps) == steps_while_held  # no step ran while the model was held
    job.thread.join(120)
    assert seen == ["waiting"]
    assert job.state == "done" and len(job.run_ids) == 1
