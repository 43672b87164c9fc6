"""Runs page through Streamlit's AppTest: the table, delete with confirmation, bundle upload,
the shareable link and broken bundles. No model is loaded by the page."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.errors import AppTestError

from actscale.engine.training import TrainConfig
from actscale.runs.api import train_run
from actscale.runs.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
RUNS = "app_pages/5_Runs.py"


@pytest.fixture(scope="module")
def source_runs(tiny_llama, tmp_path_factory):
    """Two tiny runs, trained once; each test copies them into its own store."""
    store = RunStore(tmp_path_factory.mktemp("runs-src") / "runs")
    a = train_run(TrainConfig(model="tiny-llama", steps=3, n_prompts=16, seed=1), tiny_llama, store=store)
    b = train_run(
        TrainConfig(model="tiny-llama", method="dynscalar", steps=3, n_prompts=16, seed=2), tiny_llama, store=store
    )
    return store, a.run_id, b.run_id


@pytest.fixture
def ui_store(tmp_path, monkeypatch, source_runs) -> RunStore:
    monkeypatch.setenv("ACTSCALE_MODEL", "tiny-llama")
    monkeypatch.setenv("ACTSCALE_STORE", str(tmp_path / "runs"))
    monkeypatch.chdir(ROOT)
    store = RunStore(tmp_path / "runs")
    src, a, b = source_runs
    for run_id in (a, b):
        store.import_zip(src.export_zip(run_id))
    return store


def runs_page(query_run: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(RUNS)
    if query_run:
        at.query_params["run"] = query_run
    return at.run()


def test_runs_smoke(ui_store, source_runs):
    _, a, b = source_runs
    at = runs_page()
    assert not at.exception and not at.error and not at.warning
    assert at.title[0].value == "Runs"
    table = at.dataframe[0].value
    assert set(table["run_id"]) == {a, b}
    assert {"model", "task", "method", "created", "test_flip_acc_pos", "test_faithfulness_kl", "n_params"} <= set(
        table.columns
    )
    labels = [d.label for d in at.get("download_button")]
    assert labels == ["Download table (CSV)", "Download the bundle (.zip)", "Download the HTML report"]
    chosen = at.selectbox(key="runs_pick").value
    assert at.code[0].value == f"/Explore?run={chosen}"
    assert f"Open run {chosen} on Explore" in [p.value for p in at.get("page_link")]
    assert at.file_uploader(key="runs_upload") is not None


def test_query_param_preselects_the_run(ui_store, source_runs):
    _, a, b = source_runs
    for run_id in (a, b):
        at = runs_page(query_run=run_id)
        assert not at.exception
        assert at.selectbox(key="runs_pick").value == run_id
        assert at.code[0].value == f"/Explore?run={run_id}"
    at = runs_page(query_run="../../etc/passwd")
    assert not at.exception
    assert len(at.error) == 1 and "invalid run id" in at.error[0].value


def test_delete_needs_confirmation_and_removes_exactly_that_run(ui_store, source_runs):
    _, a, b = source_runs
    at = runs_page()
    at.selectbox(key="runs_pick").set_value(b).run()
    delete = at.button(key="runs_delete")
    assert delete.disabled
    with pytest.raises(AppTestError):  # a browser cannot click it either
        delete.click()
    assert {r.run_id for r in ui_store.list()} == {a, b}

    at.checkbox(key=f"runs_confirm_delete_{b}").check().run()
    assert not at.button(key="runs_delete").disabled
    at.button(key="runs_delete").click().run()
    assert not at.exception
    assert [r.run_id for r in ui_store.list()] == [a]
    assert any(f"Deleted run {b}" in s.value for s in at.success)
    assert set(at.dataframe[0].value["run_id"]) == {a}
    assert at.selectbox(key="runs_pick").value == a
    # The next run starts unconfirmed: one click cannot delete the other run.
    assert at.button(key="runs_delete").disabled


def test_upload_garbage_is_one_error_and_a_good_bundle_is_imported(ui_store, source_runs, tmp_path):
    src, a, _ = source_runs
    at = runs_page()
    at.file_uploader(key="runs_upload").upload("junk.zip", b"this is not a zip file", "application/zip")
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and "junk.zip" in at.error[0].value and "\n" not in at.error[0].value
    assert len(ui_store.list()) == 2

    # A zip with the right names but a truncated params file: validated, refused, nothing written.
    import io
    import zipfile

    good = src.export_zip(a)
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as zin, zipfile.ZipFile(buf, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info, data[:20] if info.filename.endswith("params.safetensors") else data)
    at.file_uploader(key="runs_upload").upload("truncated.zip", buf.getvalue(), "application/zip")
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and "params.safetensors" in at.error[0].value
    assert len(ui_store.list()) == 2

    # A real bundle from another store is imported and selected.
    other = RunStore(tmp_path / "elsewhere")
    other_id = train_run(TrainConfig(model="tiny-llama", steps=2, n_prompts=8, seed=7), _tiny(), store=other).run_id
    at.file_uploader(key="runs_upload").upload("run.zip", other.export_zip(other_id), "application/zip")
    at.run()
    assert not at.exception and not at.error and not at.warning
    assert [s.value for s in at.success] == [f"Imported run {other_id}."]
    assert other_id in {r.run_id for r in ui_store.list()}
    assert at.selectbox(key="runs_pick").value == other_id
    # The same bundle again: the stored run is kept, and the page says so instead of "Imported".
    at.file_uploader(key="runs_upload").upload("run (1).zip", other.export_zip(other_id), "application/zip")
    at.run()
    assert not at.exception and not at.error and not at.warning and not at.success
    assert [i.value for i in at.info] == [f"Run {other_id} is already in the store: the stored run is kept as it is."]
    assert len(ui_store.list()) == 3


def _tiny():
    from actscale.engine.models import load_model

    return load_model("tiny-llama", "cpu")


def test_broken_bundle_is_listed_and_the_page_keeps_working(ui_store, source_runs):
    _, a, b = source_runs
    params = ui_store.path(b) / "params.safetensors"
    params.write_bytes(params.read_bytes()[:50])  # truncated
    before = {p.name: p.read_bytes() for p in (ui_store.path(a)).iterdir()}

    at = runs_page()
    assert not at.exception
    table = at.dataframe[0].value.set_index("run_id")
    assert table.loc[b, "status"] == "broken" and "params.safetensors" in table.loc[b, "reason"]
    assert table.loc[a, "status"] == "ok"
    assert any(b in w.value and "params.safetensors" in w.value for w in at.warning)

    at.selectbox(key="runs_pick").set_value(b).run()
    assert not at.exception
    assert len(at.error) == 1 and "broken" in at.error[0].value
    assert [d.label for d in at.get("download_button")] == ["Download table (CSV)"]
    # The broken run can be deleted; the good one is untouched.
    at.checkbox(key=f"runs_confirm_delete_{b}").check().run()
    at.button(key="runs_delete").click().run()
    assert not at.exception
    assert [r.run_id for r in ui_store.list()] == [a]
    assert {p.name: p.read_bytes() for p in ui_store.path(a).iterdir()} == before


def test_empty_store(ui_store):
    for row in ui_store.list():
        ui_store.delete(row.run_id)
    at = runs_page()
    assert not at.exception and not at.error
    assert any("No runs in the store yet" in i.value for i in at.info)
    assert at.file_uploader(key="runs_upload") is not None


def test_the_report_and_the_bundle_show_their_size(ui_store, source_runs):
    from actscale.views.report import human_size, render_report

    _, a, _ = source_runs
    at = runs_page(query_run=a)
    assert not at.exception and not at.error
    page = render_report(ui_store.load(a)).encode()
    bundle_zip = ui_store.export_zip(a)
    captions = [c.value for c in at.caption]
    assert f"{human_size(len(page))}: one HTML file, plotly.js included once" in captions
    assert f"{human_size(len(bundle_zip))}: every file of the run, for another actscale store" in captions
    report = next(d for d in at.get("download_button") if d.proto.label == "Download the HTML report")
    assert report.proto.help.startswith("One file: what the figures show and cannot show")
