"""The one door through which hooks reach a model. `at_sites` calls a function with each site's
activation at each layer for the duration of a block (reading it, or replacing it where the
function returns a tensor); `steer` is `at_sites` with an intervention's edit. Both add exactly
their hooks and remove exactly those, also when the forward pass raises."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from actscale.engine.interventions.base import Intervention, Recorder
from actscale.engine.sites import hook_name

# fn(act, site, layer): a tensor replaces the activation; None leaves it as it is.
SiteFn = Callable[[Tensor, str, int], Tensor | None]


def _call(act: Tensor, hook: object = None, *, fn: SiteFn, site: str, layer: int) -> Tensor | None:  # noqa: ARG001 - a hook's signature
    return fn(act, site, layer)


@contextlib.contextmanager
def at_sites(bridge: Any, sites: Sequence[str], n_layers: int, fn: SiteFn) -> Iterator[None]:
    """Call ``fn(act, site, layer)`` with the activation of each of ``sites`` at each of the
    first ``n_layers`` layers during the block: to capture it (``fn`` returns None) or to edit
    it (``fn`` returns the new activation). ``bridge`` is a TransformerBridge."""
    hooks = [
        (hook_name(site, layer), functools.partial(_call, fn=fn, site=site, layer=layer))
        for site in sites
        for layer in range(n_layers)
    ]
    with bridge.hooks(fwd_hooks=hooks, reset_hooks_end=True):
        yield


@contextlib.contextmanager
def steer(
    bridge: Any,  # a TransformerBridge
    intervention: Intervention,
    beta: float | Tensor,
    batch: int | None = None,
    record: Recorder | None = None,
    mask: Tensor | None = None,
    first_positions: int | None = None,
) -> Iterator[None]:
    """Attach ``intervention`` with strength ``beta`` (a number, or a [batch] tensor) for the
    duration of the block; ``record`` (a dict the caller owns) receives what the method records;
    ``mask`` is the batch's attention mask ([batch pos], as given to the model), whose pad
    positions are left unedited; ``first_positions``: edit only the first that many positions
    (a fixed-length run steering its prompt while tokens are generated after it). The
    intervention object is not modified, so the same one may be used by nested or alternating
    blocks."""
    if not isinstance(beta, Tensor):
        if batch is None:
            raise ValueError("a scalar beta needs the batch size")
        beta = torch.full((batch,), float(beta))
    device = next(intervention.parameters()).device
    beta = beta.to(device)
    mask = None if mask is None or bool(mask.all()) else mask.to(device)  # no padding: nothing to mask

    def edit(act: Tensor, site: str, layer: int) -> Tensor:
        if first_positions is None:
            return intervention(act, site=site, layer=layer, beta=beta, record=record, mask=mask)
        head = intervention(act[:, :first_positions], site=site, layer=layer, beta=beta, record=record, mask=mask)
        return torch.cat([head, act[:, first_positions:]], dim=1)

    with at_sites(bridge, intervention.sites, intervention.dims.n_layers, edit):
        yield


def hook_count(bridge: Any) -> int:  # a TransformerBridge
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
