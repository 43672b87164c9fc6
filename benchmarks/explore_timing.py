"""``make bench`` (f): how long a stored run's Explore page takes to draw in a real browser.

The dashboard runs as a subprocess on a free port over the store holding the run (the model is
never loaded: Explore is viewer mode); one visit warms the server's caches, then each measured
visit is a fresh browser page on ``/Explore?run=<id>``. Two times per visit, from the start of
the navigation (the page's ``performance.now()``): **maps**, every figure of the run's first
panel ("What was learned") drawn; **page**, the script finished and every figure on the page
drawn. Debian's Chromium with the flags the browser tests use; the median of the visits.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("ACTSCALE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 120_000
# Every plotly figure Streamlit shows, and the ones whose SVG is drawn.
_FIGURES = "document.querySelectorAll('[data-testid=\"stPlotlyChart\"]')"
_DRAWN = "[...FIGS].filter(f => f.querySelector('.main-svg')).length".replace("FIGS", _FIGURES)
_IDLE = "!document.querySelector('[data-testid=\"stStatusWidget\"]')"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def dashboard(store: Path) -> Iterator[str]:
    """``streamlit run app.py`` over ``store`` on a free port; yields its URL once it answers."""
    port = _free_port()
    env = {**os.environ, "ACTSCALE_STORE": str(store), "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    cmd += ["--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none"]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start on {url}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as response:
            return bool(response.read().decode().strip() == "ok")
    except OSError:
        return False


def _visit(browser, url: str, n_maps: int) -> tuple[float, float, int]:
    """One fresh page: (maps drawn s, whole page drawn s, figures on the page)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.goto(url)
        maps = page.wait_for_function(f"() => {_DRAWN} >= {n_maps} && performance.now()", timeout=WAIT_MS)
        t_maps = float(maps.json_value())
        # The page is drawn when the script is done and every figure it sent has its SVG, twice in a
        # row 100 ms apart (a figure sent last may not be in the DOM at the first look).
        page.wait_for_function(f"() => {_IDLE} && {_FIGURES}.length > 0 && {_DRAWN} === {_FIGURES}.length")
        page.wait_for_timeout(100)
        done = page.wait_for_function(
            f"() => {_IDLE} && {_DRAWN} === {_FIGURES}.length && performance.now()", timeout=WAIT_MS
        )
        t_page = float(done.json_value()) - 100
        return t_maps / 1000, t_page / 1000, int(page.evaluate(f"() => {_FIGURES}.length"))
    finally:
        context.close()


def bench_explore(store: Path, run_id: str, n_maps: int, visits: int = 3, browser=None) -> dict:
    """The median over ``visits`` fresh pages of the run's Explore page (module docstring), in
    ``browser`` (a Playwright Chromium) or one launched for it."""
    if browser is None:
        if not Path(CHROMIUM).is_file():
            return {"error": f"no Chromium at {CHROMIUM} (`make browser` installs it)"}
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                return bench_explore(store, run_id, n_maps, visits, launched)
            finally:
                launched.close()
    with dashboard(store) as url:
        page_url = f"{url}/Explore?run={run_id}"
        _visit(browser, page_url, n_maps)  # warms the server's caches
        times = [_visit(browser, page_url, n_maps) for _ in range(visits)]
    return {
        "maps_s": round(statistics.median(t[0] for t in times), 2),
        "page_s": round(statistics.median(t[1] for t in times), 2),
        "maps_each_s": [round(t[0], 2) for t in times],
        "page_each_s": [round(t[1], 2) for t in times],
        "figures": times[-1][2],
        "n_maps": n_maps,
    }
