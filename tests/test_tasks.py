"""Tests for actscale.engine.tasks: the generators, the bundled tokenizer's prompts, held-out
families, subsets and hashing (reading: test_read_dataset; tokenising: test_prepare_task; splits:
test_splits)."""

from __future__ import annotations

import json
import re

import pytest
import torch
from word_tokenizer import WordTokenizer, ex

from actscale.engine.tasks import (
    IOI_FAMILIES,
    IOI_TEMPLATES,
    PreparedTask,
    generate_ccc,
    generate_ioi,
    prepare_task,
    task_vocabulary,
)
from actscale.errors import DatasetError


# ---------------------------------------------------------------- generators
def test_ioi_deterministic_and_seed_dependent():
    assert generate_ioi(30, seed=4) == generate_ioi(30, seed=4)
    assert generate_ioi(30, seed=4) != generate_ioi(30, seed=5)


def test_ioi_templates_cycle_orders_and_answers():
    examples = generate_ioi(40, seed=0)
    assert len(IOI_TEMPLATES) >= 8
    assert [e.template for e in examples[:10]] == [f"ioi-{i}" for i in range(10)]
    assert [e.template for e in examples] == [f"ioi-{i % 18}" for i in range(40)]
    assert [e.group for e in examples[:18]] == (
        ["subordinate"] * 2
        + ["two-sentences"] * 2
        + ["subordinate"] * 2
        + ["two-sentences"] * 2
        + ["subordinate"] * 2
        + ["coordinated"] * 4
        + ["scene-first"] * 4
    )
    for e in examples:
        assert e.correct != e.wrong and e.split == ""
        io, s = e.correct.strip(), e.wrong.strip()
        assert e.prompt.count(s) == 2 and e.prompt.count(io) == 1 and e.prompt.endswith(" to")
    # ABBA (answer named first) in even templates, BABA in odd ones: both orders occur.
    first = [e.prompt.index(e.correct.strip()) < e.prompt.index(e.wrong.strip()) for e in examples]
    assert first == [i % 2 == 0 for i in range(40)]


def test_ioi_template_subset_and_unknown():
    examples = generate_ioi(6, seed=1, templates=("ioi-3", "ioi-8"))
    assert [e.template for e in examples] == ["ioi-3", "ioi-8"] * 3
    with pytest.raises(DatasetError, match="unknown IOI template"):
        generate_ioi(3, seed=0, templates=("nope",))
    assert generate_ioi(0, seed=0) == []


def test_ccc_prompt_and_memory_switch():
    examples = generate_ccc(200, seed=2)
    france = next(e for e in examples if "of France?" in e.prompt)
    other = france.wrong.strip()
    assert france.prompt == f"The capital of France is {other}. Q: What is the capital of France? A:"
    assert france.correct == " Paris" and other != "Paris" and france.template == "ccc"
    swapped = generate_ccc(200, seed=2, memory_is_correct=False)
    assert [(e.prompt, e.correct, e.wrong) for e in swapped] == [(e.prompt, e.wrong, e.correct) for e in examples]
    assert generate_ccc(50, seed=2) == generate_ccc(50, seed=2) != generate_ccc(50, seed=3)


def test_ccc_more_prompts_than_countries_uses_distinct_pairs():
    examples = generate_ccc(100, seed=0)
    assert len(examples) == 100 and len({e.prompt for e in examples}) == 100
    assert all(e.correct != e.wrong for e in examples)


def test_vocabulary_covers_generated_text():
    vocab = set(task_vocabulary())
    for e in generate_ioi(50, seed=0) + generate_ccc(50, seed=0):
        assert set(re.findall(r"\w+|[^\w\s]", e.prompt + e.correct + e.wrong)) <= vocab
    assert {"Paris", "France", "Mary", "store", "necklace", ":", "?", ",", "."} <= vocab


def test_subset_records_and_hash():
    examples = [ex(f"w{i} x y") for i in range(5)]
    task = prepare_task(examples, WordTokenizer(), prepend_bos=True, fixed_length=True, seed=0)
    test = task.subset("test")
    idx = task.split_indices("test")
    assert isinstance(test, PreparedTask) and test.n_pos == task.n_pos
    assert torch.equal(test.tokens, task.tokens[idx]) and torch.equal(test.correct_ids, task.correct_ids[idx])
    assert all(e.split == "test" for e in test.examples) and test.dropped is task.dropped
    assert task.to_records()[0] == {
        "prompt": "w0 x y",
        "correct": " a",
        "wrong": " b",
        "split": task.examples[0].split,
        "group": "",
    }
    again = prepare_task(examples, WordTokenizer(), prepend_bos=True, fixed_length=True, seed=0)
    assert re.fullmatch(r"[0-9a-f]{16}", task.dataset_hash) and task.dataset_hash == again.dataset_hash
    changed = prepare_task([ex("w0 x z")] + examples[1:], WordTokenizer(), prepend_bos=True, fixed_length=True, seed=0)
    assert changed.dataset_hash != task.dataset_hash


def test_hash_value_is_canonical_jsonl():
    import hashlib
    import json

    task = prepare_task([ex("é x", split="train")], WordTokenizer(), prepend_bos=False, fixed_length=False)
    line = json.dumps(
        {"correct": " a", "prompt": "é x", "split": "train", "wrong": " b"}, ensure_ascii=False, separators=(",", ":")
    )
    assert task.dataset_hash == hashlib.sha256((line + "\n").encode()).hexdigest()[:16]


def test_value_errors_for_bad_arguments():
    with pytest.raises(ValueError):
        prepare_task([ex("a")], WordTokenizer(), prepend_bos=False, fixed_length=False, test_frac=1.0)
    task = prepare_task([ex("a")], WordTokenizer(), prepend_bos=False, fixed_length=False)
    with pytest.raises(ValueError):
        task.split_indices("dev")


# ---------------------------------------------------------------- real tokenizer
@pytest.fixture(scope="module")
def smol_tokenizer():
    """The bundled model's own tokenizer (`make test` converts the model first)."""
    import transformers

    from actscale.engine.models import bundled_model_folder

    return transformers.AutoTokenizer.from_pretrained(bundled_model_folder())


@pytest.mark.slow
def test_smol_ioi_lengths_and_single_tokens(smol_tokenizer):
    lengths = {}
    for tid in IOI_TEMPLATES:
        task = prepare_task(
            generate_ioi(30, seed=0, templates=(tid,)), smol_tokenizer, prepend_bos=True, fixed_length=True
        )
        assert task.dropped == [] and task.tokens[:, 0].eq(smol_tokenizer.bos_token_id).all()
        assert task.has_counterfactual.all()  # the ABC names are single tokens too: same length
        lengths[tid] = task.n_pos
    assert lengths == {
        "ioi-0": 15,
        "ioi-1": 15,
        "ioi-2": 16,
        "ioi-3": 16,
        "ioi-4": 17,
        "ioi-5": 17,
        "ioi-6": 18,
        "ioi-7": 18,
        "ioi-8": 19,
        "ioi-9": 19,
        "ioi-10": 16,
        "ioi-11": 16,
        "ioi-12": 18,
        "ioi-13": 18,
        "ioi-14": 17,
        "ioi-15": 17,
        "ioi-16": 20,
        "ioi-17": 20,
    }
    # every family has templates of at least two lengths (a held-out family is not one length)
    for family, ids in IOI_FAMILIES.items():
        assert len({lengths[t] for t in ids}) >= 2, family


@pytest.mark.slow
def test_smol_ccc_and_vocabulary_single_tokens(smol_tokenizer):
    task = prepare_task(generate_ccc(500, seed=0), smol_tokenizer, prepend_bos=True, fixed_length=True)
    assert task.dropped == [] and task.n_pos == 19 and task.has_counterfactual.all()
    assert task.str_tokens[0][-3:] == ["?", " A", ":"]
    multi = [
        w
        for w in task_vocabulary()
        if w[0].isalpha() and len(smol_tokenizer(" " + w, add_special_tokens=False).input_ids) != 1
    ]
    assert multi == []


def test_held_out_ioi_families_and_templates_must_be_known_and_used():
    """A held-out family or template that none of the templates used is would hold nothing out:
    the test prompts would have been drawn from the training templates, unsaid."""
    from actscale.engine.tasks import ioi_split_examples

    with pytest.raises(DatasetError) as raised:
        ioi_split_examples(8, 4, 0, test_groups=("nope", "zz"))
    families = "subordinate, two-sentences, coordinated, scene-first"
    assert str(raised.value) == f"unknown IOI families nope, zz; known: {families}"
    with pytest.raises(DatasetError, match=r"^unknown IOI template\(s\) \['ioi-99'\]; known: ioi-0, "):
        ioi_split_examples(8, 4, 0, test_templates=("ioi-99",))
    with pytest.raises(DatasetError) as raised:
        ioi_split_examples(8, 4, 0, ("ioi-0", "ioi-2"), test_templates=("ioi-5",), test_groups=("coordinated",))
    assert str(raised.value) == "held out for test but not among the templates used (ioi-0, ioi-2): ioi-5, coordinated"
    held = ioi_split_examples(8, 4, 0, ("ioi-0", "ioi-10", "ioi-11"), test_groups=("coordinated",))
    assert {e.template for e in held if e.split == "test"} == {"ioi-10", "ioi-11"}
    assert {e.template for e in held if e.split != "test"} == {"ioi-0"}


def test_a_run_whose_held_out_prompts_are_all_lost_is_refused_with_why(tiny_llama, tmp_path):
    """Held out for test, but no test prompt of it: the run had trained without a test split
    (absolute positions keep the training prompts' one length, and no coordinated IOI template
    has it), or a file's unknown group held nothing out."""
    from actscale.engine.training import TrainConfig
    from actscale.runs.api import build_task, checked_task, train_run
    from actscale.runs.store import RunStore

    ioi = TrainConfig(model="tiny-llama", test_groups=("coordinated",))
    with pytest.raises(DatasetError) as raised:
        checked_task(tiny_llama, ioi.replace(positions="absolute"))
    assert str(raised.value) == (
        "held out for test: coordinated, but no prompt held out has the 17 tokens of the training prompts, the "
        "one length absolute positions take (answer-aligned positions take others)"
    )
    with pytest.raises(DatasetError, match="^held out for test: coordinated, but no prompt held out has the 17 "):
        train_run(ioi.replace(positions="absolute"), tiny_llama, store=RunStore(tmp_path / "runs"))
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []
    # The checks' own runs tokenise with build_task: the generalisation matrix's runs hold out every family but
    # one and show a cell of none where a family has no prompt of the training length.
    assert build_task(tiny_llama, ioi.replace(positions="absolute")).split_indices("test").numel() == 0
    # of two families held out, one with prompts of the training length: a test split of that one alone
    two = checked_task(tiny_llama, ioi.replace(positions="absolute", test_groups=("coordinated", "subordinate")))
    assert (two.n_pos, {two.examples[i].group for i in two.split_indices("test")}) == (16, {"coordinated"})
    aligned = build_task(tiny_llama, ioi.replace(positions="answer"))  # every length up to the training width
    test = [aligned.examples[i] for i in aligned.split_indices("test")]
    assert len(test) == 200 and {e.group for e in test} == {"coordinated"}
    rows = [
        {"prompt": f"When Amy and Tom went out, Tom gave a {w} to", "correct": a, "wrong": " Tom", "group": g}
        for w, a, g in (
            ("ball", " Amy", "g1"),
            ("book", " Amy", "g2"),
            ("pen", " Amy", "g2"),
            ("key", " Amy Ann", "g3"),
        )
    ]
    path = tmp_path / "groups.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    custom = TrainConfig(model="tiny-llama", task="custom", dataset=str(path), method="dynscalar")
    for groups, reason in [
        (("g2", "nope"), "nope, but no prompt is in it (the groups are g1, g2, g3)"),  # whatever else is held out
        (("g3",), "g3, but no prompt held out is usable (1 multi-token answer)"),
    ]:
        with pytest.raises(DatasetError) as raised:
            checked_task(tiny_llama, custom.replace(test_groups=groups))
        assert str(raised.value) == f"held out for test: {reason}"
    held = checked_task(tiny_llama, custom.replace(test_groups=("g2",)))
    assert [e.group for e in held.examples if e.split == "test"] == ["g2", "g2"]
