"""What the browser tests share (test_e2e_browser, test_e2e_present): the dashboard as a subprocess
on a free port with its own store (the module fixture `app`), headless Chromium (the module
fixture `browser`; a missing one fails, see test_e2e_browser), screenshots on failure, and a
wait for the page to go idle."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from benchmarks.explore_timing import CHROMIUM, chromium  # one launch for the tests and the bench

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 90
# Milliseconds (Playwright's unit). The machine may be small and busy: every wait is generous,
# and each one returns as soon as its condition holds.
UI_MS = 60_000  # a page, a model load, a validation preview


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(log: Path, n: int = 60) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no server log)"
    return "\n".join(lines[-n:])


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (it was started in its own session), then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=15)


class App:
    def __init__(self, url: str, store: Path, log: Path):
        self.url, self.store, self.log = url, store, log

    def entries(self) -> list[str]:
        """Everything in the store folder (run folders, and any half-written temporary one)."""
        return sorted(p.name for p in self.store.iterdir()) if self.store.is_dir() else []

    def runs(self) -> list[str]:
        return [name for name in self.entries() if not name.startswith(".") and (self.store / name).is_dir()]


@contextmanager
def serve(store: Path, log_path: Path, **env: str) -> Iterator[str]:
    """``streamlit run app.py`` on a free port over ``store`` with ``env`` added, its output in
    ``log_path``; yields its URL once /_stcore/health answers, and stops it after."""
    port = free_port()
    full_env = dict(
        os.environ,
        ACTSCALE_MODEL="tiny-llama",
        ACTSCALE_STORE=str(store),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        STREAMLIT_BROWSER_GATHER_USAGE_STATS="false",
        **env,
    )
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    cmd += ["--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"the app exited with status {proc.returncode} while starting:\n{log_tail(log_path)}")
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as response:
                        if response.read().decode().strip() == "ok":
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"the app did not answer {url}/_stcore/health within {START_TIMEOUT_S} s:\n{log_tail(log_path)}"
                    )
                time.sleep(0.5)
            yield url
        finally:
            stop(proc)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The dashboard as a subprocess on a free port, with its own empty run store."""
    base = tmp_path_factory.mktemp("e2e-app")
    store, log_path = base / "runs", base / "server.log"
    with serve(store, log_path) as url:
        yield App(url, store, log_path)


def require_browser() -> None:
    """Fail (never skip) without Chromium or Playwright: CI installs both."""
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"no Chromium at {CHROMIUM}: the browser test needs Debian's chromium "
            "(`make browser`, or `apt-get install -y chromium`); Playwright cannot download one here"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        pytest.fail(f"the python package playwright is missing ({exc}); `pip install -e '.[dev]'`")


@pytest.fixture(scope="module")
def browser():
    require_browser()
    with chromium() as b:
        yield b


class Shots:
    """Numbered screenshots of every stage into the test's tmp_path (and of every open page on
    failure), so a failure can be looked at rather than guessed."""

    def __init__(self, folder: Path):
        self.folder, self.n = folder, 0

    def __call__(self, page, name: str) -> None:
        self.n += 1
        try:
            page.screenshot(path=str(self.folder / f"{self.n:02d}-{name}.png"), full_page=True, timeout=15_000)
        except Exception:  # noqa: BLE001 - a screenshot never hides the real failure
            pass


@contextmanager
def explained_failure(shots: Shots, pages: list, log_path: Path) -> Iterator[None]:
    """A failure inside becomes an AssertionError that names the screenshots' folder and ends
    with the server log's last lines, after a screenshot of each page still open in ``pages``
    (a list the test may add to and take from as it opens and closes pages)."""
    try:
        yield
    except Exception as exc:
        for i, page in enumerate(pages):
            shots(page, f"FAILED-{i}")
        raise AssertionError(
            f"{type(exc).__name__}: {exc}\n\nscreenshots in {shots.folder}\n\n"
            f"server log (last lines):\n{log_tail(log_path)}"
        ) from exc


def wait_idle(page) -> None:
    """Until Streamlit is not running the script: its status widget (“Running…”) is gone."""
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=UI_MS)
