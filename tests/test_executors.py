"""Sweeps through `executors.run_configs`: in this process, and on a local 2-CPU Ray cluster,
which must give the same run ids and byte-identical parameters (issue 10, part 1), and survive a
lost worker (issue 21). The `sweep` command: test_sweep_cli; choosing the executor:
test_executor_choice."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from conftest import sweep_observer

from actscale.engine.training import TrainConfig
from actscale.errors import ActscaleError, TrainingCancelled
from actscale.runs.bundle import save_checks
from actscale.runs.executors import RAY_ADDRESS_ENV, run_configs
from actscale.runs.progress import RunProgress
from actscale.runs.ray_executor import SCRATCH_PREFIX
from actscale.runs.store import RunStore
from actscale.runs.sweeps import sweep_configs

ROOT = Path(__file__).resolve().parent.parent
BASE = TrainConfig(model="tiny-llama", task="ioi", method="activscalar", steps=3, n_prompts=16, n_test=8)
# The acceptance grid of issue 10 (λ_M 0.01, 0.05 × seeds 0, 1), shortened to 3 steps.
GRID = sweep_configs(BASE, [0.01, 0.05], [1.0], [2.0], seeds=[0, 1])


def param_bytes(store: RunStore, run_id: str) -> bytes:
    return (store.path(run_id) / "params.safetensors").read_bytes()


# ---- options the executor refuses (choosing it: test_executor_choice) -------------------


def test_local_options_the_local_executor_refuses(tiny_llama, store):
    with pytest.raises(ActscaleError, match="workers is an option of the Ray executor"):
        run_configs(GRID[:1], store=store, workers=2)
    with pytest.raises(ActscaleError, match="^the Ray executor loads its own models: pass no model$"):
        run_configs(GRID[:1], executor="ray", store=store, model=tiny_llama)


# ---- in this process ----------------------------------------------------------------------


def test_local_runs_in_order_with_progress_and_reuse(tiny_llama, store):
    events: list[RunProgress] = []
    bundles = run_configs(GRID[:2], store=store, observer=sweep_observer(events.append), model=tiny_llama)
    assert [(b.config["lambda_m"], b.config["seed"]) for b in bundles] == [(0.01, 0), (0.01, 1)]
    assert [(e.index, e.state, e.step) for e in events] == [
        (0, "running", 1),
        (0, "running", 2),
        (0, "running", 3),
        (0, "done", 3),
        (1, "running", 1),
        (1, "running", 2),
        (1, "running", 3),
        (1, "done", 3),
    ]
    assert [e.run_id for e in events if e.state == "done"] == [b.run_id for b in bundles]
    assert all(e.info is not None and e.info.step == e.step for e in events if e.state == "running")
    again: list[RunProgress] = []
    reused = run_configs(GRID[:2], store=store, observer=sweep_observer(again.append), model=tiny_llama)
    assert [b.run_id for b in reused] == [b.run_id for b in bundles]
    assert [(e.index, e.state, e.run_id) for e in again] == [(i, "reused", b.run_id) for i, b in enumerate(bundles)]
    assert all(e.message == "" for e in events + again)  # nothing replaced
    # Without reuse (`sweep --no-reuse`) the run is trained again and replaces the stored folder,
    # and its event says so: with the checks it carries over (the same bytes), or that it had none.
    (bundles[0].path / "stray.txt").write_text("a file of the folder it replaces")
    save_checks(bundles[0].path, {"map": {}}, {})
    fresh: list[RunProgress] = []
    retrained = run_configs(GRID[:2], store=store, observer=sweep_observer(fresh.append), model=tiny_llama, reuse=False)
    assert [(e.index, e.state, e.step) for e in fresh if e.index == 0] == [(0, "running", i) for i in (1, 2, 3)] + [
        (0, "done", 3)
    ]
    assert retrained[0].run_id == bundles[0].run_id and not (bundles[0].path / "stray.txt").exists()
    assert [e.message for e in fresh if e.state == "done"] == [
        f"replaced the stored run {bundles[0].run_id} with this training; its map checks are kept: the parameters "
        "are byte-identical",
        f"replaced the stored run {bundles[1].run_id} with this training",
    ]
    assert retrained[0].checks() is not None


def test_local_loads_each_model_once_from_the_configs(store, monkeypatch):
    from actscale.engine.models import load_model
    from actscale.runs import executors

    loads = []

    def counting(name, device):
        loads.append((name, device))
        return load_model(name, device)

    monkeypatch.setattr(executors, "load_model", counting)
    bundles = run_configs(GRID[:2], store=store)
    assert loads == [("tiny-llama", "auto")] and len(bundles) == 2


def test_local_cancel_keeps_finished_runs(tiny_llama, store):
    cancel = threading.Event()

    def stop_in_the_second_run(event: RunProgress) -> None:
        if event.index == 1 and event.step == 1:
            cancel.set()

    with pytest.raises(TrainingCancelled, match="cancelled at step 2 of 3"):
        run_configs(GRID[:3], store=store, observer=sweep_observer(stop_in_the_second_run, cancel), model=tiny_llama)
    assert len(store.list()) == 1


def test_local_never_imports_ray(tmp_path):
    code = (
        "import sys; from actscale.runs.executors import run_configs; from actscale.engine.training import TrainConfig;"
        "c = TrainConfig(model='tiny-llama', steps=1, n_prompts=8, n_test=4);"
        f"run_configs([c], store={str(tmp_path)!r}); print('ray' in sys.modules)"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop(RAY_ADDRESS_ENV, None)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_progress_sinks_module_imports_no_library():
    """Ray's process for a sweep's progress sink imports the sink's module: imported alone in a
    new interpreter (this one has them all), it loads none of the heavy libraries."""
    heavy = ("torch", "numpy", "ray", "transformers", "transformer_lens", "pandas")
    code = f"import sys, actscale.runs.ray_sink; print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- on a local Ray cluster ---------------------------------------------------------------


def test_two_sweeps_at_once_share_the_cluster_one_of_them_started(tmp_path):
    """Two dashboard sessions' sweeps with address auto: one local cluster, both finish with
    their own runs, and the cluster is ended after the last (placed before the module's own
    cluster is started)."""
    ray = pytest.importorskip("ray")
    assert not ray.is_initialized()
    results: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def sweep(name: str, configs) -> None:
        try:
            bundles = run_configs(configs, executor="ray", ray_address="auto", store=tmp_path / name)
            results[name] = [b.run_id for b in bundles]
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=sweep, args=(n, c), daemon=True) for n, c in (("a", GRID[:2]), ("b", GRID[2:]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert sorted(results) == ["a", "b"] and len(set(results["a"] + results["b"])) == 4
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def ray_cluster():
    """A local 2-CPU Ray cluster for this module (about 4 s to start)."""
    ray = pytest.importorskip("ray")
    from actscale.runs.ray_executor import connect

    assert connect("auto", num_cpus=2)
    yield ray
    ray.shutdown()


def test_ray_gives_the_local_run_ids_and_byte_identical_params(ray_cluster, tiny_llama, tmp_path):
    local, remote = RunStore(tmp_path / "local"), RunStore(tmp_path / "ray")
    events: list[RunProgress] = []
    on_ray = run_configs(GRID, executor="ray", store=remote, observer=sweep_observer(events.append))
    in_process = run_configs(GRID, store=local, model=tiny_llama)
    assert [b.run_id for b in on_ray] == [b.run_id for b in in_process]
    assert len(set(b.run_id for b in on_ray)) == 4
    assert [(b.config["lambda_m"], b.config["seed"]) for b in on_ray] == [(0.01, 0), (0.01, 1), (0.05, 0), (0.05, 1)]
    for b in in_process:
        assert param_bytes(remote, b.run_id) == param_bytes(local, b.run_id)
        assert (remote.path(b.run_id) / "dataset.jsonl").read_bytes() == (
            local.path(b.run_id) / "dataset.jsonl"
        ).read_bytes()
        same_config = {k: v for k, v in b.config.items() if k != "created"}
        assert {k: v for k, v in remote.load(b.run_id).config.items() if k != "created"} == same_config
        assert remote.load(b.run_id).metrics == b.metrics
    # Progress per run: every step of every run, then its run id, whatever the interleaving.
    for index, bundle in enumerate(on_ray):
        mine = [(e.state, e.step) for e in events if e.index == index]
        assert mine == [("running", 1), ("running", 2), ("running", 3), ("done", 3)]
        assert [e.run_id for e in events if e.index == index and e.state == "done"] == [bundle.run_id]
    # Nothing but bundles in the store (no scratch folder, no temporary file left).
    assert sorted(p.name for p in remote.root.iterdir()) == sorted(b.run_id for b in on_ray)
    # A second sweep opens the stored runs.
    again: list[RunProgress] = []
    reused = run_configs(GRID, executor="ray", store=remote, observer=sweep_observer(again.append))
    assert [b.run_id for b in reused] == [b.run_id for b in on_ray]
    assert sorted((e.index, e.state) for e in again) == [(i, "reused") for i in range(4)]
    # Without reuse, a run trained again on the cluster replaces the stored folder, and says so.
    (on_ray[0].path / "stray.txt").write_text("a file of the folder it replaces")
    fresh: list[RunProgress] = []
    retrained = run_configs(GRID[:1], executor="ray", store=remote, observer=sweep_observer(fresh.append), reuse=False)
    assert retrained[0].run_id == on_ray[0].run_id and not (on_ray[0].path / "stray.txt").exists()
    assert [e.message for e in fresh if e.state == "done"] == [
        f"replaced the stored run {on_ray[0].run_id} with this training"
    ]
    assert (remote.path(on_ray[0].run_id) / "params.safetensors").read_bytes() == (
        local.path(on_ray[0].run_id) / "params.safetensors"
    ).read_bytes()


def test_ray_cancel_stops_the_sweep_and_keeps_finished_runs(ray_cluster, store):
    cancel = threading.Event()
    long_grid = [c.replace(steps=400) for c in GRID]

    def cancel_once_running(event: RunProgress) -> None:
        if event.state == "running" and event.step >= 2:
            cancel.set()

    with pytest.raises(TrainingCancelled, match=r"cancelled; 0 of 4 runs had finished and are kept"):
        run_configs(
            long_grid, executor="ray", store=store, workers=2, observer=sweep_observer(cancel_once_running, cancel)
        )
    assert store.list() == []


def test_ray_an_actor_with_nothing_left_to_run_frees_its_cpu(ray_cluster, store, tiny_llama, tmp_path):
    """Another sweep's actor holds one of the cluster's 2 CPUs. This sweep makes 2 actors and hands
    each a run before either has started: one starts, the other waits for a CPU. Only when the
    started actor is ended after its run (nothing is left in the queue) does the waiting one start;
    kept to the end of the sweep, it would hold the CPU and the sweep would never finish (two
    dashboard sessions' sweeps on one cluster hung that way)."""
    ray = ray_cluster
    from actscale.runs.ray_sink import ProgressSink

    holder = ray.remote(num_cpus=1)(ProgressSink).remote()  # any actor that takes a CPU
    assert ray.get(holder.drain.remote()) == []
    outcome: list = []

    def sweep() -> None:
        try:
            outcome.append(run_configs(GRID[:2], executor="ray", store=store))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            outcome.append(exc)

    thread = threading.Thread(target=sweep, daemon=True)
    thread.start()
    thread.join(120)
    finished = not thread.is_alive()
    ray.kill(holder)  # frees the CPU: a hung sweep then finishes, and the next tests have both CPUs
    thread.join(120)
    assert finished, "the sweep waited on an actor that could not start while its own idle actor held a CPU"
    (bundles,) = outcome
    assert not isinstance(bundles, BaseException), bundles
    assert [b.run_id for b in bundles] == [
        b.run_id for b in run_configs(GRID[:2], store=RunStore(tmp_path / "local"), model=tiny_llama)
    ]
    assert sorted(r.run_id for r in store.list()) == sorted(b.run_id for b in bundles)


def test_ray_reads_a_custom_file_here_once(ray_cluster, store, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,correct,wrong\n")
    with pytest.raises(ActscaleError, match=r"^bad.csv: no rows$"):  # raised here, before any worker
        run_configs([BASE.replace(task="custom", dataset=str(bad))], executor="ray", store=store)


def test_ray_a_worker_error_is_its_one_line(ray_cluster, store):
    with pytest.raises(ActscaleError, match=r"^no model name given: use 'bundled', a local folder"):
        run_configs([BASE.replace(model=" ")], executor="ray", store=store)
    assert store.list() == []


HELD_OUT_NONE = (
    "held out for test: coordinated, but no prompt held out has the 17 tokens of the training prompts, "
    "the one length absolute positions take (answer-aligned positions take others)"
)


def test_ray_a_users_run_whose_held_out_prompts_leave_no_test_split_is_refused(ray_cluster, store):
    # On the tiny model no coordinated template has the training prompts' 17 tokens.
    config = BASE.replace(test_groups=("coordinated",))
    with pytest.raises(ActscaleError, match=f"^{re.escape(HELD_OUT_NONE)}$"):
        run_configs([config], executor="ray", store=store, checked=True)
    assert store.list() == []


def test_local_held_out_check_is_the_users_runs_only(tiny_llama, store):
    config = BASE.replace(test_groups=("coordinated",))
    with pytest.raises(ActscaleError, match=f"^{re.escape(HELD_OUT_NONE)}$"):
        run_configs([config], store=store, model=tiny_llama, checked=True)
    assert store.list() == []
    # The checks' own runs (a generalisation cell of none) train without a test split.
    (bundle,) = run_configs([config], store=store, model=tiny_llama)
    assert set(bundle.metrics) == {"train", "val"}


def killing(times: int, index: int = 0):
    """Events of a sweep, and an observer that kills (SIGKILL) the Ray worker training run
    ``index`` at its second step, ``times`` times (each time on the worker that took it again)."""
    import signal

    events: list[RunProgress] = []
    killed: list[int] = []

    def hear(event: RunProgress) -> None:
        events.append(event)
        running = event.state == "running" and event.index == index and event.step >= 2
        if running and len(killed) < times and event.worker_pid not in killed:
            killed.append(event.worker_pid)
            os.kill(event.worker_pid, signal.SIGKILL)

    return events, killed, sweep_observer(hear)


# Run 0 is killed at its second step as the driver hears of it, which is up to a poll (0.2 s) and a
# relay later: at about 6 ms a step on the tiny model, 600 steps leave it seconds to be still running
# when the kill lands (30 steps finished first on a loaded machine, and the sweep raised nothing).
LONG = [BASE.replace(steps=600, seed=0), BASE.replace(steps=3, seed=1)]


@pytest.mark.slow
def test_ray_a_lost_worker_is_replaced_and_every_run_completes(ray_cluster, tiny_llama, tmp_path):
    """A worker killed mid-run, twice (the same run's new worker too), costs a retry each, not the
    sweep: every run completes with the run id and byte-identical parameters of an in-process run."""
    times = 2
    events, killed, observer = killing(times)
    remote, local = RunStore(tmp_path / "ray"), RunStore(tmp_path / "local")
    on_ray = run_configs(LONG, executor="ray", store=remote, workers=2, observer=observer)
    in_process = run_configs(LONG, store=local, model=tiny_llama)
    assert len(killed) == times and len(set(killed)) == times
    assert [b.run_id for b in on_ray] == [b.run_id for b in in_process]
    for b in in_process:
        assert param_bytes(remote, b.run_id) == param_bytes(local, b.run_id)
    retries = [e.message for e in events if e.state == "retrying"]
    assert len(retries) == times and all(e.index == 0 for e in events if e.state == "retrying")
    for i, message in enumerate(retries, 1):
        assert re.fullmatch(rf"its Ray worker was lost at step \d+; retry {i} of 2", message), message
    assert sorted(p.name for p in remote.root.iterdir()) == sorted(b.run_id for b in on_ray)
    # each killed worker's scratch store was removed by a later run (the retry), none left behind
    left = [p.name for p in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*")]
    assert [name for name in left if any(name.startswith(f"{SCRATCH_PREFIX}{pid}-") for pid in killed)] == []


@pytest.mark.slow
def test_ray_a_run_whose_worker_dies_three_times_is_lost_and_named_the_others_kept(ray_cluster, tmp_path):
    events, killed, observer = killing(3)
    store = RunStore(tmp_path / "ray")
    with pytest.raises(ActscaleError) as error:
        run_configs(LONG, executor="ray", store=store, workers=2, observer=observer)
    assert str(error.value) == (
        "run 1 lost: its Ray worker died 3 times; the 1 finished runs of 2 are kept in the store"
    )
    assert len(killed) == 3 and [e.message for e in events if e.state == "retrying"][-1].endswith("no retry left")
    assert [r.run_id for r in store.list()] == [e.run_id for e in events if e.state == "done"]
