"""The objective and the metrics against values worked out by hand (docs/method.md §3–4)."""

from __future__ import annotations

import math

import pytest
import torch

from actscale.engine.objective import (
    Minimality,
    effectiveness,
    kl_divergence,
    logit_diff,
    objective,
    split_metrics,
    wilson_interval,
)


def softmax(xs: list[float]) -> list[float]:
    z = sum(math.exp(x) for x in xs)
    return [math.exp(x) / z for x in xs]


def kl(p: list[float], q: list[float]) -> float:
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q))


# A 4-token vocabulary; token 0 is a+ and token 1 is a− in both rows.
BASE = [1.0, 2.0, 3.0, 4.0]
STEERED = [2.0, 0.0, 1.0, 3.0]


def test_logit_diff():
    logits = torch.tensor([[0.5, -1.0, 2.0, 0.25], [3.0, 1.5, -2.0, 0.0]])
    delta = logit_diff(logits, torch.tensor([2, 0]), torch.tensor([1, 2]))
    assert delta.tolist() == [3.0, 5.0]  # 2 − (−1), 3 − (−2)


def test_hinge_effectiveness_both_directions():
    delta = torch.tensor([3.0, 0.5, -1.0, -4.0, 0.0])
    beta = torch.tensor([1.0, 1.0, -1.0, -1.0, -1.0])
    # β=+1 wants Δ ≥ 2: Δ=3 → 0, Δ=0.5 → 1.5; β=−1 wants Δ ≤ −2: Δ=−1 → 1, Δ=−4 → 0, Δ=0 → 2.
    assert effectiveness(delta, beta, margin=2.0).tolist() == [0.0, 1.5, 1.0, 0.0, 2.0]
    assert effectiveness(delta, beta, margin=0.0).tolist() == [0.0, 0.0, 0.0, 0.0, 0.0]


def test_restricted_kl_by_hand():
    # Without tokens 0 and 1 the distributions are softmax([3, 4]) and softmax([1, 3]).
    p0, p = softmax([3.0, 4.0]), softmax([1.0, 3.0])
    expected = kl(p0, p)
    # The same number written out: a = p0(token 2) = 1/(1+e), b = p(token 2) = 1/(1+e²).
    a, b = 1 / (1 + math.e), 1 / (1 + math.e**2)
    assert expected == pytest.approx(a * math.log(a / b) + (1 - a) * math.log((1 - a) / (1 - b)), abs=1e-12)
    assert expected == pytest.approx(0.082608, abs=1e-6)
    got = kl_divergence(torch.tensor([BASE]), torch.tensor([STEERED]), torch.tensor([0]), torch.tensor([1]))
    assert got.shape == (1,)
    assert got.item() == pytest.approx(expected, abs=1e-6)
    # The answer tokens' own logits do not enter the restricted KL.
    moved = torch.tensor([[50.0, -50.0, 1.0, 3.0]])
    assert kl_divergence(torch.tensor([BASE]), moved, torch.tensor([0]), torch.tensor([1])).item() == pytest.approx(
        expected, abs=1e-6
    )


def test_full_kl_by_hand():
    expected = kl(softmax(BASE), softmax(STEERED))
    got = kl_divergence(torch.tensor([BASE]), torch.tensor([STEERED]))
    assert got.item() == pytest.approx(expected, abs=1e-6)
    assert kl_divergence(torch.tensor([BASE]), torch.tensor([BASE])).item() == 0.0
    # A constant shift of every logit leaves the distribution, and so the KL, unchanged.
    assert kl_divergence(torch.tensor([BASE]), torch.tensor([BASE]) + 7.0).abs().item() < 1e-6


def test_objective_total_and_terms():
    base = torch.tensor([BASE, BASE])
    logits = torch.tensor([STEERED, STEERED])
    correct, wrong = torch.tensor([0, 0]), torch.tensor([1, 1])
    beta = torch.tensor([1.0, -1.0])
    # Δ = 2 − 0 = 2 in both rows: β=+1 → max(0, 3 − 2) = 1; β=−1 → max(0, 3 + 2) = 5.
    l_f = kl(softmax([3.0, 4.0]), softmax([1.0, 3.0]))
    terms = objective(logits, base, correct, wrong, beta, torch.tensor(4.0), margin=3.0, lambda_f=0.5, lambda_m=0.25)
    assert terms.effectiveness.item() == 3.0
    assert terms.faithfulness.item() == pytest.approx(l_f, abs=1e-6)
    assert terms.minimality.item() == 4.0
    assert terms.total.item() == pytest.approx(3.0 + 0.5 * l_f + 0.25 * 4.0, abs=1e-6)


def test_split_metrics_by_hand():
    # Four prompts, vocabulary of 4, a+ = token 0 and a− = token 1 throughout.
    correct, wrong = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)

    def rows(deltas: list[float]) -> torch.Tensor:  # logits with Δ = d and tokens 2, 3 fixed
        return torch.tensor([[d, 0.0, 1.0, 2.0] for d in deltas])

    base, pos, neg = rows([1.0, 1.0, 1.0, -1.0]), rows([2.0, 0.5, 0.0, -3.0]), rows([-2.0, -1.0, 0.5, 1.0])
    m = split_metrics(base, pos, neg, correct, wrong, Minimality(l1=1.5, n_params=60, n_components=20, n_effective=7))
    assert m["flip_acc_pos"] == 0.5  # Δ > 0 strictly: 2 and 0.5, not 0 or −3
    assert m["flip_acc_neg"] == 0.5  # Δ < 0: −2 and −1
    assert m["logit_diff_base"] == 0.5
    assert m["logit_diff_pos"] == pytest.approx(-0.125)
    assert m["logit_diff_neg"] == pytest.approx(-0.375)
    # Tokens 2 and 3 keep their logits, so the restricted KL is 0 while the full one is not.
    assert m["faithfulness_kl"] == pytest.approx(0.0, abs=1e-7)
    full = [kl(softmax(b), softmax(s)) for b, s in zip(base.tolist() * 2, pos.tolist() + neg.tolist())]
    assert m["kl_full"] == pytest.approx(sum(full) / 8, abs=1e-6)
    assert (m["l1"], m["n_params"], m["n_components"], m["n_effective"], m["n_prompts"]) == (1.5, 60, 20, 7, 4)
    assert m["effective_frac"] == 0.35  # 7 of 20 components, not of 60 numbers
    assert isinstance(m["n_params"], int) and isinstance(m["n_effective"], int)
    assert m["acc_base"] == 0.75  # the unmodified model prefers a+ on 3 of 4
    assert m["acc_base_ci95"] == [round(x, 6) for x in wilson_interval(3, 4)]
    assert m["flip_acc_pos_ci95"] == m["flip_acc_neg_ci95"] == [round(x, 6) for x in wilson_interval(2, 4)]


def test_flip_accuracy_is_an_exact_fraction():
    # 9 of 10 prompts flipped is 0.9 exactly (a float32 mean gives 0.8999999761581421 < 0.9).
    correct, wrong = torch.zeros(10, dtype=torch.long), torch.ones(10, dtype=torch.long)
    pos = torch.tensor([[1.0, 0.0]] * 9 + [[0.0, 1.0]])
    neg = torch.tensor([[0.0, 1.0]] * 9 + [[1.0, 0.0]])
    m = split_metrics(pos, pos, neg, correct, wrong, Minimality(0.0, 1, 1, 0))
    assert m["flip_acc_pos"] == 0.9 and m["flip_acc_neg"] == 0.9
    third = split_metrics(pos[:3], neg[:3], pos[7:], correct[:3], wrong[:3], Minimality(0.0, 1, 1, 0))
    assert third["flip_acc_pos"] == 0.0 and third["flip_acc_neg"] == 1 / 3


def test_wilson_interval_by_hand():
    # 10 of 10: the 95% interval is [0.7225, 1], not [1, 1] (docs/method.md §4).
    lo, hi = wilson_interval(10, 10)
    assert round(lo, 4) == 0.7225 and hi == 1.0
    # 5 of 10: symmetric about 0.5, [0.2366, 0.7634].
    lo, hi = wilson_interval(5, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.2366, 0.7634)
    # 0 of 200 and 200 of 200: the one-sided bound is 1.88%.
    assert round(wilson_interval(0, 200)[1], 4) == 0.0188 and round(wilson_interval(200, 200)[0], 4) == 0.9812
    assert wilson_interval(0, 0) == (0.0, 1.0)  # no prompts: nothing known


def test_the_interval_by_group_carries_the_clustering():
    from actscale.engine.objective import cluster_interval, cluster_metrics

    groups = [f"g{i}" for i in range(10) for _ in range(20)]
    # every group half right: resampling groups cannot move the rate
    mixed = torch.tensor([j % 2 == 0 for _ in range(10) for j in range(20)])
    assert cluster_interval(mixed, groups) == [0.5, 0.5]
    # five groups all right, five all wrong: the same 0.5, but it rests on 10 groups, not 200 prompts
    clustered = torch.tensor([i < 5 for i in range(10) for _ in range(20)])
    lo, hi = cluster_interval(clustered, groups)
    assert lo <= 0.2 and hi >= 0.8 and wilson_interval(100, 200)[0] > 0.43
    assert cluster_interval(clustered, groups) == [lo, hi]  # seeded: the same every time
    assert cluster_interval(clustered[:80], groups[:80]) is None  # 4 groups: too few
    d = torch.where(clustered, 1.0, -1.0)
    out = cluster_metrics(d, d, d, groups)
    assert out["n_groups"] == 10 and out["flip_acc_pos_cluster95"] == [lo, hi]
    assert out["flip_acc_neg_cluster95"] == cluster_interval(~clustered, groups)
    assert cluster_metrics(d, d, d, [None] * 200) == {"n_groups": 0}  # prompts without a group


def test_rate_text_gives_the_interval_by_group_next_to_wilsons():
    from actscale.runs.records import SplitMetrics
    from actscale.views.analysis import rate_text

    m = SplitMetrics.from_json(
        {"acc_base": 0.2, "flip_acc_pos": 0.9, "flip_acc_pos_ci95": [0.85, 0.93], "n_prompts": 200}
        | {"n_groups": 12, "flip_acc_pos_cluster95": [0.7, 0.98]}
    )
    assert rate_text(m, "flip_acc_pos") == "0.20 → 0.90 [0.85, 0.93] (n = 200; by 12 groups [0.70, 0.98])"
    # Too few groups for an interval by group: their count, so the Wilson interval is not read as
    # covering other groups; prompts without groups (0), or a bundle from before groups: nothing.
    few = {"acc_base": 0.2, "flip_acc_pos": 0.9, "flip_acc_pos_ci95": [0.85, 0.93], "n_prompts": 200}
    for groups, said in ((1, " from 1 group"), (4, " from 4 groups"), (0, ""), (None, "")):
        text = rate_text(SplitMetrics.from_json(few | {"n_groups": groups}), "flip_acc_pos")
        assert text == f"0.20 → 0.90 [0.85, 0.93] (n = 200{said})"


def test_seed_level_interval_carries_the_seeds_spread():
    from actscale.engine.objective import seed_interval

    mean, lo, hi = seed_interval([0.865, 0.975, 0.98])  # CCC ActivScalar β = +1, seeds 1-3 (the case)
    assert (round(mean, 2), round(lo, 2), hi) == (0.94, 0.78, 1.0)
    assert seed_interval([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5)
    mean, lo, hi = seed_interval([0.2, 0.4])  # t with 1 degree of freedom: 12.706 · 0.1414 / 1.414
    assert (mean, round(lo, 6), round(hi, 6)) == (pytest.approx(0.3), 0.0, 1.0)
    # an area or a correlation is not a rate: not clipped (mean 0.3 ± 12.706 · 0.1)
    assert tuple(round(x, 4) for x in seed_interval([0.2, 0.4], rate=False)) == (0.3, -0.9706, 1.5706)
    with pytest.raises(ValueError, match="at least two seeds"):
        seed_interval([0.9])
