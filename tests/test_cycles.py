"""How long a run trains: cycles of the method's steps until the validation prompts reach the
target in both directions (docs/method.md §3), what a run records about it, and the one sentence
the CLI, the Train page and the report give where the target was not reached."""

from __future__ import annotations

import pytest
import torch

from actscale.engine import training
from actscale.engine.config import DEFAULT_CYCLES
from actscale.engine.interventions import method_class
from actscale.engine.training import TrainConfig, target_outcome, train
from actscale.runs.api import build_task, run_config
from actscale.views.analysis import target_text


def config(model, **changes) -> TrainConfig:
    base = dict(model=model.name, task="ioi", steps=2, n_prompts=16, n_test=8, batch_size=4, device="cpu")
    return TrainConfig(**{**base, **changes})


def test_default_steps_adapt_and_given_steps_are_kept():
    default = TrainConfig(model="tiny-llama")
    assert (default.steps, default.cycles, default.target) == (method_class("activscalar").defaults.steps, 4, 0.9)
    assert DEFAULT_CYCLES == 4
    assert TrainConfig(model="tiny-llama", steps=7).cycles == 1
    assert TrainConfig(model="tiny-llama", steps=7, cycles=3).cycles == 3
    # New steps resolve the cycles afresh unless they are given; a new method takes its own steps.
    assert default.replace(steps=5).cycles == 1
    assert default.replace(steps=5, cycles=2).cycles == 2
    assert TrainConfig(model="tiny-llama", steps=7).replace(method="steervec").cycles == 4
    assert default.replace(seed=3).cycles == 4
    # One cycle: the target cannot matter, so it is one spelling (and config.json leaves both out).
    assert TrainConfig(model="tiny-llama", steps=7, target=0.5) == TrainConfig(model="tiny-llama", steps=7)
    assert TrainConfig(model="tiny-llama", cycles=2, target=0.5).target == 0.5


def test_config_json_leaves_one_cycle_out_so_older_run_ids_hold(tiny_llama):
    one = config(tiny_llama)
    task = build_task(tiny_llama, one)
    record = run_config(tiny_llama, task, one)
    assert "cycles" not in record and "target" not in record
    adaptive = run_config(tiny_llama, task, one.replace(cycles=3))
    assert adaptive["cycles"] == 3 and "target" not in adaptive  # at its default, read back as such
    assert TrainConfig.from_bundle(adaptive).target == 0.9
    assert run_config(tiny_llama, task, one.replace(cycles=3, target=0.8))["target"] == 0.8
    assert TrainConfig.from_bundle(record).cycles == 1  # a stored run without them: one cycle


def test_the_run_ends_after_the_first_cycle_that_reaches_the_target(tiny_llama, monkeypatch):
    flips = iter([(1.0, 0.5), (0.95, 0.9), (0.0, 0.0)])
    monkeypatch.setattr(training, "validation_flips", lambda *a: next(flips))
    cfg = config(tiny_llama, cycles=4)
    seen: list[tuple[int, int]] = []

    class Watch(training.RunObserver):
        def step(self, info) -> None:
            seen.append((info.step, info.n_steps))

    result = train(tiny_llama, build_task(tiny_llama, cfg), cfg, observer=Watch())
    assert (result.steps_run, result.cycles_run, result.stopped_early) == (4, 2, False)
    assert seen == [(1, 2), (2, 2), (3, 4), (4, 4)]  # the bar grows by a cycle when one more is needed
    assert next(flips) == (0.0, 0.0)  # read after cycles 1 and 2 only


def test_the_last_cycle_is_not_judged_and_the_outcome_says_so(tiny_llama, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(training, "validation_flips", lambda *a: calls.append(1) or (0.0, 0.0))
    cfg = config(tiny_llama, cycles=3, target=1.0)
    result = train(tiny_llama, build_task(tiny_llama, cfg), cfg)
    assert (result.steps_run, result.cycles_run, len(calls)) == (6, 3, 2)
    val = result.metrics["val"]
    outcome = target_outcome(cfg, result.metrics, result.cycles_run)
    assert outcome == {
        "target": 1.0,
        "split": "val",
        "n": val["n_prompts"],
        "flip_acc_pos": val["flip_acc_pos"],
        "flip_acc_neg": val["flip_acc_neg"],
        "met": min(val["flip_acc_pos"], val["flip_acc_neg"]) >= 1.0,
        "cycles_run": 3,
        "cycles": 3,
        "steps": 2,
    }


def test_the_first_cycle_is_the_one_cycle_run_and_each_cycle_restarts_the_rate(tiny_llama):
    one = config(tiny_llama, steps=3)
    task = build_task(tiny_llama, one)
    alone = train(tiny_llama, task, one)
    longer = train(tiny_llama, task, one.replace(cycles=2, target=1.0))
    assert longer.steps_run in (3, 6)
    assert longer.history[:3] == [{**r, "elapsed": s["elapsed"]} for r, s in zip(alone.history, longer.history)]
    optimiser = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=one.lr)
    schedule = training._schedule(optimiser, one)  # noqa: SLF001 - the schedule itself is under test
    for _ in range(3):
        optimiser.step()
        schedule.step()
    assert optimiser.param_groups[0]["lr"] < one.lr / 10
    training._schedule(optimiser, one)  # noqa: SLF001
    assert optimiser.param_groups[0]["lr"] == one.lr


def test_without_validation_prompts_the_training_prompts_are_judged(tiny_llama):
    cfg = config(tiny_llama, val_frac=0.0, cycles=2)
    result = train(tiny_llama, build_task(tiny_llama, cfg), cfg)
    outcome = target_outcome(cfg, result.metrics, result.cycles_run)
    assert outcome is not None
    assert (outcome["split"], outcome["n"]) == ("train", result.metrics["train"]["n_prompts"])


def test_a_run_of_given_steps_has_no_target(tiny_llama):
    cfg = config(tiny_llama)
    assert cfg.cycles == 1
    result = train(tiny_llama, build_task(tiny_llama, cfg), cfg)
    assert target_outcome(cfg, result.metrics, result.cycles_run) is None


UNMET = {
    "target": {
        "target": 0.9,
        "split": "val",
        "n": 10,
        "flip_acc_pos": 1.0,
        "flip_acc_neg": 0.5,
        "met": False,
        "cycles_run": 4,
        "cycles": 4,
        "steps": 18,
    }
}


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (
            UNMET,
            "Validation target not reached: after 72 steps (4 cycles of 18) the 10 validation prompts flip 1.00 at "
            "β = +1 and 0.50 at β = −1, where the target is 0.90 in both directions; try more cycles, a higher "
            "learning rate (now 0.1) or more training prompts.",
        ),
        (
            {"target": {**UNMET["target"], "cycles_run": 2, "cycles": 2, "steps": 3, "split": "train"}},
            "Validation target not reached: after 6 steps (2 cycles of 3) the 10 training prompts flip 1.00 at "
            "β = +1 and 0.50 at β = −1, where the target is 0.90 in both directions; try more cycles, a higher "
            "learning rate (now 0.1) or more training prompts.",
        ),
        (
            {"target": {**UNMET["target"], "n": 1, "flip_acc_neg": 0.0}},  # one prompt: `train --n-prompts 3`
            "Validation target not reached: after 72 steps (4 cycles of 18) the 1 validation prompt flips 1.00 at "
            "β = +1 and 0.00 at β = −1, where the target is 0.90 in both directions; try more cycles, a higher "
            "learning rate (now 0.1) or more training prompts.",
        ),
        ({"target": {**UNMET["target"], "met": True}}, None),
        ({"target": None}, None),  # a run of given steps
        ({}, None),  # stored before targets were recorded
    ],
)
def test_the_unmet_target_sentence(info, expected):
    assert target_text(info, TrainConfig(model="tiny-llama")) == expected
