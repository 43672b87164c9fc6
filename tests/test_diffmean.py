"""DiffMean (docs/method.md §2): the mean clean − counterfactual difference at the last position,
measured with bare hooks; its layer and strength chosen on validation only; evaluated, stored and
drawn like the trained methods; and refused, in one line, where it cannot be fitted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from actscale.engine.interventions import DiffMean, ModelDims, at_sites
from actscale.engine.interventions.diffmean import STRENGTHS
from actscale.engine.models import last_position_logits
from actscale.engine.objective import logit_diff
from actscale.engine.training import TrainConfig
from actscale.errors import ActscaleError
from actscale.runs.api import build_task, evaluate_run, expected_run_id, train_run
from actscale.runs.store import RunStore

PAGE = str(Path(__file__).resolve().parents[1] / "app_pages" / "2_Explore.py")
CONFIG = TrainConfig(model="tiny-llama", task="ioi", method="diffmean", n_prompts=48, n_test=16, seed=1)


@pytest.fixture(scope="module")
def fitted(tiny_llama, tmp_path_factory):
    root = tmp_path_factory.mktemp("diffmean")
    return root, train_run(CONFIG, tiny_llama, store=RunStore(root))


def test_the_edit_adds_the_chosen_vector_at_the_last_position_only():
    iv = DiffMean(("mlp_out",), ModelDims(n_layers=2, n_pos=4, d_model=3, n_heads=1, d_head=3))
    with torch.no_grad():
        iv.tensor("vector", "mlp_out")[1] = torch.tensor([8.0, 10.0, 12.0])
    act = torch.arange(24, dtype=torch.float32).reshape(2, 4, 3)
    beta = torch.tensor([1.0, -1.0])
    out = iv(act, site="mlp_out", layer=1, beta=beta)
    assert torch.equal(out[:, :-1], act[:, :-1])
    assert torch.equal(out[:, -1], act[:, -1] + torch.tensor([[8.0, 10.0, 12.0], [-8.0, -10.0, -12.0]]))
    assert torch.equal(iv(act, site="mlp_out", layer=0, beta=beta), act)  # zero there
    assert iv.n_params == 3  # the chosen vector
    with pytest.raises(ActscaleError, match="^diffmean adds one vector per layer at attn_out, mlp_out or resid_post"):
        DiffMean(("head",), ModelDims(n_layers=2, n_pos=4, d_model=3, n_heads=1, d_head=3))


def test_the_vector_is_the_mean_difference_measured_with_bare_hooks(fitted, tiny_llama):
    _, bundle = fitted
    task = build_task(tiny_llama, CONFIG)
    rows = task.counterfactual_rows("train")
    fit = bundle.info["fit"]
    assert fit["n_pairs"] == int(rows.numel()) == int(task.split_indices("train").numel())
    last: dict[tuple[str, int], torch.Tensor] = {}

    def read(act, site, layer):
        last[(site, layer, bool(read.clean))] = act[:, -1].detach().mean(0)

    deltas = []
    for clean, tokens in ((True, task.tokens[rows]), (False, task.counterfactual_tokens[rows])):
        read.clean = clean
        with torch.no_grad(), at_sites(tiny_llama.bridge, CONFIG.sites, tiny_llama.n_layers, read):
            logits = last_position_logits(tiny_llama, tokens, task.attention_mask[rows])
        deltas.append(logit_diff(logits, task.correct_ids[rows], task.wrong_ids[rows]))
    orientation = 1 if float((deltas[0] - deltas[1]).mean()) >= 0 else -1
    assert fit["orientation"] == orientation
    for site in CONFIG.sites:
        for layer in range(tiny_llama.n_layers):
            expected = orientation * (last[(site, layer, True)] - last[(site, layer, False)])
            assert torch.allclose(bundle.analysis[f"measured.{site}"][layer], expected, atol=1e-5)
            used = fit["strength"] * expected if (site, layer) == (fit["site"], fit["layer"]) else 0 * expected
            assert torch.allclose(bundle.params[f"vector.{site}"][layer], used, atol=1e-4)


def test_layer_and_strength_are_chosen_on_validation(fitted, tiny_llama, tmp_path):
    _, bundle = fitted
    fit = bundle.info["fit"]
    assert (fit["split"], fit["n"]) == ("val", bundle.metrics["val"]["n_prompts"])
    moves = [m for site in CONFIG.sites for m in fit["moves"][site]]
    best = CONFIG.sites.index(fit["site"]) * tiny_llama.n_layers + fit["layer"]
    assert max(moves) == moves[best]
    scores = [(r["flip_acc_pos"] + r["flip_acc_neg"], -i) for i, r in enumerate(fit["strengths"])]
    assert [r["strength"] for r in fit["strengths"]] == list(STRENGTHS)
    assert fit["strength"] == STRENGTHS[-max(scores)[1]]
    used = {s: bundle.params[f"vector.{s}"].abs().sum(-1) != 0 for s in CONFIG.sites}
    assert sum(int(v.sum()) for v in used.values()) == 1 and bool(used[fit["site"]][fit["layer"]])
    # the test prompts are never read: more of them leave the parameters as they were
    more = train_run(CONFIG.replace(n_test=40), tiny_llama, store=RunStore(tmp_path))
    assert all(torch.equal(more.params[k], v) for k, v in bundle.params.items())
    assert bundle.info["steps_run"] == 0


def test_it_is_evaluated_and_stored_like_a_trained_method(fitted, tiny_llama):
    _, bundle = fitted
    test = bundle.metrics["test"]
    assert test["n_params"] == tiny_llama.d_model and test["n_components"] == 2 * tiny_llama.n_layers
    assert 0 <= test["flip_acc_pos"] <= 1 and len(test["flip_acc_pos_ci95"]) == 2
    again = evaluate_run(bundle, tiny_llama)
    assert again["test"]["flip_acc_neg"] == test["flip_acc_neg"]
    assert evaluate_run(bundle, tiny_llama, beta=0.0)["test"]["logit_diff_pos"] == test["logit_diff_base"]
    assert bundle.history == [] and bundle.info["target"] is None


def test_the_optimisers_fields_do_not_make_another_run(tiny_llama):
    task = build_task(tiny_llama, CONFIG)
    other = CONFIG.replace(lr=0.5, steps=30, margin=3.0, lambda_m=0.1, lambda_f=2.0, cycles=3)
    assert other == CONFIG and expected_run_id(tiny_llama, task, other) == expected_run_id(tiny_llama, task, CONFIG)
    assert (CONFIG.cycles, CONFIG.target) == (1, 0.9)


def test_a_file_without_counterfactuals_is_one_line_and_nothing_is_stored(tiny_llama, tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("prompt,correct,wrong\n" + "".join(f"w{i} x y to, Mary, John\n" for i in range(8)))
    store = RunStore(tmp_path / "runs")
    config = TrainConfig(model="tiny-llama", task="custom", dataset=str(path), method="diffmean")
    with pytest.raises(ActscaleError) as error:
        train_run(config, tiny_llama, store=store)
    assert str(error.value) == (
        "diffmean needs training prompts with a counterfactual (IOI and CCC have them; a file needs its "
        "counterfactual column): 0 of 4 train prompts have a counterfactual (4 none)"
    )
    assert store.list() == []


def test_its_explore_page_renders(fitted, monkeypatch):
    root, bundle = fitted
    monkeypatch.setenv("ACTSCALE_STORE", str(root))
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["run"] = bundle.run_id
    at.run()
    assert not at.exception and not at.error
    keys = [c.proto.id.split("-fig-", 1)[1] for c in at.get("plotly_chart")]
    assert keys[:2] == ["components-attn_out", "components-mlp_out"]
    bars = json.loads(
        next(c for c in at.get("plotly_chart") if c.proto.id.endswith("-fig-components-attn_out")).proto.spec
    )
    values = DiffMean.component_values(bundle.params, bundle.analysis, "attn_out")
    assert bars["data"][0]["y"] == pytest.approx(values.tolist())


def test_its_map_checks_keep_and_move_the_chosen_vector(fitted, tiny_llama):
    """The checks rank (site, layer) components, keep the chosen one alone, and a vector moved to
    another layer keeps its ‖v‖/‖h‖ (SteerVec's rule, at the last position)."""
    from actscale.checks import CheckOptions, run_checks
    from actscale.checks.components import Components, keep_params, transplant_params

    _, bundle = fitted
    mags = {s: DiffMean.relative_magnitude(bundle.params, bundle.analysis, s, None) for s in bundle.sites}
    comps = Components(DiffMean, bundle.sites, mags)
    assert comps.n == 2 * tiny_llama.n_layers and int((comps.magnitude > 0).sum()) == 1
    kept = keep_params(bundle.params, comps, comps.mask(comps.top(1)))
    assert all(torch.equal(kept[k], bundle.params[k]) for k in bundle.params)
    src = comps.top(1)
    site = next(s for s in bundle.sites if comps.offsets[s] <= int(src) < comps.offsets[s] + tiny_llama.n_layers)
    dst = torch.tensor([comps.offsets[site] + (int(src) - comps.offsets[site] + 1) % tiny_llama.n_layers])  # same site
    moved = transplant_params(bundle.params, comps, bundle.analysis, src, dst)
    new = torch.cat([DiffMean.component_values(moved, bundle.analysis, s) for s in bundle.sites])
    assert float(new[dst]) == pytest.approx(float(comps.magnitude[src]), rel=1e-5)
    out = run_checks(tiny_llama, bundle, CheckOptions(prompts=8, draws=5, precision="float32", side_effects=False))
    assert out["map"]["n_components"] == comps.n
