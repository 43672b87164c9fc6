"""actscale: activation scaling for steering and interpreting language models.

The public API (the CLI, the dashboard and notebooks call only these):
`load_model`, `TrainConfig`, `build_task`, `train_run`, `load_run`, `evaluate_run`,
`intervention_from_bundle`, `steer`, `RunStore`.
"""

from actscale.engine.interventions import ActivScalar, DynScalar, SteerVec, steer
from actscale.engine.models import LoadedModel, load_model
from actscale.engine.training import StepInfo, TrainConfig, train
from actscale.errors import ActscaleError, TrainingCancelled, TrainingDiverged
from actscale.runs.api import (
    __version__,
    build_task,
    evaluate_run,
    expected_run_id,
    intervention_from_bundle,
    load_run,
    train_run,
)
from actscale.runs.bundle import RunBundle
from actscale.runs.store import RunStore

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
