"""The training-free maps next to the learned one (docs/method.md §7.8): gradient × activation
(zero-ablation AtP) and its mean-ablation variant on the run's own cells, checked against a
direct computation with bare hooks, and how their rankings are compared with the learned map."""

from __future__ import annotations

import math

import pytest
import torch

from actscale.checks.free_maps import _compare, cell_means, cell_probe, free_maps
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
    probe = cell_probe(tiny_llama, task, SITES)
    maps = free_maps(tiny_llama, task, probe, cell_means(tiny_llama, task, probe), batch=5)  # sums over batches
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
        "compare. Agreement is not localisation: which ranking's top cells carry the answer is measured below."
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


def test_localisation_curves_end_where_nothing_or_everything_is_ablated(tiny_llama):
    """Keeping every cell is the unmodified model (restored 1), knocking every cell out is the
    all-ablated model (restored 0), for every ranking; a ranking's curve is its own order."""
    from actscale.checks import CheckOptions
    from actscale.checks.localisation import RANDOM_DRAWS, _auc, cell_grid, localisation
    from actscale.checks.passes import Context

    config = TrainConfig(model="tiny-llama", task="ioi", steps=1, n_prompts=12, n_test=6, sites=SITES, device="cpu")
    task = build_task(tiny_llama, config)
    probe = cell_probe(tiny_llama, task, SITES)
    means = cell_means(tiny_llama, task, probe)
    rows = task.split_indices("test")
    tokens, mask = task.tokens[rows], task.attention_mask[rows]
    with torch.no_grad():
        base = last_position_logits(tiny_llama, tokens, mask).float()
    ctx = Context(tiny_llama, None, probe, None, tokens, mask, task.correct_ids[rows], task.wrong_ids[rows],
                  CheckOptions(precision="float32"), base_logits=base)  # fmt: skip
    maps = free_maps(tiny_llama, task, probe, means)
    n = sum(maps[f"atp.{s}"].numel() for s in SITES)
    score = torch.cat([maps[f"atp.{s}"].reshape(-1).abs() for s in SITES])
    out = localisation(ctx, probe, means, {"atp": score})
    assert out["grid"] == cell_grid(n) and out["grid"][-1] == n and out["n_cells"] == n
    assert sorted(out["curves"]) == ["atp", *[f"random {i + 1}" for i in range(RANDOM_DRAWS)]]
    for curve in out["curves"].values():  # the ends are not run again: the unmodified model, and "none"
        assert (curve["keep"][-1]["restored"], curve["drop"][-1]["restored"]) == (1.0, 0.0)
        assert curve["auc_keep"] == pytest.approx(_auc(curve["keep"], n))
    # ... which they are: the ablation with nothing chosen is the unmodified model
    from actscale.checks.free_maps import cell_components
    from actscale.checks.passes import Variant, evaluate_variants

    cells = cell_components(probe)
    on_cells = Context(tiny_llama, None, probe, cells, tokens, mask, ctx.correct, ctx.wrong, ctx.options,
                       base_logits=base, means=means)  # fmt: skip
    (nothing,) = evaluate_variants(on_cells, [Variant("all kept", None, torch.zeros(n, dtype=torch.bool), "mean")])
    assert torch.allclose(nothing[0.0][0], logit_diff(base, ctx.correct, ctx.wrong), atol=1e-5)
    assert out["random_auc_keep"] == pytest.approx(
        sum(out["curves"][f"random {i + 1}"]["auc_keep"] for i in range(RANDOM_DRAWS)) / RANDOM_DRAWS
    )


def test_the_area_is_over_log_k():
    from actscale.checks.localisation import _auc

    points = [{"k": 1, "restored": 0.0}, {"k": 4, "restored": 0.5}, {"k": 16, "restored": 1.0}]
    assert _auc(points, 16) == pytest.approx(0.5 * 0.25 + 0.5 * 0.75)  # x = 0, 0.5, 1


def curve(auc_keep: float, auc_drop: float) -> dict:
    points = {"keep": [{"k": 1, "restored": 0.1}], "drop": [{"k": 1, "restored": 0.9}]}
    return {**points, "auc_keep": auc_keep, "auc_drop": auc_drop}


LOCAL = {
    "map": {
        "free": {
            **FREE["map"]["free"],
            "localisation": {
                "n_cells": 960,
                "n_prompts": 16,
                "grid": [1, 4, 16, 64, 256, 960],
                "curves": {
                    "learned": curve(0.41, 0.52),
                    "atp": curve(0.55, 0.31),
                    "atp_mean": curve(0.62, 0.35),
                    "random 1": curve(0.2, 0.8),
                    "random 2": curve(0.25, 0.75),
                },
                "random_auc_keep": 0.225,
                "random_auc_drop": 0.775,
            },
        }
    }
}


def test_the_localisation_sentence_and_table_rank_without_an_interval():
    from actscale.views.analysis import localisation_table, localisation_text

    assert localisation_text(LOCAL) == (
        "Which ranking localises the unmodified model's answer, on 16 test prompts with every other cell of the "
        "run's sites mean-ablated (area under the restored logit difference over log k, 1 = all of it at every k): "
        "keeping only the top cells, AtP, mean ablation 0.62, gradient × activation (AtP, zero ablation) 0.55, "
        "learned map 0.41, random 0.23; without them, gradient × activation (AtP, zero ablation) 0.31, AtP, mean "
        "ablation 0.35, learned map 0.52, random 0.78 (lower: more of the answer lost). One run and these prompts, "
        "no interval: a difference of a few hundredths may not hold on others. The learned map was trained to "
        "steer, not to find the model's own mechanism: ranking below a free map says it steers through other "
        "cells, not that it is wrong."
    )
    table = localisation_table(LOCAL)
    assert table.to_dict("records") == [
        {"ranking": "learned map", "area keeping top-k": 0.41, "area without top-k": 0.52},
        {
            "ranking": "gradient × activation (AtP, zero ablation)",
            "area keeping top-k": 0.55,
            "area without top-k": 0.31,
        },
        {"ranking": "AtP, mean ablation", "area keeping top-k": 0.62, "area without top-k": 0.35},
        {"ranking": "random (mean of 2 draws)", "area keeping top-k": 0.225, "area without top-k": 0.775},
    ]
    assert localisation_text(FREE) == "" and localisation_table(FREE).empty
