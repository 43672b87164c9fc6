"""The tests' tiny random models of the two architecture families, with a word-level tokenizer
over the tasks' vocabulary: no download."""

from __future__ import annotations

from typing import Any

import torch

from actscale.engine.models.base import LoadedModel, boot, parameter_fingerprint, quiet, resolve_device, wrap_bridge
from actscale.engine.tasks import task_vocabulary  # the test models' tokenizer knows the tasks' words

# ---- tiny test models --------------------------------------------------------------------


def tiny_tokenizer() -> Any:
    """A word-level tokenizer over every word the IOI and CCC generators use: " Mary" is one
    token, as with real tokenizers, and unknown words map to ``[UNK]``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<eos>", "[UNK]"]
    words = specials + sorted(set(task_vocabulary()) - set(specials))
    vocab = {w: i for i, w in enumerate(words)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="[UNK]",
        # TransformerLens re-loads a tokenizer by name unless it already prepends BOS.
        add_bos_token=True,
        name_or_path="tiny-word-level",
    )


def tiny_model(n_layers: int, d_model: int = 64, device: str = "cpu") -> LoadedModel:
    """A random model of the tiny Llama family with ``n_layers`` layers of width ``d_model``
    (4 heads, an MLP twice as wide): `bench`'s models for how cost grows with depth."""
    device = resolve_device(device)
    name = f"tiny-llama-{n_layers}x{d_model}"
    with quiet():
        bridge = boot_tiny("tiny-llama", device, n_layers=n_layers, d_model=d_model, name_as=name)
    return wrap_bridge(name, bridge, device, parameter_fingerprint(bridge))


def boot_tiny(name: str, device: str, n_layers: int = 2, d_model: int = 64, *, name_as: str = "") -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedModel

    tokenizer = tiny_tokenizer()
    vocab = 64 * ((len(tokenizer) + 63) // 64)

    def build() -> PreTrainedModel:
        if name == "tiny-llama":
            return LlamaForCausalLM(
                LlamaConfig(
                    vocab_size=vocab,
                    hidden_size=d_model,
                    intermediate_size=2 * d_model,
                    num_hidden_layers=n_layers,
                    num_attention_heads=4,
                    num_key_value_heads=2,
                    max_position_embeddings=256,
                    bos_token_id=1,
                    eos_token_id=2,
                    pad_token_id=0,
                    tie_word_embeddings=False,
                    architectures=["LlamaForCausalLM"],
                )
            )
        return GPT2LMHeadModel(
            GPT2Config(
                vocab_size=vocab,
                n_embd=d_model,
                n_layer=n_layers,
                n_head=4,
                n_positions=256,
                bos_token_id=1,
                eos_token_id=2,
                pad_token_id=0,
                architectures=["GPT2LMHeadModel"],
            )
        )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the same tiny model every time
        hf_model = build().eval()
    return boot(name, device, name_as or name, hf_model=hf_model.to(device), tokenizer=tokenizer)
