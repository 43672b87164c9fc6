"""The logit-bias floor (docs/method.md §4): its bias chosen on validation only, its rates under
it with their intervals, and its KL of 0 on every other token, checked on real logits."""

from __future__ import annotations

import pytest
import torch

from actscale.engine.floor import logit_bias_floor
from actscale.engine.objective import kl_divergence, logit_diff, wilson_interval


def test_the_bias_is_chosen_on_validation_and_test_is_only_reported():
    delta = torch.tensor([0.5, -1.0, 3.0, 0.2, -0.4, 9.0, -0.1])
    splits = ["train", "val", "val", "test", "test", "test", "train"]
    floor = logit_bias_floor(delta, splits, margin=2.0)
    assert (floor["bias"], floor["split"], floor["n"]) == (5.0, "val", 2)  # max |Δ| of val (3.0) + the margin
    test = floor["splits"]["test"]
    # Δ + 5 > 0 for all three test prompts; Δ − 5 < 0 for 0.2 and −0.4, not for 9.0
    assert (test["n_prompts"], test["acc_base"], test["flip_acc_pos"], test["flip_acc_neg"]) == (3, 2 / 3, 1.0, 2 / 3)
    assert test["flip_acc_neg_ci95"] == [round(x, 6) for x in wilson_interval(2, 3)]
    assert test["acc_base_ci95"] == [round(x, 6) for x in wilson_interval(2, 3)]
    assert "n_groups" not in test  # no groups given: none counted
    assert (test["faithfulness_kl"], test["n_params"], test["n_components"], test["l1"]) == (0.0, 1, 0, 5.0)
    assert list(floor["splits"]) == ["train", "val", "test"]
    # the test prompts never move the bias
    again = logit_bias_floor(torch.cat([delta[:3], torch.tensor([99.0, -99.0, 0.0]), delta[6:]]), splits, 2.0)
    assert again["bias"] == floor["bias"]
    # without validation prompts the training ones choose
    assert logit_bias_floor(delta, ["train"] * 3 + ["test"] * 4, 1.0)["bias"] == pytest.approx(4.0)


def test_a_bias_on_the_two_answer_logits_leaves_every_other_token_as_it_was():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    correct, wrong = torch.tensor([1, 2, 3, 4]), torch.tensor([5, 6, 7, 8])
    biased = logits.clone()
    biased[torch.arange(4), correct] += 2.5
    biased[torch.arange(4), wrong] -= 2.5
    assert torch.allclose(logit_diff(biased, correct, wrong), logit_diff(logits, correct, wrong) + 5.0)
    assert torch.allclose(kl_divergence(logits, biased, correct, wrong), torch.zeros(4), atol=1e-6)
    assert float(kl_divergence(logits, biased).min()) > 0  # the full distribution does change


def test_the_floors_rates_carry_the_groups_as_a_runs_do():
    """With each prompt's group, a split's floor metrics count them and, from 5 groups, give each
    rate its interval by group (`cluster_metrics` on Δ unmodified and Δ ± b)."""
    from actscale.engine.objective import cluster_metrics

    delta = torch.linspace(-3.0, 3.0, 24)
    splits = ["val"] * 4 + ["test"] * 20
    groups = ["v"] * 4 + [f"g{i % 5}" for i in range(20)]
    floor = logit_bias_floor(delta, splits, 0.5, groups)
    test, val = floor["splits"]["test"], floor["splits"]["val"]
    bias, d = floor["bias"], delta[4:]
    assert bias == pytest.approx(float(delta[:4].abs().max()) + 0.5)
    assert test["n_groups"] == 5 and val["n_groups"] == 1 and "flip_acc_neg_cluster95" not in val
    expected = cluster_metrics(d, d + bias, d - bias, groups[4:])
    assert {k: test[k] for k in expected} == expected and len(expected) == 4  # n_groups and three intervals
    assert test["flip_acc_neg_cluster95"] == expected["flip_acc_neg_cluster95"]
