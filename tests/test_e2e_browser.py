"""End to end, in a real browser: the app (``streamlit run app.py``) on the tiny test model,
driven by headless Chromium through Playwright.

Train a short run on Train → see its heatmap on Explore → open its ``?run=`` link in a fresh
browser → start a long training, Cancel it, and check that nothing more was stored.

Chromium is Debian's (``make browser`` installs it; Playwright cannot download one here). A
missing browser fails the test rather than skipping it: CI installs one, so its absence is a
broken setup, not an optional feature.
"""

from __future__ import annotations

import re

import pytest
from browser_helpers import (  # noqa: F401 - app, browser: the module's fixtures, requested by name
    UI_MS,
    App,
    Shots,
    app,
    browser,
    explained_failure,
    require_browser,
    wait_idle,
)

pytestmark = pytest.mark.browser

TRAIN_MS = 150_000  # a short training to its stored run
LONG_TRAINING_STEPS = 100_000


def open_train_page(page, url: str, shots: Shots, tag: str) -> None:
    page.goto(f"{url}/Train")
    page.get_by_role("heading", name="Train", exact=True).wait_for(timeout=UI_MS)
    # The model loads on its own (ACTSCALE_MODEL), then the validation preview is computed.
    page.get_by_text("Loaded model: tiny-llama").wait_for(timeout=UI_MS)
    page.get_by_text(re.compile(r"the unmodified model prefers a\+ on")).first.wait_for(timeout=UI_MS)
    page.get_by_role("button", name="Train", exact=True).wait_for(timeout=UI_MS)
    wait_idle(page)
    shots(page, f"train-page-{tag}")


def start_training(page, steps: int) -> None:
    """Type the steps into the form and press Train. Tab commits the number before the click."""
    box = page.get_by_label("Steps", exact=True)
    box.fill(str(steps))
    box.press("Tab")
    train = page.get_by_role("button", name="Train", exact=True)
    train.click()


def click_cancel(page) -> None:
    """Press Cancel under the live panel: answered with "Cancelling…" (or, had the run ended
    meanwhile, its outcome). The button is outside the panel's fragment, whose runs by its timer
    stay for seconds: a click inside it would wait behind them (Streamlit queues it)."""
    page.get_by_role("button", name="Cancel", exact=True).click()
    page.get_by_text(re.compile("Cancelling…|Cancelled —")).first.wait_for(timeout=10_000)


def expect_explore(page, run_id: str) -> None:
    """Explore shows ``run_id`` and its maps (SVG images, drawn)."""
    from playwright.sync_api import expect

    page.get_by_role("heading", name="Explore a run").wait_for(timeout=UI_MS)
    expect(page).to_have_url(re.compile(rf"/Explore\?(.*&)?run={re.escape(run_id)}"), timeout=UI_MS)
    # The run picker (a combobox whose value is the run's label, which starts with its id).
    expect(page.get_by_role("combobox", name="Run")).to_have_value(re.compile(rf"^{re.escape(run_id)} "), timeout=UI_MS)
    page.get_by_role("heading", name="What was learned").wait_for(timeout=UI_MS)
    # A map: an SVG image the browser has decoded (the training curves are plotly figures).
    heatmap = page.get_by_test_id("stImage").locator("img").first
    heatmap.wait_for(state="visible", timeout=UI_MS)
    heatmap.scroll_into_view_if_needed()
    expect(heatmap).to_have_attribute("src", re.compile(r"^data:image/svg\+xml;base64,"))
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=heatmap.element_handle())
    expect(page.get_by_text("is not in this store")).to_have_count(0)


# ---------------------------------------------------------------- the test
def train_to_a_stored_run(page, server: App, shots: Shots) -> str:
    """1 · A short training on Train, to its stored run; its id."""
    from playwright.sync_api import expect

    open_train_page(page, server.url, shots, "first")
    # The sidebar lists app.py's pages, Home first (the legacy pages/ folder said "app").
    nav = page.get_by_test_id("stSidebarNav")
    expect(nav.get_by_test_id("stSidebarNavLink").first).to_contain_text("Home")
    expect(nav.get_by_text("app", exact=True)).to_have_count(0)
    start_training(page, 3)
    page.get_by_text("Done: 1 run trained.").wait_for(timeout=TRAIN_MS)
    runs = server.runs()
    assert len(runs) == 1, f"expected one stored run, the store holds {server.entries()}"
    return runs[0]


def cancel_a_long_training(page, server: App, shots: Shots, run_id: str) -> None:
    """4 · A long training, cancelled while it trains: a message, and nothing more stored."""
    from playwright.sync_api import expect

    open_train_page(page, server.url, shots, "second")
    start_training(page, LONG_TRAINING_STEPS)
    page.get_by_text(re.compile(rf"Training activscalar, step \d+ of {LONG_TRAINING_STEPS}")).wait_for(timeout=TRAIN_MS)
    shots(page, "long-training")
    click_cancel(page)
    page.get_by_text("Cancelled — nothing was stored.").wait_for(timeout=TRAIN_MS)
    wait_idle(page)
    shots(page, "cancelled")
    assert server.entries() == [run_id], f"the cancelled training left {server.entries()} in the store"
    # The Train form is back, and enabled, for the next training.
    expect(page.get_by_role("button", name="Train", exact=True)).to_be_enabled(timeout=UI_MS)


def test_train_explore_share_cancel(request, tmp_path):
    # Checked here, before the fixtures, so a missing browser is this test's failure (not a
    # fixture error) and costs no app start.
    require_browser()
    chromium = request.getfixturevalue("browser")
    server: App = request.getfixturevalue("app")
    shots = Shots(tmp_path)
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(UI_MS)
    page = context.new_page()
    pages = [page]
    try:
        with explained_failure(shots, pages, server.log):
            assert server.runs() == [], server.entries()
            run_id = train_to_a_stored_run(page, server, shots)
            link = page.get_by_role("link", name=f"Open run {run_id} on Explore")
            link.wait_for(timeout=UI_MS)
            wait_idle(page)
            shots(page, "trained")

            # 2 · Its link opens the run on Explore, with its heatmaps.
            link.click()
            expect_explore(page, run_id)
            # The run has the 3 steps typed into the form (not the method's default).
            page.get_by_text(re.compile(r"\b3 steps\b")).first.wait_for(timeout=UI_MS)
            shots(page, "explore")

            # 3 · The ?run= link, in a fresh browser (no session, no cookies), shows the same run.
            fresh = chromium.new_context(viewport={"width": 1400, "height": 1000})
            fresh.set_default_timeout(UI_MS)
            shared = fresh.new_page()
            pages.append(shared)
            shared.goto(f"{server.url}/Explore?run={run_id}")
            expect_explore(shared, run_id)
            shots(shared, "shared-link")
            fresh.close()
            pages.remove(shared)

            cancel_a_long_training(page, server, shots, run_id)
    finally:
        context.close()


def test_a_run_with_checks_shows_its_sufficiency_curve(request, tiny_llama):
    """Explore in a real browser draws a run's map checks from its bundle: the k90 summary next
    to the maps and the sufficiency curve with the random control."""
    require_browser()
    chromium = request.getfixturevalue("browser")
    server: App = request.getfixturevalue("app")
    from playwright.sync_api import expect

    from actscale.checks import CheckOptions, run_checks
    from actscale.engine.training import TrainConfig
    from actscale.runs.api import train_run
    from actscale.runs.store import RunStore

    bundle = train_run(
        TrainConfig(model="tiny-llama", method="activscalar", steps=2, n_prompts=16, n_test=8, seed=11),
        tiny_llama,
        store=RunStore(server.store),
    )
    out = run_checks(tiny_llama, bundle, CheckOptions(prompts=8, draws=5, precision="float32"))
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.goto(f"{server.url}/Explore?run={bundle.run_id}")
        expect_explore(page, bundle.run_id)
        assert out["map"]["k90"] is None  # two steps on the tiny model: no effect, and the page says so
        page.get_by_text(re.compile(r"Map check\. No effect to localise: on all 3 validation prompts")).wait_for(
            timeout=UI_MS
        )
        # The checks' figures are in a tab of their own, drawn when it is opened (and kept in the link).
        page.get_by_role("tab", name="Does the map mean anything?").click()
        expect(page).to_have_url(re.compile(r"[?&]tab=checks"), timeout=UI_MS)
        curve = page.locator(
            ".js-plotly-plot", has=page.get_by_text(re.compile("Sufficiency and necessity of the top-k"))
        )
        curve.first.scroll_into_view_if_needed(timeout=UI_MS)
        curve.first.wait_for(state="visible", timeout=UI_MS)
        expect(curve.first.get_by_text("keep top-k (sufficiency)")).to_have_count(1)
    finally:
        context.close()


def test_the_bench_times_a_runs_explore_page(request, tmp_path, tiny_llama):
    """`make bench` (f) on a tiny run: every visit waits for the maps, then for every figure."""
    require_browser()
    chromium = request.getfixturevalue("browser")
    from actscale.engine.training import TrainConfig
    from actscale.runs.api import train_run
    from actscale.runs.store import RunStore
    from benchmarks.explore_timing import bench_explore

    config = TrainConfig(model="tiny-llama", steps=1, n_prompts=16, n_test=8, sites=("attn_out", "mlp_out"))
    bundle = train_run(config, tiny_llama, store=RunStore(tmp_path / "runs"))
    out = bench_explore(tmp_path / "runs", bundle.run_id, visits=2, browser=chromium)
    assert (out["n_maps"], out["figures"], len(out["page_each_s"])) == (2, 3, 2)  # two maps and the curves
    assert all(0 < m <= p for m, p in zip(out["maps_each_s"], out["page_each_s"]))
    # the floor: the same two maps on a page with only a title, visited in turn with Explore
    floor = out["floor"]["maps_each_s"]
    assert len(floor) == 2 and all(f > 0 for f in floor)
    ratios = [m / f for m, f in zip(out["maps_each_s"], floor)]
    assert out["maps_over_floor"] == round(sorted(ratios)[0] / 2 + sorted(ratios)[1] / 2, 2)


def test_the_bench_times_the_dashboards_first_result(request):
    """`make bench` (g) on the tiny model: the click on Train, the first result shown (unless the
    tiny run was done within one refresh of the live panel), the outcome shown, in that order,
    and the run's own timing beside them."""
    require_browser()
    chromium = request.getfixturevalue("browser")
    from actscale.engine.training import TrainConfig
    from benchmarks.dashboard_timing import bench_dashboard

    out = bench_dashboard("tiny-llama", browser=chromium)
    assert out["model"] == "tiny-llama" and len(out["run_id"]) == 16
    first, target, timing = out["first_result_s"], out["target_result_s"], out["timing"]
    assert first is None or 0 < first <= out["done_s"]
    assert set(timing) == {"base_pass_s", "steps_s", "eval_s", "target_s", "target_step"}
    # the run's base pass, steps and validation, as it stored them, lie within the click's wait
    assert timing["base_pass_s"] + timing["steps_s"] + timing["eval_s"] < (out["done_s"] if first is None else first)
    # a target shown is one the run found (the tiny model's seldom flips its validation prompts)
    assert target is None or (timing["target_step"] >= 1 and timing["target_s"] < target <= out["done_s"])
    # the Train page's default form: the default run, its steps a whole number of cycles
    config = TrainConfig(model="tiny-llama")
    assert out["steps_run"] % config.steps == 0 and out["steps_run"] <= config.steps * config.cycles


def _overlaps(boxes: list[dict]) -> list[tuple[int, int]]:
    """Pairs of bounding boxes (Playwright's x, y, width, height) that overlap."""
    return [
        (i, j)
        for i, a in enumerate(boxes)
        for j, b in enumerate(boxes)
        if i < j
        and a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    ]


def test_compare_stays_legible_with_five_methods(request, tiny_llama):
    """The four trained or fitted methods and the logit-bias floor on one figure at 1,400 px: no
    subplot title overlaps another, and no bar label another in the same panel."""
    require_browser()
    chromium = request.getfixturevalue("browser")
    server: App = request.getfixturevalue("app")
    from actscale.engine.training import TrainConfig
    from actscale.runs.api import train_run
    from actscale.runs.store import RunStore

    base = TrainConfig(model="tiny-llama", steps=2, n_prompts=16, n_test=8, seed=12)
    ids = [
        train_run(base.replace(method=m), tiny_llama, store=RunStore(server.store)).run_id
        for m in ("activscalar", "steervec", "dynscalar", "diffmean")
    ]
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.goto(f"{server.url}/Compare?runs={','.join(ids)}")
        figure = page.locator(".js-plotly-plot", has=page.get_by_text("methods compared")).first
        figure.wait_for(state="visible", timeout=UI_MS)
        figure.scroll_into_view_if_needed(timeout=UI_MS)
        titles = figure.locator(".annotation-text")
        assert titles.count() == 4
        assert _overlaps([titles.nth(i).bounding_box() for i in range(4)]) == []
        for axis in ("x", "x2", "x3", "x4"):  # each panel's bar labels (plotly's classes: xtick, x2tick, ...)
            labels = figure.locator(f".{axis}tick text")
            texts = [labels.nth(i).text_content() or "" for i in range(labels.count())]
            # four runs and a floor per dataset: DynScalar keeps every prompt length, the others one
            assert len(texts) == 6 and sum(t.startswith("logit-biasfloor") for t in texts) == 2, texts  # lines joined
            assert _overlaps([labels.nth(i).bounding_box() for i in range(6)]) == []
    finally:
        context.close()
