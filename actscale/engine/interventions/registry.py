"""The registry of methods: a new method is one subclass registered with `register_method`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from actscale.engine.interventions.base import Intervention, ModelDims
from actscale.errors import ActscaleError

REGISTRY: dict[str, type[Intervention]] = {}


def register_method(cls: type[Intervention]) -> type[Intervention]:
    """Make ``cls`` a method every layer knows (config, training, store, CLI, dashboard).
    Usable as a class decorator; registering the same name twice replaces the first."""
    if not getattr(cls, "method", ""):
        raise ValueError(f"{cls.__name__} has no method name")
    REGISTRY[cls.method] = cls
    return cls


def unregister_method(method: str) -> None:
    """Forget ``method`` (tests that register a method of their own clean up with this)."""
    REGISTRY.pop(method, None)


def registered_methods() -> tuple[str, ...]:
    """The names of every registered method, in registration order."""
    return tuple(REGISTRY)


def float32_under_auto() -> tuple[str, ...]:
    """The registered methods that autocast "auto" keeps in float32 (``auto_bf16`` False)."""
    return tuple(m for m in REGISTRY if not REGISTRY[m].auto_bf16)


def method_class(method: str) -> type[Intervention]:
    """The class of a registered method; ActscaleError (one line) for an unknown name."""
    try:
        return REGISTRY[method]
    except (KeyError, TypeError):
        raise ActscaleError(f"unknown method {method!r}: choose from {', '.join(REGISTRY)}") from None


def effective_counts(
    method: type[Intervention],
    sites: tuple[str, ...],
    params: Mapping[str, Tensor],
    analysis: Mapping[str, Tensor],
    train_tokens: Tensor,
    tau: float,
) -> tuple[int, int]:
    """(n_components, n_effective) of docs/method.md §4. KeyError when an array is not stored."""
    mags = [method.relative_magnitude(params, analysis, site, train_tokens) for site in sites]
    return sum(m.numel() for m in mags), sum(int((m > tau).sum()) for m in mags)


def make_intervention(
    method: str, sites: tuple[str, ...], dims: ModelDims, config: Mapping[str, Any] | None = None
) -> Intervention:
    """A fresh intervention (the identity) of ``method``; ``config`` holds the method's own
    options (DynScalar's ``normalize``)."""
    return method_class(method).from_config(tuple(sites), dims, config or {})
