"""Shared fixtures: the tiny random models of the two architecture families (the engine's
test seam, no download), a fresh run store per test, and the stores and tiny runs that the
modules of one page or one concept share (the map checks', Explore's, Train's)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

# Tests never reach the hub, whatever the machine's network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# `make test` runs the suite in pytest-xdist workers (two on two cores): each worker's real-model
# tests get its share of the cores, and so do the processes they start (the command line's,
# `analyse`'s), so that two workers' OpenMP teams never outnumber the cores (docs/measured.md,
# "The suite in two workers").
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, (os.cpu_count() or 1) // WORKERS)
if WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(THREADS)


@pytest.fixture(scope="session")
def tiny_llama():
    from actscale.engine.models import load_model

    return load_model("tiny-llama", "cpu")


@pytest.fixture(scope="session")
def tiny_gpt2():
    from actscale.engine.models import load_model

    return load_model("tiny-gpt2", "cpu")


@pytest.fixture(params=["tiny-llama", "tiny-gpt2"])
def tiny_model(request, tiny_llama, tiny_gpt2):
    """Each test that takes this runs once per architecture family."""
    return tiny_llama if request.param == "tiny-llama" else tiny_gpt2


def open_page_link(page: str, **params: str):
    """The Streamlit page file ``page`` opened through AppTest on a link's query parameters."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(page, default_timeout=60)
    for key, value in params.items():
        at.query_params[key] = value
    return at.run()


def param(at, name: str) -> str | None:
    """A query parameter as an AppTest page left it (AppTest gives a list for a value the page
    wrote)."""
    if name not in at.query_params:
        return None
    value = at.query_params[name]
    return value[-1] if isinstance(value, list) else value


def make_method_runs(root, model, sites=("attn_out", "mlp_out", "head"), **config):
    """One tiny run per method in a store at ``root``: {method: RunBundle}. The page tests
    share this (each in a module-scoped fixture of its own)."""
    from actscale.engine.training import TrainConfig
    from actscale.runs.api import train_run
    from actscale.runs.store import RunStore

    config = {"steps": 3, "n_prompts": 16, "n_test": 8, **config}
    return {
        m: train_run(TrainConfig(model=model.name, method=m, sites=sites, **config), model, store=RunStore(root))
        for m in ("activscalar", "steervec", "dynscalar")
    }


@pytest.fixture
def train_store(tmp_path, monkeypatch, inline_jobs):
    """The Train page modules' store: empty, in the test's folder, with the tiny model named,
    the pages' jobs inline and uploads saved beside it; a RunStore."""
    from actscale.runs.store import RunStore
    from actscale.ui.train_form import dataset as train_form  # where uploads are saved

    monkeypatch.setenv("ACTSCALE_MODEL", "tiny-llama")
    monkeypatch.setenv("ACTSCALE_STORE", str(tmp_path / "runs"))
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    monkeypatch.setattr(train_form, "UPLOAD_DIR", tmp_path / "uploads")  # uploads stay in the test's folder
    return RunStore(tmp_path / "runs")


@pytest.fixture(scope="module")
def explore_runs(tmp_path_factory, tiny_llama):
    """The Explore page modules' tiny runs: (store root, {method: RunBundle}), one run per
    method at the default sites, made once per module."""
    root = tmp_path_factory.mktemp("explore") / "runs"
    return root, make_method_runs(root, tiny_llama)


@pytest.fixture
def explore_env(explore_runs, monkeypatch):
    """The page reads `explore_runs`' store, with the tiny model named (`pytestmark` of the
    Explore modules)."""
    monkeypatch.setenv("ACTSCALE_STORE", str(explore_runs[0]))
    monkeypatch.setenv("ACTSCALE_MODEL", "tiny-llama")


@pytest.fixture(scope="module")
def check_runs(tmp_path_factory, tiny_llama):
    """The map checks' modules' tiny runs: (store root, {method: RunBundle}), one run per
    method at the default sites, 4 steps each, made once per module."""
    root = tmp_path_factory.mktemp("checks") / "runs"
    return root, make_method_runs(root, tiny_llama, steps=4)


def mixed_rows(seed: int = 0) -> list[dict[str, str]]:
    """A user's file of IOI prompts of four token lengths (15, 16, 17 and 18 tokens with BOS on
    the tiny models; templates ioi-0, ioi-2, ioi-4, ioi-6, 6 + 5 + 4 + 3 = 18 usable rows), then
    a row with equal answers (row 19) and one with a two-token answer (row 20)."""
    from actscale.engine.tasks import generate_ioi

    rows = [
        {"prompt": e.prompt, "correct": e.correct, "wrong": e.wrong}
        for tid, n in (("ioi-0", 6), ("ioi-2", 5), ("ioi-4", 4), ("ioi-6", 3))
        for e in generate_ioi(n, seed, templates=(tid,))
    ]
    park = "When Amy and Tom went to the park, Tom gave a ball to"
    rows.append({"prompt": park, "correct": " Amy", "wrong": " Amy"})
    rows.append({"prompt": park, "correct": " Amy Tom", "wrong": " Tom"})
    return rows


@pytest.fixture
def store(tmp_path, monkeypatch):
    from actscale.runs.store import RunStore

    root = tmp_path / "runs"
    monkeypatch.setenv("ACTSCALE_STORE", str(root))
    return RunStore(root)


@pytest.fixture
def inline_jobs(monkeypatch):
    """Jobs submitted by the pages run inside ``submit`` (``ACTSCALE_JOBS=inline``, read by
    ``actscale.ui.common.jobs``): a page test sees the outcome in the same run, with no
    thread to poll."""
    monkeypatch.setenv("ACTSCALE_JOBS", "inline")


@pytest.fixture(scope="session")
def bundled():
    """The real bundled model (slow tests only)."""
    from actscale.engine.models import load_model

    return load_model("bundled", "cpu")


@pytest.fixture(scope="session")
def slow_store(tmp_path_factory):
    """One run store for the session's real-model runs: a run that several slow tests read
    (the default IOI ActivScalar run, the held-out DynScalar run) is trained once, by whichever
    test asks first, and opened by the others."""
    from actscale.runs.store import RunStore

    return RunStore(tmp_path_factory.mktemp("slow") / "runs")


@pytest.fixture(scope="session")
def bundled_run(bundled, slow_store):
    """``bundled_run(task=..., method=..., **fields)``: the bundled model's run of that config
    in the session's store, trained on first use (``train_run`` opens a stored run with the
    same config instead of training it again)."""
    from actscale.engine.training import TrainConfig
    from actscale.runs.api import train_run

    def run(**fields):
        return train_run(TrainConfig(model="bundled", **fields), bundled, store=slow_store)

    return run


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny models run fastest on one thread: on such small matrices two threads mostly spin,
    and far worse on a busy machine (measured 4-5x the CPU time)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _all_threads_for_slow_tests(request):
    """The real model's slow tests use every core (the worker's share of them under xdist)."""
    import torch

    if request.node.get_closest_marker("slow") is None:
        yield
        return
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(1)


def signal_on(monkeypatch, method: str):
    """A threading.Event set each time any job calls ``Job.<method>`` (``record_step``,
    ``mark_waiting``): tests wait on it instead of polling a job's state with sleeps."""
    import threading

    from actscale.runs.jobs import Job

    event = threading.Event()
    real = getattr(Job, method)

    def signalled(self, *args, **kwargs):
        real(self, *args, **kwargs)
        event.set()

    monkeypatch.setattr(Job, method, signalled)
    return event


def store_snapshot(root) -> dict[str, tuple[bytes | None, int]]:
    """Every path under a run store (the store folder itself as ``.``) with its bytes (None for
    a folder) and its mtime in ns: equal snapshots mean nothing was written, renamed or touched."""
    from pathlib import Path

    root = Path(root)
    out: dict[str, tuple[bytes | None, int]] = {".": (None, root.stat().st_mtime_ns)}
    for path in sorted(root.rglob("*")):
        out[str(path.relative_to(root))] = (path.read_bytes() if path.is_file() else None, path.stat().st_mtime_ns)
    return out


_SUITE_START = time.monotonic()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Under `--dist loadgroup` (`make test`), the suite's own units of work (tests/scheduling.py):
    a module whole, the slow tests by the default run they share, the heaviest first."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from scheduling import SuiteScheduling

    return SuiteScheduling(config, log)


def pytest_unconfigure(config):
    """The session is over (in each xdist worker too): the process's shutdown need not walk the
    loaded models' objects with the cyclic collector, about a second per bundled model, as the
    CLI does not (`actscale.cli.run`)."""
    import gc

    gc.freeze()


def pytest_terminal_summary(terminalreporter):
    """The suite's wall time and the CPU it ran on, above pytest's closing line: CI allows 90
    minutes, and the same suite is several times slower on a CPU without AVX-512."""
    from actscale.machine import cpu_description

    minutes, seconds = divmod(round(time.monotonic() - _SUITE_START), 60)
    terminalreporter.write_line(f"test suite: {minutes} min {seconds:02d} s on {cpu_description()}")


def observer(step=None, first_result=None, cancel=None):
    """A run observer (`actscale.engine.observer.RunObserver`) made of plain functions: ``step``
    and ``first_result`` hear the run, and ``cancel`` (a threading.Event) stops it when set."""
    from actscale.engine.observer import RunObserver

    class Functions(RunObserver):
        def step(self, info):
            if step is not None:
                step(info)

        def first_result(self, split, metrics):
            if first_result is not None:
                first_result(split, metrics)

        def cancelled(self):
            return cancel is not None and cancel.is_set()

    return Functions()


def sweep_observer(progress=None, cancel=None):
    """A sweep observer (`actscale.runs.progress.SweepObserver`) made of a function that hears
    each `RunProgress` and an optional threading.Event that cancels the sweep when set."""
    from actscale.runs.progress import SweepObserver

    class Functions(SweepObserver):
        def progress(self, event):
            if progress is not None:
                progress(event)

        def cancelled(self):
            return cancel is not None and cancel.is_set()

    return Functions()


def svg_images(at) -> list[str]:
    """The SVG of every image an AppTest's page shows (`common.show_map`, the live curves)."""
    import base64

    prefix = "data:image/svg+xml;base64,"
    urls = [img.url for image in at.get("image") for img in image.proto.imgs]
    assert all(u.startswith(prefix) for u in urls)
    return [base64.b64decode(u[len(prefix) :]).decode() for u in urls]
