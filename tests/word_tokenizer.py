"""Test helpers for tasks: a tokenizer that splits on spaces, and an Example in one call."""

from __future__ import annotations

import re

from actscale.engine.tasks import (
    Example,
)


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
