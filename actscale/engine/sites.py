"""Sites: where in the model an intervention acts, mapped to TransformerLens hook names here
and nowhere else."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from actscale.errors import ActscaleError

Site = Literal["attn_out", "mlp_out", "head", "resid_post"]

# site -> hook name template (docs/method.md §1)
SITE_HOOKS: dict[str, str] = {
    "attn_out": "blocks.{layer}.hook_attn_out",
    "mlp_out": "blocks.{layer}.hook_mlp_out",
    "head": "blocks.{layer}.attn.hook_z",
    "resid_post": "blocks.{layer}.hook_resid_post",
}
SITES: tuple[str, ...] = tuple(SITE_HOOKS)  # the names of `Site`
# Hooks read, never edited: the residual stream entering a layer (the wiring check on load).
READ_ONLY_HOOKS: dict[str, str] = {"resid_pre": "blocks.{layer}.hook_resid_pre"}
DEFAULT_SITES: tuple[str, ...] = ("attn_out", "mlp_out")  # the paper's default

_PATTERNS = {re.compile("^" + re.escape(t).replace(r"\{layer\}", r"(\d+)") + "$"): s for s, t in SITE_HOOKS.items()}


@dataclass(frozen=True)
class SiteAddress:
    site: str
    layer: int


def hook_name(site: str, layer: int) -> str:
    """The TransformerLens hook name of ``site`` (or of a read-only hook) at ``layer``."""
    return (SITE_HOOKS.get(site) or READ_ONLY_HOOKS[site]).format(layer=layer)


def parse_hook_name(name: str) -> SiteAddress:
    """The inverse of `hook_name`: ``blocks.3.hook_mlp_out`` -> SiteAddress("mlp_out", 3)."""
    for pattern, site in _PATTERNS.items():
        match = pattern.match(name)
        if match:
            return SiteAddress(site, int(match.group(1)))
    raise KeyError(f"{name!r} is not the hook of a site")


def parse_sites(text: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"attn_out,mlp_out"`` -> ("attn_out", "mlp_out"); unknown or repeated sites are errors."""
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    if not items:
        raise ActscaleError(f"no sites given: choose from {', '.join(SITES)}")
    unknown = [s for s in items if s not in SITE_HOOKS]
    if unknown:
        raise ActscaleError(f"unknown site(s) {', '.join(unknown)}: choose from {', '.join(SITES)}")
    if len(set(items)) != len(items):
        raise ActscaleError(f"site listed twice in {','.join(items)}")
    return tuple(items)


def is_head_site(site: str) -> bool:
    """The head site's activations are [batch pos n_heads d_head], the others [batch pos d_model]."""
    return site == "head"
