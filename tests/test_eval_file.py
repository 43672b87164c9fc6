"""`evaluate_file` / `eval --dataset FILE`: every usable row of another file evaluated as one
set (its split column ignored), with how many rows were dropped and why (docs/usage.md)."""

from __future__ import annotations

import csv
import json

import pytest

from actscale.engine.training import TrainConfig
from actscale.errors import ActscaleError
from actscale.runs.api import MINIMALITY, evaluate_file, evaluate_run, train_run
from actscale.runs.store import RunStore

EXTRA = [  # after the run's own prompts: 11 tokens, 41 tokens, a two-token answer
    {"prompt": "Mary and John went. John gave a drink to", "correct": " Mary", "wrong": " John", "split": ""},
    {"prompt": " ".join(["Mary"] * 40), "correct": " Mary", "wrong": " John", "split": ""},
    {"prompt": "Then Mary and John", "correct": " Mary Ann", "wrong": " John", "split": ""},
]


@pytest.fixture(scope="module", params=["answer", "absolute"])
def run_and_file(request, tiny_llama, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"eval-{request.param}")
    config = TrainConfig(model="tiny-llama", steps=3, n_prompts=16, n_test=8, positions=request.param)
    bundle = train_run(config, tiny_llama, store=RunStore(root / "runs"))
    own = [json.loads(line) for line in (bundle.path / "dataset.jsonl").read_text().splitlines()]
    path = root / "other.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["prompt", "correct", "wrong", "split"])
        writer.writeheader()  # every row of the file says "train": nothing trains on it, every usable row counts
        writer.writerows([{k: r[k] for k in ("prompt", "correct", "wrong")} | {"split": "train"} for r in own])
        writer.writerows(EXTRA)
    return request.param, bundle, path


def test_every_usable_row_is_evaluated_and_each_drop_is_counted_with_its_reason(tiny_llama, run_and_file):
    positions, bundle, path = run_and_file
    metrics, task = evaluate_file(bundle, tiny_llama, path)
    width = bundle.record.provenance.n_pos
    assert set(metrics) == {"dataset"} and {e.split for e in task.examples} == {"test"}
    if positions == "answer":  # any length up to the run's width: the 11-token prompt counts
        assert (metrics["dataset"]["n_prompts"], width) == (25, 19)
        assert task.drop_summary() == "dropped 2: 1 longer than the run's 19 positions, 1 multi-token answer"
    else:  # absolute positions: the run's own length only
        assert (metrics["dataset"]["n_prompts"], width) == (24, 16)
        assert task.drop_summary() == (
            "dropped 3: 1 longer than the run's 16 positions, 1 multi-token answer, 1 length 11 not the run's length 16"
        )
    # the run's own prompts, evaluated as one set, count exactly what its splits count together
    own = evaluate_run(bundle, tiny_llama)
    for name in ("flip_acc_pos", "flip_acc_neg", "acc_base"):
        hits = round(sum(m["n_prompts"] * m[name] for m in own.values()))
        extra = round(metrics["dataset"]["n_prompts"] * metrics["dataset"][name]) - hits
        assert extra in ((0, 1) if positions == "answer" else (0,))  # only the 11-token prompt may add one
    assert {k: metrics["dataset"][k] for k in MINIMALITY} == {k: bundle.metrics["test"][k] for k in MINIMALITY}


@pytest.mark.parametrize("beta", [float("nan"), float("inf"), -0.5, 1001])
def test_a_beta_out_of_range_is_one_line_before_any_pass(tiny_llama, run_and_file, beta):
    _, bundle, path = run_and_file
    message = f"beta must be a number in [0, 1000] (+beta and -beta are both evaluated), got {beta!r}"
    for evaluate in (
        lambda: evaluate_run(bundle, tiny_llama, beta=beta),
        lambda: evaluate_file(bundle, tiny_llama, path, beta),
    ):
        with pytest.raises(ActscaleError) as raised:
            evaluate()
        assert str(raised.value) == message
