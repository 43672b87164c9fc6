"""Counterfactual prompts (docs/method.md §5): IOI's ABC corruption, CCC's third capital, a file's
optional column, their tokens next to the prompts', dataset.jsonl, and run ids they leave alone."""

from __future__ import annotations

import re

import torch
from word_tokenizer import WordTokenizer

from actscale.engine.tasks import (
    IOI_TEMPLATES,
    NAMES,
    Example,
    ccc_countries,
    generate_ccc,
    generate_ioi,
    prepare_task,
    read_dataset,
)


def test_ioi_counterfactual_is_the_abc_corruption_of_the_same_sentence():
    examples = generate_ioi(200, seed=0)
    assert examples[0].prompt == "When Michael and Anna went to the store, Anna gave a bone to"
    assert examples[0].counterfactual == "When Tom and Dan went to the store, Susan gave a bone to"
    for e in examples:
        template = IOI_TEMPLATES[e.template]
        last = template.rindex("{B}")
        pattern = re.escape(template[:last] + "{C}" + template[last + 3 :])
        pattern = pattern.replace(r"\{A\}", "(?P<x>\\w+)").replace(r"\{B\}", "(?P<y>\\w+)", 1)
        pattern = pattern.replace(r"\{C\}", "(?P<z>\\w+)").replace(r"\{PLACE\}", r"\w+").replace(r"\{OBJECT\}", r"\w+")
        names = re.fullmatch(pattern, e.counterfactual)
        assert names is not None, e.counterfactual
        x, y, z = names["x"], names["y"], names["z"]
        assert len({x, y, z}) == 3 and {x, y, z} <= set(NAMES)
        assert not {x, y, z} & {e.correct.strip(), e.wrong.strip()}
        # everything but the names is the prompt's own: place and object kept
        assert e.counterfactual.replace(x, "").replace(y, "").replace(z, "") == (
            e.prompt.replace(e.correct.strip(), "").replace(e.wrong.strip(), "")
        )


def test_ccc_counterfactual_swaps_the_context_capital_for_a_third_one():
    for e in generate_ccc(100, seed=2):
        swap = re.fullmatch(r"The capital of (.+) is (\w+)\. Q: What is the capital of \1\? A:", e.counterfactual)
        assert swap is not None and swap[1] == e.group and e.group in ccc_countries()
        assert e.counterfactual == e.prompt.replace(f" is{e.wrong}.", f" is {swap[2]}.")
        assert swap[2] not in (e.correct.strip(), e.wrong.strip())


def test_a_files_counterfactual_column_is_read_and_kept_at_its_prompts_length(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(
        "prompt,correct,wrong,split,counterfactual\n"
        "w0 x y, a, b,train,w9 x y\n"  # same length: used
        "w1 x y, a, b,train,w9 x y z\n"  # another length: not used
        "w2 x y, a, b,train,\n"  # none
        "w3 x y, a, b,train,w8 q y\n"
    )
    examples = read_dataset(path)
    assert [e.counterfactual for e in examples] == ["w9 x y", "w9 x y z", "", "w8 q y"]
    task = prepare_task(examples, WordTokenizer(), prepend_bos=True, fixed_length=False)
    assert task.has_counterfactual.tolist() == [True, False, False, True]
    assert task.counterfactual_rows("train").tolist() == [0, 3]
    assert task.counterfactual_summary("train") == (
        "2 of 4 train prompts have a counterfactual (1 of another token length, 1 none)"
    )
    vocab = task.counterfactual_tokens.tolist()
    assert vocab[0][1:] != task.tokens[0].tolist()[1:] and vocab[0][0] == task.tokens[0, 0] == 1  # BOS kept
    assert vocab[1] == task.tokens[1].tolist() and vocab[2] == task.tokens[2].tolist()  # none: the prompt itself
    assert task.subset("train").has_counterfactual.tolist() == [True, False, False, True]


def test_counterfactuals_go_to_dataset_jsonl_and_leave_the_run_id_alone():
    splits = ["train", "train", "train", "test"]
    plain = [Example(f"w{i} x y", " a", " b", splits[i]) for i in range(4)]
    with_cf = [Example(f"w{i} x y", " a", " b", splits[i], counterfactual=f"v{i} x y" * (i != 1)) for i in range(4)]
    a = prepare_task(plain, WordTokenizer(), prepend_bos=False, fixed_length=True, seed=0)
    b = prepare_task(with_cf, WordTokenizer(), prepend_bos=False, fixed_length=True, seed=0)
    assert a.dataset_hash == b.dataset_hash
    records = b.to_records()
    assert [r.get("counterfactual") for r in records] == ["v0 x y", None, "v2 x y", "v3 x y"]
    assert "counterfactual" not in a.to_records()[0]
    assert [Example.from_record(r) for r in records] == b.examples
    assert torch.equal(b.has_counterfactual, torch.tensor([True, False, True, True]))
    assert b.counterfactual_summary("test") == "1 of 1 test prompts have a counterfactual"
    assert b.counterfactual_summary("train") == "2 of 3 train prompts have a counterfactual (1 none)"
    assert a.counterfactual_summary("train") == "0 of 3 train prompts have a counterfactual (3 none)"
