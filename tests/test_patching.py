"""Exact activation patching on the run's cells (docs/method.md §7.8): one cell at a time put back
from the clean prompt into the counterfactual one, checked against bare hooks; which cells are
patched; patching as a ranking; its verification of each map's top cells; and when it refuses."""

from __future__ import annotations

import math

import pytest
import torch

from actscale.checks import CheckOptions
from actscale.checks.free_maps import cell_probe
from actscale.checks.passes import Context
from actscale.checks.patching import (
    cell_columns,
    cells_to_patch,
    counterfactual_context,
    first_difference,
    patch_rows,
    patched_deltas,
    patching,
    patching_ranking,
    verification,
)
from actscale.engine.interventions import at_sites
from actscale.engine.models import last_position_logits
from actscale.engine.objective import logit_diff
from actscale.engine.tasks import Example
from actscale.engine.training import TrainConfig
from actscale.runs.api import build_task

SITES = ("attn_out", "mlp_out", "head")
CONFIG = TrainConfig(model="tiny-llama", task="ioi", steps=1, n_prompts=12, n_test=4, sites=SITES, device="cpu")


def context(model, probe, prompts: int = 16) -> Context:
    empty = torch.zeros(0, dtype=torch.long)
    options = CheckOptions(precision="float32", prompts=prompts)
    return Context(model, None, probe, None, empty, empty, empty, empty, options)  # type: ignore[arg-type]


def direct(model, task, rows, site: str, layer: int, pos: int, head: int | None) -> torch.Tensor:
    """Δ on the counterfactual prompts with (site, layer, pos[, head]) replaced by the clean
    prompts' activation there, with bare hooks."""
    saved: dict[str, torch.Tensor] = {}
    where = (slice(None), pos) if head is None else (slice(None), pos, head)

    def read(act, s, at):
        if at == layer:
            saved["h"] = act.detach().clone()

    def put(act, s, at):
        if at != layer:
            return act
        act = act.clone()
        act[where] = saved["h"][where]
        return act

    mask = task.attention_mask[rows]
    with torch.no_grad():
        with at_sites(model.bridge, (site,), model.n_layers, read):
            last_position_logits(model, task.tokens[rows], mask)
        with at_sites(model.bridge, (site,), model.n_layers, put):
            logits = last_position_logits(model, task.counterfactual_tokens[rows], mask)
    return logit_diff(logits, task.correct_ids[rows], task.wrong_ids[rows])


def test_each_patched_cell_is_the_bare_hook_computation(tiny_llama):
    task = build_task(tiny_llama, CONFIG)
    assert bool(task.attention_mask.all()) and bool(task.has_counterfactual.all())
    probe = cell_probe(tiny_llama, task, SITES)
    rows = patch_rows(task, 16, seed=0)
    counter, clean = counterfactual_context(context(tiny_llama, probe), task, probe, rows)
    with torch.no_grad():
        plain = last_position_logits(tiny_llama, task.tokens[rows], task.attention_mask[rows])
    assert torch.allclose(clean, logit_diff(plain, task.correct_ids[rows], task.wrong_ids[rows]), atol=1e-6)
    n_layers, n_pos, n_heads = tiny_llama.n_layers, task.n_pos, tiny_llama.n_heads
    cells, expected = [], []
    offset = 0
    for site in SITES:
        heads = n_heads if site == "head" else 1
        for layer, pos, head in ((0, n_pos - 1, heads - 1), (n_layers - 1, 2, 0), (1, 5, heads // 2)):
            cells.append(offset + (layer * n_pos + pos) * heads + head)
            expected.append(direct(tiny_llama, task, rows, site, layer, pos, head if site == "head" else None))
        offset += n_layers * n_pos * heads
    got = patched_deltas(counter, torch.tensor(cells))
    assert got.shape == (len(cells), rows.numel())
    assert torch.allclose(got, torch.stack(expected), atol=1e-5)
    corrupt = logit_diff(counter.base_logits, counter.correct, counter.wrong)
    assert float((got - corrupt).abs().max()) > 1e-4  # the patches change Δ: not a comparison of no-ops


def test_cells_before_the_first_differing_token_are_known_without_a_pass(tiny_llama):
    clean = torch.tensor([[0, 1, 2, 3, 4], [0, 1, 2, 5, 6]])
    assert first_difference(clean, torch.tensor([[0, 1, 2, 3, 9], [0, 1, 7, 5, 6]])) == 2
    assert first_difference(clean, clean) == 5
    task = build_task(tiny_llama, CONFIG)
    probe = cell_probe(tiny_llama, task, ("mlp_out", "head"))
    n_layers, n_pos, n_heads = tiny_llama.n_layers, task.n_pos, tiny_llama.n_heads
    columns = cell_columns(probe)
    assert columns.numel() == n_layers * n_pos * (1 + n_heads)
    assert columns[: 2 * n_pos].tolist() == [*range(n_pos), *range(n_pos)]  # mlp_out: [layer pos]
    head = columns[n_layers * n_pos :]
    assert head[: 2 * n_heads].tolist() == [0] * n_heads + [1] * n_heads  # head: [layer pos head]
    # IOI's ABC names start after "When"/"Then,": the BOS token and what precedes the first name
    # are the same computation on both prompts
    rows = patch_rows(task, 16, seed=0)
    assert first_difference(task.tokens[rows], task.counterfactual_tokens[rows]) >= 2


def test_which_cells_are_patched():
    rankings = {"a": torch.tensor([5.0, 4, 3, 2, 1, 0]), "b": torch.tensor([0.0, 1, 2, 3, 4, 5])}
    assert cells_to_patch(rankings, 6, full=False, top=2).tolist() == [0, 1, 4, 5]
    assert cells_to_patch(rankings, 6, full=True, top=2).tolist() == [0, 1, 2, 3, 4, 5]
    assert cells_to_patch({"a": torch.tensor([1.0, 1, 1])}, 3, full=False, top=2).tolist() == [0, 1]  # ties: stable


def test_patching_as_a_ranking_puts_the_patched_cells_first_by_their_share():
    share = torch.tensor([float("nan"), 0.5, -0.9, float("nan")])
    score = patching_ranking(share, fallback=torch.tensor([3.0, 2, 1, 0]))
    assert torch.sort(-score, stable=True).indices.tolist() == [2, 1, 0, 3]
    assert score.tolist() == [2.0, 3.0, 4.0, 1.0]


def test_verification_of_each_rankings_top_cells():
    share = torch.tensor([0.6, float("nan"), 0.1, -0.3, 0.0])
    rankings = {"x": torch.tensor([5.0, 4, 3, 2, 1]), "y": torch.tensor([0.0, 1, 2, 3, 4])}
    x, y = verification(rankings, share, top=2)
    # patching's own top 2 (of the patched 0, 2, 3, 4): cells 0 and 3
    assert (x["ranking"], x["k"], x["shared_with_patching"]) == ("x", 2, 1)  # cells 0, 1 (1 not patched)
    assert x["mean_abs_share"] == pytest.approx(0.6)
    assert (y["shared_with_patching"], y["mean_abs_share"]) == (1, pytest.approx(0.15))  # cells 4, 3
    # over the patched cells 0, 2, 3, 4: |share| 0.6, 0.1, 0.3, 0.0 against x's 5, 3, 2, 1
    assert x["spearman"] == pytest.approx(0.8) and y["spearman"] == pytest.approx(-0.8)


def test_patching_says_why_it_patched_nothing(tiny_llama):
    task = build_task(tiny_llama, CONFIG)
    probe = cell_probe(tiny_llama, task, SITES)
    rankings = {"a": torch.rand(sum(probe.tensor("alpha", s).numel() for s in SITES))}
    # a random tiny model: the names' replacement moves Δ no more than its noise
    part, share = patching(context(tiny_llama, probe), task, probe, rankings, full=False)
    assert (part["n"], part["patched"], part["rankings"]) == (10, 0, []) and bool(share.isnan().all())
    assert part["why"] == (
        f"the counterfactual prompts move Δ by {part['span']:.3g} ± {part['span_se']:.3g} (standard error): "
        "not beyond its noise"
    )
    assert abs(part["span"]) <= 2 * part["span_se"]
    assert part["span"] == pytest.approx(part["clean_logit_diff"] - part["counterfactual_logit_diff"], abs=1e-6)
    plain = [Example(e.prompt, e.correct, e.wrong, e.split, e.template, e.group) for e in task.examples]
    bare = build_task(tiny_llama, CONFIG, plain)
    part, _ = patching(context(tiny_llama, probe), bare, probe, rankings, full=True)
    assert part["why"] == "no training prompt has a counterfactual of its own token length"
    assert (part["n"], part["prompts"]) == (0, "0 of 10 train prompts have a counterfactual (10 none)")
    assert math.isnan(share[0])


PATCHED = {
    "split": "train",
    "n": 10,
    "prompts": "10 of 10 train prompts have a counterfactual",
    "mode": "top",
    "top": 64,
    "n_cells": 960,
    "patched": 150,
    "patched_before_difference": 18,
    "clean_logit_diff": 3.2512,
    "counterfactual_logit_diff": 0.1049,
    "span": 3.1463,
    "span_se": 0.2,
    "rankings": [
        {"ranking": "learned", "k": 64, "mean_abs_share": 0.01234, "shared_with_patching": 20, "spearman": 0.3012},
        {"ranking": "atp_mean", "k": 64, "mean_abs_share": 0.0456, "shared_with_patching": 51, "spearman": 0.7},
    ],
}


def test_the_patching_sentence_and_table():
    from actscale.views.analysis import patching_table, patching_text

    checks = {"map": {"free": {"agreement": [{}], "patching": PATCHED}}}
    assert patching_text(checks) == (
        "Exact activation patching, counterfactual → clean, one cell at a time, on 10 training prompts (10 of 10 "
        "train prompts have a counterfactual): the counterfactuals move Δ from 3.25 to 0.10, and a cell's value is "
        "the share of that gap it restores. 150 of 960 cells patched (18 before the first token that differs, 0 "
        "without a pass): the union of each ranking's top 64 cells (the "
        "AtP* practice of verifying an estimate's candidates; the cells outside every top are not verified, and the "
        "patching ranking orders them by mean-ablation AtP). Of each ranking's top 64, how many are among the 64 "
        "cells patching ranks first of those it patched: learned map 20 (mean |share| 0.012), AtP, mean ablation 51 "
        "(mean |share| 0.046) (drawn from the rankings' own candidates, this overlap flatters them). A cell "
        "patched alone misses what cells do only together, and these prompts' counterfactual fixes what 'the "
        "information' is."
    )
    assert patching_table(checks).iloc[1].to_dict() == {
        "ranking": "AtP, mean ablation",
        "top cells": 64,
        "mean |share restored|": 0.046,
        "among patching's top 64": 51,
        "Spearman with |share| (patched cells)": 0.7,
    }
    refused = PATCHED | {"rankings": [], "patched": 0, "why": "no training prompt has a counterfactual"}
    assert patching_text({"map": {"free": {"agreement": [{}], "patching": refused}}}) == (
        "Exact activation patching patched nothing: no training prompt has a counterfactual (10 of 10 train prompts "
        "have a counterfactual)."
    )
    assert len(patching_table({"map": {"free": {"agreement": [{}], "patching": refused}}})) == 0
    assert patching_text({"map": {"free": {"agreement": [{}]}}}) == ""  # checks stored before patching


WORDS = "store park school office garden market beach house".split()


def last_word_dataset(path) -> None:
    """Prompts whose counterfactual changes only the last word ("to" → "at"): even a random tiny
    model's Δ moves the same way on every prompt, so the gap is beyond its noise."""
    rows = ["prompt,correct,wrong,split,counterfactual"]
    for word in WORDS:
        prompt = f"Then Mary and John went to the {word} and John gave a ball"
        rows.append(f"{prompt} to, Mary, John,train,{prompt} at")
    rows += [f"Then Mary and John went to the {w} and John gave a key to, Mary, John,test," for w in WORDS[:2]]
    path.write_text("\n".join(rows) + "\n")


def test_a_gap_beyond_its_noise_is_patched_and_each_share_is_the_direct_one(tiny_llama, tmp_path):
    last_word_dataset(tmp_path / "d.csv")
    sites = ("attn_out", "mlp_out")
    config = TrainConfig(model="tiny-llama", task="custom", dataset=str(tmp_path / "d.csv"), sites=sites, steps=1)
    task = build_task(tiny_llama, config)
    probe = cell_probe(tiny_llama, task, sites)
    n_layers, n_pos = tiny_llama.n_layers, task.n_pos
    n = 2 * n_layers * n_pos
    part, share = patching(context(tiny_llama, probe), task, probe, {"a": torch.rand(n)}, full=True)
    assert (part["n"], part["patched"], part["mode"]) == (8, n, "full") and "why" not in part
    assert abs(part["span"]) > 2 * part["span_se"]
    # only the last token differs: every other column is one computation on both prompts, 0 without a pass
    assert part["patched_before_difference"] == n - 2 * n_layers
    grid = share.reshape(2, n_layers, n_pos)
    assert bool((grid[..., :-1] == 0).all()) and bool((grid[..., -1] != 0).all())
    rows = patch_rows(task, 16, seed=0)
    counter, _ = counterfactual_context(context(tiny_llama, probe), task, probe, rows)
    corrupt = logit_diff(counter.base_logits, counter.correct, counter.wrong)
    for s, site in enumerate(sites):
        for layer in range(n_layers):
            delta = direct(tiny_llama, task, rows, site, layer, n_pos - 1, None)
            assert float(grid[s, layer, -1]) == pytest.approx(float((delta - corrupt).mean()) / part["span"], abs=1e-4)
    assert [r["ranking"] for r in part["rankings"]] == ["a"]
