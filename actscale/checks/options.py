"""The map checks' options: what to run, on how many prompts, at which precision."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from actscale.errors import ActscaleError

PRECISIONS = ("run", "bf16", "float32")
PATCHING = ("top", "full")
VARY = ("auto", "seed", "data")
MAX_GENERALISATION_GROUPS = 8
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class CheckOptions:
    """What `run_checks` computes, and how (docs/checks.md; the default IOI ActivScalar run's map
    checks take about three minutes on two CPU cores: `make bench` (e), docs/measured.md)."""

    # validation prompts k90 is chosen on, and test prompts (drawn with random_seed) every variant is reported on
    prompts: int = 16
    draws: int = 20  # random placements per k
    seeds: int = 0  # stability over this many seeds (the run's own included); 0 or 1: none
    # "data": the data seed (other prompts and split, the same training seed: data variance);
    # "seed": the training seed on the same data (only the batch order: every method starts at
    # the identity); "auto": "data" where the task draws its data, "seed" for a dataset file
    vary: str = "auto"
    generalisation: bool = False  # train one run per group and test it on every other group
    side_effects: bool = True  # for runs of any length: KL and perplexity on neutral text
    # The passes' precision: "run" (the run's own: bfloat16 autocast for a run trained under it,
    # else float32), "bf16" or "float32". A bf16 run checked in float32 is another computation:
    # on seed 0's default run 47 of its 48 flips agreed and Δ moved by up to 0.45.
    precision: str = "run"
    rows_per_pass: int = 128  # prompts (all variants together) in one forward pass
    random_seed: int = 0  # the test prompts drawn and the random control's draws
    # Exact activation patching: "top" (each ranking's top 64 cells, as AtP* verifies its
    # candidates) or "full" (every cell; one pass of the patching prompts per cell)
    patching: str = "top"
    executor: str = "local"  # where the seeds' and groups' runs train: "local" or "ray"
    ray_address: str | None = None  # a Ray cluster's address ("auto": a local one)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ActscaleError(f"unknown precision {self.precision!r}: choose run, bf16 or float32")
        if self.patching not in PATCHING:
            raise ActscaleError(f"unknown patching {self.patching!r}: choose top or full")
        if self.vary not in VARY:
            raise ActscaleError(f"unknown stability variation {self.vary!r}: choose auto, seed or data")
        for name, lo, hi in (("prompts", 1, 100_000), ("draws", 1, 10_000), ("seeds", 0, 100)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ActscaleError(f"{name} must be a whole number between {lo} and {hi}")
        if not 1 <= self.rows_per_pass <= 100_000:
            raise ActscaleError("rows_per_pass must be between 1 and 100,000")

    def precision_for(self, run_autocast: str) -> str:
        """The passes' precision, "bf16" or "float32", for a run trained with ``run_autocast``
        (its config's resolved value): ``precision``, or with "run" the run's own."""
        if self.precision != "run":
            return self.precision
        return "bf16" if run_autocast == "bf16" else "float32"
