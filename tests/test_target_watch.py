"""The step that first reaches the validation target, told while the run trains on
(`validation.TargetWatch`): the flip rates it reports are the ones the evaluation gives, it costs
a look after each of a run's first six steps and no more, and watching changes nothing a run
learns."""

from __future__ import annotations

import torch

from actscale.engine import training, validation
from actscale.engine.evaluation import base_pass, evaluate
from actscale.engine.observer import RunObserver
from actscale.engine.training import TrainConfig, new_intervention, train
from actscale.runs.api import build_task


def config(model, **changes) -> TrainConfig:
    base = dict(model=model.name, task="ioi", steps=2, cycles=2, n_prompts=16, n_test=8, batch_size=4, device="cpu")
    return TrainConfig(**{**base, **changes})


class Heard(RunObserver):
    def __init__(self, watches: bool = True) -> None:
        self.watches_target = watches
        self.targets: list[tuple[int, str, dict]] = []

    def target_reached(self, step: int, split: str, metrics: dict) -> None:
        self.targets.append((step, split, metrics))


def _watch(model, cfg):
    task = build_task(model, cfg)
    base = base_pass(model, task, cfg.sites, splits=("train", "val"))
    intervention = new_intervention(model, task, cfg)
    with torch.no_grad():
        for p in intervention.parameters():
            p.copy_(torch.linspace(-2.0, 3.0, p.numel()).reshape(p.shape))
    return task, base, intervention, validation.TargetWatch(task, base, cfg, start=0.0)


def test_the_reported_flips_are_the_evaluations(tiny_llama):
    cfg = config(tiny_llama, target=0.0)  # any flip rate reaches it: the first step checked reports
    task, base, intervention, watch = _watch(tiny_llama, cfg)
    heard = Heard()
    watch.after_step(tiny_llama, intervention, 3, (0.5, 0.25), heard)
    ((step, split, metrics),) = heard.targets
    val = evaluate(tiny_llama, task, intervention, cfg, base=base).metrics["val"]
    assert (step, split, watch.step, watch.checks) == (3, "val", 3, 1)
    # the evaluation's passes, so its very figures: every one of `flip_metrics`, and the count of
    # groups the prompts come from (too few for an interval by group)
    assert metrics == {k: val[k] for k in metrics} and len(metrics) == 13 and metrics["n_groups"] == 2
    assert metrics["n_prompts"] == len(task.split_indices("val"))
    watch.after_step(tiny_llama, intervention, 4, (1.0, 1.0), heard)
    assert len(heard.targets) == 1 and watch.checks == 1  # told once
    assert watch.timing()["target_step"] == 3


def test_only_the_first_steps_are_looked_at(tiny_llama):
    cfg = config(tiny_llama, target=1.0)
    task, base, intervention, watch = _watch(tiny_llama, cfg)
    val = evaluate(tiny_llama, task, intervention, cfg, base=base).metrics["val"]
    assert min(val["flip_acc_pos"], val["flip_acc_neg"]) < 1.0  # so no look can report
    heard = Heard()
    for step in range(1, 20):
        watch.after_step(tiny_llama, intervention, step, (1.0, 1.0), heard)
        assert watch.checks == min(step, validation.TARGET_CHECKS)  # one pass a step, the first six
    assert (validation.TARGET_CHECKS, heard.targets, watch.timing()) == (6, [], {})


def test_the_direction_the_batch_flipped_less_is_looked_at_first(tiny_llama, monkeypatch):
    cfg = config(tiny_llama, target=1.0)
    task, base, intervention, watch = _watch(tiny_llama, cfg)
    val = evaluate(tiny_llama, task, intervention, cfg, base=base).metrics["val"]
    assert (val["flip_acc_pos"], val["flip_acc_neg"]) == (2 / 3, 1 / 3)  # each short of 1.0
    passes: list[float] = []
    real = validation.steered_logits
    monkeypatch.setattr(validation, "steered_logits", lambda *a, **k: passes.append(a[4]) or real(*a, **k))
    watch.after_step(tiny_llama, intervention, 1, (0.9, 0.4), Heard())
    watch.after_step(tiny_llama, intervention, 2, (0.4, 0.9), Heard())
    assert passes == [-1.0, 1.0]  # one pass each: the first direction fell short


def test_watching_changes_nothing_the_run_learns(tiny_llama):
    cfg = config(tiny_llama, target=0.0)
    task = build_task(tiny_llama, cfg)
    watched, unwatched = Heard(), Heard(watches=False)
    a = train(tiny_llama, task, cfg, observer=watched)
    b = train(tiny_llama, task, cfg, observer=unwatched)
    assert [s for s, _, _ in watched.targets] == [1] and unwatched.targets == []
    assert (a.timing["target_step"], "target_step" in b.timing) == (1, False)
    assert 0 < a.timing["target_s"] <= a.timing["base_pass_s"] + a.timing["steps_s"]
    assert [{k: v for k, v in r.items() if k != "elapsed"} for r in a.history] == [
        {k: v for k, v in r.items() if k != "elapsed"} for r in b.history
    ]
    for (name, p), q in zip(a.intervention.state_dict().items(), b.intervention.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    assert a.metrics == b.metrics


def test_only_a_run_with_a_target_looks_for_it(tiny_llama, monkeypatch):
    made: list[int] = []

    class Counted(validation.TargetWatch):
        def __init__(self, task, base, cfg, start) -> None:
            made.append(cfg.cycles)
            super().__init__(task, base, cfg, start)

    monkeypatch.setattr(training, "TargetWatch", Counted)
    for cycles in (1, 2):  # one cycle trains the steps it was given: it has no target
        cfg = config(tiny_llama, cycles=cycles, target=0.0 if cycles > 1 else 0.9)
        train(tiny_llama, build_task(tiny_llama, cfg), cfg, observer=Heard())
    train(tiny_llama, build_task(tiny_llama, cfg), cfg, observer=Heard(watches=False))
    assert made == [2]
