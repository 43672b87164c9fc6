"""The maps the field gets without training, on the run's own cells, next to the learned one.

**Gradient × activation at the identity** is zero-ablation attribution patching (AtP; Nanda 2023,
Kramár et al. 2024, arXiv 2403.00745): the first-order estimate of what zeroing a cell's
activation does to the logit difference Δ = logit(a+) − logit(a−), ``⟨∇_h Δ, h⟩``. It is also
ActivScalar's first gradient (``∂Δ/∂α = β·⟨∇_h Δ, h⟩`` at α = 0), so a learned map that only
repeats it adds nothing beyond the first step. Its **mean-ablation** variant estimates replacing
the activation by its mean over the training prompts instead, ``⟨∇_h Δ, h − h̄⟩``. Both come
from one forward and one backward pass over the training prompts (docs/method.md §7.8), with
zero-valued probes on every cell: a scalar multiplying the activation (its gradient is
``⟨∇_h Δ, h⟩``) and a vector added to it (its gradient, ``∇_h Δ`` summed over prompts, meets h̄).

TransformerLens 4.3's ``attribution_patch`` scores (layer, head) and MLP nodes of clean/corrupt
prompt pairs, summed over positions; the cells here are per position (and the run's sites), and
zero ablation needs no corrupt prompt, so it is not used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from actscale.checks.components import Components
from actscale.checks.over_seeds import overlap_p, spearman
from actscale.checks.passes import mean_activations
from actscale.engine.evaluation import train_token_mask
from actscale.engine.interventions import Intervention, at_sites, make_intervention, method_class
from actscale.engine.models import LoadedModel, last_position_logits
from actscale.engine.objective import logit_diff
from actscale.engine.tasks import PreparedTask
from actscale.engine.training import model_dims
from actscale.runs.bundle import RunBundle

FREE_MAPS = {"atp": "gradient × activation (AtP, zero ablation)", "atp_mean": "AtP, mean ablation"}


def cell_probe(
    model: LoadedModel, task: PreparedTask, sites: tuple[str, ...], method: str = "activscalar"
) -> Intervention:
    """A zero-valued intervention with one parameter per cell of ``sites`` (positions counted
    back from the answer): the cells every free map, and the localisation curves, are on."""
    return make_intervention(method, sites, model_dims(model, task.n_pos), {"positions": "answer"}).to(model.device)


def cell_components(probe: Intervention) -> Components:
    """``probe``'s cells as the checks' components (flat over its sites, in its cell order), so
    the checks' passes can mean-ablate them and average activations on them."""
    return Components(type(probe), probe.sites, {s: probe.tensor("alpha", s).detach().cpu() for s in probe.sites})


def cell_means(model: LoadedModel, task: PreparedTask, probe: Intervention) -> dict[str, Tensor]:
    """h̄ per cell, [layer pos (head) d], over the training prompts' real tokens."""
    return mean_activations(model, task, cell_components(probe), probe.dims.n_layers)


def free_maps(
    model: LoadedModel, task: PreparedTask, probe: Intervention, means: Mapping[str, Tensor], batch: int = 8
) -> dict[str, Tensor]:
    """``atp.<site>`` and ``atp_mean.<site>``: [layer pos (head)], the mean over the training
    prompts of each cell's estimate (signed: > 0 where the activation raises Δ), on ``probe``'s
    cells (`cell_probe`); ``means`` from `cell_means`."""
    sites = probe.sites
    probes = [probe, cell_probe(model, task, sites, "steervec")]
    rows = task.split_indices("train")
    for chunk in rows.split(batch):
        tokens, mask = task.tokens[chunk], task.attention_mask[chunk]
        beta = torch.ones(len(chunk), device=model.device)

        def edit(act: Tensor, site: str, layer: int, beta: Tensor = beta, mask: Tensor = mask) -> Tensor:
            for p in probes:
                act = p(act, site=site, layer=layer, beta=beta, mask=mask.to(act.device))
            return act

        with model.lock, at_sites(model.bridge, sites, probe.dims.n_layers, edit):
            logits = last_position_logits(model, tokens, mask)
            correct, wrong = task.correct_ids[chunk].to(logits.device), task.wrong_ids[chunk].to(logits.device)
            logit_diff(logits, correct, wrong).sum().backward()
    scale, shift = probes
    n = max(int(rows.numel()), 1)
    out = {}
    for site in sites:
        zero = scale.tensor("alpha", site).grad.detach().cpu() / n  # type: ignore[union-attr]
        summed = shift.tensor("vector", site).grad.detach().cpu()  # type: ignore[union-attr]
        out[f"atp.{site}"] = zero
        out[f"atp_mean.{site}"] = zero - (summed * means[site].cpu()).sum(-1) / n
    return out


def learned_cells(bundle: RunBundle, task: PreparedTask) -> Tensor:
    """The learned map on the cells, flat over the run's sites: each cell's relative change of the
    activation (ActivScalar |α|, SteerVec ‖v‖/‖h‖, DynScalar the mean |α(h)| applied there); NaN
    at a cell no training prompt reaches."""
    method = method_class(bundle.method)
    mask = train_token_mask(task.attention_mask, task.split_indices("train"))
    return torch.cat(
        [method.cell_magnitude(bundle.params, bundle.analysis, s, mask).reshape(-1).float() for s in bundle.sites]
    )


def flat(maps: Mapping[str, Tensor], name: str, sites: tuple[str, ...]) -> Tensor:
    """A free map's |estimates|, flat over ``sites`` in the learned map's cell order."""
    return torch.cat([maps[f"{name}.{s}"].reshape(-1).abs().float() for s in sites])


def agreement(learned: Tensor, maps: Mapping[str, Tensor], sites: tuple[str, ...], tau: float) -> list[dict[str, Any]]:
    """How each free map ranks the cells against the learned one (``learned``: `learned_cells`),
    over the cells a training prompt reaches: Spearman over the union of the learned map's
    effective cells (its relative change > τ) and the free map's as many largest |estimates|,
    over every cell too, and the overlap of the two top-k sets (k = the learned effective count)
    against the k²/n expected by chance, with the hypergeometric p."""
    reached = ~torch.isnan(learned)
    return [
        {"map": name, "label": label, **_compare(learned[reached], flat(maps, name, sites)[reached], tau)}
        for name, label in FREE_MAPS.items()
    ]


def _compare(learned: Tensor, free: Tensor, tau: float) -> dict[str, Any]:
    n, k = int(learned.numel()), int((learned > tau).sum())
    top_learned = set(torch.sort(-learned, stable=True).indices[:k].tolist())
    top_free = set(torch.sort(-free, stable=True).indices[:k].tolist())
    union = torch.tensor(sorted(top_learned | top_free), dtype=torch.long)
    shared = len(top_learned & top_free)
    return {
        "n_cells": n,
        "k": k,
        "n_union": int(union.numel()),
        "spearman": spearman(learned[union], free[union]) if union.numel() > 1 else float("nan"),
        "spearman_all": spearman(learned, free) if n > 1 else float("nan"),
        "top_k_shared": shared,
        "top_k_chance": k * k / n if n else 0.0,
        "top_k_p": overlap_p(shared, k, n) if k else 1.0,
    }
