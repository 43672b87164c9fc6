"""actscale: activation scaling for steering and interpreting language models.

The public API (the CLI, the dashboard and notebooks call only these):
`load_model`, `TrainConfig`, `build_task`, `train_run`, `load_run`, `evaluate_run`,
`intervention_from_bundle`, `steer`, `RunStore`.

The names are imported on first use (PEP 562), so ``import actscale`` and the command line's
``--help`` do not load torch, TransformerLens or transformers.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING, Any

from actscale._version import __version__

if TYPE_CHECKING:
    from actscale.engine.interventions import ActivScalar, DynScalar, SteerVec, steer
    from actscale.engine.models import LoadedModel, load_model
    from actscale.engine.training import StepInfo, TrainConfig, train
    from actscale.errors import ActscaleError, TrainingCancelled, TrainingDiverged
    from actscale.runs.api import (
        build_task,
        evaluate_run,
        expected_run_id,
        intervention_from_bundle,
        load_run,
        train_run,
    )
    from actscale.runs.bundle import RunBundle
    from actscale.runs.store import RunStore

# Each public name and the module that defines it.
_HOMES = {
    "ActivScalar": "actscale.engine.interventions",
    "DynScalar": "actscale.engine.interventions",
    "SteerVec": "actscale.engine.interventions",
    "steer": "actscale.engine.interventions",
    "LoadedModel": "actscale.engine.models",
    "load_model": "actscale.engine.models",
    "StepInfo": "actscale.engine.training",
    "TrainConfig": "actscale.engine.training",
    "train": "actscale.engine.training",
    "ActscaleError": "actscale.errors",
    "TrainingCancelled": "actscale.errors",
    "TrainingDiverged": "actscale.errors",
    "build_task": "actscale.runs.api",
    "evaluate_run": "actscale.runs.api",
    "expected_run_id": "actscale.runs.api",
    "intervention_from_bundle": "actscale.runs.api",
    "load_run": "actscale.runs.api",
    "train_run": "actscale.runs.api",
    "RunBundle": "actscale.runs.bundle",
    "RunStore": "actscale.runs.store",
}

__all__ = [
    "__version__",
    "ActivScalar",
    "ActscaleError",
    "DynScalar",
    "LoadedModel",
    "RunBundle",
    "RunStore",
    "StepInfo",
    "SteerVec",
    "TrainConfig",
    "TrainingCancelled",
    "TrainingDiverged",
    "build_task",
    "evaluate_run",
    "expected_run_id",
    "intervention_from_bundle",
    "load_model",
    "load_run",
    "steer",
    "train",
    "train_run",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'actscale' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    """The API and the package's modules imported so far: not this module's own helpers
    (`Any`, `import_module`), which a notebook's completion had offered beside the API."""
    modules = [name for name, value in globals().items() if isinstance(value, ModuleType) and name[0] != "_"]
    return sorted({*__all__, *modules})
