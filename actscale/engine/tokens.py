"""Tokenising and padding, in one place: every prompt, answer and neutral sentence is tokenised
here, the same way (no special tokens, the tokenizer's BOS in front where asked), and every
batch is left-padded here, so the last real token sits at the last position."""

from __future__ import annotations

from typing import Any

import torch


def text_ids(tokenizer: Any, text: str) -> list[int]:
    """``text``'s token ids, without special tokens (an answer, or a prompt's body)."""
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def bos_id(tokenizer: Any, prepend_bos: bool) -> int | None:
    """The id put in front of each prompt: the tokenizer's BOS where asked and it has one."""
    return tokenizer.bos_token_id if prepend_bos else None


def prompt_ids(tokenizer: Any, prompt: str, bos: int | None) -> list[int]:
    """A prompt's ids: ``bos`` (where not None), then the prompt's own tokens."""
    return ([bos] if bos is not None else []) + text_ids(tokenizer, prompt)


def pad_id(tokenizer: Any) -> int:
    """The id that fills left padding: the pad token, else EOS, else 0 (the mask hides it)."""
    return next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)


def left_pad(prompts: list[list[int]], pad: int, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids [batch pos] and attention mask [batch pos], left-padded to ``width`` (default:
    the longest prompt): the last real token sits at the last position for every prompt."""
    n_pos = max(len(ids) for ids in prompts) if width is None else width
    tokens = torch.full((len(prompts), n_pos), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), n_pos), dtype=torch.long)
    for row, ids in enumerate(prompts):
        tokens[row, n_pos - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        mask[row, n_pos - len(ids) :] = 1
    return tokens, mask
