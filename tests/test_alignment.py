"""Answer-aligned positions (issue 12): ActivScalar and SteerVec keep the prompts of every
length, counted back from the answer, with pad positions never edited; rows that cannot be used
are dropped with their reason instead of failing the file. Tiny models, exact expectations;
one slow test on the bundled model for the issue's acceptance."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import mixed_rows

from actscale.engine.config import TrainConfig
from actscale.engine.interventions import ModelDims, make_intervention, steer
from actscale.engine.models import last_position_logits
from actscale.engine.playground import steer_prompt
from actscale.engine.sites import SITES, hook_name
from actscale.engine.tasks import generate_ioi
from actscale.engine.training import new_intervention
from actscale.errors import ActscaleError
from actscale.runs.api import build_task, evaluate_run, intervention_from_bundle, load_run, train_run
from actscale.runs.migrations import migrate_config
from actscale.runs.store import RunStore

N_VALID = 18  # the usable rows of conftest.mixed_rows


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["prompt", "correct", "wrong"])
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def mixed_csv(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("align") / "mixed.csv", mixed_rows())


def custom(model, path: Path, **changes) -> TrainConfig:
    base = dict(model=model.name, task="custom", dataset=str(path), steps=3, batch_size=4, early_stop=0, device="cpu")
    return TrainConfig(**{**base, **changes})


# ---------------------------------------------------------------- the config
def test_positions_resolve_and_are_checked(tmp_path):
    assert TrainConfig().positions == "absolute"  # generated tasks: one length per run
    assert TrainConfig(task="ccc", positions="auto").positions == "absolute"
    assert TrainConfig(task="custom", dataset="d.csv").positions == "answer"
    assert TrainConfig(task="custom", dataset="d.csv", positions="absolute").positions == "absolute"
    assert TrainConfig(positions="answer").one_length is False and TrainConfig().one_length is True
    assert TrainConfig(method="dynscalar").one_length is False  # any length whatever the alignment
    with pytest.raises(ActscaleError, match="^unknown positions 'left': choose auto, absolute or answer$"):
        TrainConfig(positions="left")
    # A run stored before the field existed (format 0) was absolute, whatever its task.
    old = {k: v for k, v in TrainConfig(task="custom", dataset="d.csv").to_dict().items() if k != "positions"}
    assert TrainConfig.from_bundle(migrate_config(old)).positions == "absolute"
    assert TrainConfig.from_dict(old).positions == "answer"
    # Switching the task resolves the alignment afresh; switching the method keeps it.
    assert TrainConfig().replace(task="custom", dataset="d.csv").positions == "answer"
    assert TrainConfig(positions="answer").replace(method="steervec").positions == "answer"


# ---------------------------------------------------------------- keeping every length
def test_answer_aligned_keeps_every_valid_row_absolute_one_length(tiny_llama, mixed_csv):
    aligned = build_task(tiny_llama, custom(tiny_llama, mixed_csv))
    lengths = [len(t) for t in aligned.str_tokens]
    assert sorted(set(lengths)) == [15, 16, 17, 18] and len(aligned.examples) == N_VALID
    assert aligned.n_pos == 18 and not aligned.fixed_length
    assert [(e.source, r) for e, r in aligned.dropped] == [
        ("row 19", "correct and wrong are the same"),
        ("row 20", "answer ' Amy Tom' is 2 tokens"),
    ]
    assert aligned.summary() == (
        "kept 18 of 20 prompts (10 train, 4 val, 4 test); dropped 2: "
        "1 correct and wrong are the same, 1 multi-token answer"
    )
    absolute = build_task(tiny_llama, custom(tiny_llama, mixed_csv, positions="absolute"))
    assert len(absolute.examples) == 6 and absolute.n_pos == 15 and absolute.fixed_length
    assert absolute.summary() == (
        "kept 6 of 20 prompts (4 train, 1 val, 1 test); dropped 14: 5 length 16 not the most common length 15, "
        "4 length 17 not the most common length 15, 3 length 18 not the most common length 15, "
        "1 correct and wrong are the same, 1 multi-token answer"
    )


@pytest.fixture(scope="module")
def aligned_run(tiny_llama, mixed_csv, tmp_path_factory):
    root = tmp_path_factory.mktemp("align-runs") / "runs"
    return train_run(custom(tiny_llama, mixed_csv), tiny_llama, store=RunStore(root)), root


def test_answer_aligned_run_trains_stores_reloads_evaluates(tiny_llama, aligned_run, mixed_csv):
    bundle, root = aligned_run
    assert bundle.config["positions"] == "answer" and bundle.config["n_pos"] == 18
    assert len(bundle.dataset) == N_VALID
    assert bundle.params["alpha.attn_out"].shape == (tiny_llama.n_layers, 18)
    labels = bundle.info["position_labels"]
    assert labels[:3] == ["−18: <bos> (10%)", "−17: <bos>… (40%)", "−16: The… (70%)"]
    assert labels[-4:] == ["−4: gave", "−3: a", "−2: snack…", "−1: to"]
    coverage = bundle.info["position_coverage"]
    assert len(coverage) == 18 and coverage[-15:] == [1.0] * 15 and coverage[0] < 0.5
    assert [(d["row"], d["reason"]) for d in bundle.info["dropped"]] == [
        ("row 19", "correct and wrong are the same"),
        ("row 20", "answer ' Amy Tom' is 2 tokens"),
    ]
    reloaded = load_run(bundle.run_id, store=RunStore(root))
    assert reloaded.config == bundle.config
    again = evaluate_run(reloaded, tiny_llama)
    for split in ("train", "val", "test"):
        for name in ("flip_acc_pos", "flip_acc_neg", "acc_base", "flip_acc_neg_ci95"):
            assert again[split][name] == pytest.approx(bundle.metrics[split][name], abs=1e-6), (split, name)
    absolute = train_run(custom(tiny_llama, mixed_csv, positions="absolute"), tiny_llama, store=RunStore(root))
    assert absolute.config["positions"] == "absolute" and absolute.run_id != bundle.run_id
    assert len(absolute.dataset) == 6 and absolute.info["position_labels"][0] == "0:<bos>"


def test_evaluating_on_another_file_pads_to_the_run_and_drops_longer(tiny_llama, aligned_run, tmp_path):
    bundle, _ = aligned_run
    rows = [
        {"prompt": "When Mary and John went to the store, John gave a drink to", "correct": " Mary", "wrong": " John"},
        {"prompt": "Then, Amy and Tom went to the park. Tom gave a ball to", "correct": " Amy", "wrong": " Tom"},
        {
            "prompt": "The day after Kate and Ben went to the school, Ben gave a book to",
            "correct": " Kate",
            "wrong": " Ben",
        },
        {"prompt": "Mary and John went to the store. John gave a drink to", "correct": " Mary", "wrong": " John"},
        {"prompt": " ".join(["Mary"] * 30), "correct": " Mary", "wrong": " John"},
    ]
    metrics = evaluate_run(bundle, tiny_llama, write_csv(tmp_path / "other.csv", rows))
    n = sum(m["n_prompts"] for m in metrics.values())
    assert n == 4  # the 31-token prompt is longer than the run's 18 positions


def test_playground_takes_any_prompt_up_to_the_runs_width(tiny_llama, aligned_run):
    iv = intervention_from_bundle(aligned_run[0], tiny_llama)
    out = steer_prompt(tiny_llama, iv, "Mary and John went. John gave a drink to", " Mary", " John", 1.0)
    assert len(out.str_tokens) == 11
    with pytest.raises(ActscaleError, match="counts positions back from the answer over 18 tokens; this prompt has 31"):
        steer_prompt(tiny_llama, iv, " ".join(["Mary"] * 30), " Mary", " John", 1.0)


# ---------------------------------------------------------------- the edit with padding
@pytest.mark.parametrize("method", ["activscalar", "steervec"])
def test_identity_at_init_is_exact_with_padding(tiny_model, mixed_csv, method):
    """Logits equal the unhooked model's on every prompt, padded batch, every site, both β."""
    cfg = custom(tiny_model, mixed_csv, method=method, sites=SITES)
    task = build_task(tiny_model, cfg)
    assert not bool(task.attention_mask.all())  # really padded
    iv = new_intervention(tiny_model, task, cfg)
    assert iv.answer_aligned
    with torch.no_grad():
        base = last_position_logits(tiny_model, task.tokens, task.attention_mask)
        for beta in (1.0, -1.0):
            with steer(tiny_model.bridge, iv, beta, batch=len(task.tokens), mask=task.attention_mask):
                steered = last_position_logits(tiny_model, task.tokens, task.attention_mask)
            assert torch.equal(steered, base), beta


def _recorder(names: list[str], into: dict[str, torch.Tensor]) -> list[tuple[str, object]]:
    def grab(act, hook, name):  # noqa: ARG001 - a TransformerLens hook's signature
        into[name] = act.detach().clone()

    return [(n, lambda act, hook, n=n: grab(act, hook, n)) for n in names]


@pytest.mark.parametrize("method", ["activscalar", "steervec"])
def test_a_trained_intervention_leaves_pad_positions_untouched(tiny_llama, mixed_csv, method):
    """At every hook point the intervention edits, the activation leaving it equals the one
    entering it at pad positions (captured by hooks just before and just after its own)."""
    cfg = custom(tiny_llama, mixed_csv, method=method, sites=("attn_out", "mlp_out", "head"), lr=0.5)
    bundle = train_run(cfg, tiny_llama, store=RunStore(mixed_csv.parent / f"pads-{method}"))
    iv = intervention_from_bundle(bundle, tiny_llama)
    prefix = "alpha" if method == "activscalar" else "vector"
    with torch.no_grad():  # every parameter nonzero, the columns pads meet too
        for site in cfg.sites:
            p = iv.tensor(prefix, site)
            p.copy_(torch.where(p == 0, torch.full_like(p, 0.3), p))
    task = build_task(tiny_llama, cfg)
    names = [hook_name(s, layer) for s in cfg.sites for layer in range(tiny_llama.n_layers)]
    before: dict[str, torch.Tensor] = {}
    after: dict[str, torch.Tensor] = {}
    bridge = tiny_llama.bridge
    with torch.no_grad(), bridge.hooks(fwd_hooks=_recorder(names, before), reset_hooks_end=True):
        with steer(bridge, iv, 1.0, batch=len(task.tokens), mask=task.attention_mask):
            with bridge.hooks(fwd_hooks=_recorder(names, after), reset_hooks_end=True):
                last_position_logits(tiny_llama, task.tokens, task.attention_mask)
    pads = ~task.attention_mask.bool()
    assert int(pads.sum()) == 18 * 18 - sum(len(t) for t in task.str_tokens) > 0
    for name in names:
        assert torch.equal(after[name][pads], before[name][pads]), name
        assert not torch.equal(after[name][~pads], before[name][~pads]), name  # the edit did happen


def test_a_narrow_batch_uses_the_last_columns():
    dims = ModelDims(n_layers=1, n_pos=5, d_model=2, n_heads=1, d_head=2)
    iv = make_intervention("activscalar", ("attn_out",), dims, {"positions": "answer"})
    with torch.no_grad():
        iv.tensor("alpha", "attn_out")[0] = torch.tensor([10.0, 20.0, 30.0, 40.0, 50.0])
    act = torch.ones(1, 3, 2)
    out = iv(act, site="attn_out", layer=0, beta=torch.ones(1), mask=torch.tensor([[0, 1, 1]]))
    assert out[0, :, 0].tolist() == [1.0, 41.0, 51.0]  # the pad keeps 1; −2 and −1 use α[3], α[4]
    with pytest.raises(ValueError, match="over at most 5 tokens; got 6"):
        iv(torch.ones(1, 6, 2), site="attn_out", layer=0, beta=torch.ones(1))
    absolute = make_intervention("activscalar", ("attn_out",), dims, {"positions": "absolute"})
    with pytest.raises(ValueError, match="tied to prompts of 5 tokens; got 3"):
        absolute(act, site="attn_out", layer=0, beta=torch.ones(1))


# ---------------------------------------------------------------- one bad row
def test_one_bad_row_trains_on_the_others_and_is_listed(tiny_llama, tmp_path):
    rows = [r for r in mixed_rows() if r["correct"] != r["wrong"] and " " not in r["correct"].strip()]
    rows.insert(4, {"prompt": "The city of Paris is in", "correct": " France", "wrong": " France"})
    bundle = train_run(custom(tiny_llama, write_csv(tmp_path / "bad.csv", rows)), tiny_llama, store=RunStore(tmp_path))
    assert len(bundle.dataset) == N_VALID
    assert bundle.info["dropped"] == [
        {
            "prompt": "The city of Paris is in",
            "correct": " France",
            "wrong": " France",
            "row": "row 5",
            "reason": "correct and wrong are the same",
        }
    ]
    config = json.loads((bundle.path / "config.json").read_text())
    assert config["positions"] == "answer"


# ---------------------------------------------------------------- acceptance (bundled model)
PREAMBLES = (
    "",
    "It was a warm day. ",
    "After a long and tiring week at work, ",
    "Early on a quiet Sunday morning, after the rain had finally stopped, ",
)


def acceptance_rows() -> list[dict[str, str]]:
    """64 IOI prompts behind preambles of four lengths (16 each, one template): single-token
    names, places and objects for SmolLM2."""
    rows = []
    for k, preamble in enumerate(PREAMBLES):
        for e in generate_ioi(16, seed=100 + k, templates=("ioi-0",)):
            prompt = preamble + (e.prompt if not preamble else e.prompt[0].lower() + e.prompt[1:])
            rows.append({"prompt": prompt, "correct": e.correct, "wrong": e.wrong})
    return rows


@pytest.mark.slow
def test_acceptance_answer_aligned_flips_at_least_as_well_as_one_length(bundled, tmp_path):
    rows = acceptance_rows()
    path = write_csv(tmp_path / "preambles.csv", rows)
    store = RunStore(tmp_path / "runs")
    # 40 steps for both (ActivScalar's default is 18): with 38 training prompts instead of 10 the
    # answer-aligned run sees each prompt only four times in 18 steps of 8.
    aligned_cfg = TrainConfig(model="bundled", task="custom", dataset=str(path), device="cpu", steps=40)
    aligned_task = build_task(bundled, aligned_cfg)
    assert len({len(t) for t in aligned_task.str_tokens}) >= 4
    assert len(aligned_task.examples) == len(rows) == 64 and aligned_task.dropped == []
    aligned = train_run(aligned_cfg, bundled, store=store, task=aligned_task)
    restricted = train_run(aligned_cfg.replace(positions="absolute"), bundled, store=store)
    assert len(restricted.dataset) == 16
    a, r = aligned.metrics["test"], restricted.metrics["test"]
    print(
        "\nacceptance (test split): "
        + "; ".join(
            f"{name} n={m['n_prompts']} acc_base={m['acc_base']:.2f} "
            f"flip+={m['flip_acc_pos']:.2f} {m['flip_acc_pos_ci95']} "
            f"flip-={m['flip_acc_neg']:.2f} {m['flip_acc_neg_ci95']}"
            for name, m in (("answer-aligned", a), ("one length", r))
        )
    )
    for m in (a, r):
        assert len(m["flip_acc_pos_ci95"]) == 2 and len(m["flip_acc_neg_ci95"]) == 2
    assert a["n_prompts"] > r["n_prompts"]
    assert a["flip_acc_pos"] + a["flip_acc_neg"] >= r["flip_acc_pos"] + r["flip_acc_neg"]


def test_explore_labels_positions_from_the_end_and_lists_rare_ones(aligned_run, monkeypatch):
    """The heatmap's position axis is the stored labels; a caption lists the positions fewer
    than half of the training prompts reach (−18: 10%, −17: 40%)."""
    from streamlit.testing.v1 import AppTest

    bundle, root = aligned_run
    monkeypatch.setenv("ACTSCALE_STORE", str(root))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app_pages" / "2_Explore.py"), default_timeout=60)
    at.query_params["run"], at.query_params["interactive"] = bundle.run_id, "1"  # the maps as plotly figures
    at.run()
    assert not at.exception and not at.error
    rare = [c.value for c in at.caption if "fewer than half of the training prompts" in c.value]
    assert len(rare) == 1 and rare[0].endswith("the share is in each label): −18, −17")
    heat = [c for c in at.get("plotly_chart") if c.proto.id.endswith("-fig-alpha-attn_out")]
    assert json.loads(heat[0].proto.spec)["data"][0]["x"] == bundle.info["position_labels"]
