"""`actscale.engine.playground`: steering one prompt, exactly (no Streamlit)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from actscale.engine.interventions import hook_count
from actscale.engine.models import last_position_logits
from actscale.engine.playground import _logits, beta_curve, dataset_prompts, steer_prompt, tokenize_prompt, top_tokens
from actscale.engine.tasks import Example
from actscale.engine.training import TrainConfig
from actscale.errors import ActscaleError
from actscale.runs.api import build_task, intervention_from_bundle, train_run
from actscale.runs.store import RunStore

METHODS = ("activscalar", "steervec", "dynscalar")
SITES = ("attn_out", "mlp_out", "head")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_llama):
    root = tmp_path_factory.mktemp("pg-engine") / "runs"
    return {
        m: train_run(
            TrainConfig(model="tiny-llama", method=m, steps=5, lr=0.2, n_prompts=16, sites=SITES),
            tiny_llama,
            store=RunStore(root),
        )
        for m in METHODS
    }


@pytest.fixture(params=METHODS)
def case(request, runs, tiny_llama):
    """(model, intervention, bundle, first dataset row) for each method."""
    bundle = runs[request.param]
    return tiny_llama, intervention_from_bundle(bundle, tiny_llama), bundle, bundle.dataset[0]


def unmodified_delta(model, row) -> float:
    """Δ of the unmodified model, computed independently: the engine's own task tokenisation
    and a forward pass with no hook at all."""
    task = build_task(
        model,
        TrainConfig(model="tiny-llama", method="dynscalar"),
        [Example(row["prompt"], row["correct"], row["wrong"], "train")],
    )
    with torch.no_grad():
        logits = last_position_logits(model, task.tokens)[0]
    return float(logits[task.correct_ids[0]] - logits[task.wrong_ids[0]])


def test_beta_zero_is_the_unmodified_model(case):
    model, iv, _, row = case
    out = steer_prompt(model, iv, row["prompt"], row["correct"], row["wrong"], 0.0)
    expected = unmodified_delta(model, row)
    assert out.delta == expected  # exactly: at β = 0 every edit is the identity
    assert out.delta_base == expected
    assert out.p_correct == out.p_correct_base and out.p_wrong == out.p_wrong_base
    assert (out.top_before["rank_change"] == 0).all() and (out.top_after["rank_change"] == 0).all()
    assert hook_count(model.bridge) == 0


def test_beta_one_matches_the_stored_evaluation(case):
    """β = ±1 on a dataset prompt gives the Δ the run stored for it (a batched pass, so up to
    float rounding), and steering moves Δ in the direction of β."""
    model, iv, bundle, row = case
    pos = steer_prompt(model, iv, row["prompt"], row["correct"], row["wrong"], 1.0)
    neg = steer_prompt(model, iv, row["prompt"], row["correct"], row["wrong"], -1.0)
    assert pos.delta == pytest.approx(float(bundle.analysis["delta.pos"][0]), abs=1e-4)
    assert neg.delta == pytest.approx(float(bundle.analysis["delta.neg"][0]), abs=1e-4)
    assert pos.delta != pos.delta_base and neg.delta != neg.delta_base


def test_top10_sorted_and_ranks_consistent(case):
    model, iv, _, row = case
    out = steer_prompt(model, iv, row["prompt"], row["correct"], row["wrong"], 1.0)
    before, after = out.top_before, out.top_after
    assert len(before) == len(after) == 10
    assert list(before["rank_before"]) == list(range(1, 11))
    assert list(after["rank_after"]) == list(range(1, 11))
    assert list(before["p_before"]) == sorted(before["p_before"], reverse=True)
    assert list(after["p_after"]) == sorted(after["p_after"], reverse=True)
    for table in (before, after):
        assert (table["rank_change"] == table["rank_before"] - table["rank_after"]).all()
        assert table["token_id"].is_unique
    # ranks recomputed by hand from both distributions
    pt = tokenize_prompt(model, iv, row["prompt"], row["correct"], row["wrong"])
    base = _logits(model, None, pt.tokens, None)[0]
    steered = _logits(model, iv, pt.tokens, torch.tensor([1.0]))[0]
    base_order = torch.argsort(base, descending=True).tolist()
    steered_order = torch.argsort(steered, descending=True).tolist()
    for _, r in after.iterrows():
        assert base_order.index(r["token_id"]) + 1 == r["rank_before"]
        assert steered_order.index(r["token_id"]) + 1 == r["rank_after"]
        assert r["p_before"] == pytest.approx(float(torch.softmax(base, -1)[r["token_id"]]))
    # a token in both tables has the same ranks in both
    shared = before.merge(after, on="token_id", suffixes=("_b", "_a"))
    assert (shared["rank_before_b"] == shared["rank_before_a"]).all()
    assert (shared["rank_after_b"] == shared["rank_after_a"]).all()
    assert out.p_correct == pytest.approx(float(torch.softmax(steered, -1)[pt.correct_id]))


def test_top_tokens_ties_share_a_rank(tiny_llama):
    logits = torch.full((tiny_llama.d_vocab,), -5.0)
    logits[[7, 9]] = 3.0
    logits[4] = 1.0
    table = top_tokens(tiny_llama, logits, logits, k=3)
    assert list(table["rank"]) == [1, 1, 3]
    assert set(table["token_id"][:2]) == {7, 9} and table["token_id"][2] == 4


def test_beta_curve(case):
    model, iv, _, row = case
    curve = beta_curve(model, iv, row["prompt"], row["correct"], row["wrong"])
    assert list(curve.columns) == ["beta", "delta", "p_correct", "p_wrong"]
    np.testing.assert_allclose(curve["beta"], np.linspace(-1, 1, 21))
    for beta in (-1.0, 0.0, 0.5, 1.0):
        one = steer_prompt(model, iv, row["prompt"], row["correct"], row["wrong"], beta)
        at = curve[np.isclose(curve["beta"], beta)].iloc[0]
        assert at["delta"] == pytest.approx(one.delta, abs=1e-4)
        assert at["p_correct"] == pytest.approx(one.p_correct, abs=1e-6)
        assert at["p_wrong"] == pytest.approx(one.p_wrong, abs=1e-6)
    assert curve.loc[10, "delta"] == pytest.approx(unmodified_delta(model, row), abs=1e-4)
    custom = beta_curve(model, iv, row["prompt"], row["correct"], row["wrong"], [0.25, -0.25])
    assert list(custom["beta"]) == [0.25, -0.25]
    with pytest.raises(ActscaleError):
        beta_curve(model, iv, row["prompt"], row["correct"], row["wrong"], [])


@pytest.mark.parametrize(
    ("prompt", "correct", "wrong", "message"),
    [
        ("", "Mary", "John", "prompt is empty"),
        ("   ", "Mary", "John", "prompt is empty"),
        (None, "Mary John", "John", "2 tokens"),
        (None, "Mary", "", "wrong answer is empty"),
        (None, "Mary", "John went", "2 tokens"),
    ],
)
def test_bad_inputs_are_actscale_errors(case, prompt, correct, wrong, message):
    model, iv, _, row = case
    with pytest.raises(ActscaleError, match=message):
        steer_prompt(model, iv, row["prompt"] if prompt is None else prompt, correct, wrong, 1.0)
    assert hook_count(model.bridge) == 0


def test_a_beta_out_of_range_is_one_line(case):
    model, iv, _, row = case
    for beta in (float("nan"), -1000.5, True):
        with pytest.raises(ActscaleError) as raised:
            steer_prompt(model, iv, row["prompt"], row["correct"], row["wrong"], beta)
        assert str(raised.value) == f"beta must be a number in [-1000, 1000], got {beta!r}"
    with pytest.raises(ActscaleError, match=r"^beta must be a number in \[-1000, 1000\], got inf$"):
        beta_curve(model, iv, row["prompt"], row["correct"], row["wrong"], [0.0, float("inf")])
    assert steer_prompt(model, iv, row["prompt"], row["correct"], row["wrong"], -1000).beta == -1000.0
    assert hook_count(model.bridge) == 0


def test_fixed_length_runs_refuse_other_lengths(runs, tiny_llama):
    for method in ("activscalar", "steervec"):
        bundle = runs[method]
        iv = intervention_from_bundle(bundle, tiny_llama)
        with pytest.raises(ActscaleError, match=f"tied to prompts of {bundle.config['n_pos']} tokens"):
            steer_prompt(tiny_llama, iv, "When Mary went to the store", "Mary", "John", 1.0)
    iv = intervention_from_bundle(runs["dynscalar"], tiny_llama)
    out = steer_prompt(tiny_llama, iv, "When Mary went to the store", "Mary", "John", 1.0)
    assert len(out.str_tokens) == 7  # BOS + six words: any length is fine for DynScalar
    assert out.str_tokens[0] == tiny_llama.tokenizer.bos_token


def test_no_hook_left_when_the_forward_fails(runs, tiny_llama):
    iv = intervention_from_bundle(runs["activscalar"], tiny_llama)
    short = torch.tensor([[1, 5, 6]])
    with pytest.raises(ValueError, match="tied to prompts"):
        _logits(tiny_llama, iv, short, torch.tensor([1.0]))
    assert hook_count(tiny_llama.bridge) == 0
    assert "_beta" not in vars(iv)


def test_holds_the_model_lock(runs, tiny_llama):
    """Another session holding the model makes steering wait, never interleave."""
    iv = intervention_from_bundle(runs["dynscalar"], tiny_llama)
    row = runs["dynscalar"].dataset[0]
    done = threading.Event()

    def work():
        steer_prompt(tiny_llama, iv, row["prompt"], row["correct"], row["wrong"], 1.0)
        done.set()

    acquired = threading.Event()
    release = threading.Event()

    def holder():
        with tiny_llama.lock:
            acquired.set()
            release.wait(5)

    h = threading.Thread(target=holder)
    h.start()
    acquired.wait(5)
    t = threading.Thread(target=work)
    t.start()
    assert not done.wait(0.5)  # blocked while the other session holds the model
    release.set()
    assert done.wait(30)
    t.join()
    h.join()


def test_dataset_prompts_skip_unusable_rows(runs):
    import dataclasses

    bundle = dataclasses.replace(
        runs["dynscalar"],
        dataset=[
            {"prompt": "a b", "correct": "Mary", "wrong": "John", "split": "test"},
            {"prompt": 3, "correct": "Mary", "wrong": "John"},
            {"prompt": "c d", "correct": "Mary"},
            {"prompt": "e f", "correct": "Mary", "wrong": "John"},
        ],
    )
    rows = dataset_prompts(bundle)
    assert [r["prompt"] for r in rows] == ["a b", "e f"]
    assert rows[0]["split"] == "test" and rows[1]["split"] == ""


def test_greedy_continuation_at_beta_zero_is_the_unmodified_models(case):
    """β = 0 leaves every method's edit the identity, so both continuations are the same text,
    and the hooks are gone afterwards."""
    from actscale.engine.playground import greedy_continuation

    model, iv, _, row = case
    before, after = greedy_continuation(model, iv, row["prompt"], 0.0, n_tokens=6)
    assert before == after and len(model.tokenizer(before, add_special_tokens=False).input_ids) >= 1
    assert hook_count(model.bridge) == 0


def test_greedy_continuation_of_a_fixed_length_run_needs_its_prompt_length(runs, tiny_llama):
    from actscale.engine.playground import greedy_continuation

    iv = intervention_from_bundle(runs["activscalar"], tiny_llama)
    with pytest.raises(ActscaleError, match=f"^this intervention is tied to prompts of {iv.n_pos} tokens; got 3 "):
        greedy_continuation(tiny_llama, iv, "Mary and", 1.0, n_tokens=4)


def test_trigger_map_reads_the_recorded_scalars(runs, tiny_llama):
    from actscale.engine.playground import trigger_map

    bundle = runs["dynscalar"]
    iv = intervention_from_bundle(bundle, tiny_llama)
    mags = {s: bundle.analysis[f"magnitude.{s}"] for s in bundle.sites}
    values, units, tokens = trigger_map(tiny_llama, iv, mags, bundle.dataset[0]["prompt"], top=5)
    assert values.shape == (5, len(tokens)) and len(units) == 5
    # The strongest unit's row is α = w·ĥ + b at each token, computed here by hand.
    site, layer = units[0].split()[0], int(units[0].split()[1][1:])
    ids = torch.tensor(
        [
            [tiny_llama.tokenizer.bos_token_id] * tiny_llama.prepend_bos
            + tiny_llama.tokenizer(bundle.dataset[0]["prompt"], add_special_tokens=False).input_ids
        ]
    )
    _, cache = tiny_llama.bridge.run_with_cache(ids)
    from actscale.engine.sites import hook_name

    act = cache[hook_name(site, layer)][0]
    if act.dim() == 3:  # head site: the unit's head
        act = act[:, int(units[0].split()[2][1:])]
        w, b = (
            bundle.params[f"w.{site}"][layer, int(units[0].split()[2][1:])],
            bundle.params[f"b.{site}"][layer, int(units[0].split()[2][1:])],
        )
    else:
        w, b = bundle.params[f"w.{site}"][layer], bundle.params[f"b.{site}"][layer]
    expected = (act / act.norm(dim=-1, keepdim=True).clamp_min(1e-6)) @ w + b
    assert np.allclose(values[0], expected.numpy(), atol=1e-4)
    with pytest.raises(ActscaleError, match="the trigger map needs a DynScalar run$"):
        trigger_map(tiny_llama, intervention_from_bundle(runs["steervec"], tiny_llama), mags, "hello")
