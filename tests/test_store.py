"""The run store: bundle format (docs/interfaces.md), atomic writes, run ids, reuse, round trips
(a stored run met again: test_store_reuse)."""

from __future__ import annotations

import csv
import json
import re

import pytest
from conftest import observer
from safetensors import safe_open

import actscale.runs.store as store_module
from actscale.engine.objective import METRIC_NAMES
from actscale.engine.training import TrainConfig
from actscale.errors import ActscaleError
from actscale.runs.api import build_task, evaluate_run, expected_run_id, intervention_from_bundle, load_run, train_run
from actscale.runs.bundle import BundleContents, run_id_for

METRICS = set(METRIC_NAMES)  # every metric of docs/method.md §4
FILES = {
    "config.json",
    "params.safetensors",
    "metrics.json",
    "history.csv",
    "dataset.jsonl",
    "analysis.safetensors",
    "analysis.json",
}


def config(model, **changes) -> TrainConfig:
    base = dict(
        model=model.name,
        method="activscalar",
        steps=3,
        n_prompts=16,
        n_test=8,
        batch_size=4,
        early_stop=0,
        lr=0.05,
        device="cpu",
    )
    return TrainConfig(**{**base, **changes})


@pytest.mark.parametrize("method", ["activscalar", "steervec", "dynscalar"])
def test_save_load_evaluate_gives_the_training_metrics(tiny_llama, store, method):
    bundle = train_run(config(tiny_llama, method=method, sites=("attn_out", "head")), tiny_llama, store=store)
    loaded = load_run(bundle.run_id, store)
    assert loaded.metrics == bundle.metrics and set(loaded.metrics) == {"train", "val", "test"}
    assert load_run(str(bundle.path)).run_id == bundle.run_id
    again = evaluate_run(loaded, tiny_llama)
    for split in ("train", "val", "test"):
        assert set(again[split]) == METRICS
        for name, value in bundle.metrics[split].items():
            assert again[split][name] == pytest.approx(value, abs=1e-6), (split, name)


@pytest.mark.parametrize(
    "method,shapes",
    [
        ("activscalar", {"alpha.attn_out": [2, 16], "alpha.head": [2, 16, 4]}),
        ("steervec", {"vector.attn_out": [2, 16, 64], "vector.head": [2, 16, 4, 16]}),
        ("dynscalar", {"w.attn_out": [2, 64], "b.attn_out": [2], "w.head": [2, 4, 16], "b.head": [2, 4]}),
    ],
)
def test_bundle_files_and_tensors(tiny_llama, store, method, shapes):
    cfg = config(tiny_llama, method=method, sites=("attn_out", "head"))
    bundle = train_run(cfg, tiny_llama, store=store)
    path = bundle.path
    assert path == store.root / bundle.run_id and re.fullmatch(r"[0-9a-f]{16}", bundle.run_id)
    assert {p.name for p in path.iterdir()} == FILES
    with safe_open(str(path / "params.safetensors"), framework="pt") as fh:
        assert {k: list(fh.get_slice(k).get_shape()) for k in fh.keys()} == shapes
        assert {str(fh.get_tensor(k).dtype) for k in fh.keys()} == {"torch.float32"}
    saved = json.loads((path / "config.json").read_text())
    for key in (
        "model",
        "weights_hash",
        "method",
        "sites",
        "steps",
        "lr",
        "batch_size",
        "margin",
        "lambda_f",
        "lambda_m",
        "seed",
        "n_prompts",
        "test_frac",
        "device",
        "dtype",
        "dataset_hash",
        "versions",
        "created",
        "run_id",
    ):
        assert key in saved, key
    assert (saved["model"], saved["method"], saved["sites"], saved["dtype"]) == (
        "tiny-llama",
        method,
        ["attn_out", "head"],
        "float32",
    )
    assert saved["weights_hash"] == tiny_llama.weights_hash and saved["run_id"] == bundle.run_id
    assert set(saved["versions"]) >= {"actscale", "torch", "transformers", "transformer-lens"}
    metrics = json.loads((path / "metrics.json").read_text())
    assert set(metrics) == {"train", "val", "test"} and all(set(m) == METRICS for m in metrics.values())
    rows = [json.loads(line) for line in (path / "dataset.jsonl").read_text().splitlines()]
    assert all(set(r) == {"prompt", "correct", "wrong", "split", "group", "counterfactual"} for r in rows)
    assert {r["group"] for r in rows} <= {"subordinate", "two-sentences", "coordinated", "scene-first"}  # IOI families
    assert [r["split"] for r in rows].count("test") == metrics["test"]["n_prompts"] == 8
    assert (metrics["train"]["n_prompts"], metrics["val"]["n_prompts"]) == (13, 3)  # 16 with 20% for validation
    assert len(rows) == sum(m["n_prompts"] for m in metrics.values())


def test_history_csv(tiny_llama, store):
    bundle = train_run(config(tiny_llama, steps=4), tiny_llama, store=store)
    with open(bundle.path / "history.csv", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = list(reader)
    assert header[:5] == ["step", "loss", "effectiveness", "faithfulness", "minimality"]
    assert set(header[5:]) == {"flip_acc_pos", "flip_acc_neg", "elapsed"}
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4]
    assert [h["step"] for h in bundle.history] == [1.0, 2.0, 3.0, 4.0]


def test_run_id_is_deterministic_and_reused(tiny_llama, store):
    cfg = config(tiny_llama, steps=3)
    steps = []
    first = train_run(cfg, tiny_llama, store=store, observer=observer(lambda i: steps.append(i.step)))
    assert steps == [1, 2, 3]
    second = train_run(cfg, tiny_llama, store=store, observer=observer(lambda i: steps.append(i.step)))
    assert steps == [1, 2, 3]  # reused: not trained again
    assert second.run_id == first.run_id and second.config["created"] == first.config["created"]
    assert first.run_id == run_id_for(first.config) == expected_run_id(tiny_llama, build_task(tiny_llama, cfg), cfg)
    # The created time is not part of the identity; any hyperparameter is.
    assert run_id_for({**first.config, "created": "1999-01-01T00:00:00+00:00"}) == first.run_id
    assert run_id_for({**first.config, "lr": 0.5}) != first.run_id
    other = train_run(cfg.replace(seed=1), tiny_llama, store=store)
    assert other.run_id != first.run_id
    assert sorted(r.run_id for r in store.list()) == sorted([first.run_id, other.run_id])


def test_writes_are_atomic(tiny_llama, store, monkeypatch):
    train_run(config(tiny_llama), tiny_llama, store=store)
    assert [p.name for p in store.root.iterdir() if p.name.startswith(".")] == []

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store_module, "write_history", broken)
    with pytest.raises(OSError, match="disk full"):
        train_run(config(tiny_llama, seed=7), tiny_llama, store=store)
    assert len(list(store.root.iterdir())) == 1  # the first run only: no half-written folder
    assert len(store.list()) == 1


def test_delete_and_list(tiny_llama, store):
    bundle = train_run(config(tiny_llama), tiny_llama, store=store)
    (listed,) = store.list()
    assert (listed.run_id, listed.ok, listed.config["method"]) == (bundle.run_id, True, "activscalar")
    assert listed.metrics == bundle.metrics
    store.delete(bundle.run_id)
    assert store.list() == [] and list(store.root.iterdir()) == []
    with pytest.raises(ActscaleError) as info:
        store.delete(bundle.run_id)
    assert str(info.value) == f"no run {bundle.run_id} in {store.root}"
    with pytest.raises(ActscaleError) as info:
        load_run(bundle.run_id, store)
    assert str(info.value) == f"no run {bundle.run_id} in {store.root}"
    with pytest.raises(ActscaleError, match=r"^invalid run id '\.\./etc': a run id is 16 hexadecimal digits$"):
        store.load("../etc")


def test_bundle_refuses_another_model(tiny_llama, tiny_gpt2, store):
    bundle = train_run(config(tiny_llama), tiny_llama, store=store)
    with pytest.raises(ActscaleError) as info:
        intervention_from_bundle(bundle, tiny_gpt2)
    assert str(info.value) == (
        f"run {bundle.run_id} was trained on model 'tiny-llama' (weights {tiny_llama.weights_hash}); "
        f"the loaded model is 'tiny-gpt2' ({tiny_gpt2.weights_hash})"
    )


def test_evaluate_run_with_beta_zero_is_the_base_model(tiny_llama, store):
    bundle = train_run(config(tiny_llama, lr=0.3), tiny_llama, store=store)
    metrics = evaluate_run(bundle, tiny_llama, beta=0.0)
    for m in metrics.values():
        assert m["logit_diff_pos"] == m["logit_diff_neg"] == pytest.approx(m["logit_diff_base"], abs=1e-6)
        assert m["faithfulness_kl"] == pytest.approx(0.0, abs=1e-7)


def test_list_orders_runs_made_in_the_same_second_by_when_they_were_written(store):
    """`created` has one-second resolution: runs written within one second still list newest first."""
    import os

    import torch

    from actscale.runs.bundle import run_id_for

    paths, ids = [], []
    for i in range(3):
        config = {
            "method": "activscalar",
            "sites": ["attn_out"],
            "seed": i,
            "created": "2026-01-01T00:00:00+00:00",
            "n_pos": 2,
            "model_dims": {"n_layers": 1, "d_model": 4, "n_heads": 1, "d_head": 4},
        }
        paths.append(store.save(BundleContents(config, {"alpha.attn_out": torch.zeros(1, 2)}, {"train": {}}, [], [])))
        ids.append(run_id_for(config))
    for order in (ids, ids[::-1]):  # both orders, so a lucky sort by id cannot pass
        for rank, run_id in enumerate(order):
            os.utime(paths[ids.index(run_id)], ns=(10**18 + rank, 10**18 + rank))
        assert [r.run_id for r in store.list()] == order[::-1]


def test_a_store_where_a_file_is_is_refused_before_anything_trains(tmp_path, tiny_llama, monkeypatch, capsys):
    """`--store` naming a file (or a folder under one) had trained the whole run and then lost it
    to "FileExistsError" when it was saved."""
    from actscale import cli as cli_module
    from actscale.runs import api
    from actscale.runs.store import RunStore

    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    for root in (afile, afile / "runs"):
        with pytest.raises(ActscaleError) as raised:
            RunStore(root).check_writable()
        assert str(raised.value) == f"the run store {root} cannot be a folder: {afile} is a file"
    RunStore(tmp_path / "new" / "runs").check_writable()  # a folder still to be made is fine

    def no_training(*args, **kwargs):
        raise AssertionError("the store must be refused before training")

    monkeypatch.setattr(api, "train", no_training)
    config = TrainConfig(model="tiny-llama", steps=1, n_prompts=16, n_test=8)
    with pytest.raises(ActscaleError, match="cannot be a folder"):
        train_run(config, tiny_llama, store=afile / "runs")
    args = ["--model", "tiny-llama", "--steps", "1", "--n-prompts", "16", "--n-test", "8", "--store", str(afile)]
    assert cli_module.main(["train", *args]) == 2  # before the model loads: no "loading model" line
    assert capsys.readouterr().err == f"error: the run store {afile} cannot be a folder: {afile} is a file\n"
    assert cli_module.main(["sweep", *args]) == 2
    assert capsys.readouterr().err == f"error: the run store {afile} cannot be a folder: {afile} is a file\n"
    assert afile.read_text() == "mine"


def test_load_run_names_a_folder_that_is_not_a_run_and_a_path_that_is_not_there(tmp_path):
    """`eval --run /tmp` had said "invalid run id '/tmp'", and `--run runs/nope` the same."""
    for run, message in [
        (tmp_path, f"{tmp_path} is a folder but not a run's: it has no config.json"),
        (tmp_path / "runs" / "nope", f"no run folder {tmp_path / 'runs' / 'nope'}"),
        ("0" * 16, f"no run {'0' * 16} in {tmp_path / 'store'}"),
        ("zzz", "invalid run id 'zzz': a run id is 16 hexadecimal digits"),
    ]:
        with pytest.raises(ActscaleError) as raised:
            load_run(str(run), store=tmp_path / "store")
        assert str(raised.value) == message
