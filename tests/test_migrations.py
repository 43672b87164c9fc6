"""The bundle format's versions: config.json records the format it was written in, a bundle of
an earlier format is migrated in memory one step at a time (its files and run id unchanged),
and a bundle from a newer actscale is refused with one line."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from actscale.errors import BrokenBundleError
from actscale.runs.bundle import BundleContents, load_bundle, run_id_for
from actscale.runs.migrations import FORMAT_VERSION, MIGRATIONS, format_version, migrate_config
from actscale.runs.store import RunStore

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "store-v0"
RUN_ID = "d747765517847488"


def test_one_migration_per_step_up_to_today():
    assert FORMAT_VERSION == 1 and sorted(MIGRATIONS) == list(range(FORMAT_VERSION))


def test_format_0_gains_the_fields_with_their_old_meaning():
    old = {"seed": 3, "method": "activscalar"}
    assert migrate_config(old) == {
        "seed": 3,
        "method": "activscalar",
        "positions": "absolute",
        "data_seed": 3,
        "tau": 0.05,
        "format_version": 1,
    }
    assert old == {"seed": 3, "method": "activscalar"}  # a copy: the stored dict is not touched
    kept = {"seed": 3, "positions": "answer", "data_seed": 7, "tau": 0.1}
    assert migrate_config(kept) == {**kept, "format_version": 1}
    assert migrate_config({"format_version": 1, "seed": 3}) == {"format_version": 1, "seed": 3}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (2, "the bundle is in format 2, written by a newer actscale; this one reads formats up to 1: upgrade "
            "actscale to open it"),
        (-1, "config.json's format_version '-1' is not a version number"),
        ("1", "config.json's format_version '1' is not a version number"),
        (True, "config.json's format_version 'True' is not a version number"),
    ],
)  # fmt: skip
def test_a_version_this_actscale_cannot_read_is_one_line(value, message):
    with pytest.raises(BrokenBundleError) as err:
        format_version({"format_version": value})
    assert str(err.value) == message


def _copy(tmp_path: Path) -> RunStore:
    shutil.copytree(FIXTURE, tmp_path / "runs")
    return RunStore(tmp_path / "runs")


def test_a_newer_bundle_is_listed_broken_and_refused(tmp_path):
    store = _copy(tmp_path)
    path = store.root / RUN_ID / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "format_version": 5}))
    reason = (
        "the bundle is in format 5, written by a newer actscale; this one reads formats up to 1: "
        "upgrade actscale to open it"
    )
    [row] = store.list()
    assert (row.ok, row.reason) == (False, reason)
    with pytest.raises(BrokenBundleError, match="^the bundle is in format 5"):
        load_bundle(store.root / RUN_ID)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in (store.root / RUN_ID).iterdir():
            zf.write(f, f"{RUN_ID}/{f.name}")
    with pytest.raises(BrokenBundleError, match="^the bundle is in format 5"):
        RunStore(tmp_path / "other").import_zip(buf.getvalue())
    assert not (tmp_path / "other").exists() or list((tmp_path / "other").iterdir()) == []


def test_saving_records_todays_format_and_keeps_the_run_id(tmp_path):
    old = _copy(tmp_path).load(RUN_ID)
    store = RunStore(tmp_path / "new")
    raw = json.loads((FIXTURE / RUN_ID / "config.json").read_text())
    path = store.save(BundleContents(raw, old.params, old.metrics, old.history, old.dataset, old.analysis, old.info))
    written = json.loads((path / "config.json").read_text())
    assert (path.name, written["format_version"], run_id_for(written)) == (RUN_ID, FORMAT_VERSION, RUN_ID)
    again = store.load(RUN_ID)
    assert again.stored_format == FORMAT_VERSION and again.config == {**raw, "format_version": FORMAT_VERSION}
    [row] = store.list()
    assert row.config == again.config
