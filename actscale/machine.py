"""The machine a figure was measured on, in words: every speed figure is quoted with it, since
the same command is several times slower on a CPU without AVX-512 (bf16 emulated) than on one
with it."""

from __future__ import annotations

import os
import platform
from pathlib import Path

# The vector extensions that decide how fast the CPU runs the model, widest first.
_VECTOR_FLAGS = (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16"), ("avx512f", "AVX-512"), ("avx2", "AVX2"))


def cpu_description(cpuinfo: str | None = None) -> str:
    """``"AMD EPYC, 2 cores, AVX2 (no AVX-512)"``: the CPU's model name, its cores and the vector
    extensions it has. ``cpuinfo``: the text of /proc/cpuinfo (read from the machine when None;
    elsewhere the platform's processor name is all there is)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    flags = set(fields.get("flags", "").split())
    found = [label for flag, label in _VECTOR_FLAGS if flag in flags]
    if not flags:
        vectors = "extensions unknown"
    elif not found:
        vectors = "no AVX2"
    elif "AVX-512" not in found:
        vectors = f"{found[0]} (no AVX-512)"
    else:
        vectors = ", ".join(found)
    return f"{name}, {os.cpu_count()} cores, {vectors}"
