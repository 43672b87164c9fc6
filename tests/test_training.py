"""Training on the tiny models: frozen weights, determinism, parameter counts, progress,
cancelling, divergence, the cached base pass, and DynScalar on prompts of several lengths."""

from __future__ import annotations

import threading
from collections import OrderedDict

import pytest
import torch
from conftest import observer

from actscale.engine import evaluation, training
from actscale.engine.models import last_position_logits
from actscale.engine.objective import LossTerms
from actscale.engine.training import TrainConfig, new_intervention, train
from actscale.errors import ActscaleError, TrainingCancelled, TrainingDiverged
from actscale.runs.api import build_task, train_run


def config(model, **changes) -> TrainConfig:
    base = dict(
        model=model.name,
        task="ioi",
        method="activscalar",
        steps=3,
        n_prompts=16,
        n_test=8,
        batch_size=4,
        early_stop=0,
        device="cpu",
    )
    return TrainConfig(**{**base, **changes})


@pytest.mark.parametrize("method", ["activscalar", "steervec", "dynscalar"])
def test_base_weights_bit_identical_after_training(tiny_model, method):
    cfg = config(tiny_model, method=method, sites=("attn_out", "mlp_out", "head", "resid_post"), lr=0.5)
    before = {k: v.clone() for k, v in tiny_model.bridge.original_model.state_dict().items()}
    result = train(tiny_model, build_task(tiny_model, cfg), cfg)
    assert result.metrics["train"]["l1"] > 0  # something was learned
    after = tiny_model.bridge.original_model.state_dict()
    assert after.keys() == before.keys() and len(before) > 10
    for name, tensor in before.items():
        assert torch.equal(after[name], tensor), name
    assert not any(p.requires_grad for p in tiny_model.bridge.parameters())


@pytest.mark.parametrize("method", ["activscalar", "dynscalar"])
def test_same_seed_same_parameters_other_seed_different(tiny_llama, method):
    def params(seed):
        cfg = config(tiny_llama, method=method, seed=seed, steps=4)
        return train(tiny_llama, build_task(tiny_llama, cfg), cfg).intervention.named_tensors()

    first, second, other = params(0), params(0), params(1)
    assert first.keys() == second.keys() == other.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)
    assert any(t.abs().sum() > 0 for t in first.values())


def test_parameter_counts(tiny_llama):
    L, D, H, dh = 2, 64, 4, 16
    task = build_task(tiny_llama, config(tiny_llama))
    n_pos = task.n_pos
    assert n_pos == 16  # the most common length of the IOI templates (ties: the shorter)

    def count(method, sites):
        return new_intervention(tiny_llama, task, config(tiny_llama, method=method, sites=sites)).n_params

    for sites in [("attn_out",), ("attn_out", "mlp_out"), ("attn_out", "mlp_out", "resid_post")]:
        s = len(sites)
        assert count("activscalar", sites) == s * L * n_pos
        assert count("steervec", sites) == D * s * L * n_pos
        assert count("dynscalar", sites) == s * L * (D + 1)
    assert count("activscalar", ("head",)) == L * H * n_pos
    assert count("steervec", ("head",)) == L * H * n_pos * dh
    assert count("dynscalar", ("head",)) == L * H * (dh + 1)
    cfg = config(tiny_llama, steps=1)
    metrics = train(tiny_llama, task, cfg).metrics["test"]
    assert metrics["n_params"] == 2 * L * n_pos == 64
    assert metrics["n_components"] == 2 * L * n_pos  # one scalar is one component


def test_progress_callback_reports_every_step(tiny_llama):
    cfg = config(tiny_llama, steps=5, lambda_f=0.5, lambda_m=0.1)
    infos = []
    result = train(tiny_llama, build_task(tiny_llama, cfg), cfg, observer=observer(infos.append))
    assert [i.step for i in infos] == [1, 2, 3, 4, 5]
    assert {i.n_steps for i in infos} == {5} and result.steps_run == 5 and not result.stopped_early
    assert [i.elapsed for i in infos] == sorted(i.elapsed for i in infos)
    first = infos[0]  # the identity: Δ is the base model's, the KL and ‖θ‖₁ are 0
    assert abs(first.faithfulness) < 1e-6 and first.minimality == 0.0
    assert first.flip_acc_pos + first.flip_acc_neg == pytest.approx(1.0)  # Δ>0 or Δ<0 for each prompt
    for i in infos:
        assert i.loss == pytest.approx(i.effectiveness + 0.5 * i.faithfulness + 0.1 * i.minimality, rel=1e-5)
        assert 0.0 <= i.flip_acc_pos <= 1.0 and 0.0 <= i.flip_acc_neg <= 1.0
    assert [h["step"] for h in result.history] == [1, 2, 3, 4, 5]


def test_cancel_after_step_k_stores_nothing(tiny_llama, store):
    cancel, seen = threading.Event(), []

    def on_step(info):
        seen.append(info.step)
        if info.step == 2:
            cancel.set()

    with pytest.raises(TrainingCancelled, match="^cancelled at step 3 of 6$"):
        train_run(config(tiny_llama, steps=6), tiny_llama, store=store, observer=observer(on_step, cancel=cancel))
    assert seen == [1, 2]
    assert store.list() == [] and (not store.root.exists() or list(store.root.iterdir()) == [])


def test_nan_loss_stops_with_a_clear_message(tiny_llama, store, monkeypatch):
    real = training.objective

    def nan_at_step_two(*args, **kwargs):
        terms = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            return LossTerms(terms.total * float("nan"), terms.effectiveness, terms.faithfulness, terms.minimality)
        return terms

    calls = []
    monkeypatch.setattr(training, "objective", nan_at_step_two)
    with pytest.raises(TrainingDiverged) as info:
        train_run(config(tiny_llama, steps=5, lr=0.05), tiny_llama, store=store)
    assert str(info.value) == "the loss became nan at step 2; lower the learning rate (now 0.05) or the margin"
    assert store.list() == []


def test_huge_learning_rate_is_refused_before_anything_runs(tiny_llama, store, recwarn):
    with pytest.raises(ActscaleError) as info:
        train_run(config(tiny_llama, method="steervec", lr=1e37), tiny_llama, store=store)
    assert str(info.value) == "the learning rate must be a number in (0, 10]"
    assert store.list() == []
    assert not [w for w in recwarn if "requires_grad" in str(w.message)]  # no warning before the message


def test_base_pass_runs_once_per_dataset(tiny_llama, monkeypatch):
    monkeypatch.setattr(evaluation, "_BASE_CACHE", OrderedDict())
    calls = []
    real = training.last_position_logits
    for module in (training, evaluation):  # the steps call it, and the base pass and the evaluation
        monkeypatch.setattr(module, "last_position_logits", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = config(tiny_llama, steps=3, n_prompts=10, n_test=6)
    task = build_task(tiny_llama, cfg)
    assert len(task.examples) <= 16  # one evaluation batch of 16
    train(tiny_llama, task, cfg)
    # The base pass of the training and validation prompts, one per step, the evaluation at
    # β = +1 and −1 of those prompts, then the test prompts' base pass and their evaluation.
    assert len(calls) == 1 + 3 + 2 + 1 + 2
    calls.clear()
    train(tiny_llama, task, cfg.replace(lr=0.1, steps=4))
    assert len(calls) == 4 + 2 + 2  # the base pass is reused
    assert evaluation.base_pass(tiny_llama, task, cfg.sites) is evaluation.base_pass(tiny_llama, task, cfg.sites)
    assert len(calls) == 8


def test_early_stop_after_zero_effectiveness(tiny_llama, monkeypatch):
    real = training.objective

    def satisfied(*args, **kwargs):
        t = real(*args, **kwargs)
        return LossTerms(t.total, t.effectiveness * 0.0, t.faithfulness, t.minimality)

    monkeypatch.setattr(training, "objective", satisfied)
    # Without validation prompts the rule reads the training batch ...
    cfg = config(tiny_llama, steps=10, early_stop=3, val_frac=0.0)
    result = train(tiny_llama, build_task(tiny_llama, cfg), cfg)
    assert (result.steps_run, result.stopped_early, len(result.history)) == (3, True, 3)
    # ... with them, only the validation prompts: a zero training loss no longer stops it.
    cfg = cfg.replace(val_frac=0.25)
    result = train(tiny_llama, build_task(tiny_llama, cfg), cfg)
    assert (result.steps_run, result.stopped_early) == (10, False)
    assert all(row["val_effectiveness"] > 0 for row in result.history)
    values = iter([0.5, 0.0, 0.0, 0.3, 0.0, 0.0, 0.0, 0.0])
    monkeypatch.setattr(training, "validation_effectiveness", lambda *a: next(values))
    result = train(tiny_llama, build_task(tiny_llama, cfg), cfg)
    assert (result.steps_run, result.stopped_early) == (7, True)  # three zeros in a row end at step 7


def test_dynscalar_on_prompts_of_several_lengths(tiny_gpt2):
    cfg = config(
        tiny_gpt2,
        method="dynscalar",
        n_prompts=30,
        n_test=7,
        val_frac=0.0,
        steps=4,
        lr=0.05,
        templates=("ioi-0", "ioi-2", "ioi-4", "ioi-8"),
        test_templates=("ioi-8",),
    )
    task = build_task(tiny_gpt2, cfg)
    lengths = task.attention_mask.sum(1)
    train_len = {int(lengths[i]) for i in task.split_indices("train")}
    test_len = {int(lengths[i]) for i in task.split_indices("test")}
    assert len(train_len) >= 2 and not test_len & train_len  # held-out template of its own length
    assert {task.examples[i].template for i in task.split_indices("test")} == {"ioi-8"}
    result = train(tiny_gpt2, task, cfg)
    for split, n in (("train", 30), ("test", 7)):  # the held-out template's prompts are drawn apart
        m = result.metrics[split]
        assert m["n_prompts"] == n and m["n_params"] == 2 * 2 * 65
        assert all(torch.isfinite(torch.tensor(v)).all() for v in m.values())
    alpha = result.analysis["dynalpha.attn_out"]
    assert alpha.shape == (37, 2, task.n_pos)  # every prompt: 30 train, 7 test
    # The answer is read at each prompt's own last token: with β = 0 the metrics are the base model's.
    # the engine takes the resolved config (training.train resolves autocast "auto" and returns it)
    metrics = evaluation.evaluate(tiny_gpt2, task, result.intervention, result.config, beta=0.0).metrics
    assert metrics["test"]["logit_diff_pos"] == pytest.approx(metrics["test"]["logit_diff_base"], abs=1e-5)
    assert metrics["test"]["kl_full"] == pytest.approx(0.0, abs=1e-6)


def test_fixed_length_method_refuses_padded_task(tiny_llama):
    task = build_task(tiny_llama, config(tiny_llama, method="dynscalar"))
    with pytest.raises(
        ActscaleError, match="^steervec needs prompts of one length; prepare the task with fixed_length=True$"
    ):
        train(tiny_llama, task, config(tiny_llama, method="steervec"))


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"method": "lora"}, "unknown method 'lora': choose from activscalar, steervec, dynscalar, diffmean"),
        ({"task": "sst2"}, "unknown task 'sst2': choose from ioi, ccc, custom"),
        ({"task": "custom"}, "the custom task needs a dataset file (--dataset FILE)"),
        ({"steps": 0}, "steps must be between 1 and 1,000,000"),
        ({"lr": float("nan")}, "the learning rate must be a number in (0, 10]"),
        ({"lr": 1e38}, "the learning rate must be a number in (0, 10]"),
        ({"margin": -1.0}, "the margin must be a number in [0, 1000]"),
        (
            {"task": "custom", "dataset": "d.csv", "val_frac": 0.5, "test_frac": 0.5},
            "test_frac + val_frac must be below 1 (some prompts must train)",
        ),
        ({"seed": -1}, "seeds must be integers in [0, 2^63)"),
        ({"task": "custom", "dataset": "d.csv", "test_frac": 1.0}, "test_frac must be a number in [0, 1)"),
        ({"sites": ("mlp",)}, "unknown site(s) mlp: choose from attn_out, mlp_out, head, resid_post"),
    ],
)
def test_config_validation(changes, message):
    with pytest.raises(ActscaleError) as info:
        TrainConfig(**changes)
    assert str(info.value) == message


def test_config_round_trip():
    cfg = TrainConfig(sites="head,attn_out", templates=["ioi-1"], lr=0.01)
    assert cfg.sites == ("attn_out", "head") and cfg.templates == ("ioi-1",)  # sites in their canonical order
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.replace(seed=3).seed == 3 and cfg.replace(seed=3).lr == 0.01


def test_evaluation_gives_the_validation_result_first_and_keeps_the_row_order(tiny_llama):
    """The validation prompts are evaluated first (a run's first result, handed to
    ``on_result`` with the figures the stored metrics then hold), the others after them; the
    per-prompt arrays stay in the task's row order (checked against an evaluation of the whole
    task as one split, whose first result is then the training prompts')."""
    import dataclasses

    cfg = config(tiny_llama, method="dynscalar", steps=2, n_prompts=10, n_test=6)
    task = build_task(tiny_llama, cfg)
    seen = []
    result = train(tiny_llama, task, cfg, observer=observer(first_result=lambda split, m: seen.append((split, m))))
    assert set(result.timing) == {"base_pass_s", "steps_s", "eval_s", "rest_eval_s"}
    assert all(v >= 0 for v in result.timing.values())
    assert [split for split, _ in seen] == ["val"]
    first = seen[0][1]
    assert first["n_prompts"] == 2 and "n_effective" not in first
    assert first == {k: v for k, v in result.metrics["val"].items() if k in first}
    one_split = dataclasses.replace(task, examples=[dataclasses.replace(e, split="train") for e in task.examples])
    seen.clear()
    whole = evaluation.evaluate(
        tiny_llama, one_split, result.intervention, result.config, on_result=lambda split, m: seen.append((split, m))
    )
    assert set(whole.seconds) == {"eval_s"} and [(s, m["n_prompts"]) for s, m in seen] == [("train", 16)]
    for key in ("delta.pos", "delta.neg", "dynalpha.attn_out"):
        assert torch.allclose(whole.analysis[key], result.analysis[key], atol=1e-5), key


def test_the_test_prompts_base_pass_comes_after_training(tiny_llama, monkeypatch):
    """Training runs the unmodified model on the training and validation prompts only; the test
    prompts' pass comes with their evaluation, and the completed pass equals one over every
    prompt at once."""
    monkeypatch.setattr(evaluation, "_BASE_CACHE", OrderedDict())
    cfg = config(tiny_llama, steps=2, n_prompts=10, n_test=6)
    task = build_task(tiny_llama, cfg)
    test = task.split_indices("test")
    partial = evaluation.base_pass(tiny_llama, task, cfg.sites, splits=("train", "val"))
    assert partial.computed is not None and not partial.has(test) and partial.has(task.split_indices("val"))
    assert int(partial.computed.sum()) == 10 and bool((partial.logits[test] == 0).all())
    full = evaluation.base_pass(tiny_llama, task, cfg.sites)
    assert full.computed is None and full.hnorm is partial.hnorm
    monkeypatch.setattr(evaluation, "_BASE_CACHE", OrderedDict())
    at_once = evaluation.base_pass(tiny_llama, task, cfg.sites)
    assert torch.allclose(full.logits, at_once.logits, atol=1e-5)
    for site in cfg.sites:
        assert torch.allclose(full.hnorm[site], at_once.hnorm[site], atol=1e-5)


def test_evaluation_after_the_cached_partial_pass_was_evicted(tiny_llama, monkeypatch):
    """Other sessions' tasks can push a run's partial base pass out of the cache before its test
    evaluation: the evaluation then recomputes every row, and the figures are those of an
    undisturbed run."""
    cfg = config(tiny_llama, steps=2, n_prompts=10, n_test=6)
    task = build_task(tiny_llama, cfg)
    undisturbed = train(tiny_llama, task, cfg)
    monkeypatch.setattr(evaluation, "_BASE_CACHE", OrderedDict())
    real = training.evaluate

    def evicting(*args, **kwargs):
        evaluation._BASE_CACHE.clear()
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "evaluate", evicting)
    disturbed = train(tiny_llama, task, cfg)
    assert disturbed.metrics == undisturbed.metrics


def test_the_evaluations_passes_give_the_same_logits_in_any_batch(tiny_gpt2, monkeypatch):
    """The evaluation's passes yield logits only, in batches of `EVAL_BATCH` (32) where the
    statistics pass keeps 16: on prompts of several lengths (left-padded to the task's width in
    every batch) a steered pass gives the same logits in batches of 3, 16 or all at once, and so
    does the unmodified model's pass of the rows a partial pass left."""
    assert (evaluation.STATS_BATCH, evaluation.EVAL_BATCH) == (16, 32)
    cfg = config(tiny_gpt2, method="dynscalar", steps=1, n_prompts=24, n_test=12)
    task = build_task(tiny_gpt2, cfg)
    assert len(set(task.attention_mask.sum(1).tolist())) >= 2  # several lengths, padded
    iv = new_intervention(tiny_gpt2, task, cfg)
    with torch.no_grad():
        for p in iv.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    tokens, mask = task.tokens, task.attention_mask
    n = tokens.shape[0]
    each = [evaluation.steered_logits(tiny_gpt2, iv, tokens, mask, -1.0, eval_batch=b) for b in (3, 16, n)]
    default = evaluation.steered_logits(tiny_gpt2, iv, tokens, mask, -1.0)
    for other in (*each[1:], default):
        assert torch.allclose(each[0], other, rtol=0, atol=1e-5)
    monkeypatch.setattr(evaluation, "_BASE_CACHE", OrderedDict())  # the partial pass, then the rest
    base = evaluation.base_pass(tiny_gpt2, task, cfg.sites, splits=("train",))
    completed = evaluation.base_pass(tiny_gpt2, task, cfg.sites)
    assert base.computed is not None and completed.computed is None and completed.hnorm is base.hnorm
    test = task.split_indices("test")
    with torch.no_grad():
        alone = torch.cat([last_position_logits(tiny_gpt2, tokens[i : i + 1], mask[i : i + 1]) for i in test.tolist()])
    assert torch.allclose(completed.logits[test], alone, rtol=0, atol=1e-5)
