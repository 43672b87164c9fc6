"""The generated tasks: IOI (Wang et al. 2023 style, four template families) and CCC
(country–capital conflicts), with their held-out test streams and their vocabulary."""

from __future__ import annotations

import csv
import dataclasses
import functools
import random
import re
from pathlib import Path

from actscale.engine.tasks.examples import Example
from actscale.errors import DatasetError

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

# The counterfactuals' names and capitals come from a random stream of their own.
_COUNTERFACTUAL_STREAM = 2_000_003

CCC_TEMPLATE = "The capital of {country} is {other}. Q: What is the capital of {country}? A:"
_COUNTRIES_CSV = Path(__file__).parents[2] / "data" / "countries.csv"


def generate_ioi(n: int, seed: int, templates: tuple[str, ...] | None = None) -> list[Example]:
    """`n` IOI examples, deterministic given `seed`; a+ = " {IO}", a- = " {S}" (never equal).

    Example i uses template `templates[i % len(templates)]` (all of `IOI_TEMPLATES` when None),
    so templates are used evenly. Each carries its **ABC** counterfactual (Wang et al. 2023; the
    ``ABB->XYZ`` of TransformerLens's IOI dataset): the same sentence with the indirect object,
    the subject and the subject's repetition replaced by three other names, all different, drawn
    from a stream of their own (so the prompts are those of before counterfactuals existed).
    Raises DatasetError on an unknown template id.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    ids = tuple(IOI_TEMPLATES) if templates is None else tuple(templates)
    _check_template_ids(ids)
    rng, abc = random.Random(seed), random.Random(seed + _COUNTERFACTUAL_STREAM)
    out = []
    for i in range(n):
        tid = ids[i % len(ids)]
        io_name, s_name = rng.sample(NAMES, 2)  # sample: the two names always differ
        where = {"PLACE": rng.choice(PLACES), "OBJECT": rng.choice(OBJECTS)}
        prompt = IOI_TEMPLATES[tid].format(A=io_name, B=s_name, **where)
        x, y, z = abc.sample([name for name in NAMES if name not in (io_name, s_name)], 3)
        template = IOI_TEMPLATES[tid]
        last = template.rindex("{B}")  # the subject's repetition, in the clause that gives
        counterfactual = (template[:last] + "{C}" + template[last + 3 :]).format(A=x, B=y, C=z, **where)
        answers = (f" {io_name}", f" {s_name}")
        out.append(Example(prompt, *answers, template=tid, group=IOI_FAMILY_OF[tid], counterfactual=counterfactual))
    return out


def _check_template_ids(ids: tuple[str, ...]) -> None:
    """DatasetError for an unknown IOI template id, one listed twice (it would be drawn twice as
    often), or for none given."""
    unknown = [t for t in ids if t not in IOI_TEMPLATES]
    if unknown or not ids:
        raise DatasetError(f"unknown IOI template(s) {unknown or '(none given)'}; known: {', '.join(IOI_TEMPLATES)}")
    if len(set(ids)) < len(ids):
        raise DatasetError(f"template listed twice in {','.join(ids)}")


@functools.lru_cache(maxsize=1)
def _countries() -> tuple[tuple[str, str], ...]:
    """(country, capital) pairs from data/countries.csv, each a single token for SmolLM2 and known to it."""
    with open(_COUNTRIES_CSV, encoding="utf-8", newline="") as f:
        return tuple((row["country"], row["capital"]) for row in csv.DictReader(f))


def generate_ccc(
    n: int, seed: int, memory_is_correct: bool = True, countries: tuple[str, ...] | None = None
) -> list[Example]:
    """`n` country-capital conflict examples, deterministic given `seed`.

    Prompt: `CCC_TEMPLATE` with another country's capital as context. Counterfactual: the same
    question with a third capital as context (neither the true one nor the prompt's, drawn from
    a stream of its own), so patching from it localises where the context's capital is read. correct/wrong are
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
    rng, third = random.Random(seed), random.Random(seed + _COUNTERFACTUAL_STREAM)
    order = rng.sample(asked, len(asked))
    others = {c: rng.sample([k for _, k in everything if k != cap], len(everything) - 1) for c, cap in order}
    out = []
    for i in range(n):
        country, capital = order[i % len(order)]
        other = others[country][(i // len(order)) % len(others[country])]
        memory, context = f" {capital}", f" {other}"
        correct, wrong = (memory, context) if memory_is_correct else (context, memory)
        swap = third.choice([k for _, k in everything if k not in (capital, other)])
        out.append(
            Example(
                CCC_TEMPLATE.format(country=country, other=other),
                correct,
                wrong,
                template="ccc",
                group=country,
                counterfactual=CCC_TEMPLATE.format(country=country, other=swap),
            )
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
    training one is skipped. Raises DatasetError for a held-out template or family that none of
    the templates used is (it would hold nothing out, and the test prompts would be the training
    templates')."""
    ids = tuple(templates) or tuple(IOI_TEMPLATES)
    _check_held_out(ids, test_templates, test_groups)
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


def _check_held_out(ids: tuple[str, ...], test_templates: tuple[str, ...], test_groups: tuple[str, ...]) -> None:
    """DatasetError for an unknown held-out family or template, or one of none of the templates
    used (``ids``): it would hold nothing out."""
    unknown = [g for g in test_groups if g not in IOI_FAMILIES]
    if unknown:
        s = "y" if len(unknown) == 1 else "ies"
        raise DatasetError(f"unknown IOI famil{s} {', '.join(unknown)}; known: {', '.join(IOI_FAMILIES)}")
    if test_templates:
        _check_template_ids(test_templates)
    unused = [t for t in test_templates if t not in ids]
    unused += [g for g in test_groups if not set(IOI_FAMILIES[g]) & set(ids)]
    if unused:
        used = ", ".join(ids)
        raise DatasetError(f"held out for test but not among the templates used ({used}): {', '.join(unused)}")


CCC_TEST_COUNTRIES = 30  # of the 37: the test prompts' clusters
CCC_TRAINVAL_COUNTRIES = 7  # left for training and validation


def ccc_split_examples(
    n_trainval: int,
    n_test: int,
    seed: int,
    val_frac: float,
    memory_is_correct: bool = True,
    test_groups: tuple[str, ...] = (),
) -> list[Example]:
    """CCC prompts with every split assigned by country, so no country is asked about in two
    splits: the countries in ``test_groups`` (else `CCC_TEST_COUNTRIES` of them, drawn by
    ``seed``, leaving at least `CCC_TRAINVAL_COUNTRIES`) for test, ``val_frac`` of the rest for
    validation, the others for training. Test prompts of one country are not independent: many
    test countries make the interval by country (bootstrap over countries) mean something."""
    countries = list(ccc_countries())
    unknown = [c for c in test_groups if c not in countries]
    if unknown:
        raise DatasetError(f"unknown CCC countr{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}")
    random.Random(seed).shuffle(countries)
    n_test_c = max(1, min(CCC_TEST_COUNTRIES, len(countries) - CCC_TRAINVAL_COUNTRIES))
    test_c = [c for c in countries if c in test_groups] or countries[:n_test_c]
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
