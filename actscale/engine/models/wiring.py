"""Every model's hooks, checked as it is loaded: a scaling tool must scale the tensor that
enters the residual stream, once.

TransformerBridge has shipped architectures whose ``hook_attn_out`` or ``hook_mlp_out`` exposed
another tensor or fired twice (TransformerLens issues #1639 and #1648), and post-norms (Gemma)
move where a block's output is read. Either would be silent corruption here: a scalar applied
twice, or before a norm that removes it. One short forward pass checks, at every layer, that
each site's hook fires exactly once, that the residual stream after the layer is the one before
it plus that layer's ``attn_out`` and ``mlp_out``, and that the identity intervention on every
site leaves the logits bit-identical. A model that fails is refused with one line naming the
hook and the layer."""

from __future__ import annotations

from collections import Counter

import torch
from torch import Tensor

from actscale.engine.interventions import ModelDims, at_sites, make_intervention, steer
from actscale.engine.models.base import LoadedModel
from actscale.engine.sites import SITES, hook_name
from actscale.errors import ModelLoadError

# |resid_post − (resid_pre + attn_out + mlp_out)| allowed, relative to the largest |resid_post|:
# the same sums in another order (parallel attention) differ by rounding, far below this.
RELATIVE_TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-9}
LOOSE_TOLERANCE = 2e-2  # bfloat16 or float16 weights


def check_wiring(model: LoadedModel) -> None:
    """Raise ModelLoadError (one line, naming the hook and the layer) where ``model``'s hooks
    are not what the interventions rely on; return None where they are."""
    tokens = (torch.arange(8) % max(2, model.d_vocab - 1) + 1).unsqueeze(0).to(model.device)
    seen: dict[tuple[str, int], Tensor] = {}
    fired: Counter[tuple[str, int]] = Counter()

    def record(act: Tensor, site: str, layer: int) -> None:
        fired[(site, layer)] += 1
        seen[(site, layer)] = act.detach().float()

    missing = [n for n in _hook_names(model) if n not in model.bridge.hook_dict]
    if missing:
        raise _refuse(model, f"it has no hook {missing[0]}, where an intervention attaches")
    with torch.no_grad(), model.lock:
        with at_sites(model.bridge, (*SITES, "resid_pre"), model.n_layers, record):
            clean = model.bridge(tokens)
        _check_counts(model, fired)
        _check_residual(model, seen, clean.dtype)
        _check_identity(model, tokens, clean)


def _hook_names(model: LoadedModel) -> list[str]:
    return [hook_name(site, layer) for site in (*SITES, "resid_pre") for layer in range(model.n_layers)]


def _refuse(model: LoadedModel, what: str) -> ModelLoadError:
    return ModelLoadError(f"model {model.name} refused: {what}")


def _check_counts(model: LoadedModel, fired: Counter[tuple[str, int]]) -> None:
    for site in (*SITES, "resid_pre"):
        for layer in range(model.n_layers):
            n = fired[(site, layer)]
            if n != 1:
                raise _refuse(
                    model,
                    f"{hook_name(site, layer)} fired {n} times in one forward pass, not once "
                    "(a scale there would be applied that many times)",
                )


def _check_residual(model: LoadedModel, seen: dict[tuple[str, int], Tensor], dtype: torch.dtype) -> None:
    tolerance = RELATIVE_TOLERANCE.get(dtype, LOOSE_TOLERANCE)
    for layer in range(model.n_layers):
        post = seen[("resid_post", layer)]
        parts = seen[("resid_pre", layer)] + seen[("attn_out", layer)] + seen[("mlp_out", layer)]
        gap = float((post - parts).abs().max())
        if gap > tolerance * max(1.0, float(post.abs().max())):
            raise _refuse(
                model,
                f"at layer {layer} the residual stream after the block is not the one before plus "
                f"{hook_name('attn_out', layer)} and {hook_name('mlp_out', layer)} (off by up to {gap:.3g}): "
                "what a scale multiplies there is not what enters the residual stream",
            )


def _check_identity(model: LoadedModel, tokens: Tensor, clean: Tensor) -> None:
    n_pos = tokens.shape[1]
    dims = ModelDims(model.n_layers, n_pos, model.d_model, model.n_heads, model.d_head)
    identity = make_intervention("activscalar", SITES, dims).to(model.device)
    with steer(model.bridge, identity, 1.0, batch=1):
        steered = model.bridge(tokens)
    if not torch.equal(steered, clean):
        raise _refuse(model, "the identity intervention on every site changes the logits")
