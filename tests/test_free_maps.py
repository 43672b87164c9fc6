"""The training-free maps next to the learned one (docs/method.md §7.8): gradient × activation
(zero-ablation AtP) and its mean-ablation variant on the run's own cells, checked against a
direct computation with bare hooks, and how their rankings are compared with the learned map."""

from __future__ import annotations

import math

import pytest
import torch

from actscale.checks.free_maps import _compare, free_maps
from actscale.checks.over_seeds import overlap_p, spearman
from actscale.engine.interventions import at_sites
from actscale.engine.models import last_position_logits
from actscale.engine.objective import logit_diff
from actscale.engine.training import TrainConfig
from actscale.runs.api import build_task

SITES = ("attn_out", "mlp_out", "head")


def direct(model, task, site: str) -> tuple[torch.Tensor, torch.Tensor]:
    """⟨∇_h Δ, h⟩ and ⟨∇_h Δ, h − h̄⟩ per [layer pos (head)], averaged over the training prompts,
    from the activations and their gradients read with a bare hook."""
    rows = task.split_indices("train")
    tokens, mask = task.tokens[rows], task.attention_mask[rows]
    acts: dict[int, torch.Tensor] = {}
    zeros: dict[int, torch.Tensor] = {}

    def leaf(act, site, layer):  # h + 0: the gradient of the added zero is ∇_h Δ through every later path
        acts[layer], zeros[layer] = act.detach(), torch.zeros_like(act, requires_grad=True)
        return act + zeros[layer]

    with at_sites(model.bridge, (site,), model.n_layers, leaf):
        logits = last_position_logits(model, tokens, mask)
    logit_diff(logits, task.correct_ids[rows], task.wrong_ids[rows]).sum().backward()
    h = torch.stack([acts[layer] for layer in range(model.n_layers)])  # [L n pos (H) d]
    g = torch.stack([zeros[layer].grad for layer in range(model.n_layers)])
    zero = (g * h).sum(-1).mean(1)
    mean = (g * (h - h.mean(1, keepdim=True))).sum(-1).mean(1)
    return zero, mean


@pytest.mark.parametrize("site", SITES)
def test_gradient_times_activation_is_the_direct_computation(tiny_llama, site):
    config = TrainConfig(model="tiny-llama", task="ioi", steps=1, n_prompts=12, n_test=4, sites=SITES, device="cpu")
    task = build_task(tiny_llama, config)
    assert bool(task.attention_mask.all())  # one length: every token real, so h̄ is a plain mean
    maps = free_maps(tiny_llama, task, SITES, batch=5)  # batches of 5 of 9 prompts: sums over batches
    zero, mean = direct(tiny_llama, task, site)
    assert maps[f"atp.{site}"].shape == zero.shape
    assert torch.allclose(maps[f"atp.{site}"], zero, atol=1e-5, rtol=1e-4)
    assert torch.allclose(maps[f"atp_mean.{site}"], mean, atol=1e-5, rtol=1e-4)
    assert float(zero.abs().max()) > 1e-3  # not a comparison of zeros


def test_agreement_over_the_union_of_the_effective_cells():
    learned = torch.tensor([0.5, 0.3, 0.01, 0.0, 0.02])
    free = torch.tensor([0.1, 0.9, 0.2, 0.0, 0.05])
    out = _compare(learned, free, tau=0.05)
    # learned effective: cells 0, 1 (k = 2); the free map's top 2: cells 1, 2; union 0, 1, 2
    assert out["spearman"] == pytest.approx(spearman(learned[[0, 1, 2]], free[[0, 1, 2]]))
    assert out["spearman"] == pytest.approx(-0.5)  # ranks (3, 2, 1) against (1, 3, 2)
    assert out["spearman_all"] == pytest.approx(spearman(learned, free))
    assert (out["n_cells"], out["k"], out["n_union"], out["top_k_shared"]) == (5, 2, 3, 1)
    assert out["top_k_chance"] == pytest.approx(4 / 5)
    assert out["top_k_p"] == pytest.approx(overlap_p(1, 2, 5)) == pytest.approx(1 - math.comb(3, 2) / math.comb(5, 2))
    nothing = _compare(torch.zeros(4), torch.ones(4), tau=0.05)
    assert (nothing["k"], nothing["top_k_shared"], nothing["top_k_p"]) == (0, 0, 1.0)
    assert math.isnan(nothing["spearman"])


FREE = {
    "map": {
        "free": {
            "split": "train",
            "n": 38,
            "agreement": [
                {
                    "map": "atp",
                    "label": "gradient × activation (AtP, zero ablation)",
                    "n_cells": 960,
                    "k": 150,
                    "n_union": 260,
                    "spearman": 0.4512,
                    "spearman_all": 0.3012,
                    "top_k_shared": 40,
                    "top_k_chance": 23.4375,
                    "top_k_p": 0.000123456,
                },
                {"map": "atp_mean", "label": "AtP, mean ablation", "n_cells": 960, "k": 0, "n_union": 0}
                | {
                    "spearman": float("nan"),
                    "spearman_all": 0.1,
                    "top_k_shared": 0,
                    "top_k_chance": 0.0,
                    "top_k_p": 1.0,
                },
            ],
        }
    }
}


def test_the_free_maps_sentence_and_table():
    from actscale.views.analysis import free_table, free_text

    assert free_text(FREE) == (
        "On the 38 training prompts, one forward and one backward pass: Gradient × activation (AtP, zero ablation): "
        "Spearman 0.45 over the 260 cells effective in either map (0.30 over all 960); the two top 150 share 40 "
        "cells against 23.4 by chance (p = 0.00012). AtP, mean ablation: the learned map has no effective cell to "
        "compare. Agreement is not localisation: which map's top cells carry the behaviour is not measured here."
    )
    table = free_table(FREE)
    assert list(table["map"]) == ["gradient × activation (AtP, zero ablation)", "AtP, mean ablation"]
    assert table.iloc[0].to_dict() == {
        "map": "gradient × activation (AtP, zero ablation)",
        "Spearman (effective in either)": 0.451,
        "cells in either": 260,
        "Spearman (all cells)": 0.301,
        "top-k shared": 40,
        "k": 150,
        "by chance": 23.4,
        "p": 0.000123,
    }
    assert free_text({"map": {"k90": 3}}) == ""  # checks stored before the free maps
