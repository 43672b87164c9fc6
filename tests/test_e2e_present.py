"""Presenting a store, in a real browser (headless Chromium through Playwright; see
test_e2e_browser.py for why the browser is Debian's and why its absence fails).

1. A read-only deployment (``ACTSCALE_READONLY=1``, no model): every page is visited, every write
   path is tried by URL and by query parameters (and Streamlit's upload endpoint directly), and
   the store's bytes and mtimes are unchanged afterwards.
2. Links that reproduce a view: a view set up by clicking on Explore, Compare and Playground is
   opened from its address in a fresh browser context (no session, no cookies) and shows the
   same thing, one test a page. These run on a read-only deployment that allows a model, the
   presenter's setup (the module's server, `presenter`).
"""

from __future__ import annotations

import base64
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from browser_helpers import (  # noqa: F401 - browser: a fixture, requested by name
    UI_MS,
    Shots,
    browser,
    explained_failure,
    require_browser,
    serve,
    wait_idle,
)
from conftest import make_method_runs, store_snapshot

pytestmark = pytest.mark.browser
SITES = ("attn_out", "head")


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_llama):
    """One tiny run per method, trained before any server starts."""
    root = tmp_path_factory.mktemp("present") / "runs"
    return root, make_method_runs(root, tiny_llama, SITES)


def new_page(chromium):
    context = chromium.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    context.set_default_timeout(UI_MS)
    return context, context.new_page()


def open_path(page, url: str, path: str, heading: str) -> None:
    page.goto(f"{url}{path}")
    page.get_by_role("heading", name=heading, exact=True).first.wait_for(timeout=UI_MS)
    wait_idle(page)


# ---------------------------------------------------------------- 1 · read-only
READONLY_LINE = "Read-only deployment: runs can be viewed and downloaded, not trained, deleted or uploaded"


def assert_no_write_controls(page) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_test_id("stSidebar").get_by_text(READONLY_LINE)).to_be_visible()
    for name in ("Train", "Delete", "Launch sweep", "Cancel"):
        expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
    expect(page.locator("input[type=file]")).to_have_count(0)
    expect(page.get_by_text(re.compile(r"^Yes, delete run"))).to_have_count(0)
    # the sidebar's page list: no Train, no Playground
    nav = page.get_by_test_id("stSidebarNav")
    expect(nav.get_by_text("Train", exact=True)).to_have_count(0)
    expect(nav.get_by_text("Playground", exact=True)).to_have_count(0)


def visit_every_served_page(page, url: str, one: str, shots: Shots) -> None:
    """Every page that is served, plain and with write-looking parameters: no write control."""
    visits = [
        ("/", "actscale"),
        (f"/Explore?run={one}", "Explore a run"),
        ("/Compare", "Compare runs"),
        (f"/Runs?run={one}", "Runs"),
        (f"/Runs?run={one}&delete={one}&confirm=1", "Runs"),
        ("/Runs?upload=1&file=run.zip", "Runs"),
        (f"/Compare?runs={one}&sweep=1&lambda_m=0.1", "Compare runs"),
        (f"/Explore?run={one}&site=attn_out&component=0,0&train=1", "Explore a run"),
    ]
    for path, heading in visits:
        open_path(page, url, path, heading)
        assert_no_write_controls(page)
        shots(page, re.sub(r"\W+", "-", path)[:40])


def visit_the_pages_not_served(page, url: str, one: str, shots: Shots) -> None:
    """The pages that write or need a model are not served: their URLs land on Home."""
    for path in (
        "/Train",
        "/Train?method=activscalar&steps=3",
        f"/Playground?run={one}&beta=1",
        "/Playground?prompt=Hello&correct=%20a&wrong=%20b",
    ):
        page.goto(f"{url}{path}")
        page.get_by_role("heading", name="actscale", exact=True).wait_for(timeout=UI_MS)
        wait_idle(page)
        assert page.get_by_role("heading", name="Train", exact=True).count() == 0
        assert page.get_by_role("heading", name="Playground", exact=True).count() == 0
        assert_no_write_controls(page)
        shots(page, "not-served-" + re.sub(r"\W+", "-", path)[:30])


def download_the_reads_that_remain(page, url: str, one: str) -> None:
    """A report and a bundle download, from the Runs page."""
    open_path(page, url, f"/Runs?run={one}", "Runs")
    with page.expect_download(timeout=UI_MS) as download:
        page.get_by_role("button", name="Download the HTML report").click()
    assert download.value.suggested_filename == f"actscale-report-{one}.html"
    with page.expect_download(timeout=UI_MS) as download:
        page.get_by_role("button", name="Download the bundle (.zip)").click()
    assert download.value.suggested_filename == f"actscale-run-{one}.zip"


def assert_the_upload_endpoint_refuses(url: str) -> None:
    """Streamlit's own upload endpoint, with no uploader on any page: refused."""
    body = b"--x\r\nContent-Disposition: form-data; name=file; filename=a.zip\r\n\r\nPK\r\n--x--\r\n"
    put = urllib.request.Request(
        f"{url}/_stcore/upload_file/session/file",
        data=body,
        method="PUT",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(put, timeout=10)
    assert 400 <= refused.value.code < 500


def test_readonly_deployment_writes_nothing(request, tmp_path, store):
    require_browser()
    chromium = request.getfixturevalue("browser")
    root, bundles = store
    one = bundles["activscalar"].run_id
    before = store_snapshot(root)
    shots = Shots(tmp_path)
    with serve(root, tmp_path / "server.log", ACTSCALE_READONLY="1", ACTSCALE_READONLY_MODEL="0") as url:
        context, page = new_page(chromium)
        try:
            with explained_failure(shots, [page], tmp_path / "server.log"):
                visit_every_served_page(page, url, one, shots)
                visit_the_pages_not_served(page, url, one, shots)
                download_the_reads_that_remain(page, url, one)
                assert_the_upload_endpoint_refuses(url)
        finally:
            context.close()
    assert store_snapshot(root) == before


# ---------------------------------------------------------------- 2 · links that reproduce a view
def pick(page, box: str, option: str | re.Pattern) -> None:
    """Choose ``option`` in the select box labelled ``box``."""
    page.get_by_role("combobox", name=box).click()
    page.get_by_role("option", name=option).first.click()
    wait_idle(page)


def slide_to(page, slider, value: str, max_presses: int = 40) -> None:
    """Move ``slider`` down to ``value`` with the left arrow key, one step at a time.

    Streamlit commits a slider's value after a short debounce and reruns the script; keys pressed
    while that rerun redraws the page can be lost, so each press waits for the slider to show its
    new value and the app to go idle before the next one.
    """
    for _ in range(max_presses):
        now = slider.input_value()  # an <input type="range">
        if now == value:
            wait_idle(page)
            return
        slider.focus()
        slider.press("ArrowLeft")
        page.wait_for_function(
            "([el, before]) => el.value !== before",
            arg=[slider.element_handle(), now],
            timeout=UI_MS,
        )
        page.wait_for_timeout(300)  # past the debounce, so the rerun (if any) has begun
        wait_idle(page)
    raise AssertionError(f"the slider did not reach {value} in {max_presses} presses: {slider.input_value()}")


def metric_value(page, label: str) -> str:
    tile = page.get_by_test_id("stMetric").filter(has_text=label).first
    return tile.get_by_test_id("stMetricValue").inner_text()


@pytest.fixture(scope="module")
def presenter(store, tmp_path_factory):
    """The presenter's setup over `store`: a read-only deployment that allows a model; yields
    its URL and its log's path."""
    log_path = tmp_path_factory.mktemp("presenter") / "server.log"
    with serve(store[0], log_path, ACTSCALE_READONLY="1", ACTSCALE_READONLY_MODEL="1") as url:
        yield url, log_path


@contextmanager
def set_then_shared(request, tmp_path, store) -> Iterator[tuple[Any, Callable[[str, str], Any], str, Shots]]:
    """A view is set on a page of the presenter's server (the test's first yield value); the
    second, ``share(link, heading)``, opens a link in a fresh browser context (no session, no
    cookies) once its heading is drawn. A failure names the screenshots and the server log; the
    store is unchanged afterwards."""
    require_browser()
    chromium = request.getfixturevalue("browser")
    url, log_path = request.getfixturevalue("presenter")
    before = store_snapshot(store[0])
    shots = Shots(tmp_path)
    context, page = new_page(chromium)
    pages, contexts = [page], [context]

    def share(link: str, heading: str):
        fresh, shared = new_page(chromium)
        contexts.append(fresh)
        pages.append(shared)
        shared.goto(link)
        shared.get_by_role("heading", name=heading).wait_for(timeout=UI_MS)
        wait_idle(shared)
        return shared

    try:
        with explained_failure(shots, pages, log_path):
            yield page, share, url, shots
    finally:
        for c in contexts:
            c.close()
    assert store_snapshot(store[0]) == before


def test_an_explore_link_reproduces_the_run_site_and_component(request, tmp_path, store):
    from playwright.sync_api import expect

    run = store[1]["steervec"].run_id
    with set_then_shared(request, tmp_path, store) as (page, share, url, shots):
        # a run, a site and a component, set by clicking
        open_path(page, url, f"/Explore?run={run}", "Explore a run")
        pick(page, "Site", "attn_out")
        component_box = page.get_by_role("combobox", name=re.compile(r"^Component"))
        component_box.click()
        page.get_by_role("option").nth(1).click()  # the largest component (after "none")
        wait_idle(page)
        expect(page).to_have_url(re.compile(r"component=\d+%2C\d+|component=\d+,\d+"))
        chosen = component_box.input_value()
        sentence = page.get_by_text(re.compile(r"^‖v‖/‖h‖ at attn_out, layer")).inner_text()
        shots(page, "explore-set")

        shared = share(page.url, "Explore a run")
        expect(shared.get_by_role("combobox", name="Run")).to_have_value(re.compile(rf"^{run} "))
        expect(shared.get_by_role("combobox", name="Site")).to_have_value("attn_out")
        expect(shared.get_by_role("combobox", name=re.compile(r"^Component"))).to_have_value(chosen)
        expect(shared.get_by_text(sentence, exact=True)).to_be_visible()
        # the component is outlined on its maps (a rectangle in the SVG image), and other sites are not drawn
        first_map = shared.get_by_test_id("stImage").locator("img").first
        first_map.wait_for(timeout=UI_MS)
        svg = base64.b64decode(first_map.get_attribute("src").split(",", 1)[1]).decode()
        assert svg.count('fill="none" stroke="#111"') == 1
        expect(shared.get_by_role("heading", name="Attention heads")).to_have_count(0)
        shots(shared, "explore-shared")


def test_a_compare_link_reproduces_the_runs_compared(request, tmp_path, store):
    from playwright.sync_api import expect

    bundles = store[1]
    with set_then_shared(request, tmp_path, store) as (page, share, url, shots):
        # the default comparison, one run taken out by clicking
        open_path(page, url, "/Compare", "Compare runs")
        tags = page.get_by_test_id("stMultiSelect").get_by_text(re.compile(r"^[0-9a-f]{16} · "))
        expect(tags).to_have_count(3)
        # newest first: dynscalar, steervec, activscalar; Backspace takes out the last one
        expect(tags.nth(2)).to_contain_text(bundles["activscalar"].run_id)
        box = page.get_by_role("combobox", name="Runs to compare")
        box.click()
        box.press("Backspace")
        box.press("Escape")
        wait_idle(page)
        expect(tags).to_have_count(2)
        kept = [bundles["dynscalar"].run_id, bundles["steervec"].run_id]
        # anchored: the old three-run URL starts with the same two ids, and the page
        # updates the multiselect before its rerun writes the URL
        expect(page).to_have_url(re.compile(rf"runs={kept[0]}(%2C|,){kept[1]}(&|$)"))
        shots(page, "compare-set")

        shared = share(page.url, "Compare runs")
        tags = shared.get_by_test_id("stMultiSelect").get_by_text(re.compile(r"^[0-9a-f]{16} · "))
        expect(tags).to_have_count(2)
        for i, run_id in enumerate(kept):
            expect(tags.nth(i)).to_contain_text(run_id)
        shots(shared, "compare-shared")


def test_a_playground_link_reproduces_the_prompt_and_beta(request, tmp_path, store):
    from playwright.sync_api import expect

    run = store[1]["dynscalar"].run_id
    with set_then_shared(request, tmp_path, store) as (page, share, url, shots):
        # a dataset prompt and β, set by clicking and the keyboard
        open_path(page, url, f"/Playground?run={run}", "Playground")
        page.get_by_text(re.compile(r"^At β = \+1\.00 the model prefers")).wait_for(timeout=UI_MS)
        pick(page, "Dataset prompt", re.compile(r"^3 · "))
        slide_to(page, page.get_by_role("slider", name=re.compile(r"^β")), "0.7")  # 1.0 → 0.7 by the keyboard
        page.get_by_text(re.compile(r"^At β = \+0\.70 the model prefers")).wait_for(timeout=UI_MS)
        expect(page).to_have_url(re.compile(r"beta=0\.7(&|$)"))
        expect(page).to_have_url(re.compile(r"example=3(&|$)"))
        delta = metric_value(page, "Δ = logit(a+) − logit(a−)")
        shots(page, "playground-set")

        shared = share(page.url, "Playground")
        shared.get_by_text(re.compile(r"^At β = \+0\.70 the model prefers")).wait_for(timeout=UI_MS)
        expect(shared.get_by_role("combobox", name="Dataset prompt")).to_have_value(re.compile(r"^3 · "))
        expect(shared.get_by_role("slider", name=re.compile(r"^β"))).to_have_value("0.7")
        assert metric_value(shared, "Δ = logit(a+) − logit(a−)") == delta
        shots(shared, "playground-shared")
