"""Cancel anywhere (issue 4, part 2).

A user can press Cancel at any moment: before the first step, at any step, during the base
pass, at the last step, during the final evaluation, or while the job waits for the model.
Each time: no hook is left on the model, the lock is free, no bundle (and no temporary folder)
is written, the store still lists its other runs untouched, and a following training works and
gives exactly the parameters of an uncancelled fresh run.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest
import torch
from conftest import observer, signal_on

from actscale.engine import evaluation, training
from actscale.engine.interventions import hook_count
from actscale.engine.training import TrainConfig
from actscale.errors import TrainingCancelled
from actscale.runs import api
from actscale.runs.api import train_run
from actscale.runs.jobs import JobManager
from actscale.runs.store import RunStore

N_STEPS = 10
CANCEL_SEED = 4
# Random steps after which Cancel is pressed (seeded, so a failure reproduces); 0 = before the
# first step, N_STEPS = after the last step (the check after the loop).
ENGINE_POINTS = sorted(random.Random(CANCEL_SEED).sample(range(1, N_STEPS), 6)) + [0, N_STEPS]
JOB_POINTS = sorted(random.Random(CANCEL_SEED + 1).sample(range(1, N_STEPS), 6)) + [0, N_STEPS]
PHASES = ("base_pass", "evaluation", "waiting_for_model", "second_config_of_a_job")
ABORT_POINTS = (1, 4, N_STEPS)  # an exception (not a cancel) inside a hooked step
CANCEL_POINTS_TRIED = len(ENGINE_POINTS) + len(JOB_POINTS) + len(PHASES) + len(ABORT_POINTS)

CONFIGS = {
    "activscalar": TrainConfig(
        model="tiny-llama",
        task="ioi",
        method="activscalar",
        steps=N_STEPS,
        n_prompts=16,
        batch_size=4,
        seed=7,
        early_stop=0,
    ),
    "dynscalar": TrainConfig(
        model="tiny-llama",
        task="ioi",
        method="dynscalar",
        steps=N_STEPS,
        n_prompts=16,
        batch_size=4,
        seed=8,
        early_stop=0,
    ),
}
OTHER = TrainConfig(model="tiny-llama", task="ioi", method="steervec", steps=3, n_prompts=8, seed=9, early_stop=0)


def test_cancel_points_counted():
    assert len(set(ENGINE_POINTS)) == len(ENGINE_POINTS) >= 6
    assert len(set(JOB_POINTS)) == len(JOB_POINTS) >= 6
    assert all(0 <= k <= N_STEPS for k in ENGINE_POINTS + JOB_POINTS)
    assert CANCEL_POINTS_TRIED == 8 + 8 + 4 + 3


@pytest.fixture(scope="module")
def reference(tiny_llama, tmp_path_factory):
    """Uncancelled fresh runs, and a store holding one other finished run."""
    store = RunStore(tmp_path_factory.mktemp("reference"))
    fresh = {name: train_run(c, tiny_llama, store=store) for name, c in CONFIGS.items()}
    other_store = RunStore(tmp_path_factory.mktemp("other"))
    other = train_run(OTHER, tiny_llama, store=other_store)
    return fresh, other


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def populated(reference, tmp_path):
    """A store that already holds another session's finished run."""
    import shutil

    _, other = reference
    store = RunStore(tmp_path / "runs")
    store.root.mkdir()
    shutil.copytree(other.path, store.root / other.run_id)
    return store, other, _snapshot(store.root)


def _lock_is_free(model) -> bool:
    """The model's RLock can be taken by another thread (as another session would)."""
    got: list[bool] = []

    def take() -> None:
        ok = model.lock.acquire(timeout=5)
        got.append(ok)
        if ok:
            model.lock.release()

    t = threading.Thread(target=take)
    t.start()
    t.join(10)
    return got == [True]


def _assert_nothing_lost(model, store: RunStore, other, before: dict) -> None:
    assert hook_count(model.bridge) == 0
    assert _lock_is_free(model)
    assert sorted(p.name for p in store.root.iterdir()) == [other.run_id]  # no bundle, no .tmp-*
    rows = store.list()
    assert [(r.run_id, r.ok) for r in rows] == [(other.run_id, True)]
    assert _snapshot(store.root) == before  # the other run is untouched, byte for byte


def _assert_following_run_works(model, store: RunStore, config: TrainConfig, fresh) -> None:
    bundle = train_run(config, model, store=store)
    assert bundle.run_id == fresh.run_id
    assert bundle.params.keys() == fresh.params.keys()
    assert all(torch.equal(bundle.params[k], fresh.params[k]) for k in fresh.params)
    assert hook_count(model.bridge) == 0


@pytest.mark.parametrize("point,method", [(k, list(CONFIGS)[i % 2]) for i, k in enumerate(ENGINE_POINTS)])
def test_cancel_train_run_at_step(tiny_llama, reference, populated, point, method):
    fresh, _ = reference
    store, other, before = populated
    config = CONFIGS[method]
    cancel = threading.Event()
    steps_seen: list[int] = []

    def on_step(info) -> None:
        steps_seen.append(info.step)
        if info.step == point:
            cancel.set()

    if point == 0:
        cancel.set()
    with pytest.raises(TrainingCancelled):
        train_run(config, tiny_llama, store=store, observer=observer(on_step, cancel=cancel))
    assert steps_seen == list(range(1, point + 1))  # the cancel point was really reached, not passed
    _assert_nothing_lost(tiny_llama, store, other, before)
    _assert_following_run_works(tiny_llama, store, config, fresh[method])


@pytest.mark.parametrize("phase", ["base_pass", "evaluation"])
def test_cancel_during_base_pass_or_evaluation(tiny_llama, reference, populated, monkeypatch, phase):
    fresh, _ = reference
    store, other, before = populated
    config = CONFIGS["activscalar"]
    cancel = threading.Event()
    evaluation._BASE_CACHE.clear()  # so the base pass really runs
    real = getattr(training, "base_pass" if phase == "base_pass" else "evaluate")
    calls: list[str] = []

    def pressed_during(*args, **kwargs):
        calls.append(phase)
        cancel.set()  # pressed while the phase runs; the phase itself finishes
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "base_pass" if phase == "base_pass" else "evaluate", pressed_during)
    steps_seen: list[int] = []
    with pytest.raises(TrainingCancelled):
        train_run(
            config, tiny_llama, store=store, observer=observer(lambda i: steps_seen.append(i.step), cancel=cancel)
        )
    assert calls == [phase]
    assert len(steps_seen) == (0 if phase == "base_pass" else N_STEPS)
    monkeypatch.undo()
    _assert_nothing_lost(tiny_llama, store, other, before)
    _assert_following_run_works(tiny_llama, store, config, fresh["activscalar"])


@pytest.mark.parametrize("point", ABORT_POINTS)
def test_error_inside_a_hooked_step_leaves_the_model_clean(tiny_llama, reference, populated, monkeypatch, point):
    """Not a cancel but the same promise: an exception in the middle of a step (a Streamlit
    rerun, a bug, out of memory) propagates, with no hook left, the lock free and nothing stored."""
    fresh, _ = reference
    store, other, before = populated
    real = training.objective
    calls = {"n": 0}

    class Boom(RuntimeError):
        pass

    def objective(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == point:
            assert hook_count(tiny_llama.bridge) == 0  # steer's block is closed, the lock is held
            raise Boom(f"failed inside step {point}")
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "objective", objective)
    with pytest.raises(Boom):
        train_run(CONFIGS["activscalar"], tiny_llama, store=store)
    monkeypatch.undo()
    _assert_nothing_lost(tiny_llama, store, other, before)
    _assert_following_run_works(tiny_llama, store, CONFIGS["activscalar"], fresh["activscalar"])


def _cancel_job_at(monkeypatch, job_holder: dict, point: int, config_index: int = 0) -> None:
    """Make the next jobs press their own Cancel right after step ``point`` of config ``config_index``."""
    real = api.train_run

    def train_run_with_cancel(config, model, *, observer, **kwargs):
        heard = observer.step

        def step(info) -> None:
            heard(info)
            if info.step == point and job_holder["job"].current == config_index:
                job_holder["job"].cancel()

        observer.step = step
        return real(config, model, observer=observer, **kwargs)

    monkeypatch.setattr(api, "train_run", train_run_with_cancel)


def _wait(job, timeout: float = 120.0) -> None:
    assert job.wait(timeout), f"job still {job.state}"


@pytest.mark.parametrize("point", JOB_POINTS)
def test_cancel_job_at_step(tiny_llama, reference, populated, monkeypatch, point):
    fresh, _ = reference
    store, other, before = populated
    method = list(CONFIGS)[JOB_POINTS.index(point) % 2]
    config = CONFIGS[method]
    manager = JobManager()
    holder: dict = {}
    _cancel_job_at(monkeypatch, holder, point)
    if point == 0:
        tiny_llama.lock.acquire()  # keep the job from starting until Cancel is pressed
        try:
            job = holder["job"] = manager.submit([config], tiny_llama, store)
            job.cancel()
        finally:
            tiny_llama.lock.release()
    else:
        # The job must be known to the patched train_run before its first step runs.
        tiny_llama.lock.acquire()
        try:
            job = holder["job"] = manager.submit([config], tiny_llama, store)
        finally:
            tiny_llama.lock.release()
    _wait(job)
    assert job.state == "cancelled", job.error
    assert [s["step"] for s in job.steps] == list(range(1, point + 1))
    assert job.run_ids == []
    monkeypatch.undo()
    _assert_nothing_lost(tiny_llama, store, other, before)
    # A following job on the same manager works and matches an uncancelled run.
    again = manager.submit([config], tiny_llama, store)
    _wait(again)
    assert again.state == "done", again.error
    got = store.load(again.run_ids[0]).params
    assert all(torch.equal(got[k], fresh[method].params[k]) for k in fresh[method].params)
    assert hook_count(tiny_llama.bridge) == 0


def test_cancel_job_while_waiting_for_the_model(tiny_llama, reference, populated, monkeypatch):
    fresh, _ = reference
    store, other, before = populated
    manager = JobManager()
    waiting = signal_on(monkeypatch, "mark_waiting")
    tiny_llama.lock.acquire()
    try:
        job = manager.submit([CONFIGS["activscalar"]], tiny_llama, store)
        assert waiting.wait(30)
        assert job.state == "waiting"
        job.cancel()
        _wait(job, timeout=10)  # Cancel works while the other session still holds the model
    finally:
        tiny_llama.lock.release()
    assert job.state == "cancelled" and not job.steps
    _assert_nothing_lost(tiny_llama, store, other, before)
    _assert_following_run_works(tiny_llama, store, CONFIGS["activscalar"], fresh["activscalar"])


def test_cancel_second_config_of_a_job_keeps_the_first_run(tiny_llama, reference, populated, monkeypatch):
    """A sweep cancelled in its second run: the finished first run stays, the second is not stored."""
    fresh, _ = reference
    store, other, before = populated
    manager = JobManager()
    holder: dict = {}
    _cancel_job_at(monkeypatch, holder, point=3, config_index=1)
    tiny_llama.lock.acquire()
    try:
        job = holder["job"] = manager.submit([CONFIGS["activscalar"], CONFIGS["dynscalar"]], tiny_llama, store)
    finally:
        tiny_llama.lock.release()
    _wait(job)
    assert job.state == "cancelled"
    assert job.run_ids == [fresh["activscalar"].run_id]
    assert sorted(p.name for p in store.root.iterdir()) == sorted([other.run_id, fresh["activscalar"].run_id])
    rows = {r.run_id: r.ok for r in store.list()}
    assert rows == {other.run_id: True, fresh["activscalar"].run_id: True}
    assert {k: v for k, v in _snapshot(store.root).items() if k.startswith(other.run_id)} == before
    assert hook_count(tiny_llama.bridge) == 0 and _lock_is_free(tiny_llama)
    monkeypatch.undo()
    _assert_following_run_works(tiny_llama, store, CONFIGS["dynscalar"], fresh["dynscalar"])
