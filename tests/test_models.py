"""Model loading: device choice, clear one-line errors, the tiny test seam, the weights fingerprint."""

from __future__ import annotations

import re

import pytest
import torch

from actscale.engine.models import last_position_logits, load_model, parameter_fingerprint, resolve_device
from actscale.errors import ModelLoadError


def test_resolve_device(monkeypatch):
    # Neither CUDA nor MPS (as on the 2-core CI machine), then CUDA, then MPS only.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ModelLoadError, match="^device 'mps' was asked for but MPS is not available$"):
        resolve_device("mps")
    with pytest.raises(ModelLoadError, match="^device 'cuda' was asked for but no CUDA GPU is available$"):
        resolve_device("cuda")
    with pytest.raises(ModelLoadError, match="^unknown device 'tpu': use auto, cpu, cuda or mps$"):
        resolve_device("tpu")


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_name(name):
    with pytest.raises(ModelLoadError) as info:
        load_model(name, "cpu")
    assert str(info.value) == "no model name given: use 'bundled', a local folder or a Hugging Face id"


def test_folder_without_config(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\0" * 8)
    with pytest.raises(ModelLoadError) as info:
        load_model(str(tmp_path), "cpu")
    assert (
        str(info.value) == f"model folder {tmp_path.resolve()} has no config.json: it is not a Hugging Face checkpoint"
    )


def test_unknown_hub_id_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as info:
        load_model("no-such-org/no-such-model-xyz", "cpu")
    assert str(info.value) == (
        "model 'no-such-org/no-such-model-xyz' is not in the local Hugging Face cache and the hub cannot be "
        "reached (no network); use --model bundled, a local folder, or connect to the network"
    )
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_tiny_models(name, tiny_llama, tiny_gpt2):
    model = tiny_llama if name == "tiny-llama" else tiny_gpt2
    assert model.name == name and model.device == "cpu"
    assert (model.n_layers, model.d_model, model.n_heads, model.d_head, model.d_vocab) == (2, 64, 4, 16, 192)
    assert model.prepend_bos and model.tokenizer.bos_token_id == 1
    assert len(model.tokenizer(" Mary", add_special_tokens=False).input_ids) == 1
    assert not any(p.requires_grad for p in model.bridge.parameters())
    assert not model.bridge.training
    assert model.describe() == f"{name} (2 layers, d_model 64, 4 heads) on cpu"


def test_parameter_fingerprint(tiny_llama, tiny_gpt2):
    fp = parameter_fingerprint(tiny_llama.bridge)
    assert re.fullmatch(r"[0-9a-f]{16}", fp)
    assert fp == parameter_fingerprint(tiny_llama.bridge) == tiny_llama.weights_hash
    assert fp != tiny_gpt2.weights_hash
    again = load_model("tiny-llama", "cpu")  # a separate copy, built from the same seed
    assert again.weights_hash == fp
    with torch.no_grad():
        next(iter(again.bridge.original_model.parameters())).view(-1)[0] += 1.0
    assert parameter_fingerprint(again.bridge) != fp


def test_last_position_logits_reads_the_last_token(tiny_llama):
    x = torch.randint(4, 150, (2, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = tiny_llama.bridge(x)
        last = last_position_logits(tiny_llama, x)
    assert last.shape == (2, tiny_llama.d_vocab)
    assert torch.allclose(last, full[:, -1], atol=1e-6)


@pytest.mark.parametrize("family", ["tiny-llama", "tiny-gpt2"])
def test_the_unembedding_gets_a_contiguous_input(family, tiny_llama, tiny_gpt2):
    """The last position sliced out of the hidden states is a strided view; the unembedding
    of a loaded model gets a contiguous copy (one matrix product, not one per prompt) where
    gradients are off, and the view in a training step (whose parameters must not depend on the
    number of threads: the Ray tests compare them byte for byte)."""
    model = tiny_llama if family == "tiny-llama" else tiny_gpt2
    head = model.bridge.original_model.get_output_embeddings()
    seen: list[tuple[bool, tuple[int, ...]]] = []
    handle = head.register_forward_pre_hook(lambda m, args: seen.append((args[0].is_contiguous(), args[0].shape)))
    x = torch.randint(4, 150, (3, 6), generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            last_position_logits(model, x)
        with torch.enable_grad():
            last_position_logits(model, x)
    finally:
        handle.remove()
    assert seen == [(True, (3, 1, model.d_model)), (False, (3, 1, model.d_model))]
    assert not any(p.requires_grad for p in model.bridge.parameters())  # the frozen weights that need it


def test_a_reinitialised_control_is_the_same_architecture_with_other_weights(tiny_llama, monkeypatch):
    control = load_model("tiny-llama:reinit", "cpu")
    assert control.name == "tiny-llama:reinit" and control.weights_hash != tiny_llama.weights_hash
    assert load_model("tiny-llama:reinit", "cpu").weights_hash == control.weights_hash  # seed 0: one model
    assert (control.n_layers, control.d_model, control.n_heads) == (tiny_llama.n_layers, tiny_llama.d_model, 4)
    ids = control.tokenizer(" Mary", add_special_tokens=False).input_ids
    assert ids == tiny_llama.tokenizer(" Mary", add_special_tokens=False).input_ids
    norm = control.bridge.original_model.model.norm.weight
    assert torch.equal(norm, torch.ones_like(norm))  # as Hugging Face initialises a new model
    tokens = torch.tensor([[1, 5, 6, 7]])
    with torch.no_grad():  # another function of the same tokens
        assert not torch.allclose(control.bridge(tokens), tiny_llama.bridge(tokens))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="^model 'no-such-org/no-such-model-xyz' is not in the local"):
        load_model("no-such-org/no-such-model-xyz:reinit", "cpu")
    # It had loaded the control and re-initialised it again, under another name (another run id).
    with pytest.raises(ModelLoadError, match="^tiny-llama:reinit:reinit: a model re-initialised twice is the same "):
        load_model("tiny-llama:reinit:reinit", "cpu")
