"""Tests for actscale.engine.tasks: generators, dataset reading, tokenisation, splits, hashing."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch

from actscale.engine.tasks import (
    IOI_FAMILIES,
    IOI_TEMPLATES,
    Example,
    PreparedTask,
    assign_splits,
    generate_ccc,
    generate_ioi,
    prepare_task,
    read_dataset,
    task_vocabulary,
)
from actscale.errors import DatasetError


class WordTokenizer:
    """Splits on spaces, keeping the leading space with the word: " Mary Ann" -> [" Mary", " Ann"].

    Ids are handed out in order of first sight after the three specials (pad 0, bos 1, eos 2).
    """

    def __init__(self, pad: bool = True) -> None:
        self.vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2}
        self.pad_token_id = 0 if pad else None
        self.bos_token_id, self.eos_token_id = 1, 2

    def __call__(self, text: str, add_special_tokens: bool = True):
        assert add_special_tokens is False
        ids = [self.vocab.setdefault(p, len(self.vocab)) for p in re.findall(r" ?[^ ]+", text)]
        return type("Encoding", (), {"input_ids": ids})()

    def decode(self, ids: list[int]) -> str:
        inverse = {i: w for w, i in self.vocab.items()}
        return "".join(inverse[i] for i in ids)


def ex(prompt: str, correct: str = " a", wrong: str = " b", split: str = "", template: str = "") -> Example:
    return Example(prompt, correct, wrong, split, template)


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


# ---------------------------------------------------------------- read_dataset
def test_read_csv(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('prompt,correct,wrong,split\n"Hi, A gave to", Mary, John,train\nX is, Y, Z,\nP, Q, R, TEST ,, \n')
    assert read_dataset(path) == [
        Example("Hi, A gave to", " Mary", " John", "train"),
        Example("X is", " Y", " Z", ""),
        Example("P", " Q", " R", "test"),
    ]


def test_read_jsonl(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(
        '{"prompt": "A to", "correct": " B", "wrong": " C"}\n\n'
        '{"prompt": "D", "correct": " E", "wrong": " F", "split": "test", "extra": 1}\n'
    )
    assert read_dataset(path) == [Example("A to", " B", " C"), Example("D", " E", " F", "test")]


CSV_ERRORS = [
    (b"", "d.csv: file is empty"),
    (b"  \n", "d.csv: file is empty"),
    (b"\xff\xfeprompt", "d.csv: not UTF-8 text (bad byte at offset 0)"),
    (b"prompt,correct,wrong\n", "d.csv: no rows"),
    (b"prompt,answer\nx,y\n", "d.csv: missing column(s) correct, wrong (found: prompt, answer)"),
    (b"prompt,correct,wrong,split\na, b, c,holdout\n", "d.csv: split 'holdout' in row 1 is not train, val or test"),
    (b'prompt,correct,wrong\n"a\x00,b', "d.csv: malformed CSV: unexpected end of data"),
    (b'prompt,correct,wrong\n"a"x,b,c\n', "d.csv: malformed CSV: ',' expected after '\"'"),
    (
        b"prompt,correct,wrong\nA, b, c\nThe capital of France, is, Paris, London\n",
        "d.csv: row 2 has 4 fields, the header 3; quote a prompt or answer that holds a comma",
    ),
    (
        b"prompt,correct,wrong,split\na, b, c,,x,\n",
        "d.csv: row 1 has 6 fields, the header 4; quote a prompt or answer that holds a comma",
    ),
]


@pytest.mark.parametrize("content, message", CSV_ERRORS)
def test_read_csv_errors(tmp_path, content, message):
    (tmp_path / "d.csv").write_bytes(content)
    with pytest.raises(DatasetError) as info:
        read_dataset(tmp_path / "d.csv")
    assert str(info.value) == message and "\n" not in str(info.value)


JSONL_ERRORS = [
    (
        '{"prompt": "a", "correct": " b", "wrong": " c"}\n{"prompt": ',
        "d.jsonl: malformed JSON on line 2: Expecting value",
    ),
    ("[1, 2]\n", "d.jsonl: line 1 is not a JSON object"),
    ('{"prompt": "a"}\n', "d.jsonl: missing column(s) correct, wrong on line 1"),
    ('{"prompt": "a", "correct": 1, "wrong": " c"}\n', "d.jsonl: correct in line 1 is not a string (got int)"),
    (
        '{"prompt": "a", "correct": " b", "wrong": " c", "split": 3}\n',
        "d.jsonl: split in line 1 is not a string (got int)",
    ),
    (
        '{"prompt": "a", "correct": " b", "wrong": " c", "split": "val\\nx"}\n',
        "d.jsonl: split 'val\\nx' in line 1 is not train, val or test",
    ),
    ("\n\n", "d.jsonl: file is empty"),
]


@pytest.mark.parametrize("content, message", JSONL_ERRORS)
def test_read_jsonl_errors(tmp_path, content, message):
    (tmp_path / "d.jsonl").write_text(content)
    with pytest.raises(DatasetError) as info:
        read_dataset(tmp_path / "d.jsonl")
    assert str(info.value) == message and "\n" not in str(info.value)


def test_row_level_problems_are_read_and_dropped_with_the_row(tmp_path):
    """Issue 12: an empty field or equal answers cost the row, never the file; the row is named."""
    path = tmp_path / "d.csv"
    path.write_text("prompt,correct,wrong\na x, b, c\n , b, c\na y, b\na z, b, b\na w, ,c\na v, b, d\n")
    examples = read_dataset(path)
    assert examples == [
        Example("a x", " b", " c"),
        Example(" ", " b", " c"),
        Example("a y", " b", ""),
        Example("a z", " b", " b"),
        Example("a w", " ", "c"),
        Example("a v", " b", " d"),
    ]
    assert [e.source for e in examples] == [f"row {k}" for k in range(1, 7)]
    task = prepare_task(examples, WordTokenizer(), prepend_bos=False, fixed_length=False, test_frac=0.0)
    assert [(e.source, r) for e, r in task.dropped] == [
        ("row 2", "empty prompt"),
        ("row 3", "empty wrong answer"),
        ("row 4", "correct and wrong are the same"),
        ("row 5", "empty correct answer"),
    ]
    assert [e.prompt for e in task.examples] == ["a x", "a v"]
    assert task.summary() == (
        "kept 2 of 6 prompts (1 train, 1 test); dropped 4: "
        "2 empty answer, 1 empty prompt, 1 correct and wrong are the same"
    )
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(
        '{"prompt": "", "correct": " b", "wrong": " c"}\n{"prompt": "q", "correct": " b", "wrong": " c"}\n'
    )
    assert [(e.prompt, e.source) for e in read_dataset(jsonl)] == [("", "line 1"), ("q", "line 2")]


def test_read_file_level_errors(tmp_path):
    with pytest.raises(DatasetError, match=r"^nope\.csv: file not found$"):
        read_dataset(tmp_path / "nope.csv")
    big = tmp_path / "big.csv"
    big.write_text("prompt,correct,wrong\n" + "a,b,c\n" * 10)
    with pytest.raises(DatasetError, match=r"^big\.csv: file is 81 bytes, more than the limit of 50$"):
        read_dataset(big, max_bytes=50)
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"^d\.txt: unknown file type '\.txt'; use \.csv or \.jsonl$"):
        read_dataset(tmp_path / "d.txt")


def test_read_random_bytes_never_raw(tmp_path):
    gen = torch.Generator().manual_seed(0)
    for i in range(50):
        for suffix in (".csv", ".jsonl"):
            path = tmp_path / f"r{i}{suffix}"
            path.write_bytes(bytes(torch.randint(0, 256, (200,), generator=gen).tolist()))
            with pytest.raises(DatasetError):
                read_dataset(path)


# ---------------------------------------------------------------- prepare_task
def test_left_padding_mask_and_ids():
    tok = WordTokenizer()
    examples = [ex("x y z", split="train"), ex("x y", " c", " d", split="test")]
    task = prepare_task(examples, tok, prepend_bos=True, fixed_length=False)
    # Answers are tokenised before the prompt, so " a"=3, " b"=4, "x"=5, " y"=6, " z"=7, " c"=8, " d"=9
    assert task.tokens.tolist() == [[1, 5, 6, 7], [0, 1, 5, 6]]
    assert task.attention_mask.tolist() == [[1, 1, 1, 1], [0, 1, 1, 1]]
    assert task.correct_ids.tolist() == [3, 8] and task.wrong_ids.tolist() == [4, 9]
    assert task.str_tokens == [["<bos>", "x", " y", " z"], ["<bos>", "x", " y"]]
    assert task.n_pos == 4 and task.tokens.dtype == torch.long and task.attention_mask.dtype == torch.long
    no_bos = prepare_task(examples, tok, prepend_bos=False, fixed_length=False)
    assert no_bos.tokens.tolist() == [[5, 6, 7], [0, 5, 6]]


def test_pad_falls_back_to_eos():
    task = prepare_task(
        [ex("x y", split="train"), ex("x", split="test")],
        WordTokenizer(pad=False),
        prepend_bos=False,
        fixed_length=False,
    )
    assert task.tokens[1, 0].item() == 2


def test_drop_reasons_and_summary():
    examples = [
        ex("p q r"),
        ex("p q s"),
        ex("p q t"),
        ex("p q", " Mary Ann", " b"),  # multi-token correct
        ex("p q", " a", " Johnson Jr"),  # multi-token wrong
        ex("p q", " a", " a "),  # different strings, same token (" a " splits to " a")
        ex("p q r s t u v"),  # longer than max_len
        ex("p q"),
        ex("p q r s"),  # lengths 3 and 5 vs the most common 4
    ]
    task = prepare_task(examples, WordTokenizer(), prepend_bos=True, fixed_length=True, max_len=6)
    assert [r for _, r in task.dropped] == [
        "answer ' Mary Ann' is 2 tokens",
        "answer ' Johnson Jr' is 2 tokens",
        "correct and wrong are the same token",
        "longer than the model's context (6 tokens)",
        "length 3, not the most common length 4",
        "length 5, not the most common length 4",
    ]
    assert [e.prompt for e in task.examples] == ["p q r", "p q s", "p q t"]
    assert task.summary() == (
        "kept 3 of 9 prompts (2 train, 1 test); dropped 6: 2 multi-token answer, "
        "1 correct and wrong are the same token, 1 longer than the model's context (6 tokens), "
        "1 length 3 not the most common length 4, 1 length 5 not the most common length 4"
    )


def test_position_labels_by_alignment_and_coverage():
    """Absolute (one length): labels from the first token. Answer-aligned (every length,
    left-padded): counted back from the last token, with the share of train prompts that
    reach a position where not all do."""
    examples = [
        ex("The city x is in", split="train"),
        ex("The town y is in", split="train"),
        ex("A z is in", split="train"),
        ex("w is in", split="train"),
        ex("v u t s is in", split="test"),
    ]
    aligned = prepare_task(examples, WordTokenizer(), prepend_bos=False, fixed_length=False)
    assert aligned.n_pos == 6 and len(aligned.examples) == 5
    assert aligned.position_labels() == [
        "−6:",
        "−5: The (50%)",
        "−4: A… (75%)",  # ties: the last in string order, as for absolute labels
        "−3: w…",
        "−2: is",
        "−1: in",
    ]
    assert aligned.position_coverage() == [0.0, 0.5, 0.75, 1.0, 1.0, 1.0]
    one = prepare_task(examples[:2], WordTokenizer(), prepend_bos=False, fixed_length=True, test_frac=0.0)
    assert one.position_labels() == ["0:The", "1: town…", "2: y…", "3: is", "4: in"]
    assert one.position_coverage() == [1.0] * 5


def test_pad_to_a_runs_width_drops_longer_prompts():
    examples = [ex("p q"), ex("p q r s t"), ex("p")]
    task = prepare_task(examples, WordTokenizer(), prepend_bos=False, fixed_length=False, test_frac=0.0, n_pos=4)
    assert task.n_pos == 4 and task.attention_mask.tolist() == [[0, 0, 1, 1], [0, 0, 0, 1]]
    assert [r for _, r in task.dropped] == ["longer than the run's 4 positions"]


def test_fixed_length_tie_goes_to_shorter_and_counts():
    examples = [ex("a b")] * 3 + [ex("a b c")] * 3 + [ex("a")] * 2
    task = prepare_task(examples, WordTokenizer(), prepend_bos=False, fixed_length=True)
    assert len(task.examples) == 3 and task.n_pos == 2 and task.attention_mask.all()
    assert task.summary() == (
        "kept 3 of 8 prompts (2 train, 1 test); dropped 5: "
        "3 length 3 not the most common length 2, 2 length 1 not the most common length 2"
    )
    free = prepare_task(examples, WordTokenizer(), prepend_bos=False, fixed_length=False)
    assert (
        len(free.examples) == 8
        and free.n_pos == 3
        and free.summary() == "kept 8 of 8 prompts (6 train, 2 test); dropped 0"
    )


def test_nothing_usable_and_empty():
    with pytest.raises(DatasetError) as info:
        prepare_task(
            [ex("p", " a b"), ex("p", " a b"), ex("q", " a", " a")],
            WordTokenizer(),
            prepend_bos=True,
            fixed_length=False,
        )
    assert str(info.value) == "no usable prompts: 2 multi-token answer, 1 correct and wrong are the same"
    with pytest.raises(DatasetError, match="^no usable prompts: 1 empty prompt$"):
        prepare_task([ex("")], WordTokenizer(), prepend_bos=False, fixed_length=False)
    with pytest.raises(DatasetError, match="^the dataset is empty$"):
        prepare_task([], WordTokenizer(), prepend_bos=True, fixed_length=False)
    with pytest.raises(DatasetError, match="^no training prompts: the 2 kept prompts are all in the test split$"):
        prepare_task(
            [ex("p", split="test"), ex("q", split="test")], WordTokenizer(), prepend_bos=True, fixed_length=False
        )
    # A file naming every row val (or val and test) had been said to hold only test prompts.
    named = [ex("p", split="val"), ex("q", split="test"), ex("r", split="val")]
    with pytest.raises(
        DatasetError, match=r"^no training prompts: the 3 kept prompts are in the val \(2\) and test \(1\) splits$"
    ):
        prepare_task(named, WordTokenizer(), prepend_bos=True, fixed_length=False)


def test_random_split_deterministic_and_sized():
    examples = [ex(f"w{i} x") for i in range(10)]
    a = prepare_task(examples, WordTokenizer(), prepend_bos=True, fixed_length=True, seed=3, test_frac=0.3)
    b = prepare_task(examples, WordTokenizer(), prepend_bos=True, fixed_length=True, seed=3, test_frac=0.3)
    c = prepare_task(examples, WordTokenizer(), prepend_bos=True, fixed_length=True, seed=4, test_frac=0.3)
    assert [e.split for e in a.examples] == [e.split for e in b.examples]
    assert [e.split for e in a.examples] != [e.split for e in c.examples]
    assert a.split_indices("test").numel() == 3 and a.split_indices("train").numel() == 7
    assert sorted(a.split_indices("train").tolist() + a.split_indices("test").tolist()) == list(range(10))
    # At least one in each split, even for tiny sets or extreme fractions.
    two = prepare_task(examples[:2], WordTokenizer(), prepend_bos=True, fixed_length=True, test_frac=0.0)
    assert sorted(e.split for e in two.examples) == ["test", "train"]
    one = prepare_task(examples[:1], WordTokenizer(), prepend_bos=True, fixed_length=True)
    assert [e.split for e in one.examples] == ["train"]


def test_given_splits_kept_and_template_routing():
    examples = [ex("a b", template=f"t{i % 3}") for i in range(9)] + [ex("a b", split="test", template="t0")]
    task = prepare_task(examples, WordTokenizer(), prepend_bos=False, fixed_length=True, test_templates=("t2",))
    assert [e.split for e in task.examples] == ["train", "train", "test"] * 3 + ["test"]
    assert task.split_indices("test").tolist() == [2, 5, 8, 9]
    assert task.summary() == "kept 10 of 10 prompts (6 train, 4 test); dropped 0"


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


def test_a_files_repeated_rows_are_dropped_with_the_row_they_repeat(tiny_llama, tmp_path):
    """Thirty copies of one row had been split 18 / 6 / 6: the test split was the training
    prompt. A file's task keeps the first of a prompt-and-answers, whatever its split or group;
    the same prompt with other answers is another row. A worker handed the file's rows (Ray)
    builds the same task as this process (one dataset hash, so one run id)."""
    from actscale.engine.training import TrainConfig
    from actscale.runs.api import build_task

    ex = [Example(" a b c", " x", " y", source=f"row {i}") for i in (2, 3)]
    ex += [Example(" a b c", " x", " z", source="row 4"), Example(" a b c", " x", " y", split="test", source="row 5")]
    task = prepare_task(ex, WordTokenizer(), prepend_bos=False, fixed_length=False, test_frac=0.0, unique=True)
    assert [e.source for e in task.examples] == ["row 2", "row 4"]
    assert [(e.source, why) for e, why in task.dropped] == [
        ("row 3", "a repeat of row 2"),
        ("row 5", "a repeat of row 2"),
    ]
    assert task.drop_summary() == "dropped 2: 2 repeated row"
    assert len(prepare_task(ex, WordTokenizer(), prepend_bos=False, fixed_length=False, test_frac=0.0).examples) == 4

    rows = [{"prompt": f"When Amy and Tom went out, Tom gave a {w} to", "correct": " Amy", "wrong": " Tom"} for w in
            ("ball", "book", "pen", "key", "cup", "hat", "map", "box", "toy", "jar")]  # fmt: skip
    path = tmp_path / "repeats.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows + rows[:3] * 2))
    config = TrainConfig(model="tiny-llama", task="custom", dataset=str(path), method="dynscalar")
    task = build_task(tiny_llama, config)
    assert len(task.examples) == 10 and task.drop_summary() == "dropped 6: 6 repeated row"
    assert [why for _, why in task.dropped] == [f"a repeat of line {i}" for i in (1, 2, 3, 1, 2, 3)]
    assert build_task(tiny_llama, config, read_dataset(path)).dataset_hash == task.dataset_hash


def test_a_files_groups_never_span_two_splits():
    """Files with a group column are split by whole groups (a country, a speaker): a test prompt
    must not share its group with a training one. Seven groups of unequal size, three seeds."""
    sizes = {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7}
    ex = [Example(f" p{g}{i} q", " x", " y", group=g) for g, n in sizes.items() for i in range(n)]
    for seed in (0, 1, 2):
        task = prepare_task(ex, WordTokenizer(), prepend_bos=False, fixed_length=False, seed=seed, test_frac=0.2,
                            val_frac=0.2, by_group=True)  # fmt: skip
        split_of: dict[str, set[str]] = {}
        for e in task.examples:
            split_of.setdefault(e.group, set()).add(e.split)
        assert all(len(s) == 1 for s in split_of.values()) and set(split_of) == set(sizes)
        assert {"train", "test"} <= {e.split for e in task.examples}
    free = prepare_task(ex, WordTokenizer(), prepend_bos=False, fixed_length=False, test_frac=0.2, by_group=False)
    assert any(len({e.split for e in free.examples if e.group == g}) > 1 for g in sizes)  # without: groups split


def test_a_group_joins_test_only_where_it_brings_the_split_nearer_its_share():
    """One group of 28 prompts and one of 2 at test_frac 0.2 (6 of 30): the large group drawn
    first had taken test, 28 prompts, leaving 2 to train on. Where every group would overshoot
    (two of 15), the smallest tests, so there is a test split. Without groups every prompt is a
    unit of one, and the rule is the one before (round(0.2 · 30) = 6 test prompts)."""
    ex = [Example(f" p{i} q", " x", " y", group="big" if i < 28 else "small") for i in range(30)]
    for seed in range(4):  # whichever group is drawn first
        splits = assign_splits(ex, seed, 0.2, by_group=True)
        assert (splits.count("train"), splits[28:]) == (28, ["test", "test"])
    even = [Example(f" p{i} q", " x", " y", group="one" if i < 15 else "two") for i in range(30)]
    for seed in range(4):
        splits = assign_splits(even, seed, 0.2, by_group=True)
        assert sorted(splits.count(s) for s in ("train", "test")) == [15, 15] and len(set(splits[:15])) == 1
    assert assign_splits(ex, 0, 0.2, by_group=False).count("test") == 6


def test_a_test_split_given_with_the_data_is_the_whole_test_split():
    """Three rows marked test and 27 blank: the blank rows had been split by test_frac too, so 5
    more prompts joined the test split the file had named (as the code's own comment said they
    must not). Now the 27 go to training and validation (val_frac) only."""
    ex = [Example(f" p{i} q", " x", " y", split="test" if i < 3 else "") for i in range(30)]
    splits = assign_splits(ex, 0, 0.2, val_frac=0.2)
    assert (splits[:3], splits.count("test"), splits.count("val"), splits.count("train")) == (["test"] * 3, 3, 5, 22)
    blank = [Example(f" p{i} q", " x", " y") for i in range(30)]  # no test named: test_frac makes one
    assert [assign_splits(blank, 0, 0.2, val_frac=0.2).count(s) for s in ("test", "val", "train")] == [6, 6, 18]


def test_a_validation_split_given_with_the_data_is_the_whole_validation_split():
    """Four rows marked val and 26 blank: 5 blank rows had joined the file's validation split
    by val_frac. Now the blank rows go to test (test_frac) and training only."""
    ex = [Example(f" p{i} q", " x", " y", split="val" if i < 4 else "") for i in range(30)]
    splits = assign_splits(ex, 0, 0.2, val_frac=0.2)
    assert (splits[:4], splits.count("val"), splits.count("test"), splits.count("train")) == (["val"] * 4, 4, 5, 21)
    both = [Example(f" p{i} q", " x", " y", split="val" if i < 4 else "test" if i < 7 else "") for i in range(30)]
    assert [assign_splits(both, 0, 0.2, val_frac=0.2).count(s) for s in ("val", "test", "train")] == [4, 3, 23]


def test_a_file_with_a_group_missing_on_some_rows_says_so():
    """59 rows of eight groups and one row without: the file had been split prompt by prompt,
    each group in training and validation alike, without a word, for one blank cell."""
    ex = [Example(f" p{i} q", " x", " y", group="" if i in (7, 9) else f"g{i % 8}", source=f"row {i + 1}")
          for i in range(60)]  # fmt: skip
    with pytest.raises(DatasetError) as raised:
        assign_splits(ex, 0, 0.2, val_frac=0.2, by_group=True)
    assert str(raised.value) == (
        "2 of 60 prompts to split have no group (the first: row 8), so the file cannot be split by whole groups: "
        "give each a group, or leave the group column empty"
    )
    # a row whose split the file names needs no group; without by_group (generated tasks) nothing is asked
    named = [dataclasses.replace(e, split="test") if not e.group else e for e in ex]
    splits = assign_splits(named, 0, 0.2, val_frac=0.2, by_group=True)
    assert (splits[7], splits[9], splits.count("test")) == ("test", "test", 2)
    assert assign_splits(ex, 0, 0.2, val_frac=0.2).count("test") == 12


def test_a_file_of_one_group_cannot_be_split_and_says_so():
    """Thirty rows of one group had all trained (no test, no validation split) without a word."""
    ex = [Example(f" p{i} q", " x", " y", group="g") for i in range(30)]
    with pytest.raises(DatasetError) as raised:
        assign_splits(ex, 0, 0.2, val_frac=0.2, by_group=True)
    assert str(raised.value) == (
        "every prompt to split is in the group 'g', and a group never spans two splits: none is left for test; give "
        "the file more groups or a split column, or set test_frac to 0"
    )
    assert set(assign_splits(ex, 0, 0.0, val_frac=0.2, by_group=True)) == {"train"}  # asked for no test
    marked = [Example(" t q", " x", " y", split="test", group="g"), *ex]  # the file names its test rows
    assert assign_splits(marked, 0, 0.2, by_group=True).count("test") == 1


def test_the_preview_says_how_the_groups_fall_into_the_splits():
    """The Train page's preview names the groups per split, so a file's groups are seen to be read
    and held apart, and a generated task's shared groups are said."""
    from actscale.views.preview import groups_text

    def task(rows: list[tuple[str, str]]) -> PreparedTask:
        ex = [Example(f" p{i} q", " x", " y", split=s, group=g) for i, (s, g) in enumerate(rows)]
        return prepare_task(ex, WordTokenizer(), prepend_bos=False, fixed_length=False)

    apart = [("train", "a"), ("train", "b"), ("train", "a"), ("val", "c"), ("test", "d")]
    assert groups_text(task(apart)) == "4 groups: 2 in train, 1 in val, 1 in test; none is in two splits"
    shared = [("train", "a"), ("train", "b"), ("test", "a"), ("test", "b")]
    assert groups_text(task(shared)) == "2 groups: 2 in train, 2 in test; test shares groups with training"
    val_only = [("train", "a"), ("val", "a"), ("test", "b")]
    assert groups_text(task(val_only)) == "2 groups: 1 in train, 1 in val, 1 in test; some are in two splits"
    one = [("train", "a"), ("test", "")]
    assert groups_text(task(one)) == "1 group: 1 in train; none is in two splits"
    assert groups_text(task([("train", ""), ("test", "")])) == ""
