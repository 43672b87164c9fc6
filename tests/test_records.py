"""A stored run as typed records (`runs.records`): the committed format-0 fixture bundle read
through them, hand-edited values read as absent, a configuration no run can have refused in one
line, and no page, view or check reading the bundle's JSON dicts."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from actscale.engine.config import TrainConfig
from actscale.runs.records import ModelShape, RunRecord, SplitMetrics
from actscale.runs.store import RunStore
from actscale.views.analysis import rate_text

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "store-v0"
RUN_ID = "d747765517847488"


@pytest.fixture
def old_store(tmp_path) -> RunStore:
    shutil.copytree(FIXTURE, tmp_path / "runs")
    return RunStore(tmp_path / "runs")


def test_the_fixture_bundle_as_records(old_store):
    record = old_store.load(RUN_ID).record
    assert record.config == TrainConfig(
        model="tiny-llama", steps=3, lr=0.1, batch_size=4, lambda_m=0.05, n_prompts=16, n_test=8, device="cpu",
        prepend_bos=True, positions="absolute", autocast="off",
    )  # fmt: skip
    made = record.provenance
    assert (made.run_id, made.created, made.n_pos, made.stored_format) == (RUN_ID, "2026-12-03T21:21:33+00:00", 16, 0)
    assert made.model_shape == ModelShape(n_layers=2, d_model=64, n_heads=4, d_head=16, d_vocab=192)
    assert (made.weights_hash, made.dataset_hash, made.versions["torch"]) == (
        "870c69c54c7cf7ff",
        "de164fd4365dfdf5",
        "2.13.0+cpu",
    )
    test = record.split("test")
    assert (test.n_prompts, test.acc_base, test.flip_acc_pos, test.flip_acc_neg) == (8, 0.25, 0.25, 0.75)
    assert (test.flip_acc_neg_ci95, test.n_components, test.n_effective) == ((0.409275, 0.928521), 64, 1)
    assert test.mean_flip == 0.5 and test.base_rate("flip_acc_neg") == 0.75 and test.base_rate("acc_base") is None
    assert record.split_names == ["train", "val", "test"] and record.reported_split == "test"
    assert record.split("nowhere") == SplitMetrics()
    # Back to metrics.json's form, value for value.
    stored = json.loads((FIXTURE / RUN_ID / "metrics.json").read_text())
    assert {split: m.to_json() for split, m in record.splits.items()} == stored
    assert rate_text(test, "flip_acc_neg") == "0.75 → 0.75 [0.41, 0.93] (n = 8)"


def test_a_hand_edited_value_reads_as_absent():
    m = SplitMetrics.from_json(
        {"acc_base": "high", "n_prompts": 3.5, "flip_acc_pos": 0.5, "flip_acc_pos_ci95": [0.1], "k": 2, "l1": True}
    )
    assert (m.acc_base, m.n_prompts, m.flip_acc_pos, m.flip_acc_pos_ci95, m.l1) == (None, None, 0.5, None, None)
    assert m.extra == {"k": 2}  # a metric a method adds is kept
    assert rate_text(m, "flip_acc_pos") == "0.50" and rate_text(m, "flip_acc_neg") == "" and m.mean_flip is None
    assert SplitMetrics.from_json({"acc_base": float("nan")}).acc_base is None


def test_a_configuration_no_run_can_have_is_one_line(old_store):
    path = old_store.path(RUN_ID) / "config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "task": "sst2"}))
    (row,) = old_store.list()
    assert not row.ok and row.record is None
    assert (
        row.reason == "config.json is not a valid run configuration (unknown task 'sst2': choose from ioi, ccc, custom)"
    )


def test_a_record_is_built_from_todays_config_json():
    config = {
        **TrainConfig(model="m", seed=5, autocast="off").to_record(),  # config.json leaves "off" out
        "run_id": "0123456789abcdef",
        "n_pos": 12,
        "model_dims": {"n_layers": 3, "d_model": 8, "n_heads": 2, "d_head": 4},
        "versions": "not a mapping",
    }
    record = RunRecord.from_json(config, {"val": {"n_prompts": 4}}, stored_format=1)
    assert record.config == TrainConfig(model="m", seed=5, autocast="off")
    assert record.provenance.model_shape == ModelShape(3, 8, 2, 4, None) and record.provenance.versions == {}
    assert record.reported_split == "val" and record.split("val").n_prompts == 4


# What reads the bundle's JSON as dicts; the run bundle's own module, the migrations and the
# report's "Configuration" table (config.json shown whole) may.
DICT_READS = re.compile(r"\.(config|metrics)(\.get\(|\[)|\bcfg(\.get\(|\[\")")


def test_pages_views_and_checks_read_records_not_dicts():
    found = []
    folders = ["app_pages", "actscale/views", "actscale/ui", "actscale/checks", "actscale/cli", "actscale/runs"]
    for path in sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py")):
        if path.name in ("bundle.py", "migrations.py", "records.py"):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if DICT_READS.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert found == []
