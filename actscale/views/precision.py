"""Where bfloat16 autocast is asked of a device that only emulates it: one sentence that says
so, what it costs there and the option that avoids it (docs/measured.md, "bfloat16 where it is
emulated"). The command line prints it as a note (`actscale.cli.precision`); the Explore page's
check launcher shows it beside its float32 choice (`actscale.ui.checks_panel`)."""

from __future__ import annotations

_NO_NATIVE_BF16 = {"cpu": "a CPU without AVX512-BF16 or AMX", "cuda": "a GPU without bf16 support"}
# What emulated bfloat16 cost on a 2-core AVX2-only CPU (docs/measured.md, "bfloat16 where it is emulated").
TRAIN_COST = (
    "a training step takes many times as long as in float32 (about 20 times on a 2-core AVX2 CPU, docs/measured.md)"
)
PASS_COST = "a pass takes several times as long as in float32 (6–7 times on a 2-core AVX2 CPU, docs/measured.md)"


def emulated_sentence(bf16: bool, device: str, what: str, cost: str, instead: str = "") -> str | None:
    """Where ``what`` runs in bfloat16 autocast (``bf16``) on a ``device`` that only emulates
    it: the sentence saying so, ``cost`` how much slower it is, ``instead`` the option that
    avoids it. None where nothing is to be said: not bf16, bf16 native, or a device whose bf16
    is not known here (MPS)."""
    from actscale.engine.models import native_bf16

    kind = device.split(":")[0]
    if not bf16 or kind not in _NO_NATIVE_BF16 or native_bf16(device):
        return None
    return f"{what} on {device}, {_NO_NATIVE_BF16[kind]}: PyTorch emulates bfloat16 there, and {cost}" + (
        f"; {instead}" if instead else ""
    )
