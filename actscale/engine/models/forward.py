"""The frozen model's forward pass: the padding inputs of left-padded batches, the logits at
each prompt's last position, and where bfloat16 autocast pays."""

from __future__ import annotations

from typing import Any

import torch

from actscale.engine.models.base import LoadedModel

# The narrowest model for which `autocast="auto"` runs in bfloat16. Measured on a CPU with
# native bf16 (AVX512-BF16, 2 threads), one training step under bf16 autocast against float32:
# 0.75x as fast at width 64, 1.1-1.2x at 256, 1.4-1.7x at 512, 1.75x for the bundled model (576),
# 1.8-2x at 1024. Below 512 the gain is small or a loss: the casts cost about what the bf16
# products save.
BF16_MIN_WIDTH = 512


def native_bf16(device: str) -> bool:
    """Whether ``device`` computes bfloat16 products in hardware: a CUDA GPU that supports
    bf16, or a CPU with AVX512-BF16 or AMX (elsewhere PyTorch emulates them, which we have not
    measured to pay)."""
    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)
    return False


def bf16_pays(model: LoadedModel) -> bool:
    """Whether bfloat16 autocast pays for ``model``: the device computes bf16 natively and the
    model is at least ``BF16_MIN_WIDTH`` wide. ``autocast="auto"`` also asks the method
    (`resources.resolve_autocast`)."""
    return model.d_model >= BF16_MIN_WIDTH and native_bf16(model.device)


def padding_inputs(attention_mask: torch.Tensor | None, device: str) -> dict[str, torch.Tensor]:
    """The model's keyword arguments for left-padded prompts (none without padding): positions
    counted from each prompt's first real token, and a 4-D boolean mask [batch 1 pos pos] where
    a position sees the real positions up to itself, and a pad position also itself.

    Why not the 2-D mask: the model turns it into a float32 additive mask whose -3.4e38 becomes
    -inf in bfloat16, so under autocast a pad position, which sees no key, softmaxes to NaN, and
    0 x NaN carries it into every real token (every logit of a padded batch was NaN). A boolean
    mask becomes the scores' own dtype's finite minimum, and with each pad position seeing
    itself no row is empty. Real tokens never see a pad, so their logits are those of the 2-D
    mask (equal in float32)."""
    if attention_mask is None or bool(attention_mask.all()):
        return {}
    real = attention_mask.to(device).bool()
    n = real.shape[-1]
    causal = torch.tril(torch.ones(n, n, dtype=torch.bool, device=device))
    sees = (causal[None] & real[:, None, :]) | torch.eye(n, dtype=torch.bool, device=device)[None]
    return {"attention_mask": sees[:, None], "position_ids": (real.long().cumsum(-1) - 1).clamp(min=0)}


def last_position_logits(
    model: LoadedModel, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None, autocast: bool = False
) -> torch.Tensor:
    """Logits at each prompt's last token: tokens [batch pos] (left-padded) -> [batch d_vocab].

    Prompts are left-padded, so every prompt's last real token sits at the last position and
    the unembedding runs on that position alone (``logits_to_keep=1``): on a 49k vocabulary
    that skips most of the unembedding's work.

    ``autocast``: the frozen model's matrix products run in bfloat16 (``torch.autocast``) while
    anything a hook adds stays float32; the logits come back as float32 either way.
    """
    device = model.device
    tokens = tokens.to(device)
    kwargs: dict[str, Any] = {"logits_to_keep": 1, **padding_inputs(attention_mask, device)}
    device_type = torch.device(device).type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
        logits = model.bridge(tokens, **kwargs)
    return logits[:, -1, :].float() if autocast else logits[:, -1, :]
