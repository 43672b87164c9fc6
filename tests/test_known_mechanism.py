"""A model whose answer is known by construction (the baselines issue, item 5): in the tiny Llama,
layer 1's MLP is rebuilt as two units that read the last token (" to" or " on") and write the
answer direction (logit(" Mary") − logit(" John"), through the final norm); every attention
output and layer 0's MLP are weakened to a fifth. So the cell (mlp_out, layer 1, last position)
moves the answer, and the learned ActivScalar map, gradient × activation (AtP) and exact
activation patching must each put it first, well ahead of the second. Too strong a unit saturates
the final norm (Δ stops growing with it): then AtP's gradient along the activation vanishes and
training cannot flip, so the write is kept small (k below)."""

from __future__ import annotations

import random

import pytest
import torch

from actscale.checks import CheckOptions
from actscale.checks.free_maps import cell_means, cell_probe, flat, free_maps, learned_cells
from actscale.checks.passes import Context
from actscale.checks.patching import patching
from actscale.engine.models.base import parameter_fingerprint, quiet, wrap_bridge
from actscale.engine.models.tiny import boot_tiny
from actscale.engine.tasks import OBJECTS, PLACES
from actscale.engine.training import TrainConfig
from actscale.runs.api import build_task, train_run
from actscale.runs.store import RunStore

SITES = ("attn_out", "mlp_out")
K, WEAK, GAIN = 0.001, 0.2, 4.0


def known_mechanism_model():
    with quiet():
        bridge = boot_tiny("tiny-llama", "cpu", name_as="tiny-llama-known")
    hf, tokenizer = bridge.original_model, bridge.tokenizer

    def token(word: str) -> int:
        (i,) = tokenizer(word, add_special_tokens=False).input_ids
        return i

    embed, unembed = hf.model.embed_tokens.weight.detach(), hf.lm_head.weight.detach()
    answer = (unembed[token(" Mary")] - unembed[token(" John")]) * hf.model.norm.weight.detach()
    answer = answer / answer.norm()
    reads = embed[token(" to")] - embed[token(" on")]
    reads = reads / reads.norm() / hf.model.layers[1].post_attention_layernorm.weight.detach()
    mlp = hf.model.layers[1].mlp
    with torch.no_grad():
        for layer in hf.model.layers:
            layer.self_attn.o_proj.weight.mul_(WEAK)
        hf.model.layers[0].mlp.down_proj.weight.mul_(WEAK)
        for weight in (mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight):
            weight.zero_()
        for unit, sign in ((0, 1.0), (1, -1.0)):  # unit 0 fires on " to" and writes +answer; unit 1 on " on"
            mlp.gate_proj.weight[unit] = sign * GAIN * reads
            mlp.up_proj.weight[unit] = sign * GAIN * reads
            mlp.down_proj.weight[:, unit] = sign * K * answer
    return wrap_bridge("tiny-llama-known", bridge, "cpu", parameter_fingerprint(bridge))


def dataset(path) -> None:
    """IOI-like prompts with one answer pair, ending in " to" (a+ " Mary"); the counterfactual
    ends in " on" instead, which the constructed unit reads the other way."""
    rng = random.Random(0)
    rows = ["prompt,correct,wrong,split,counterfactual"]
    for i in range(40):
        prompt = f"Then Mary and John went to the {rng.choice(PLACES)} and John gave a {rng.choice(OBJECTS)} to"
        split = "train" if i < 24 else "val" if i < 32 else "test"
        rows.append(f"{prompt}, Mary, John,{split},{prompt[: -len(' to')]} on")
    path.write_text("\n".join(rows) + "\n")


def test_the_learned_map_atp_and_patching_each_put_the_known_cell_first(tmp_path):
    model = known_mechanism_model()
    dataset(tmp_path / "d.csv")
    config = TrainConfig(
        model=model.name, task="custom", dataset=str(tmp_path / "d.csv"), sites=SITES, positions="absolute"
    )
    task = build_task(model, config)
    bundle = train_run(config, model, store=RunStore(tmp_path / "runs"))
    test = bundle.metrics["test"]
    assert (test["acc_base"], test["flip_acc_pos"], test["flip_acc_neg"]) == (1.0, 1.0, 1.0)
    probe = cell_probe(model, task, SITES)
    atp = flat(free_maps(model, task, probe, cell_means(model, task, probe)), "atp", SITES)
    empty = torch.zeros(0, dtype=torch.long)
    ctx = Context(model, bundle, probe, None, empty, empty, empty, empty, CheckOptions(precision="float32"))
    part, share = patching(ctx, task, probe, {"atp": atp}, full=True)
    assert "why" not in part and part["patched"] == probe.n_params
    known = SITES.index("mlp_out") * model.n_layers * task.n_pos + 1 * task.n_pos + task.n_pos - 1
    for name, scores in (("learned", learned_cells(bundle, task)), ("AtP", atp), ("patching", share)):
        ranked = torch.sort(-torch.nan_to_num(scores.abs(), nan=-1.0), stable=True).indices
        first, second = scores.abs()[ranked[0]], scores.abs()[ranked[1]]
        assert int(ranked[0]) == known, (name, ranked[:3].tolist())
        assert float(first) > 3 * float(second), (name, float(first), float(second))
    assert float(share[known]) == pytest.approx(1.0, abs=0.05)  # the one cell restores the whole gap
