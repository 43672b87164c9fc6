"""Tasks: prompts with an answer pair (docs/method.md §5), and their tokenisation for training.

Three sources produce `Example`s: the IOI generator, the CCC generator and a user's CSV/JSONL
file. `prepare_task` turns them into left-padded token tensors, drops what cannot be used
(saying why) and assigns the deterministic train/test split. A problem of one row (an empty or
multi-token answer, equal answers, a prompt too long) drops that row with its reason; only a
problem of the file (its type, its columns, nothing left to train on) fails the whole file.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import io
import json
import random
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from actscale.errors import DatasetError

SPLITS = ("train", "val", "test")
# What a dataset file may write in its split column.
_SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "dev": "val", "test": "test"}


@dataclass(frozen=True)
class Example:
    """One prompt with its answer pair; `correct` is a+ and `wrong` is a-, each meant to be one token."""

    prompt: str
    correct: str
    wrong: str
    split: str = ""  # "train", "val", "test" or "" (unassigned)
    template: str = ""  # generator template id, e.g. "ioi-3"; "" for custom data
    group: str = ""  # IOI: the template family; CCC: the country; custom: the file's group column
    # Where a file's example came from ("row 5", "line 3"), to name it when it is dropped; not
    # part of the example's identity.
    source: str = dataclasses.field(default="", compare=False)

    @classmethod
    def from_record(cls, row: Mapping[str, Any]) -> Example:
        """An example from a bundle's dataset.jsonl row (the inverse of `PreparedTask.to_records`)."""
        return cls(
            str(row["prompt"]),
            str(row["correct"]),
            str(row["wrong"]),
            str(row.get("split") or ""),
            group=str(row.get("group") or ""),
        )


# ---------------------------------------------------------------- IOI (Wang et al. 2023 style)
# {A} is always the indirect object (the answer) and {B} the subject, so the even ids put the
# answer first (ABBA) and the odd ids put it second (BABA). Each pair shares one sentence, so
# both orders have the same token length. Templates come in families of one sentence
# structure with several lengths each (IOI_FAMILIES): holding out a whole family tests a
# method on a structure it never saw, not on a near-copy with a phrase inserted.
IOI_TEMPLATES: dict[str, str] = {
    "ioi-0": "When {A} and {B} went to the {PLACE}, {B} gave a {OBJECT} to",
    "ioi-1": "When {B} and {A} went to the {PLACE}, {B} gave a {OBJECT} to",
    "ioi-2": "Then, {A} and {B} went to the {PLACE}. {B} gave a {OBJECT} to",
    "ioi-3": "Then, {B} and {A} went to the {PLACE}. {B} gave a {OBJECT} to",
    "ioi-4": "The day after {A} and {B} went to the {PLACE}, {B} gave a {OBJECT} to",
    "ioi-5": "The day after {B} and {A} went to the {PLACE}, {B} gave a {OBJECT} to",
    "ioi-6": "After the lunch, {A} and {B} went to the {PLACE}. {B} gave a {OBJECT} to",
    "ioi-7": "After the lunch, {B} and {A} went to the {PLACE}. {B} gave a {OBJECT} to",
    "ioi-8": "When {A} and {B} went to the {PLACE} on a sunny day, {B} gave a {OBJECT} to",
    "ioi-9": "When {B} and {A} went to the {PLACE} on a sunny day, {B} gave a {OBJECT} to",
    "ioi-10": "Today {A} and {B} went to the {PLACE}, and {B} gave a {OBJECT} to",
    "ioi-11": "Today {B} and {A} went to the {PLACE}, and {B} gave a {OBJECT} to",
    "ioi-12": "Today {A} and {B} went to the {PLACE} together, and then {B} gave a {OBJECT} to",
    "ioi-13": "Today {B} and {A} went to the {PLACE} together, and then {B} gave a {OBJECT} to",
    "ioi-14": "The {PLACE} was busy. {A} and {B} were there. {B} handed a {OBJECT} to",
    "ioi-15": "The {PLACE} was busy. {B} and {A} were there. {B} handed a {OBJECT} to",
    "ioi-16": "The {PLACE} was busy that morning. {A} and {B} were both there. {B} handed a {OBJECT} to",
    "ioi-17": "The {PLACE} was busy that morning. {B} and {A} were both there. {B} handed a {OBJECT} to",
}
# Families by sentence structure: a subordinate clause before the main clause; two sentences;
# two main clauses joined by "and"; a scene set first, then the names, then the act.
IOI_FAMILIES: dict[str, tuple[str, ...]] = {
    "subordinate": ("ioi-0", "ioi-1", "ioi-4", "ioi-5", "ioi-8", "ioi-9"),
    "two-sentences": ("ioi-2", "ioi-3", "ioi-6", "ioi-7"),
    "coordinated": ("ioi-10", "ioi-11", "ioi-12", "ioi-13"),
    "scene-first": ("ioi-14", "ioi-15", "ioi-16", "ioi-17"),
}
IOI_FAMILY_OF: dict[str, str] = {t: family for family, ids in IOI_FAMILIES.items() for t in ids}

# Each word is one token after a space for SmolLM2 (checked) and GPT-2 (common English words).
NAMES = (
    "Mary John Tom James Dan Sid Martin Amy Paul Chris Mark Anne Kate Mike Sarah Lisa Emma Jack "
    "Ben Adam Alex Ryan Jane David Michael Laura Anna Peter Susan Steve Joe Bob Tim Sam Max Kevin"
).split()
PLACES = "store park school office hospital station garden restaurant market beach house library".split()
OBJECTS = "drink ring ball book bone kiss necklace computer basketball snack apple bag pen letter key".split()

CCC_TEMPLATE = "The capital of {country} is {other}. Q: What is the capital of {country}? A:"
_COUNTRIES_CSV = Path(__file__).parents[1] / "data" / "countries.csv"


def generate_ioi(n: int, seed: int, templates: tuple[str, ...] | None = None) -> list[Example]:
    """`n` IOI examples, deterministic given `seed`; a+ = " {IO}", a- = " {S}" (never equal).

    Example i uses template `templates[i % len(templates)]` (all of `IOI_TEMPLATES` when None),
    so templates are used evenly. Raises DatasetError on an unknown template id.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    ids = tuple(IOI_TEMPLATES) if templates is None else tuple(templates)
    unknown = [t for t in ids if t not in IOI_TEMPLATES]
    if unknown or not ids:
        raise DatasetError(f"unknown IOI template(s) {unknown or '(none given)'}; known: {', '.join(IOI_TEMPLATES)}")
    rng = random.Random(seed)
    out = []
    for i in range(n):
        tid = ids[i % len(ids)]
        io_name, s_name = rng.sample(NAMES, 2)  # sample: the two names always differ
        prompt = IOI_TEMPLATES[tid].format(A=io_name, B=s_name, PLACE=rng.choice(PLACES), OBJECT=rng.choice(OBJECTS))
        out.append(Example(prompt, f" {io_name}", f" {s_name}", template=tid, group=IOI_FAMILY_OF[tid]))
    return out


@functools.lru_cache(maxsize=1)
def _countries() -> tuple[tuple[str, str], ...]:
    """(country, capital) pairs from data/countries.csv, each a single token for SmolLM2 and known to it."""
    with open(_COUNTRIES_CSV, encoding="utf-8", newline="") as f:
        return tuple((row["country"], row["capital"]) for row in csv.DictReader(f))


def generate_ccc(
    n: int, seed: int, memory_is_correct: bool = True, countries: tuple[str, ...] | None = None
) -> list[Example]:
    """`n` country-capital conflict examples, deterministic given `seed`.

    Prompt: `CCC_TEMPLATE` with another country's capital as context. correct/wrong are
    " {true capital}"/" {other capital}" when `memory_is_correct`, swapped otherwise.
    Countries are cycled in a shuffled order; round r pairs each country with the r-th of its
    own shuffled list of other capitals, so pairs only repeat past countries * (countries - 1).
    ``countries`` restricts the questions to those countries (the context's capital may be any
    other country's). Each example's group is its country.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    everything = list(_countries())
    asked = everything if countries is None else [c for c in everything if c[0] in set(countries)]
    if not asked:
        raise DatasetError("no CCC countries to ask about")
    rng = random.Random(seed)
    order = rng.sample(asked, len(asked))
    others = {c: rng.sample([k for _, k in everything if k != cap], len(everything) - 1) for c, cap in order}
    out = []
    for i in range(n):
        country, capital = order[i % len(order)]
        other = others[country][(i // len(order)) % len(others[country])]
        memory, context = f" {capital}", f" {other}"
        correct, wrong = (memory, context) if memory_is_correct else (context, memory)
        out.append(
            Example(CCC_TEMPLATE.format(country=country, other=other), correct, wrong, template="ccc", group=country)
        )
    return out


# Test prompts are drawn from a stream of their own, so adding test prompts never changes the
# training prompts of the same seed.
_TEST_STREAM = 1_000_003


def ioi_split_examples(
    n_trainval: int,
    n_test: int,
    seed: int,
    templates: tuple[str, ...] = (),
    test_templates: tuple[str, ...] = (),
    test_groups: tuple[str, ...] = (),
) -> list[Example]:
    """IOI prompts for training and validation (split left unassigned) and ``n_test`` test
    prompts (split "test"), drawn separately. Templates in ``test_templates`` or of a family in
    ``test_groups`` are held out: only the test prompts use them. A test prompt identical to a
    training one is skipped."""
    ids = tuple(templates) or tuple(IOI_TEMPLATES)
    held = tuple(t for t in ids if t in test_templates or IOI_FAMILY_OF.get(t) in test_groups)
    train_ids = tuple(t for t in ids if t not in held)
    if not train_ids:
        raise DatasetError("every IOI template is held out for test: keep at least one for training")
    trainval = generate_ioi(n_trainval, seed, train_ids)
    seen = {e.prompt for e in trainval}
    test = [
        dataclasses.replace(e, split="test")
        for e in generate_ioi(n_test + len(seen), seed + _TEST_STREAM, held or ids)
        if e.prompt not in seen
    ][:n_test]
    return trainval + test


def ccc_split_examples(
    n_trainval: int,
    n_test: int,
    seed: int,
    val_frac: float,
    memory_is_correct: bool = True,
    test_groups: tuple[str, ...] = (),
) -> list[Example]:
    """CCC prompts with every split assigned by country, so no country is asked about in two
    splits: the countries in ``test_groups`` (else a third of them, drawn by ``seed``) for test,
    ``val_frac`` of the rest for validation, the others for training."""
    countries = list(ccc_countries())
    unknown = [c for c in test_groups if c not in countries]
    if unknown:
        raise DatasetError(f"unknown CCC countr{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}")
    random.Random(seed).shuffle(countries)
    test_c = [c for c in countries if c in test_groups] or countries[: round(len(countries) / 3)]
    rest = [c for c in countries if c not in test_c]
    val_c = rest[: max(1, round(val_frac * len(rest)))] if val_frac > 0 else []
    train_c = rest[len(val_c) :]
    if not train_c:
        raise DatasetError("no CCC country is left for training")
    n_val = round(val_frac * n_trainval) if val_c else 0
    parts = (
        ("train", n_trainval - n_val, train_c, 0),
        ("val", n_val, val_c, 1),
        ("test", n_test, test_c, _TEST_STREAM),
    )
    return [
        dataclasses.replace(e, split=split)
        for split, n, chosen, stream in parts
        if n
        for e in generate_ccc(n, seed + stream, memory_is_correct, tuple(chosen))
    ]


def ccc_countries() -> tuple[str, ...]:
    """Every country the CCC generator asks about, in the data file's order."""
    return tuple(country for country, _ in _countries())


def task_vocabulary() -> list[str]:
    """Sorted pieces (runs of word characters, or single punctuation marks) the generators can produce.

    Split with `re.findall(r"\\w+|[^\\w\\s]", text)`, e.g. "A:" -> "A", ":".
    """
    texts = [*IOI_TEMPLATES.values(), CCC_TEMPLATE, *NAMES, *PLACES, *OBJECTS]
    texts += [w for pair in _countries() for w in pair]
    pieces = {p for t in texts for p in re.findall(r"\w+|[^\w\s]", re.sub(r"\{\w+\}", " ", t))}
    return sorted(pieces)


# ---------------------------------------------------------------- user datasets
def read_dataset(path: str | Path, max_bytes: int = 50_000_000) -> list[Example]:
    """Examples from a CSV (.csv) or JSONL (.jsonl/.json) file with prompt, correct, wrong[, split].

    Values are kept as written (an answer's leading space matters), also empty ones and equal
    answers: `prepare_task` drops such a row with its reason, so one bad row never costs the
    file. Split is "train", "val", "test" or empty (case and surrounding spaces ignored). A
    problem of the file's format raises DatasetError with a one-line message naming the file
    (and the row or line); never a raw parser error.
    """
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise DatasetError(f"{name}: file not found" if not path.exists() else f"{name}: not a file")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise DatasetError(f"{name}: file is {size} bytes, more than the limit of {max_bytes}")
        data = path.read_bytes()
    except OSError as e:
        raise DatasetError(f"{name}: cannot read the file ({e.strerror})") from None
    try:
        text = data.decode("utf-8-sig")  # -sig: Excel writes a byte-order mark
    except UnicodeDecodeError as e:
        raise DatasetError(f"{name}: not UTF-8 text (bad byte at offset {e.start})") from None
    if not text.strip():
        raise DatasetError(f"{name}: file is empty")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = _csv_rows(text, name)
    elif suffix in (".jsonl", ".json"):
        rows = _jsonl_rows(text, name)
    else:
        raise DatasetError(f"{name}: unknown file type '{suffix}'; use .csv or .jsonl")
    if not rows:
        raise DatasetError(f"{name}: no rows")
    return [_row_to_example(values, where, name) for where, values in rows]


def _csv_rows(text: str, name: str) -> list[tuple[str, dict]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)  # strict: report a stray quote
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in ("prompt", "correct", "wrong") if c not in header]
        if missing:
            raise DatasetError(
                f"{name}: missing column(s) {', '.join(missing)} (found: {', '.join(header) or 'nothing'})"
            )
        reader.fieldnames = header
        # A short row gives None for the missing fields: empty, dropped by prepare_task.
        return [(f"row {k}", row) for k, row in enumerate(reader, start=1)]
    except csv.Error as e:
        raise DatasetError(f"{name}: malformed CSV: {e}") from None


def _jsonl_rows(text: str, name: str) -> list[tuple[str, dict]]:
    rows = []
    # Split on "\n" only: splitlines() would also break at U+2028, U+0085 and friends, which JSON
    # allows raw inside strings.
    for k, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as e:
            # ValueError also covers numbers too long to convert (Python's int digit limit).
            reason = getattr(e, "msg", None) or ("nested too deeply" if isinstance(e, RecursionError) else str(e))
            raise DatasetError(f"{name}: malformed JSON on line {k}: {reason[:200]}") from None
        if not isinstance(obj, dict):
            raise DatasetError(f"{name}: line {k} is not a JSON object")
        missing = [c for c in ("prompt", "correct", "wrong") if c not in obj]
        if missing:
            raise DatasetError(f"{name}: missing column(s) {', '.join(missing)} on line {k}")
        rows.append((f"line {k}", obj))
    return rows


def _row_to_example(values: dict, where: str, name: str) -> Example:
    fields = {}
    for col in ("prompt", "correct", "wrong", "split", "group"):
        v = values.get(col)
        if v is None:
            v = ""  # a short CSV row, or JSON null for split or group
        if not isinstance(v, str):
            raise DatasetError(f"{name}: {col} in {where} is not a string (got {type(v).__name__})")
        fields[col] = v
    split = fields["split"].strip().lower()
    if split and split not in _SPLIT_NAMES:
        raise DatasetError(f"{name}: split {fields['split']!r} in {where} is not train, val or test")
    return Example(
        fields["prompt"],
        fields["correct"],
        fields["wrong"],
        split=_SPLIT_NAMES.get(split, ""),
        group=fields["group"].strip(),
        source=where,
    )


# ---------------------------------------------------------------- tokenised task
@dataclass
class PreparedTask:
    """Kept examples (split assigned), tokenised and left-padded; `dropped` says what was left out and why."""

    examples: list[Example]
    tokens: torch.Tensor  # [batch pos] long, left-padded with the pad id
    attention_mask: torch.Tensor  # [batch pos] long, 1 on real tokens
    correct_ids: torch.Tensor  # [batch] long
    wrong_ids: torch.Tensor  # [batch] long
    str_tokens: list[list[str]]  # real tokens only, no padding
    dropped: list[tuple[Example, str]]
    fixed_length: bool

    @property
    def n_pos(self) -> int:
        return self.tokens.shape[1]

    def split_indices(self, split: str) -> torch.Tensor:
        """Long indices of the examples in `split` ("train", "val" or "test"), in order."""
        if split not in SPLITS:
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        return torch.tensor([i for i, ex in enumerate(self.examples) if ex.split == split], dtype=torch.long)

    def subset(self, split: str) -> PreparedTask:
        """The same task restricted to one split; n_pos and `dropped` are unchanged."""
        idx = self.split_indices(split)
        return PreparedTask(
            [self.examples[i] for i in idx.tolist()],
            self.tokens[idx],
            self.attention_mask[idx],
            self.correct_ids[idx],
            self.wrong_ids[idx],
            [self.str_tokens[i] for i in idx.tolist()],
            self.dropped,
            self.fixed_length,
        )

    def to_records(self) -> list[dict]:
        """One {"prompt", "correct", "wrong", "split", "group"} dict per kept example (the bundle's
        dataset.jsonl)."""
        return [
            {"prompt": e.prompt, "correct": e.correct, "wrong": e.wrong, "split": e.split, "group": e.group}
            for e in self.examples
        ]

    @property
    def dataset_hash(self) -> str:
        """First 16 hex chars of the sha256 of the kept examples as compact, key-sorted JSONL."""
        # An empty group is left out, so data without groups hashes as it did before groups existed.
        records = [{k: v for k, v in r.items() if k != "group" or v} for r in self.to_records()]
        lines = [json.dumps(r, sort_keys=True, ensure_ascii=False, separators=(",", ":")) for r in records]
        return hashlib.sha256(("\n".join(lines) + "\n").encode("utf-8")).hexdigest()[:16]

    def position_labels(self) -> list[str]:
        """A label per position, by the task's alignment (docs/method.md §2), from the train prompts.

        One length (absolute positions): ``"3:Mary…"``, the token all prompts share there, or
        the most common one followed by '…' where they differ (names, places). Prompts of
        several lengths (answer-aligned): counted back from the last token, ``"−1: in"``,
        ``"−2: located…"``, with the share of prompts long enough to reach the position where
        not all are, ``"−9: The (40%)"``.
        """
        idx = self._label_rows()
        labels = []
        for pos, seen in enumerate(self._tokens_at_positions(idx)):
            if not seen:
                labels.append(f"{pos}:" if self.fixed_length else f"−{self.n_pos - pos}:")
                continue
            top = max(seen, key=lambda k: (seen[k], k))
            more = "" if len(seen) == 1 else "…"
            if self.fixed_length:
                labels.append(f"{pos}:{top}{more}")
                continue
            reach = sum(seen.values()) / len(idx)
            share = "" if reach == 1 else f" ({100 * reach:.0f}%)"
            labels.append(f"−{self.n_pos - pos}: {top.strip() or repr(top)}{more}{share}")
        return labels

    def position_coverage(self) -> list[float]:
        """Per position, the share of train prompts with a real token there (1.0 everywhere
        for one length; answer-aligned, the early positions only long prompts reach)."""
        idx = self._label_rows()
        return [round(sum(seen.values()) / len(idx), 6) for seen in self._tokens_at_positions(idx)]

    def _label_rows(self) -> list[int]:
        # The train prompts, which the parameters were learned from (all, before any split).
        return self.split_indices("train").tolist() or list(range(len(self.examples)))

    def _tokens_at_positions(self, idx: list[int]) -> list[dict[str, int]]:
        """Per position, how often each token stands there among the rows ``idx`` (left-padded)."""
        counts: list[dict[str, int]] = [{} for _ in range(self.n_pos)]
        for i in idx:
            toks = self.str_tokens[i]
            for pos, tok in enumerate(toks, start=self.n_pos - len(toks)):
                counts[pos][tok] = counts[pos].get(tok, 0) + 1
        return counts

    def summary(self) -> str:
        """One line, e.g. "kept 80 of 100 prompts (56 train, 8 val, 16 test); dropped 20: 18 ..., 2
        multi-token answer" (a split with no prompts is left out)."""
        kept = len(self.examples)
        counts = Counter(e.split for e in self.examples)
        sizes = ", ".join(f"{counts[s]} {s}" for s in SPLITS if counts[s] or s != "val")
        head = f"kept {kept} of {kept + len(self.dropped)} prompts ({sizes})"
        if not self.dropped:
            return f"{head}; dropped 0"
        return f"{head}; dropped {len(self.dropped)}: {_drop_breakdown(self.dropped)}"


def _drop_kind(reason: str) -> str:
    """The summary's group for a drop reason: answers are grouped whatever the word."""
    if re.fullmatch(r"answer .* is \d+ tokens", reason):
        return "empty answer" if reason.endswith(" 0 tokens") else "multi-token answer"
    if re.fullmatch(r"empty (correct|wrong) answer", reason):
        return "empty answer"
    return reason.replace(",", "")


def _drop_breakdown(dropped: list[tuple[Example, str]]) -> str:
    counts = Counter(_drop_kind(r) for _, r in dropped)  # first-seen order breaks count ties
    return ", ".join(f"{c} {k}" for k, c in sorted(counts.items(), key=lambda kc: -kc[1]))


# One usable example: the example, its prompt's token ids, and the ids of a+ and a−.
_Tokenised = tuple[Example, list[int], int, int]


def prepare_task(
    examples: list[Example],
    tokenizer,
    *,
    prepend_bos: bool,
    fixed_length: bool,
    seed: int = 0,
    test_frac: float = 0.2,
    test_templates: tuple[str, ...] = (),
    max_len: int | None = None,
    val_frac: float = 0.0,
    test_groups: tuple[str, ...] = (),
    by_group: bool = False,
    n_pos: int | None = None,
) -> PreparedTask:
    """Tokenise, filter and split `examples` (see the module docstring).

    Prompts are tokenised with `add_special_tokens=False`, with `tokenizer.bos_token_id` in
    front when `prepend_bos` (and the tokenizer has one). Dropped, with the reason: an empty
    prompt or answer, correct and wrong that are the same text or the same token, an answer
    that is not exactly one token, a prompt longer than `max_len` (or than `n_pos`), and (with
    `fixed_length`, absolute positions) every length but the most common one (ties: shorter).
    Without `fixed_length` prompts of every length are kept, left-padded to the longest (to
    `n_pos` when given: a stored run's width). Splits (`assign_splits`): an example's own split
    wins; a template in `test_templates` or a group in `test_groups` goes to test; the rest is
    shuffled by `seed` into test, val and train (by whole groups with `by_group`, when every
    example carries one). Raises DatasetError when nothing or no training prompt is left, or
    `examples` is empty.
    """
    if not examples:
        raise DatasetError("the dataset is empty")
    if not (0.0 <= test_frac < 1.0 and 0.0 <= val_frac < 1.0 and test_frac + val_frac < 1.0):
        raise ValueError(f"test_frac and val_frac must be in [0, 1) with a sum below 1, got {test_frac} and {val_frac}")
    bos = tokenizer.bos_token_id if prepend_bos else None
    kept, dropped = _tokenise(examples, tokenizer, bos, max_len, n_pos)
    if fixed_length and kept:
        kept, dropped = _keep_most_common_length(kept, dropped)
    if not kept:
        raise DatasetError(f"no usable prompts: {_drop_breakdown(dropped)}")
    splits = assign_splits([k[0] for k in kept], seed, test_frac, test_templates, val_frac, test_groups, by_group)
    if "train" not in splits:
        raise DatasetError(f"no training prompts: all {len(kept)} kept prompts are in the test split")
    pad_id = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)
    tokens, mask = _left_pad([k[1] for k in kept], pad_id, n_pos)
    return PreparedTask(
        examples=[dataclasses.replace(k[0], split=s) for k, s in zip(kept, splits)],
        tokens=tokens,
        attention_mask=mask,
        correct_ids=torch.tensor([k[2] for k in kept], dtype=torch.long),
        wrong_ids=torch.tensor([k[3] for k in kept], dtype=torch.long),
        str_tokens=[[tokenizer.decode([i]) for i in k[1]] for k in kept],
        dropped=dropped,
        fixed_length=fixed_length,
    )


def _tokenise(
    examples: list[Example], tokenizer, bos: int | None, max_len: int | None, n_pos: int | None = None
) -> tuple[list[_Tokenised], list[tuple[Example, str]]]:
    """The examples that can be used, tokenised, and the others with the reason."""
    kept: list[_Tokenised] = []
    dropped: list[tuple[Example, str]] = []
    for ex in examples:
        outcome = _tokenise_one(ex, tokenizer, bos, max_len, n_pos)
        if isinstance(outcome, str):
            dropped.append((ex, outcome))
        else:
            kept.append(outcome)
    return kept, dropped


def _tokenise_one(ex: Example, tokenizer, bos: int | None, max_len: int | None, n_pos: int | None) -> _Tokenised | str:
    """The example tokenised, or the first problem found (its text, then the answers' tokens,
    then the prompt's length): one row's problem costs that row alone."""
    problem = _text_problem(ex)
    if problem:
        return problem
    answer_ids = []
    for ans in (ex.correct, ex.wrong):
        ids = tokenizer(ans, add_special_tokens=False).input_ids
        if len(ids) != 1:
            return f"answer {ans!r} is {len(ids)} tokens"
        answer_ids.append(ids[0])
    if answer_ids[0] == answer_ids[1]:
        return "correct and wrong are the same token"
    prompt_ids = _prompt_ids(ex.prompt, tokenizer, bos)
    return _length_problem(len(prompt_ids), max_len, n_pos) or (ex, prompt_ids, answer_ids[0], answer_ids[1])


def _text_problem(ex: Example) -> str:
    """What makes a row unusable before any tokenising ("" when nothing)."""
    if not ex.prompt.strip():
        return "empty prompt"
    for name, answer in (("correct", ex.correct), ("wrong", ex.wrong)):
        if not answer.strip():
            return f"empty {name} answer"
    return "correct and wrong are the same" if ex.correct == ex.wrong else ""


def _prompt_ids(prompt: str, tokenizer, bos: int | None) -> list[int]:
    return ([bos] if bos is not None else []) + list(tokenizer(prompt, add_special_tokens=False).input_ids)


def _length_problem(n_tokens: int, max_len: int | None, n_pos: int | None) -> str:
    if n_tokens == 0:
        return "empty prompt"
    if max_len is not None and n_tokens > max_len:
        return f"longer than the model's context ({max_len} tokens)"
    if n_pos is not None and n_tokens > n_pos:
        return f"longer than the run's {n_pos} positions"
    return ""


def _keep_most_common_length(
    kept: list[_Tokenised], dropped: list[tuple[Example, str]]
) -> tuple[list[_Tokenised], list[tuple[Example, str]]]:
    """Fixed-length methods learn one parameter per position, so all prompts must align: keep
    the most common token length (ties: the shorter), drop the rest with the reason."""
    counts = Counter(len(k[1]) for k in kept)
    common = min(counts, key=lambda n: (-counts[n], n))
    dropped = dropped + [
        (k[0], f"length {len(k[1])}, not the most common length {common}") for k in kept if len(k[1]) != common
    ]
    return [k for k in kept if len(k[1]) == common], dropped


def _left_pad(prompts: list[list[int]], pad_id: int, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids [batch pos] and attention mask [batch pos], left-padded to ``width`` (default:
    the longest prompt): the last real token sits at the last position for every prompt."""
    n_pos = max(len(ids) for ids in prompts) if width is None else width
    tokens = torch.full((len(prompts), n_pos), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), n_pos), dtype=torch.long)
    for row, ids in enumerate(prompts):
        tokens[row, n_pos - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        mask[row, n_pos - len(ids) :] = 1
    return tokens, mask


def assign_splits(
    examples: list[Example],
    seed: int,
    test_frac: float,
    test_templates: tuple[str, ...] = (),
    val_frac: float = 0.0,
    test_groups: tuple[str, ...] = (),
    by_group: bool = False,
) -> list[str]:
    """The split of each example. Its own split wins; a template in ``test_templates`` or a
    group in ``test_groups`` goes to test (and then no other prompt does); the rest is shuffled
    by ``seed``: round(test_frac·n) to test (at least one when n >= 2 and no prompt is in test yet),
    round(val_frac·n) to val, the others to train (at least one). With ``by_group`` and every
    free example carrying a group, whole groups are assigned, so no group spans two splits."""
    splits = [ex.split for ex in examples]
    held_out = False
    if test_templates or test_groups:
        for i, ex in enumerate(examples):
            if not splits[i] and (ex.template in test_templates or (ex.group and ex.group in test_groups)):
                splits[i] = "test"
        held_out, test_frac = True, 0.0
    free = [i for i, s in enumerate(splits) if not s]
    held_out = held_out or "test" in splits  # a test split given with the data: no other prompt joins it
    if by_group and free and all(examples[i].group for i in free):
        units = sorted({examples[i].group for i in free})  # whole groups
        members = {g: [i for i in free if examples[i].group == g] for g in units}
    else:
        units = [str(i) for i in free]
        members = {str(i): [i] for i in free}
    random.Random(seed).shuffle(units)
    n = len(free)
    n_test = round(test_frac * n) if held_out or len(units) < 2 else max(round(test_frac * n), 1)
    n_val = round(val_frac * n)
    taken = {"test": 0, "val": 0}
    for unit in units:
        rows = members[unit]
        left_for_train = len(units) - units.index(unit)  # this unit and the ones after it
        if taken["test"] < n_test and left_for_train > 1:
            split = "test"
        elif taken["val"] < n_val and left_for_train > 1:
            split = "val"
        else:
            split = "train"
        if split != "train":
            taken[split] += len(rows)
        for i in rows:
            splits[i] = split
    return splits
