"""Steering one prompt by hand: a trained intervention at any strength β on a prompt of the
user's choosing (docs/method.md §6.5). Pure computation; the Playground page only draws it.

    iv = intervention_from_bundle(bundle, model)
    out = steer_prompt(model, iv, "When Mary and John went to the store, John gave a drink to",
                       " Mary", " John", beta=0.5)
    out.delta, out.p_correct, out.top_after
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from actscale.engine.config import checked_beta
from actscale.engine.interventions import Intervention, steer
from actscale.engine.models import LoadedModel, last_position_logits
from actscale.engine.tokens import bos_id, prompt_ids, text_ids
from actscale.errors import ActscaleError
from actscale.runs.bundle import RunBundle

TOP_K = 10


@dataclass(frozen=True)
class PlaygroundResult:
    """One prompt under the unmodified model (``*_base``, no hook attached) and steered at
    strength ``beta``. ``top_before`` / ``top_after``: the top-10 next tokens of the unmodified
    and of the steered model, most likely first, each with ``rank_before``, ``p_before``,
    ``rank_after``, ``p_after`` (rank 1 = most likely), ``rank_change = rank_before −
    rank_after`` (positive: the token rose) and ``token_id``."""

    beta: float
    str_tokens: list[str]
    delta: float
    p_correct: float
    p_wrong: float
    delta_base: float
    p_correct_base: float
    p_wrong_base: float
    top_before: pd.DataFrame
    top_after: pd.DataFrame


@dataclass(frozen=True)
class PromptTokens:
    """A prompt and its answer pair as token ids, ready for one forward pass."""

    tokens: Tensor  # [1 pos] long
    correct_id: int
    wrong_id: int
    str_tokens: list[str]


def dataset_prompts(bundle: RunBundle) -> list[dict[str, str]]:
    """The run's dataset rows that can be offered for picking (prompt, correct, wrong, split)."""
    rows = []
    for row in bundle.dataset:
        if all(isinstance(row.get(k), str) for k in ("prompt", "correct", "wrong")):
            rows.append({k: str(row.get(k) or "") for k in ("prompt", "correct", "wrong", "split")})
    return rows


def answer_id(model: LoadedModel, answer: str, which: str) -> int:
    """The single token id of an answer; ActscaleError when it is empty or several tokens."""
    if not answer:
        raise ActscaleError(f"the {which} answer is empty")
    ids = text_ids(model.tokenizer, answer)
    if len(ids) != 1:
        raise ActscaleError(
            f"the {which} answer {answer!r} is {len(ids)} tokens for this model; it must be exactly one "
            "(real tokenizers usually want a leading space, e.g. ' Mary')"
        )
    return int(ids[0])


def tokenize_prompt(
    model: LoadedModel, intervention: Intervention, prompt: str, correct: str, wrong: str
) -> PromptTokens:
    """Tokenise as training does (``add_special_tokens=False``, BOS in front when the model
    prepends one) and check the prompt fits the intervention. Raises ActscaleError."""
    if not prompt or not prompt.strip():
        raise ActscaleError("the prompt is empty")
    correct_id = answer_id(model, correct, "correct")
    wrong_id = answer_id(model, wrong, "wrong")
    ids = _prompt_ids(model, prompt)
    if len(ids) > model.n_ctx:
        raise ActscaleError(f"the prompt is {len(ids)} tokens; the model's context is {model.n_ctx}")
    if intervention.length_problem(len(ids)):
        if intervention.answer_aligned:
            raise ActscaleError(
                f"this {intervention.method} run counts positions back from the answer over {intervention.n_pos} "
                f"tokens; this prompt has {len(ids)} (take one of at most {intervention.n_pos} tokens)"
            )
        raise ActscaleError(
            f"this {intervention.method} run is tied to prompts of {intervention.n_pos} tokens; "
            f"this prompt has {len(ids)} (only DynScalar runs take prompts of any length)"
        )
    return PromptTokens(
        torch.tensor([ids], dtype=torch.long), correct_id, wrong_id, [model.tokenizer.decode([i]) for i in ids]
    )


def _logits(model: LoadedModel, intervention: Intervention | None, tokens: Tensor, betas: Tensor | None) -> Tensor:
    """Last-position logits [n d_vocab] for ``tokens`` [1 pos] repeated once per β, or of the
    unmodified model (no hook at all) when ``intervention`` is None."""
    batch = tokens if betas is None else tokens.repeat(len(betas), 1)  # [n pos]
    with model.lock, torch.no_grad():
        if intervention is None:
            return last_position_logits(model, batch).float().cpu()
        assert betas is not None, "an intervention is steered with one β per row"
        with steer(model.bridge, intervention, betas.float()):
            return last_position_logits(model, batch).float().cpu()


def top_tokens(model: LoadedModel, logits: Tensor, other: Tensor, k: int = TOP_K) -> pd.DataFrame:
    """The ``k`` most likely next tokens of ``logits`` [d_vocab], most likely first, with their
    rank (1 = top) and probability here and in ``other`` [d_vocab]."""
    probs = torch.softmax(logits, -1)
    other_probs = torch.softmax(other, -1)
    top = torch.topk(probs, k)
    rows = []
    for p, idx in zip(top.values.tolist(), top.indices.tolist()):
        rank = _rank(logits, idx)
        other_rank = _rank(other, idx)
        rows.append(
            {
                "rank": rank,
                "token": token_text(model, idx),
                "token_id": idx,
                "p": p,
                "other_rank": other_rank,
                "other_p": float(other_probs[idx]),
            }
        )
    return pd.DataFrame(rows)


def token_text(model: LoadedModel, idx: int) -> str:
    """A token as text; one that decodes to nothing visible (whitespace, a special token the
    decoder skips, an id the tokenizer does not have) is named, so no row of a table looks empty."""
    text = model.tokenizer.decode([idx])
    if text.strip():
        return text
    if text:
        return repr(text)
    name = model.tokenizer.convert_ids_to_tokens(idx)
    # Ids past the tokenizer's vocabulary exist where the embedding is padded to a round size.
    return repr(name) if name else f"<unused id {idx}>"


def _rank(logits: Tensor, idx: int) -> int:
    # 1 + the number of tokens strictly more likely: ties share the better rank.
    return int((logits > logits[idx]).sum().item()) + 1


def steer_prompt(
    model: LoadedModel, intervention: Intervention, prompt: str, correct: str, wrong: str, beta: float
) -> PlaygroundResult:
    """The prompt under the unmodified model and under ``intervention`` at strength ``beta``.
    Raises ActscaleError for an unusable prompt or answer, or a β out of range (`checked_beta`)."""
    beta = checked_beta(beta)
    pt = tokenize_prompt(model, intervention, prompt, correct, wrong)
    base = _logits(model, None, pt.tokens, None)[0]  # [d_vocab]
    steered = _logits(model, intervention, pt.tokens, torch.tensor([float(beta)]))[0]  # [d_vocab]
    before = top_tokens(model, base, steered).rename(columns={"other_rank": "rank_after", "other_p": "p_after"})
    after = top_tokens(model, steered, base).rename(columns={"other_rank": "rank_before", "other_p": "p_before"})
    before = before.rename(columns={"rank": "rank_before", "p": "p_before"})
    after = after.rename(columns={"rank": "rank_after", "p": "p_after"})
    for table in (before, after):
        # What steering did to the token's rank: positive = it rose (rank 5 -> 2 is +3).
        table["rank_change"] = table["rank_before"] - table["rank_after"]
    p_steered, p_base = torch.softmax(steered, -1), torch.softmax(base, -1)
    return PlaygroundResult(
        beta=float(beta),
        str_tokens=pt.str_tokens,
        delta=float(steered[pt.correct_id] - steered[pt.wrong_id]),
        p_correct=float(p_steered[pt.correct_id]),
        p_wrong=float(p_steered[pt.wrong_id]),
        delta_base=float(base[pt.correct_id] - base[pt.wrong_id]),
        p_correct_base=float(p_base[pt.correct_id]),
        p_wrong_base=float(p_base[pt.wrong_id]),
        top_before=before[["rank_before", "token", "p_before", "rank_after", "p_after", "rank_change", "token_id"]],
        top_after=after[["rank_after", "token", "p_after", "rank_before", "p_before", "rank_change", "token_id"]],
    )


def beta_curve(
    model: LoadedModel,
    intervention: Intervention,
    prompt: str,
    correct: str,
    wrong: str,
    betas: Sequence[float] | None = None,
) -> pd.DataFrame:
    """``beta, delta, p_correct, p_wrong`` for each β (default ``linspace(-1, 1, 21)``), all in
    one batched forward pass (docs/method.md §6.5). Raises ActscaleError like ``steer_prompt``."""
    values = np.linspace(-1.0, 1.0, 21) if betas is None else np.asarray([checked_beta(b) for b in betas])
    if values.size == 0:
        raise ActscaleError("no β values given")
    pt = tokenize_prompt(model, intervention, prompt, correct, wrong)
    logits = _logits(model, intervention, pt.tokens, torch.tensor(values, dtype=torch.float32))  # [n d_vocab]
    probs = torch.softmax(logits, -1)
    return pd.DataFrame(
        {
            "beta": values,
            "delta": (logits[:, pt.correct_id] - logits[:, pt.wrong_id]).numpy(),
            "p_correct": probs[:, pt.correct_id].numpy(),
            "p_wrong": probs[:, pt.wrong_id].numpy(),
        }
    )


def _prompt_ids(model: LoadedModel, prompt: str) -> list[int]:
    if not prompt or not prompt.strip():
        raise ActscaleError("the prompt is empty")
    return prompt_ids(model.tokenizer, prompt, bos_id(model.tokenizer, model.prepend_bos))


def greedy_continuation(
    model: LoadedModel, intervention: Intervention, prompt: str, beta: float, n_tokens: int = 20
) -> tuple[str, str]:
    """(unmodified, steered at ``beta``) greedy continuations of ``prompt``, ``n_tokens`` each.
    A run of any length (DynScalar) is applied at every position, the generated ones included;
    a fixed-length run to its prompt's positions only, so the prompt must fit it. Raises
    ActscaleError for a prompt that does not."""
    ids = _prompt_ids(model, prompt)
    if len(ids) + n_tokens > model.n_ctx:
        raise ActscaleError(f"the prompt is {len(ids)} tokens; with {n_tokens} more it exceeds the model's context")
    problem = intervention.length_problem(len(ids))
    if problem:
        raise ActscaleError(problem)
    out = []
    for steered in (False, True):
        seq = torch.tensor([ids], dtype=torch.long)
        eos = model.tokenizer.eos_token_id
        with model.lock, torch.no_grad():
            for _ in range(n_tokens):
                if not steered:
                    logits = model.bridge(seq.to(model.device))
                else:
                    # a fixed-length run steers its prompt's positions only, not the generated tokens
                    first = len(ids) if intervention.fixed_length else None
                    with steer(model.bridge, intervention, beta, batch=1, first_positions=first):
                        logits = model.bridge(seq.to(model.device))
                nxt = int(logits[0, -1].argmax())
                seq = torch.cat([seq, torch.tensor([[nxt]])], dim=1)
                if nxt == eos:
                    break
        out.append(model.tokenizer.decode(seq[0, len(ids) :].tolist()))
    return out[0], out[1]


def trigger_map(
    model: LoadedModel, intervention: Intervention, magnitudes: dict[str, Tensor], text: str, top: int = 10
) -> tuple[np.ndarray, list[str], list[str]]:
    """A run of any length: the scalar α(h) each of its ``top`` strongest units (by the stored
    relative magnitude) computes at every token of ``text`` on the unmodified model:
    (values [units, tokens], unit labels, token labels). ActscaleError for a fixed-length run."""
    if intervention.fixed_length or not intervention.records:
        raise ActscaleError(
            f"a {intervention.method} run has one parameter per position, not a scalar computed from the "
            "activation: the trigger map needs a DynScalar run"
        )
    ids = _prompt_ids(model, text)
    if len(ids) > model.n_ctx:
        raise ActscaleError(f"the text is {len(ids)} tokens; the model's context is {model.n_ctx}")
    record: dict[tuple[str, int], Tensor] = {}
    with model.lock, torch.no_grad(), steer(model.bridge, intervention, 0.0, batch=1, record=record):
        model.bridge(torch.tensor([ids], device=model.device))
    units = []
    for site, mags in magnitudes.items():
        flat = mags.reshape(-1)
        for i in range(flat.numel()):
            units.append((float(flat[i]), site, i, mags.shape))
    units.sort(key=lambda u: -u[0])
    rows, labels = [], []
    for _, site, i, shape in units[:top]:
        index = np.unravel_index(i, tuple(shape))
        alpha = record[(site, int(index[0]))][0]  # [pos] or [pos n_heads]
        rows.append((alpha[:, int(index[1])] if alpha.dim() == 2 else alpha).numpy())
        labels.append(f"{site} L{index[0]}" + (f" H{index[1]}" if len(index) > 1 else ""))
    tokens = [token_text(model, t) for t in ids]
    return np.stack(rows), labels, tokens
