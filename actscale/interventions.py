"""The three interventions of method.md §2, behind one small interface.

Each intervention is an `nn.Module` that holds only its parameters. Its call signature is a
TransformerLens hook, ``intervention(act, hook, site=..., layer=...)``, and it is attached to a
model only through `steer`, a context manager that removes exactly the hooks it added, also
when the forward pass raises.

Steering strength ``β`` is per example (a ``[batch]`` tensor), so one forward pass can hold the
``β = +1`` and ``β = −1`` copies of a batch side by side.
"""
from __future__ import annotations

import contextlib
import functools
from typing import ClassVar, Iterator

import torch
from torch import Tensor, nn

from actscale.sites import hook_name, is_head_site

METHODS: tuple[str, ...] = ("activscalar", "steervec", "dynscalar")
FIXED_LENGTH_METHODS: tuple[str, ...] = ("activscalar", "steervec")


class Intervention(nn.Module):
    """One learned edit per (site, layer); subclasses define `edit` and their parameter shapes.

    Shapes (interfaces.md, Run bundle): per site, the first dimension is the layer.
    """

    method: ClassVar[str]
    prefix: ClassVar[tuple[str, ...]]

    def __init__(self, sites: tuple[str, ...], n_layers: int, n_pos: int, d_model: int, n_heads: int, d_head: int):
        super().__init__()
        self.sites = tuple(sites)
        self.n_layers, self.n_pos, self.d_model = n_layers, n_pos, d_model
        self.n_heads, self.d_head = n_heads, d_head
        self.params = nn.ParameterDict()
        for site in self.sites:
            for prefix, shape in self.param_shapes(site).items():
                self.params[f"{prefix}__{site}"] = nn.Parameter(torch.zeros(shape))
        self._beta: Tensor | None = None

    # -- what subclasses define --
    def param_shapes(self, site: str) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def edit(self, act: Tensor, site: str, layer: int, beta: Tensor) -> Tensor:
        """``act`` is [batch pos d_model] ([batch pos n_heads d_head] at the head site);
        ``beta`` is [batch]. Returns the edited activation, same shape."""
        raise NotImplementedError

    # -- shared behaviour --
    def forward(self, act: Tensor, hook: object = None, *, site: str, layer: int) -> Tensor:
        if self._beta is None:
            raise RuntimeError("an intervention runs only inside `steer(...)`")
        beta = self._beta.to(act.dtype)
        return self.edit(act, site, layer, beta)

    def tensor(self, prefix: str, site: str) -> Tensor:
        return self.params[f"{prefix}__{site}"]

    def named_tensors(self) -> dict[str, Tensor]:
        """Bundle names (``alpha.attn_out``) -> detached float32 CPU tensors."""
        out = {}
        for key, p in self.params.items():
            prefix, site = key.split("__")
            out[f"{prefix}.{site}"] = p.detach().to("cpu", torch.float32).contiguous()
        return out

    def load_named_tensors(self, tensors: dict[str, Tensor]) -> None:
        """The inverse of `named_tensors`; shapes must match exactly."""
        expected = {k: tuple(p.shape) for k, p in self.named_tensors().items()}
        got = {k: tuple(v.shape) for k, v in tensors.items() if k in expected}
        missing = sorted(set(expected) - set(tensors))
        if missing:
            raise ValueError(f"missing tensor(s) {', '.join(missing)}")
        wrong = [f"{k} has shape {list(got[k])}, expected {list(expected[k])}" for k in expected if got[k] != expected[k]]
        if wrong:
            raise ValueError("; ".join(wrong))
        with torch.no_grad():
            for name, value in tensors.items():
                if name in expected:
                    prefix, site = name.split(".")
                    self.tensor(prefix, site).copy_(value)

    def minimality(self) -> Tensor:
        """``‖θ‖₁`` (method.md §3)."""
        return sum(p.abs().sum() for p in self.params.values())

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.params.values())

    def n_effective(self, hnorm: dict[str, Tensor], tau: float) -> int:
        """Components that matter (method.md §4); ``hnorm[site]`` is the mean ``‖h‖`` per
        [layer pos] ([layer pos head] at the head site) on the training prompts."""
        raise NotImplementedError

    def hooks(self) -> list[tuple[str, functools.partial]]:
        """(hook name, hook function) for every site and layer."""
        return [
            (hook_name(site, layer), functools.partial(self, site=site, layer=layer))
            for site in self.sites
            for layer in range(self.n_layers)
        ]


def _expand(beta: Tensor, act: Tensor) -> Tensor:
    """[batch] -> [batch, 1, 1(, 1)] so it broadcasts over the activation."""
    return beta.reshape(-1, *([1] * (act.dim() - 1)))


class ActivScalar(Intervention):
    """``h' = h · (1 + β·α[s,l,i])``: one scalar per (site, layer, position[, head])."""

    method = "activscalar"

    def param_shapes(self, site: str) -> dict[str, tuple[int, ...]]:
        if is_head_site(site):
            return {"alpha": (self.n_layers, self.n_pos, self.n_heads)}
        return {"alpha": (self.n_layers, self.n_pos)}

    def edit(self, act: Tensor, site: str, layer: int, beta: Tensor) -> Tensor:
        alpha = self.tensor("alpha", site)[layer]  # [pos] or [pos n_heads]
        _check_positions(act, self.n_pos)
        scale = 1 + _expand(beta, act) * alpha.unsqueeze(-1).unsqueeze(0)  # [batch pos (n_heads) 1]
        return act * scale

    def n_effective(self, hnorm: dict[str, Tensor], tau: float) -> int:
        return int(sum((p.detach().abs() > tau).sum().item() for p in self.params.values()))


class SteerVec(Intervention):
    """``h' = h + β·v[s,l,i]``: one vector per (site, layer, position[, head]) — the baseline."""

    method = "steervec"

    def param_shapes(self, site: str) -> dict[str, tuple[int, ...]]:
        if is_head_site(site):
            return {"vector": (self.n_layers, self.n_pos, self.n_heads, self.d_head)}
        return {"vector": (self.n_layers, self.n_pos, self.d_model)}

    def edit(self, act: Tensor, site: str, layer: int, beta: Tensor) -> Tensor:
        _check_positions(act, self.n_pos)
        return act + _expand(beta, act) * self.tensor("vector", site)[layer].unsqueeze(0)

    def n_effective(self, hnorm: dict[str, Tensor], tau: float) -> int:
        count = 0
        for site in self.sites:
            vnorm = self.tensor("vector", site).detach().norm(dim=-1).cpu()  # [layer pos (head)]
            count += int((vnorm > tau * hnorm[site].mean()).sum().item())
        return count


class DynScalar(Intervention):
    """``h' = h · (1 + β·α)`` with ``α = w[s,l]ᵀ ĥ + b[s,l]``: the scalar is read off the
    activation itself, so one set of parameters serves prompts of any length.

    ``normalize=True`` (the default, ours) takes the dot product with ``ĥ = h/‖h‖``; ``False``
    uses the raw activation, whose norm differs by orders of magnitude between sites.
    """

    method = "dynscalar"

    def __init__(self, *args: int | tuple[str, ...], normalize: bool = True, **kwargs: int):
        self.normalize = normalize
        super().__init__(*args, **kwargs)
        # When a dict, `edit` stores the scalars it produced per (site, layer): the dashboard
        # shows them per prompt without loading a model.
        self._record: dict | None = None

    def param_shapes(self, site: str) -> dict[str, tuple[int, ...]]:
        if is_head_site(site):
            return {"w": (self.n_layers, self.n_heads, self.d_head), "b": (self.n_layers, self.n_heads)}
        return {"w": (self.n_layers, self.d_model), "b": (self.n_layers,)}

    def scalars(self, act: Tensor, site: str, layer: int) -> Tensor:
        """α for each position: [batch pos] ([batch pos n_heads] at the head site)."""
        w, b = self.tensor("w", site)[layer], self.tensor("b", site)[layer]
        h = act / act.norm(dim=-1, keepdim=True).clamp_min(1e-6) if self.normalize else act
        if is_head_site(site):
            return torch.einsum("bphd,hd->bph", h, w) + b
        return h @ w + b

    def edit(self, act: Tensor, site: str, layer: int, beta: Tensor) -> Tensor:
        alpha = self.scalars(act, site, layer)
        if self._record is not None:
            self._record[(site, layer)] = alpha.detach().float().cpu()
        return act * (1 + _expand(beta, alpha) * alpha).unsqueeze(-1)

    def n_effective(self, hnorm: dict[str, Tensor], tau: float) -> int:
        count = 0
        for site in self.sites:
            wnorm = self.tensor("w", site).detach().norm(dim=-1).cpu()  # [layer (head)]
            b = self.tensor("b", site).detach().abs().cpu()
            # ĥ has norm 1 by construction; on raw activations the scale is the mean ‖h‖.
            scale = 1.0 if self.normalize else hnorm[site].mean(dim=1)  # mean over positions
            count += int((wnorm * scale + b > tau).sum().item())
        return count


_CLASSES: dict[str, type[Intervention]] = {c.method: c for c in (ActivScalar, SteerVec, DynScalar)}


def make_intervention(method: str, sites: tuple[str, ...], *, n_layers: int, n_pos: int, d_model: int,
                      n_heads: int, d_head: int, normalize: bool = True) -> Intervention:
    """A fresh intervention (the identity) for ``method``."""
    cls = _CLASSES[method]
    kwargs = dict(n_layers=n_layers, n_pos=n_pos, d_model=d_model, n_heads=n_heads, d_head=d_head)
    if cls is DynScalar:
        return DynScalar(sites, normalize=normalize, **kwargs)
    return cls(sites, **kwargs)


def _check_positions(act: Tensor, n_pos: int) -> None:
    if act.shape[1] != n_pos:
        raise ValueError(
            f"this intervention is tied to prompts of {n_pos} tokens; got {act.shape[1]} "
            "(ActivScalar and SteerVec learn one parameter per position)"
        )


@contextlib.contextmanager
def steer(bridge: nn.Module, intervention: Intervention, beta: float | Tensor, batch: int | None = None) -> Iterator[None]:
    """Attach ``intervention`` with strength ``beta`` (a number, or a [batch] tensor) for the
    duration of the block. Exactly the hooks added here are removed on exit, also on an error.
    """
    if not isinstance(beta, Tensor):
        if batch is None:
            raise ValueError("a scalar beta needs the batch size")
        beta = torch.full((batch,), float(beta))
    device = next(intervention.parameters()).device
    intervention._beta = beta.to(device)
    try:
        with bridge.hooks(fwd_hooks=intervention.hooks(), reset_hooks_end=True):
            yield
    finally:
        intervention._beta = None


def hook_count(bridge: nn.Module) -> int:
    """How many forward or backward hooks are attached to the model's hook points (0 when clean).

    ``hook_dict`` lists a hook point under each of its alias names (``blocks.0.hook_attn_out``
    is ``blocks.0.attn.hook_out``), and TransformerLens keeps its own list of the handles it
    registered with torch, so each hook point is counted once, by the larger of its two lists.
    """
    total = 0
    for hp in {id(hp): hp for hp in bridge.hook_dict.values()}.values():
        total += max(len(hp._forward_hooks), len(getattr(hp, "fwd_hooks", [])))
        total += max(len(hp._backward_hooks), len(getattr(hp, "bwd_hooks", [])))
    return total
