"""Bundles of earlier formats, read in today's (docs/interfaces.md, "Bundle format and versions").

config.json's ``format_version`` names the format a bundle was written in; a bundle without it
is version 0 (everything written before versions were recorded). Reading a bundle runs one
migration per version step, in memory: the files on disk, and so the run id, never change, and
code that reads a bundle sees today's fields only. A bundle from a newer actscale is refused
with one line rather than misread."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from actscale.errors import BrokenBundleError

FORMAT_VERSION = 1


def format_version(config: Mapping[str, Any]) -> int:
    """The format ``config`` (a config.json) was written in; BrokenBundleError for a value that
    is not a version, or a version newer than this actscale reads."""
    version = config.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise BrokenBundleError(f"config.json's format_version {str(version)[:20]!r} is not a version number")
    if version > FORMAT_VERSION:
        raise BrokenBundleError(
            f"the bundle is in format {version}, written by a newer actscale; this one reads formats up to "
            f"{FORMAT_VERSION}: upgrade actscale to open it"
        )
    return version


def _v0_to_v1(config: dict[str, Any]) -> dict[str, Any]:
    """Format 0 → 1. Format 0 bundles may lack fields that came later, each with the meaning it
    had before it existed: ``positions`` absolute (every run was, before answer alignment), the
    ``data_seed`` the seed (the seed drew the prompts before they had a seed of their own), and
    the minimality threshold ``tau`` 0.05 (its only value before it was recorded)."""
    config.setdefault("positions", "absolute")
    if config.get("data_seed") is None:
        config["data_seed"] = config.get("seed", 0)
    config.setdefault("tau", 0.05)
    return config


# The step from each version to the next: one function per step, applied in order.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {0: _v0_to_v1}


def migrate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a stored config.json in today's format (``format_version`` set to it)."""
    out = dict(config)
    for version in range(format_version(config), FORMAT_VERSION):
        out = MIGRATIONS[version](out)
    out["format_version"] = FORMAT_VERSION
    return out
