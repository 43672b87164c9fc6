"""The three methods of docs/method.md §2: ActivScalar (a scalar per component), SteerVec (a
vector per component, the baseline) and DynScalar (a scalar computed from the activation)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from typing_extensions import override

from actscale.engine.interventions.base import (
    Intervention,
    MethodDefaults,
    ModelDims,
    Recorder,
    expand_beta,
    positioned_axes,
)
from actscale.engine.interventions.registry import register_method
from actscale.engine.sites import is_head_site
from actscale.errors import ActscaleError


@register_method
class ActivScalar(Intervention):
    """``h' = h · (1 + β·α[s,l,i])``: one scalar per (site, layer, position[, head])."""

    method = "activscalar"
    label = "ActivScalar (a scalar per site, layer, position)"
    # A scalar per position learns fast with a large step. Steps and batch size were chosen on
    # validation over two model families (`experiments defaults --model bundled --model <gemma>`):
    # batches of 8 flip as many validation prompts as 4 (within the rule's 0.02) with fewer scalars changed.
    defaults = MethodDefaults(steps=18, lr=0.1, batch_size=8, lambda_m=0.05)
    magnitude_name, magnitude_label, magnitude_signed = "alpha", "α", True

    @classmethod
    @override
    def param_shapes(cls, site: str, dims: ModelDims) -> dict[str, tuple[int, ...]]:
        if is_head_site(site):
            return {"alpha": (dims.n_layers, dims.n_pos, dims.n_heads)}
        return {"alpha": (dims.n_layers, dims.n_pos)}

    @override
    def edit(self, act: Tensor, site: str, layer: int, beta: Tensor, record: Recorder | None) -> Tensor:
        alpha = self.columns(self.tensor("alpha", site)[layer], act.shape[1])  # [pos] or [pos n_heads]
        scale = 1 + expand_beta(beta, act) * alpha.unsqueeze(-1).unsqueeze(0)  # [batch pos (n_heads) 1]
        return act * scale

    @classmethod
    @override
    def component_axes(cls, site: str) -> tuple[str, ...]:
        return positioned_axes(site)

    @classmethod
    @override
    def component_values(cls, params: Mapping[str, Tensor], analysis: Mapping[str, Tensor], site: str) -> Tensor:
        return params[f"alpha.{site}"]


@register_method
class SteerVec(Intervention):
    """``h' = h + β·v[s,l,i]``: one vector per (site, layer, position[, head]) — the baseline."""

    method = "steervec"
    label = "SteerVec (a vector per site, layer, position)"
    # A vector per position has D times as many coordinates, each with a small gradient, so its
    # L1 weight is far smaller.
    defaults = MethodDefaults(steps=15, lr=0.01, batch_size=4, lambda_m=1e-4)
    magnitude_name, magnitude_label = "norm_ratio", "‖v‖/‖h‖"

    @classmethod
    @override
    def param_shapes(cls, site: str, dims: ModelDims) -> dict[str, tuple[int, ...]]:
        if is_head_site(site):
            return {"vector": (dims.n_layers, dims.n_pos, dims.n_heads, dims.d_head)}
        return {"vector": (dims.n_layers, dims.n_pos, dims.d_model)}

    @override
    def edit(self, act: Tensor, site: str, layer: int, beta: Tensor, record: Recorder | None) -> Tensor:
        vector = self.columns(self.tensor("vector", site)[layer], act.shape[1])  # [pos (n_heads) d]
        return act + expand_beta(beta, act) * vector.unsqueeze(0)

    @classmethod
    @override
    def component_axes(cls, site: str) -> tuple[str, ...]:
        return positioned_axes(site)

    @classmethod
    @override
    def component_values(cls, params: Mapping[str, Tensor], analysis: Mapping[str, Tensor], site: str) -> Tensor:
        """``‖v‖ / mean‖h‖`` per [layer pos (head)] (``‖v‖`` where the bundle has no ``‖h‖``)."""
        vnorm = params[f"vector.{site}"].norm(dim=-1)
        hnorm = analysis.get(f"hnorm.{site}")
        return vnorm if hnorm is None else vnorm / hnorm.clamp_min(1e-6)

    @classmethod
    @override
    def relative_magnitude(
        cls, params: Mapping[str, Tensor], analysis: Mapping[str, Tensor], site: str, train_tokens: Tensor
    ) -> Tensor:
        """``‖v[s,l,i]‖ / mean‖h[s,l,i]‖``: each vector against the mean norm of the very
        activation it is added to (one global mean would be dominated by position 0's huge
        norms and call almost every vector negligible)."""
        return params[f"vector.{site}"].norm(dim=-1) / analysis[f"hnorm.{site}"].clamp_min(1e-6)

    @classmethod
    @override
    def transplant_scale(
        cls,
        analysis: Mapping[str, Tensor],
        site: str,
        src: Tensor,
        dst: Tensor,
        learned: Tensor | None = None,
        moved: Mapping[str, Tensor] | None = None,
        reads: Tensor | None = None,
    ) -> Tensor:
        """A vector moved to another (layer, position) is rescaled by the ratio of the mean
        ‖h‖ there to the mean ‖h‖ where it was learned, so ‖v‖/‖h‖ is kept."""
        hnorm = analysis[f"hnorm.{site}"].reshape(-1).float()
        return hnorm[dst] / hnorm[src].clamp_min(1e-6)

    @override
    def analysis_arrays(
        self, hdir: Mapping[str, Tensor], record: Mapping[tuple[str, int], list[Tensor]]
    ) -> dict[str, Tensor]:
        """``cos.<site>``: the mean cosine of each vector with the activation it is added to."""
        out = {}
        for site in self.sites:
            v = self.tensor("vector", site).detach().cpu()
            out[f"cos.{site}"] = ((v * hdir[site]).sum(-1) / v.norm(dim=-1).clamp_min(1e-12)).contiguous()
        return out


@register_method
class DynScalar(Intervention):
    """``h' = h · (1 + β·α)`` with ``α = w[s,l]ᵀ ĥ + b[s,l]``: the scalar is read off the
    activation itself, so one set of parameters serves prompts of any length.

    ``normalize=True`` (the default, ours) takes the dot product with ``ĥ = h/‖h‖``; ``False``
    uses the raw activation, whose norm differs by orders of magnitude between sites.
    """

    method = "dynscalar"
    label = "DynScalar (a scalar computed from the activation; any prompt length)"
    fixed_length = False
    # Chosen on validation over two model families: 0.03 flips more validation prompts than 0.015
    # on both (docs/measured.md, "A second family").
    defaults = MethodDefaults(steps=40, lr=0.03, batch_size=8, lambda_m=1e-3)
    # its map and its checks rank by the scalar it applies (`relative_magnitude`), not by ‖w‖
    magnitude_name, magnitude_label = "mean_abs_alpha", "mean |α(h)|"
    options = ("normalize",)
    # Its scalars are read off the activation (α = wᵀĥ + b), which under bf16 autocast is a
    # bfloat16 number: measured over seeds 1-3, bf16 moved its validation choice of learning rate
    # (0.03 over 0.015) and moved held-out families' flips by up to a fifth either way
    # (scene-first β = -1 0.72 -> 0.53), so "auto" keeps it in float32 (docs/measured.md, "How the defaults
    # were checked"); --autocast bf16 still runs it in bf16.
    auto_bf16 = False

    def __init__(self, sites: tuple[str, ...], dims: ModelDims, normalize: bool = True):
        self.normalize = normalize
        super().__init__(sites, dims)

    @classmethod
    @override
    def from_config(cls, sites: tuple[str, ...], dims: ModelDims, config: Mapping[str, Any]) -> Intervention:
        return cls(sites, dims, normalize=bool(config.get("normalize", True)))

    @classmethod
    @override
    def param_shapes(cls, site: str, dims: ModelDims) -> dict[str, tuple[int, ...]]:
        if is_head_site(site):
            return {"w": (dims.n_layers, dims.n_heads, dims.d_head), "b": (dims.n_layers, dims.n_heads)}
        return {"w": (dims.n_layers, dims.d_model), "b": (dims.n_layers,)}

    def scalars(self, act: Tensor, site: str, layer: int) -> Tensor:
        """α for each position: [batch pos] ([batch pos n_heads] at the head site)."""
        w, b = self.tensor("w", site)[layer], self.tensor("b", site)[layer]
        h = act / act.norm(dim=-1, keepdim=True).clamp_min(1e-6) if self.normalize else act
        if is_head_site(site):
            return torch.einsum("bphd,hd->bph", h, w) + b
        return h @ w + b

    @override
    def edit(self, act: Tensor, site: str, layer: int, beta: Tensor, record: Recorder | None) -> Tensor:
        alpha = self.scalars(act, site, layer)
        if record is not None:
            record[(site, layer)] = alpha.detach().float().cpu()
        return act * (1 + expand_beta(beta, alpha) * alpha).unsqueeze(-1)

    @property
    @override
    def records(self) -> bool:
        return True

    @classmethod
    @override
    def component_axes(cls, site: str) -> tuple[str, ...]:
        return ("layer", "head") if is_head_site(site) else ("layer",)

    transplant_reads_activations = True

    @override
    def transplant_reads(self, act: Tensor) -> Tensor:
        return act / act.norm(dim=-1, keepdim=True).clamp_min(1e-6) if self.normalize else act

    @classmethod
    @override
    def transplant_scale(
        cls,
        analysis: Mapping[str, Tensor],
        site: str,
        src: Tensor,
        dst: Tensor,
        learned: Tensor | None = None,
        moved: Mapping[str, Tensor] | None = None,
        reads: Tensor | None = None,
    ) -> Tensor:
        """α = wᵀĥ + b is linear in (w, b): a component moved to another layer (head) is scaled
        so that the mean |α| it applies there, on the check prompts' real tokens (``reads``),
        is its learned one (``learned``)."""
        if learned is None or moved is None or reads is None:
            raise ValueError("DynScalar's transplant needs the learned magnitudes, the moved (w, b) and the reads")
        h = reads[dst].float()  # [k tokens d]
        alpha = torch.einsum("ktd,kd->kt", h, moved["w"].float()) + moved["b"].float().reshape(-1, 1)
        return learned.float() / alpha.abs().mean(1).clamp_min(1e-12)

    @classmethod
    @override
    def component_values(cls, params: Mapping[str, Tensor], analysis: Mapping[str, Tensor], site: str) -> Tensor:
        """The mean |α(h)| it applied over the training prompts' real tokens (stored with the run
        as ``magnitude.<site>``): what its checks rank by."""
        if f"magnitude.{site}" not in analysis:
            raise ActscaleError(f"this run's analysis arrays lack magnitude.{site} (the mean |α(h)| DynScalar applied)")
        return analysis[f"magnitude.{site}"]

    @classmethod
    @override
    def relative_magnitude(
        cls, params: Mapping[str, Tensor], analysis: Mapping[str, Tensor], site: str, train_tokens: Tensor
    ) -> Tensor:
        """The mean of ``|α(h)|`` over the real tokens of the training prompts: the scalar it
        actually applied (recorded at β = +1), per [layer (head)]."""
        alpha, mask = _alpha_and_training_tokens(analysis, site, train_tokens)
        return (alpha * mask).sum(dim=(0, 2)) / mask.sum(dim=(0, 2)).clamp_min(1)

    @classmethod
    @override
    def cell_magnitude(
        cls, params: Mapping[str, Tensor], analysis: Mapping[str, Tensor], site: str, train_tokens: Tensor
    ) -> Tensor:
        """The |α(h)| applied at each answer-aligned position (left-padded prompts end on the
        answer), averaged over the training prompts that reach it: [layer pos (head)]; NaN at a
        position none reaches."""
        alpha, mask = _alpha_and_training_tokens(analysis, site, train_tokens)
        count = mask.sum(dim=0)
        mean = (alpha * mask).sum(dim=0) / count.clamp_min(1)
        return torch.where(count > 0, mean, torch.full_like(mean, float("nan")))

    @override
    def analysis_arrays(
        self, hdir: Mapping[str, Tensor], record: Mapping[tuple[str, int], list[Tensor]]
    ) -> dict[str, Tensor]:
        """``dynalpha.<site>``: the scalars produced on every prompt, [n layer pos (head)]."""
        if not record:
            return {}
        out = {}
        for site in self.sites:
            per_layer = [torch.cat(record[(site, layer)]) for layer in range(self.dims.n_layers)]
            out[f"dynalpha.{site}"] = torch.stack(per_layer, dim=1).float().contiguous()
        return out


def _alpha_and_training_tokens(
    analysis: Mapping[str, Tensor], site: str, train_tokens: Tensor
) -> tuple[Tensor, Tensor]:
    """DynScalar's applied |α(h)| on every prompt, [n layer pos (head)], and the training
    prompts' real tokens shaped to multiply it, [n 1 pos (1)]."""
    alpha = analysis[f"dynalpha.{site}"].abs()
    mask = train_tokens.to(alpha.dtype)  # [n pos]
    return alpha, mask.reshape(mask.shape[0], 1, mask.shape[1], *([1] * (alpha.dim() - 3)))
