"""The self-contained HTML report and the runs table (actscale.report), on tiny-model runs."""

from __future__ import annotations

import dataclasses
import re

import pytest
from plotly.offline import get_plotlyjs

from actscale import views
from actscale.api import train_run
from actscale.objective import METRIC_NAMES
from actscale.report import headline_frame, render_report, runs_frame
from actscale.store import RunStore
from actscale.training import TrainConfig


@pytest.fixture(scope="module")
def runs(tiny_llama, tmp_path_factory):
    """One tiny run per method (head site included, so every kind of figure is drawn)."""
    store = RunStore(tmp_path_factory.mktemp("report") / "runs")
    out = {}
    for method in ("activscalar", "steervec", "dynscalar"):
        config = TrainConfig(
            model="tiny-llama", method=method, sites=("attn_out", "head"), steps=3, n_prompts=16, early_stop=0
        )
        out[method] = train_run(config, tiny_llama, store=store)
    return store, out


@pytest.mark.parametrize("method", ["activscalar", "steervec", "dynscalar"])
def test_report_is_self_contained_and_complete(runs, method):
    bundle = runs[1][method]
    page = render_report(bundle)
    figures = views.run_figures(bundle)

    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert bundle.run_id in page
    for name in METRIC_NAMES:
        assert f"<td>{name}</td>" in page, name
    # plotly.js inlined exactly once, and no script loaded from anywhere.
    js = get_plotlyjs()
    assert page.count(js[:2000]) == 1
    assert not re.search(r"<script[^>]*\bsrc\s*=", page)
    assert not re.search(r"<script[^>]*src=[\"']?https?:", page)
    # One plot div per figure, each with its title.
    assert len(figures) >= 2
    assert page.count('class="plotly-graph-div"') == len(figures)
    for i, name in enumerate(figures):
        assert f'id="figure-{i}"' in page
        assert f"<h3>{name}</h3>" in page


def test_report_escapes_every_string(runs):
    bundle = runs[1]["activscalar"]
    evil = "<script>alert('x')</script>"
    hostile = dataclasses.replace(
        bundle,
        config={**bundle.config, "model": evil, evil: "value"},
        info={**bundle.info, "summary": evil},
    )
    page = render_report(hostile)
    assert evil not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page


def test_runs_frame_lists_broken_runs_with_their_reason(runs):
    store, bundles = runs
    listings = store.list()
    df = runs_frame(listings)
    assert set(df["run_id"]) == {b.run_id for b in bundles.values()}
    assert (df["status"] == "ok").all()
    row = df.set_index("run_id").loc[bundles["activscalar"].run_id]
    test = bundles["activscalar"].metrics["test"]
    assert row["method"] == "activscalar" and row["task"] == "ioi" and row["model"] == "tiny-llama"
    assert row["test_flip_acc_pos"] == test["flip_acc_pos"] and row["test_acc_base"] == test["acc_base"]
    lo, hi = test["flip_acc_pos_ci95"]
    n = test["n_prompts"]
    assert row["test β = +1"] == f"{test['acc_base']:.2f} → {test['flip_acc_pos']:.2f} [{lo:.2f}, {hi:.2f}] (n = {n})"
    assert row["n_params"] == test["n_params"] and row["n_components"] == test["n_components"]

    head = headline_frame(listings)
    assert list(head["run"]) == [r.run_id for r in listings]
    assert head["effective / components"].str.match(r"^\d+ / \d+$").all()
    assert head["test flip β=−1 (unmodified → steered)"].str.match(r"^\d\.\d\d → \d\.\d\d \[").all()


def test_runs_frame_of_a_broken_listing(tmp_path):
    store = RunStore(tmp_path)
    (tmp_path / "0123456789abcdef").mkdir(parents=True)
    (tmp_path / "0123456789abcdef" / "config.json").write_text("{not json")
    df = runs_frame(store.list())
    assert df.loc[0, "status"] == "broken"
    assert "config.json" in df.loc[0, "reason"]
    assert headline_frame(store.list()).empty
