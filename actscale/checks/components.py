"""A run's components for the checks: ranking by magnitude, keeping the top-k, moving
parameters onto other components, and the k grids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from actscale.engine.interventions import Intervention


class Components:
    """Every component of a run, flat over its sites (in order), ranked by relative magnitude
    (largest first; ties by position in the flat order, so the ranking is deterministic)."""

    def __init__(self, method: type[Intervention], sites: Sequence[str], magnitudes: Mapping[str, Tensor]):
        self.method = method
        self.sites = tuple(sites)
        self.shapes = {s: tuple(magnitudes[s].shape) for s in self.sites}
        sizes = [magnitudes[s].numel() for s in self.sites]
        self.offsets = dict(zip(self.sites, [sum(sizes[:i]) for i in range(len(sizes))], strict=True))
        self.sizes = dict(zip(self.sites, sizes, strict=True))
        self.magnitude = torch.cat([magnitudes[s].reshape(-1).float() for s in self.sites])
        self.order = torch.sort(-self.magnitude, stable=True).indices
        self.n = int(self.magnitude.numel())

    def top(self, k: int) -> Tensor:
        return self.order[:k]

    def mask(self, idx: Tensor) -> Tensor:
        out = torch.zeros(self.n, dtype=torch.bool)
        out[idx] = True
        return out

    def site_slice(self, site: str) -> slice:
        return slice(self.offsets[site], self.offsets[site] + self.sizes[site])

    def positioned(self, site: str) -> bool:
        return "position" in self.method.component_axes(site)

    def label(self, flat: int) -> str:
        """e.g. "mlp_out L12 P7" (layer, then position and head where the method has them)."""
        site = next(s for s in self.sites if self.offsets[s] <= flat < self.offsets[s] + self.sizes[s])
        index = torch.unravel_index(torch.tensor(flat - self.offsets[site]), self.shapes[site])
        axes = self.method.component_axes(site)
        short = {"layer": "L", "position": "P", "head": "H"}
        return " ".join([site, *(f"{short.get(a, a)}{int(i)}" for a, i in zip(axes, index, strict=True))])


def _payloads(params: Mapping[str, Tensor], comps: Components) -> dict[str, tuple[str, Tensor]]:
    """Each parameter tensor as [n components of its site, payload] (the layout every method's
    tensors share: the component axes first)."""
    out = {}
    for name, tensor in params.items():
        site = name.split(".", 1)[1]
        if site in comps.sizes:
            out[name] = (site, tensor.detach().float().reshape(comps.sizes[site], -1))
    return out


def keep_params(params: Mapping[str, Tensor], comps: Components, keep: Tensor) -> dict[str, Tensor]:
    """The run's parameters with every component outside ``keep`` ([n] bool) set to the
    identity (zero parameters: α = 0, v = 0, w = b = 0 all leave the activation as it is)."""
    out = {}
    for name, (site, flat) in _payloads(params, comps).items():
        rows = keep[comps.site_slice(site)].to(flat.dtype).unsqueeze(-1)
        out[name] = (flat * rows).reshape(params[name].shape)
    return out


def transplant_params(
    params: Mapping[str, Tensor],
    comps: Components,
    analysis: Mapping[str, Tensor],
    src: Tensor,
    dst: Tensor,
    reads: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Zero parameters except at components ``dst``, which get the parameters of components
    ``src`` (same sites, one to one), rescaled so each applies its learned relative magnitude
    there (`Intervention.transplant_scale`; ``reads``: per site, what the method reads at each
    component on the check prompts, where it needs them)."""
    payloads = _payloads(params, comps)
    out = {name: torch.zeros_like(flat) for name, (_, flat) in payloads.items()}
    for site in comps.sites:
        lo, hi = comps.offsets[site], comps.offsets[site] + comps.sizes[site]
        pick = (src >= lo) & (src < hi)
        s, d = src[pick] - lo, dst[pick] - lo
        if not s.numel():
            continue
        moved = {name.split(".", 1)[0]: flat[s] for name, (tsite, flat) in payloads.items() if tsite == site}
        learned = comps.magnitude[src[pick]]
        site_reads = None if reads is None else reads[site]
        scale = comps.method.transplant_scale(analysis, site, s, d, learned, moved, site_reads).float().unsqueeze(-1)
        for name, (tsite, flat) in payloads.items():
            if tsite == site:
                out[name][d] = flat[s] * scale
    return {name: out[name].reshape(params[name].shape) for name in out}


def scale_components(
    params: Mapping[str, Tensor], comps: Components, idx: Tensor, factors: Tensor
) -> dict[str, Tensor]:
    """``params`` with the parameters of components ``idx`` (flat) multiplied by ``factors``."""
    out = {}
    for name, (site, flat) in _payloads(params, comps).items():
        flat = flat.clone()
        lo, hi = comps.offsets[site], comps.offsets[site] + comps.sizes[site]
        pick = (idx >= lo) & (idx < hi)
        flat[idx[pick] - lo] *= factors[pick].float().unsqueeze(-1)
        out[name] = flat.reshape(params[name].shape)
    return out


def k_grid(n: int) -> list[int]:
    """1, 2, 4, … below ``n``, then ``n``."""
    return sorted({*(2**i for i in range(max(1, n.bit_length())) if 2**i < n), n})


def necessity_grid(n: int) -> list[int]:
    """1, 4, 16, … below ``n``: the top-k removed (coarser than the sufficiency grid: every
    necessity point costs as much as a sufficiency point, and k90 needs only the latter)."""
    return [4**i for i in range(n.bit_length()) if 4**i < n]


# The random control's strata (docs/method.md §7.3): where a learned component may be moved.
STRATA = ("site", "layer", "position")
STRATUM_LABELS = {
    "site": "anywhere in the site",
    "layer": "same site and position, another layer",
    "position": "same site and layer, another position",
}


def stratified_draws(
    comps: Components, top: Tensor, draws: int, seed: int, stratum: str, allowed: Tensor
) -> list[Tensor] | None:
    """``draws`` placements of the components ``top``, one to one, without replacement, never
    onto a learned top component or one ``allowed`` ([n] bool) excludes: ``site`` anywhere in
    the component's site; ``layer`` the same site and other axes (position, head), another
    layer; ``position`` the same site, layer (and head), another position. None where the
    stratum does not apply (a method without positions) or some component has no candidate."""
    axes_of = {site: comps.method.component_axes(site) for site in comps.sites}
    if stratum == "position" and not any("position" in a for a in axes_of.values()):
        return None
    free = allowed & ~comps.mask(top)
    candidates = [_candidates(comps, int(c), stratum, axes_of, free) for c in top.tolist()]
    if any(not len(c) for c in candidates):
        return None
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(draws):
        taken: set[int] = set()
        dst = torch.empty_like(top)
        for i, options in enumerate(candidates):
            order = options[torch.randperm(len(options), generator=gen)].tolist()
            pick = next((o for o in order if o not in taken), None)
            if pick is None:
                return None
            taken.add(pick)
            dst[i] = pick
        out.append(dst)
    return out


def _candidates(comps: Components, flat: int, stratum: str, axes_of: dict, free: Tensor) -> Tensor:
    """The flat indices component ``flat`` may move to in ``stratum``."""
    site = next(s for s in comps.sites if comps.offsets[s] <= flat < comps.offsets[s] + comps.sizes[s])
    lo, axes = comps.offsets[site], axes_of[site]
    coords = torch.stack(torch.unravel_index(torch.arange(comps.sizes[site]), comps.shapes[site]), dim=1)
    own = coords[flat - lo]
    ok = free[comps.site_slice(site)].clone()
    if stratum != "site":
        axis = axes.index(stratum) if stratum in axes else None
        if axis is None:
            return torch.zeros(0, dtype=torch.long)
        others = [i for i in range(len(axes)) if i != axis]
        ok &= (coords[:, others] == own[others]).all(1) & (coords[:, axis] != own[axis])
    return torch.nonzero(ok).flatten() + lo
