"""``make bench`` (f): how long a stored run's Explore page takes to draw in a real browser.

The dashboard runs as a subprocess on a free port over the store holding the run (the model is
never loaded: Explore is viewer mode); one visit warms the server's caches, then each measured
visit is a fresh browser page on ``/Explore?run=<id>``. Two times per visit, from the start of
the navigation (the page's ``performance.now()``): **maps**, every figure of the run's first
panel ("What was learned") drawn (a heatmap as an SVG image, `common.show_map`; any other figure
by plotly); **page**, the script finished and every image and plotly figure it sent drawn (both counted
apart from the run: `_figures`). Debian's Chromium with the flags the browser tests use; the median of the
visits.

**floor**: the same maps as images on a Streamlit page with nothing else but a title, served by a
second Streamlit on the same machine and visited in turn with Explore: the least a Streamlit page
showing those maps takes, on whatever machine runs the bench (seconds depend on the CPU, as the
floor step does for (a) and (b)), and Explore's maps as a multiple of it.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

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
# Every plotly figure on the page (`common.show_figure` keys each "fig-…"), the ones whose SVG is
# drawn, and the images (the maps and the training curves as SVG images, `common.show_map`, unless
# the figures are interactive).
_FIGURES = "document.querySelectorAll('[class*=\"st-key-fig-\"]')"
_DRAWN = "[...FIGS].filter(f => f.querySelector('.main-svg')).length".replace("FIGS", _FIGURES)
_IMAGES = "document.querySelectorAll('[data-testid=\"stImage\"] img')"
# The script is not running: Streamlit's status widget (“Running…”) is gone.
PAGE_IDLE = "!document.querySelector('[data-testid=\"stStatusWidget\"]')"


NO_BROWSER = {"error": f"no Chromium at {CHROMIUM} (`make browser` installs it)"}


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Playwright Chromium (Debian's, with the browser tests' flags), or None where
    there is none."""
    if not Path(CHROMIUM).is_file():
        yield None
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The floor's page: a title and the maps, two to a row as Explore's grid draws them.
_FLOOR_PAGE = """from pathlib import Path

import streamlit as st

st.set_page_config(layout="wide")  # as the dashboard's pages
st.title("Explore a run")
maps = sorted(Path(__file__).parent.glob("map-*.svg"))
for start in range(0, len(maps), 2):
    for col, path in zip(st.columns(2), maps[start : start + 2]):
        col.image(path.read_text(), width="stretch")
"""


@contextmanager
def dashboard(store: Path) -> Iterator[str]:
    """``streamlit run app.py`` over ``store`` on a free port; yields its URL once it answers."""
    with streamlit_server("app.py", {"ACTSCALE_STORE": str(store)}) as url:
        yield url


@contextmanager
def floor_page(svgs: list[str]) -> Iterator[str]:
    """The floor's page (module docstring) showing ``svgs`` on a free port; yields its URL."""
    with tempfile.TemporaryDirectory(prefix="actscale-floor-") as folder:
        for i, svg in enumerate(svgs):
            Path(folder, f"map-{i:02d}.svg").write_text(svg)
        Path(folder, "floor.py").write_text(_FLOOR_PAGE)
        with streamlit_server(str(Path(folder, "floor.py")), {}) as url:
            yield url


@contextmanager
def streamlit_server(script: str, env_extra: dict[str, str]) -> Iterator[str]:
    """``streamlit run script`` (relative to the repository) on a free port, headless; yields its
    URL once it answers."""
    port = _free_port()
    env = {**os.environ, **env_extra, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    cmd = [sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port)]
    cmd += ["--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none"]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit run {script} did not start on {url}")
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


def _figures(store: Path, run_id: str) -> tuple[list[bool], list[tuple[str, str | None]]]:
    """Whether each figure the run's Explore page draws as it opens is an SVG image unless the
    figures are interactive (a heatmap or lines, `figure_svg`), as `run_figures` lists them for
    the report (the page's default view: every site, each panel's default pick, then the open
    tab's training curves); and the first panel's (its key, its SVG or None), in page order."""
    from actscale.runs.store import RunStore
    from actscale.views.panels import explore_panels, run_figures
    from actscale.views.plots import figure_svg

    bundle = RunStore(store).load(run_id)
    every = [figure_svg(fig) is not None for fig in run_figures(bundle).values()]
    panel = explore_panels(bundle)[0]
    pick = panel.default_pick(bundle)
    first = [
        (spec.key, figure_svg(spec.func(bundle, *spec.args, *((pick,) if spec.takes_pick else ()))))
        for spec in panel.figures
    ]
    return every, first


def _maps_drawn(first: list[tuple[str, str | None]], interactive: bool) -> str:
    """A browser expression: the first panel's figures are drawn (its images, the page's first,
    decoded; its other figures, or every one with interactive figures, plotly's SVG)."""
    n_images = 0 if interactive else sum(svg is not None for _, svg in first)
    keys = [key for key, svg in first if interactive or svg is None]
    images = f"[...{_IMAGES}].slice(0, {n_images}).filter(i => i.naturalWidth).length === {n_images}"
    plotly = " && ".join(f"!!document.querySelector('.st-key-fig-{key} .main-svg')" for key in keys) or "true"
    return f"{images} && {plotly}"


def _visit(browser, url: str, maps_drawn: str, n_figures: int, n_images: int) -> tuple[float, float, int]:
    """One fresh page: (maps drawn s, whole page drawn s, figures on the page); the maps are drawn
    when ``maps_drawn`` holds, the page when its ``n_figures`` plotly figures and its ``n_images``
    SVG images are."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.goto(url)
        maps = page.wait_for_function(f"() => {maps_drawn} && performance.now()", timeout=WAIT_MS)
        t_maps = float(maps.json_value())
        # The page is drawn when the script is done and every figure it sent has its SVG.
        images = f"[...{_IMAGES}].filter(i => i.naturalWidth).length >= {n_images}"
        done = page.wait_for_function(
            f"() => {PAGE_IDLE} && {_DRAWN} >= {n_figures} && {images} && performance.now()", timeout=WAIT_MS
        )
        t_page = float(done.json_value())
        return t_maps / 1000, t_page / 1000, int(page.evaluate(f"() => {_IMAGES}.length + {_FIGURES}.length"))
    finally:
        context.close()


def bench_explore(store: Path, run_id: str, visits: int = 3, browser=None) -> dict:
    """The median over ``visits`` fresh pages of the run's Explore page (module docstring), as it
    opens and with interactive maps (``"interactive"``), in ``browser`` (a Playwright Chromium)
    or one launched for it; ``n_maps`` in the result: the figures of its first panel; ``floor``
    and ``maps_over_floor``: the floor's page (module docstring), where that panel has images."""
    if browser is None:
        with chromium() as launched:
            return dict(NO_BROWSER) if launched is None else bench_explore(store, run_id, visits, launched)
    every, first = _figures(store, run_id)
    # The page as it opens (maps as SVG images), with ?interactive=1 (the maps as plotly figures,
    # as before the images) and the floor's page, visited in turn: one after the other, visit
    # after visit, so that the machine's speed at the time is shared.
    views = {"static": f"/Explore?run={run_id}", "interactive": f"/Explore?run={run_id}&interactive=1"}
    waits = {
        view: (_maps_drawn(first, view == "interactive"), *_page_figures(every, view == "interactive"))
        for view in views
    }
    svgs = [svg for _, svg in first if svg is not None]
    with ExitStack() as stack:
        url = stack.enter_context(dashboard(store))
        pages = {view: url + path for view, path in views.items()}
        if svgs:
            pages["floor"] = stack.enter_context(floor_page(svgs))
            waits["floor"] = (_maps_drawn([(str(i), svg) for i, svg in enumerate(svgs)], False), 0, len(svgs))
        times = _visits(browser, pages, waits, visits)
    result = {**_summary(times["static"]), "n_maps": len(first), "interactive": _summary(times["interactive"])}
    if svgs:
        floor = _summary(times["floor"])
        ratios = [m / f for m, f in zip(result["maps_each_s"], floor["maps_each_s"])]  # visit by visit
        result["floor"] = {k: floor[k] for k in ("maps_s", "maps_each_s")}
        result["maps_over_floor"] = round(statistics.median(ratios), 2)
    return result


def _page_figures(every: list[bool], interactive: bool) -> tuple[int, int]:
    """(plotly figures, SVG images) the page draws as it opens: every figure as plotly with
    interactive figures, else the ones `figure_svg` cannot draw."""
    return sum(interactive or not svg for svg in every), sum(not interactive and svg for svg in every)


def _visits(browser, pages: dict[str, str], waits: dict, visits: int) -> dict[str, list[tuple[float, float, int]]]:
    """One visit of each page to warm its server's caches, then ``visits`` rounds of one visit
    each, in turn; each page's visits' times (`_visit`)."""
    for view, url in pages.items():
        _visit(browser, url, *waits[view])
    times: dict[str, list[tuple[float, float, int]]] = {view: [] for view in pages}
    for _ in range(visits):
        for view, url in pages.items():
            times[view].append(_visit(browser, url, *waits[view]))
    return times


def _summary(times: list[tuple[float, float, int]]) -> dict:
    return {
        "maps_s": round(statistics.median(t[0] for t in times), 2),
        "page_s": round(statistics.median(t[1] for t in times), 2),
        "maps_each_s": [round(t[0], 2) for t in times],
        "page_each_s": [round(t[1], 2) for t in times],
        "figures": times[-1][2],
    }
