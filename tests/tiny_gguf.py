"""A tiny GGUF checkpoint written with the ``gguf`` package, for tests of `.gguf` model paths:
a random 2-layer Llama whose byte-level BPE tokenizer makes every task word (" Mary",
" store", ...) one token, so the IOI task trains on it like on the real model."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _byte_level(text: str) -> str:
    """GPT-2's byte-to-unicode mapping of ``text`` (a space becomes "Ġ")."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, map(chr, cs)))
    return "".join(table[b] for b in text.encode("utf-8"))


D_MODEL, D_MLP, N_HEADS, N_KV_HEADS = 64, 128, 4, 2


def _vocabulary() -> tuple[list[str], list[str]]:
    """The tokens (padded to a multiple of 64) and merges: every single byte, then each task word
    with a leading space built up one character at a time. Merges only ever extend a "Ġ..."
    prefix, so a word becomes exactly one token."""
    from actscale.engine.tasks import task_vocabulary

    tokens = ["<|bos|>", "<|eos|>", "<|pad|>"]
    tokens += [_byte_level(chr(b)) if b < 128 else chr(0x100 + b) for b in range(256)]
    tokens = list(dict.fromkeys(tokens))
    merges: list[str] = []
    for word in sorted({w.strip() for w in task_vocabulary() if w.strip()}):
        piece = _byte_level(" " + word)
        for i in range(2, len(piece) + 1):
            prefix, whole = piece[: i - 1], piece[:i]
            if whole not in tokens:
                tokens.append(whole)
                merges.append(f"{prefix} {piece[i - 1]}")
    vocab = 64 * ((len(tokens) + 63) // 64)
    return tokens + [f"<|unused{i}|>" for i in range(vocab - len(tokens))], merges


def _add_tensors(writer, vocab: int, n_layers: int, seed: int) -> None:
    """Random weights (ones for the norms). GGUF stores a matrix as [rows, columns] of the
    Hugging Face weight ([out, in])."""
    d, ff, kv_width = D_MODEL, D_MLP, N_KV_HEADS * D_MODEL // N_HEADS
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    writer.add_tensor("token_embd.weight", w(vocab, d))
    for layer in range(n_layers):
        block = f"blk.{layer}"
        writer.add_tensor(f"{block}.attn_norm.weight", np.ones(d, np.float32))
        writer.add_tensor(f"{block}.attn_q.weight", w(d, d))
        writer.add_tensor(f"{block}.attn_k.weight", w(kv_width, d))
        writer.add_tensor(f"{block}.attn_v.weight", w(kv_width, d))
        writer.add_tensor(f"{block}.attn_output.weight", w(d, d))
        writer.add_tensor(f"{block}.ffn_norm.weight", np.ones(d, np.float32))
        writer.add_tensor(f"{block}.ffn_gate.weight", w(ff, d))
        writer.add_tensor(f"{block}.ffn_up.weight", w(ff, d))
        writer.add_tensor(f"{block}.ffn_down.weight", w(d, ff))
    writer.add_tensor("output_norm.weight", np.ones(d, np.float32))
    writer.add_tensor("output.weight", w(vocab, d))


def write_tiny_gguf(path: Path, architecture: str = "llama", seed: int = 0, n_layers: int = 2) -> Path:
    """Write the tiny model to ``path``. ``architecture`` other than llama writes the same
    tensors under another name (a file transformers refuses)."""
    import gguf

    tokens, merges = _vocabulary()
    vocab = len(tokens)
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny-gguf-test")
    writer.add_context_length(256)
    writer.add_embedding_length(D_MODEL)
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(D_MLP)
    writer.add_head_count(N_HEADS)
    writer.add_head_count_kv(N_KV_HEADS)
    writer.add_rope_dimension_count(D_MODEL // N_HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL] * 3 + [gguf.TokenType.NORMAL] * (vocab - 3))
    writer.add_token_merges(merges)
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(1)
    writer.add_pad_token_id(2)
    writer.add_add_bos_token(True)
    _add_tensors(writer, vocab, n_layers, seed)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
