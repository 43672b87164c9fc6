"""A bundle written before the bundle format had versions (tests/fixtures/store-v0: a tiny-llama
ActivScalar run with its map checks, written by the code of 2026-12-03 before the house issue's
changes) opens with today's code: the same run id, the same metrics, and Explore draws it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from actscale.runs.bundle import run_id_for
from actscale.runs.migrations import FORMAT_VERSION
from actscale.runs.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "store-v0"
RUN_ID = "d747765517847488"


@pytest.fixture
def old_store(tmp_path, monkeypatch) -> RunStore:
    """A copy of the fixture store (a test never writes into the committed one)."""
    root = tmp_path / "runs"
    shutil.copytree(FIXTURE, root)
    monkeypatch.setenv("ACTSCALE_STORE", str(root))
    return RunStore(root)


def test_the_old_bundle_keeps_its_run_id_and_metrics(old_store):
    assert [r.run_id for r in old_store.list()] == [RUN_ID]
    bundle = old_store.load(RUN_ID)
    assert bundle.run_id == RUN_ID and run_id_for(bundle.config) == RUN_ID
    # written in format 0 (no version recorded), read in today's
    assert (bundle.stored_format, bundle.config["format_version"]) == (0, FORMAT_VERSION)
    test = bundle.metrics["test"]
    assert (test["n_prompts"], test["n_components"], test["n_effective"], test["n_params"]) == (8, 64, 1, 64)
    assert (test["acc_base"], test["flip_acc_pos"], test["flip_acc_neg"]) == (0.25, 0.25, 0.75)
    assert test["flip_acc_neg_ci95"] == [0.409275, 0.928521]
    assert test["l1"] == pytest.approx(0.883502721786499, abs=0)
    assert tuple(bundle.params["alpha.attn_out"].shape) == (2, 16)
    data, _ = bundle.checks()
    assert data["map"]["n_components"] == 64 and data["map"]["prompts"]["n"] == 8


def test_explore_draws_the_old_bundle(old_store):
    at = AppTest.from_file(str(ROOT / "app_pages" / "2_Explore.py"), default_timeout=60)
    at.query_params["run"] = RUN_ID
    at.run()
    assert not at.exception and not at.error
    keys = [c.proto.id.split("-fig-", 1)[1] for c in at.get("plotly_chart")]
    # the two maps first and the open tab's training curves, as SVG images; the other tabs closed
    assert keys == [] and len(at.get("image")) == 3
    for tab, key in (("checks", "checks-sufficiency"), ("reliability", "reliability")):
        opened = AppTest.from_file(str(ROOT / "app_pages" / "2_Explore.py"), default_timeout=60)
        opened.query_params["run"], opened.query_params["tab"] = RUN_ID, tab
        opened.run()
        assert not opened.exception and not opened.error
        assert key in [c.proto.id.split("-fig-", 1)[1] for c in opened.get("plotly_chart")]
    # Its checks predate k90 on the effect scale: shown as they were computed, and said so.
    (check,) = [i.value for i in at.info if i.value.startswith("**Map check.**")]
    assert check.startswith(
        "**Map check.** k90 = 1 of 64 components (1.6%): keeping only the top 1 reaches 0.50 mean flip rate, 90% of "
        "the full run's 0.50 (on all 8 test prompts; checks of an earlier version, on the mean flip rate rather than "
        "the effect above the unmodified model: run them again to update)."
    )


def test_the_top_components_of_a_run_without_heads_have_no_head_column(old_store):
    from actscale.views.analysis import top_components

    top = top_components(old_store.load(RUN_ID), k=5)
    assert list(top.columns) == ["site", "layer", "value", "metric", "position", "token", "abs"]
    assert len(top) == 5 and list(top["abs"]) == sorted(top["abs"], reverse=True)
