"""A tokenised task: examples tokenised for one model, left-padded, with their splits, and the
rows that could not be used with their reasons."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from actscale.engine.tasks.examples import SPLITS, Example, assign_splits
from actscale.engine.tokens import bos_id, left_pad, pad_id, prompt_ids, text_ids
from actscale.errors import DatasetError


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
    # Each row's counterfactual prompt left-padded like the row (the row's own prompt where it
    # has none), and whether it has one: a counterfactual is used only at its prompt's token
    # length, so position for position it patches the same token slots.
    counterfactual_tokens: torch.Tensor  # [batch pos] long
    has_counterfactual: torch.Tensor  # [batch] bool

    @property
    def n_pos(self) -> int:
        return self.tokens.shape[1]

    def split_indices(self, split: str) -> torch.Tensor:
        """Long indices of the examples in `split` ("train", "val" or "test"), in order."""
        if split not in SPLITS:
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        return torch.tensor([i for i, ex in enumerate(self.examples) if ex.split == split], dtype=torch.long)

    def groups_of(self, idx: torch.Tensor) -> list[str]:
        """The group of each example at ``idx`` ("" where it has none): the clusters of the
        rates' intervals by group (`objective.cluster_metrics`)."""
        return [self.examples[i].group for i in idx.tolist()]

    @property
    def choice_split(self) -> str:
        """The split a run's own choices read (the first result, how long it trains, the checks'
        k90): "val", or "train" for a task without validation prompts."""
        return "val" if self.split_indices("val").numel() else "train"

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
            self.counterfactual_tokens[idx],
            self.has_counterfactual[idx],
        )

    def counterfactual_rows(self, split: str) -> torch.Tensor:
        """Long indices of ``split``'s examples that have a counterfactual of their own length."""
        idx = self.split_indices(split)
        return idx[self.has_counterfactual[idx]]

    def counterfactual_summary(self, split: str) -> str:
        """E.g. "40 of 48 train prompts have a counterfactual (3 of another token length, 5 none)"."""
        idx = self.split_indices(split).tolist()
        given = sum(bool(self.examples[i].counterfactual) for i in idx)
        usable = int(self.has_counterfactual[idx].sum()) if idx else 0
        misses = ((given - usable, "of another token length"), (len(idx) - given, "none"))
        why = ", ".join(f"{n} {what}" for n, what in misses if n)
        return f"{usable} of {len(idx)} {split} prompts have a counterfactual" + (f" ({why})" if why else "")

    def to_records(self) -> list[dict]:
        """One {"prompt", "correct", "wrong", "split", "group"[, "counterfactual"]} dict per kept
        example (the bundle's dataset.jsonl; the counterfactual where there is one)."""
        return [
            {"prompt": e.prompt, "correct": e.correct, "wrong": e.wrong, "split": e.split, "group": e.group}
            | ({"counterfactual": e.counterfactual} if e.counterfactual else {})
            for e in self.examples
        ]

    @property
    def dataset_hash(self) -> str:
        """First 16 hex chars of the sha256 of the kept examples as compact, key-sorted JSONL,
        without their counterfactuals: nothing trains on those (the analyses that patch read them),
        so a run's id is the same with or without them."""
        # An empty group is left out, so data without groups hashes as it did before groups existed.
        records = [
            {k: v for k, v in r.items() if (k != "group" or v) and k != "counterfactual"} for r in self.to_records()
        ]
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
        return f"kept {kept} of {kept + len(self.dropped)} prompts ({sizes}); {self.drop_summary()}"

    def drop_summary(self) -> str:
        """ "dropped 0", or "dropped 20: 18 multi-token answer, 2 ..." (each reason's count)."""
        return f"dropped {len(self.dropped)}: {_drop_breakdown(self.dropped)}" if self.dropped else "dropped 0"


def _drop_kind(reason: str) -> str:
    """The summary's group for a drop reason: answers are grouped whatever the word."""
    if re.fullmatch(r"answer .* is \d+ tokens", reason):
        return "empty answer" if reason.endswith(" 0 tokens") else "multi-token answer"
    if re.fullmatch(r"empty (correct|wrong) answer", reason):
        return "empty answer"
    if reason.startswith("a repeat of "):
        return "repeated row"
    return reason.replace(",", "")


def _drop_breakdown(dropped: list[tuple[Example, str]]) -> str:
    counts = Counter(_drop_kind(r) for _, r in dropped)  # first-seen order breaks count ties
    return ", ".join(f"{c} {k}" for k, c in sorted(counts.items(), key=lambda kc: -kc[1]))


def check_held_out(task: PreparedTask, templates: Sequence[str], groups: Sequence[str], why_missing: str) -> None:
    """DatasetError where prompts were held out for test (``templates``, ``groups``) and none is
    in ``task``'s test split, saying why (the held-out prompts' drop reasons, else
    ``why_missing``): the run would have no test split. Of several held out, one may leave no
    prompt where another does: the run's per-group rates say which were tested."""
    names = [*templates, *groups]
    if not names or any(ex.split == "test" for ex in task.examples):
        return
    lost = [(ex, why) for ex, why in task.dropped if ex.template in templates or ex.group in groups]
    reason = f"no prompt held out is usable ({_drop_breakdown(lost)})" if lost else why_missing
    raise DatasetError(f"held out for test: {', '.join(names)}, but {reason}")


def check_groups_known(task: PreparedTask, groups: Sequence[str]) -> None:
    """DatasetError for a held-out group in none of the prompts of ``task``, kept or dropped (a
    file's every row): a name that holds nothing out."""
    present = sorted({ex.group for ex in task.examples if ex.group} | {ex.group for ex, _ in task.dropped if ex.group})
    unknown = [g for g in groups if g not in present]
    if unknown:
        shown = ", ".join(present[:8]) + (f" and {len(present) - 8} more" if len(present) > 8 else "")
        known = f"the groups are {shown}" if present else "no prompt has a group"
        them = "it" if len(unknown) == 1 else "them"
        raise DatasetError(f"held out for test: {', '.join(unknown)}, but no prompt is in {them} ({known})")


# One usable example: the example, its prompt's token ids, the ids of a+ and a−, and its
# counterfactual's ids (None where it has none of the prompt's token length).
_Tokenised = tuple[Example, list[int], int, int, list[int] | None]


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
    require_train: bool = True,
    unique: bool = False,
) -> PreparedTask:
    """Tokenise, filter and split `examples` (see the module docstring).

    Prompts are tokenised with `add_special_tokens=False`, with `tokenizer.bos_token_id` in
    front when `prepend_bos` (and the tokenizer has one). Dropped, with the reason: an empty
    prompt or answer, correct and wrong that are the same text or the same token, an answer
    that is not exactly one token, a prompt longer than `max_len` (or than `n_pos`), and (with
    `fixed_length`, absolute positions) every length but the most common one (ties: shorter;
    exactly `n_pos` when given: a stored run's positions).
    Without `fixed_length` prompts of every length are kept, left-padded to the longest (to
    `n_pos` when given: a stored run's width). Splits (`assign_splits`): an example's own split
    wins; a template in `test_templates` or a group in `test_groups` goes to test; the rest is
    shuffled by `seed` into test, val and train (by whole groups with `by_group`, when every
    example carries one). With `unique` (a user's file), a row that repeats an earlier one's
    prompt and answers is dropped: in another split it would test on a training prompt. Raises
    DatasetError when nothing or (with `require_train`) no training prompt is left, or
    `examples` is empty.
    """
    if not examples:
        raise DatasetError("the dataset is empty")
    if not (0.0 <= test_frac < 1.0 and 0.0 <= val_frac < 1.0 and test_frac + val_frac < 1.0):
        raise ValueError(f"test_frac and val_frac must be in [0, 1) with a sum below 1, got {test_frac} and {val_frac}")
    bos = bos_id(tokenizer, prepend_bos)
    examples, repeats = _without_repeats(examples) if unique else (examples, [])
    kept, dropped = _tokenise(examples, tokenizer, bos, max_len, n_pos)
    dropped += repeats
    if fixed_length and kept:
        kept, dropped = _keep_one_length(kept, dropped, n_pos)
    if not kept:
        raise DatasetError(f"no usable prompts: {_drop_breakdown(dropped)}")
    splits = assign_splits([k[0] for k in kept], seed, test_frac, test_templates, val_frac, test_groups, by_group)
    if require_train and "train" not in splits:
        raise _no_training(splits)
    return _prepared(kept, splits, dropped, tokenizer, n_pos, fixed_length)


def _no_training(splits: list[str]) -> DatasetError:
    """Where the kept prompts are, none of them in the training split."""
    counts = Counter(splits)
    where = (
        f"are all in the {splits[0]} split" if len(counts) == 1 else "are in the val ({val}) and test ({test}) splits"
    )
    return DatasetError(f"no training prompts: the {len(splits)} kept prompts {where.format(**counts)}")


def _prepared(
    kept: list[_Tokenised],
    splits: list[str],
    dropped: list[tuple[Example, str]],
    tokenizer,
    n_pos: int | None,
    fixed_length: bool,
) -> PreparedTask:
    """The kept prompts left-padded (to ``n_pos`` when given) with their splits and answers."""
    tokens, mask = left_pad([k[1] for k in kept], pad_id(tokenizer), n_pos)
    counterfactual, _ = left_pad([k[4] or k[1] for k in kept], pad_id(tokenizer), tokens.shape[1])
    return PreparedTask(
        examples=[dataclasses.replace(k[0], split=s) for k, s in zip(kept, splits)],
        tokens=tokens,
        attention_mask=mask,
        correct_ids=torch.tensor([k[2] for k in kept], dtype=torch.long),
        wrong_ids=torch.tensor([k[3] for k in kept], dtype=torch.long),
        str_tokens=[[tokenizer.decode([i]) for i in k[1]] for k in kept],
        dropped=dropped,
        fixed_length=fixed_length,
        counterfactual_tokens=counterfactual,
        has_counterfactual=torch.tensor([k[4] is not None for k in kept], dtype=torch.bool),
    )


def _without_repeats(examples: list[Example]) -> tuple[list[Example], list[tuple[Example, str]]]:
    """The examples but those repeating an earlier one's prompt and answers, and those, each with
    the row it repeats."""
    first: dict[tuple[str, str, str], Example] = {}
    kept, dropped = [], []
    for ex in examples:
        earlier = first.setdefault((ex.prompt, ex.correct, ex.wrong), ex)
        if earlier is ex:
            kept.append(ex)
        else:
            dropped.append((ex, f"a repeat of {earlier.source or 'an earlier row'}"))
    return kept, dropped


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
        ids = text_ids(tokenizer, ans)
        if len(ids) != 1:
            return f"answer {ans!r} is {len(ids)} tokens"
        answer_ids.append(ids[0])
    if answer_ids[0] == answer_ids[1]:
        return "correct and wrong are the same token"
    ids = prompt_ids(tokenizer, ex.prompt, bos)
    counterfactual = prompt_ids(tokenizer, ex.counterfactual, bos) if ex.counterfactual.strip() else None
    if counterfactual is not None and len(counterfactual) != len(ids):
        counterfactual = None
    return _length_problem(len(ids), max_len, n_pos) or (ex, ids, answer_ids[0], answer_ids[1], counterfactual)


def _text_problem(ex: Example) -> str:
    """What makes a row unusable before any tokenising ("" when nothing)."""
    if not ex.prompt.strip():
        return "empty prompt"
    for name, answer in (("correct", ex.correct), ("wrong", ex.wrong)):
        if not answer.strip():
            return f"empty {name} answer"
    return "correct and wrong are the same" if ex.correct == ex.wrong else ""


def _length_problem(n_tokens: int, max_len: int | None, n_pos: int | None) -> str:
    if n_tokens == 0:
        return "empty prompt"
    if max_len is not None and n_tokens > max_len:
        return f"longer than the model's context ({max_len} tokens)"
    if n_pos is not None and n_tokens > n_pos:
        return f"longer than the run's {n_pos} positions"
    return ""


def _keep_one_length(
    kept: list[_Tokenised], dropped: list[tuple[Example, str]], n_pos: int | None = None
) -> tuple[list[_Tokenised], list[tuple[Example, str]]]:
    """Fixed-length methods learn one parameter per position, so all prompts must align: keep
    the most common token length (ties: the shorter), or ``n_pos`` (a stored run's), and drop
    the rest with the reason."""
    counts = Counter(len(k[1]) for k in kept)
    common = n_pos if n_pos is not None else min(counts, key=lambda n: (-counts[n], n))
    why = f"not the run's length {common}" if n_pos is not None else f"not the most common length {common}"
    dropped = dropped + [(k[0], f"length {len(k[1])}, {why}") for k in kept if len(k[1]) != common]
    return [k for k in kept if len(k[1]) == common], dropped
