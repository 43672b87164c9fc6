"""Attaching an intervention to a model: `steer` adds exactly its hooks and removes exactly those,
also when the forward pass raises."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from actscale.engine.interventions.base import Intervention, Recorder


@contextlib.contextmanager
def steer(
    bridge: Any,  # a TransformerBridge
    intervention: Intervention,
    beta: float | Tensor,
    batch: int | None = None,
    record: Recorder | None = None,
    mask: Tensor | None = None,
) -> Iterator[None]:
    """Attach ``intervention`` with strength ``beta`` (a number, or a [batch] tensor) for the
    duration of the block; ``record`` (a dict the caller owns) receives what the method records;
    ``mask`` is the batch's attention mask ([batch pos], as given to the model), whose pad
    positions are left unedited. Exactly the hooks added here are removed on exit, also on an
    error; the intervention object is not modified, so the same one may be used by nested or
    alternating blocks."""
    if not isinstance(beta, Tensor):
        if batch is None:
            raise ValueError("a scalar beta needs the batch size")
        beta = torch.full((batch,), float(beta))
    device = next(intervention.parameters()).device
    mask = None if mask is None or bool(mask.all()) else mask.to(device)  # no padding: nothing to mask
    with bridge.hooks(fwd_hooks=intervention.hooks(beta.to(device), record, mask), reset_hooks_end=True):
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
