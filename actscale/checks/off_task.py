"""Side effects off-task (docs/method.md §7.7): a run of any length applied at every
position of neutral text."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from importlib import resources
from typing import Any

import torch
from torch import Tensor

from actscale.engine.interventions import Intervention, steer
from actscale.engine.models import LoadedModel, padding_inputs
from actscale.engine.tokens import bos_id, left_pad, pad_id, prompt_ids
from actscale.engine.training import CancelFlag
from actscale.errors import ActscaleError, TrainingCancelled
from actscale.runs.bundle import RunBundle


def neutral_sentences() -> list[str]:
    """The project's neutral text: sentences about nothing the tasks ask (no one giving anything
    to anyone, no capitals), one per line of ``actscale/data/neutral.txt``."""
    text = resources.files("actscale").joinpath("data/neutral.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _tokenise_texts(model: LoadedModel, texts: Sequence[str], prepend_bos: bool) -> tuple[Tensor, Tensor]:
    bos = bos_id(model.tokenizer, prepend_bos)
    return left_pad([prompt_ids(model.tokenizer, t, bos) for t in texts], pad_id(model.tokenizer))


def all_position_logits(model: LoadedModel, tokens: Tensor, mask: Tensor) -> Tensor:
    """Logits at every position of left-padded prompts: [batch pos d_vocab]."""
    return model.bridge(tokens.to(model.device), **padding_inputs(mask, model.device)).float().cpu()


def side_effects(
    model: LoadedModel, bundle: RunBundle, cancel: CancelFlag | None = None, batch: int = 16
) -> dict[str, Any]:
    """A run of any length applied at every position of neutral text at β = ±1: per-token KL
    from the unmodified model, perplexity before and after, and how often the top-1 next token
    changes (docs/method.md §7.7)."""
    from actscale.runs.api import intervention_from_bundle, resolved_prepend_bos

    config = bundle.record.config
    if config.fixed_length:
        raise ActscaleError(
            f"a {config.method} run is tied to its prompts' positions: side effects on other text need "
            "a run of any length (DynScalar)"
        )
    iv = intervention_from_bundle(bundle, model)
    texts = neutral_sentences()
    tokens, mask = _tokenise_texts(model, texts, resolved_prepend_bos(model, config))
    sums: dict[float, dict[str, list[float]]] = {b: {"kl": [], "top1": []} for b in (1.0, -1.0)}
    nll: dict[float, list[float]] = {b: [] for b in (0.0, 1.0, -1.0)}
    n_tokens = 0
    for start in range(0, tokens.shape[0], batch):
        if cancel is not None and cancel.is_set():
            raise TrainingCancelled("the checks were cancelled; nothing was written")
        part = slice(start, start + batch)
        n_tokens += _side_effects_batch(model, iv, tokens[part], mask[part], sums, nll)
    base_ppl = math.exp(statistics.mean(nll[0.0]))
    rows = []
    for beta in (1.0, -1.0):
        per_sentence = sums[beta]["kl"]
        rows.append(
            {
                "beta": beta,
                "kl_per_token_mean": statistics.mean(per_sentence),
                "kl_per_token_sd": statistics.stdev(per_sentence) if len(per_sentence) > 1 else 0.0,
                "kl_per_token_max": max(per_sentence),
                "perplexity_base": base_ppl,
                "perplexity_steered": math.exp(statistics.mean(nll[beta])),
                "top1_unchanged": statistics.mean(sums[beta]["top1"]),
            }
        )
    return {"n_sentences": len(texts), "n_tokens": n_tokens, "rows": rows}


def _side_effects_batch(
    model: LoadedModel,
    iv: Intervention,
    t: Tensor,
    m: Tensor,
    sums: dict[float, dict[str, list[float]]],
    nll: dict[float, list[float]],
) -> int:
    """One batch of sentences: appends each sentence's mean next-token NLL (unmodified, β = ±1),
    KL from the unmodified model and top-1 agreement; returns the number of predicted tokens."""
    # Predictions of the next real token: positions whose next position is real.
    pred = (m[:, :-1] * m[:, 1:]).bool()
    target = t[:, 1:]
    with model.lock, torch.no_grad():
        base = all_position_logits(model, t, m)
        steered = {}
        for beta in (1.0, -1.0):
            with steer(model.bridge, iv, beta, batch=t.shape[0], mask=m):
                steered[beta] = all_position_logits(model, t, m)
    for beta, logits in ((0.0, base), *steered.items()):
        lp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
        for r in range(t.shape[0]):
            nll[beta].append(float(-(lp[r][pred[r]]).mean()) if pred[r].any() else float("nan"))
    lp0 = torch.log_softmax(base[:, :-1], dim=-1)
    for beta, logits in steered.items():
        lp = torch.log_softmax(logits[:, :-1], dim=-1)
        kl = (lp0.exp() * (lp0 - lp)).sum(-1)  # [b pos-1]
        same = lp.argmax(-1) == lp0.argmax(-1)
        for r in range(t.shape[0]):
            sums[beta]["kl"].append(float(kl[r][pred[r]].mean()))
            sums[beta]["top1"].append(float(same[r][pred[r]].float().mean()))
    return int(pred.sum())
