"""Training an intervention: only its parameters are optimised; the model stays frozen.

Each step reads the unmodified model's outputs from `evaluation.base_pass`; the trained run is
then evaluated there too. Nothing here depends on which method is trained: the method's own
behaviour comes from its class (`interventions`).
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from actscale.engine.config import TrainConfig  # noqa: F401 - re-exported: `from actscale.engine.training import TrainConfig`
from actscale.engine.evaluation import BaseOutputs, base_pass, evaluate
from actscale.engine.interventions import Intervention, ModelDims, make_intervention, steer
from actscale.engine.models import LoadedModel, last_position_logits
from actscale.engine.objective import LossTerms, logit_diff, objective
from actscale.engine.observer import RunObserver, holding
from actscale.engine.resources import check_memory, resolve_autocast
from actscale.engine.tasks import PreparedTask
from actscale.engine.validation import (  # noqa: F401 - target_outcome re-exported
    TargetWatch,
    target_outcome,
    validation_effectiveness,
    validation_flips,
)
from actscale.errors import ActscaleError, TrainingCancelled, TrainingDiverged


@dataclass(frozen=True)
class StepInfo:
    """What the progress callback receives after every step."""

    step: int
    n_steps: int
    loss: float
    effectiveness: float
    faithfulness: float
    minimality: float
    flip_acc_pos: float
    flip_acc_neg: float
    elapsed: float


class CancelFlag(Protocol):
    def is_set(self) -> bool: ...


@dataclass
class TrainResult:
    config: TrainConfig
    intervention: Intervention
    metrics: dict[str, dict[str, Any]]
    history: list[dict[str, float]]
    analysis: dict[str, Tensor]
    groups: list[dict[str, Any]]
    steps_run: int
    seconds: float
    stopped_early: bool
    # Where the time went: base_pass_s, steps_s, eval_s (the validation prompts), rest_eval_s.
    timing: dict[str, float] = field(default_factory=dict)
    cycles_run: int = 1
    fit: dict[str, Any] | None = None  # a fitted method's (DiffMean's) measurements and choices


def model_dims(model: LoadedModel, n_pos: int) -> ModelDims:
    """The dimensions an intervention for ``model`` and prompts of ``n_pos`` tokens needs."""
    return ModelDims(
        n_layers=model.n_layers, n_pos=n_pos, d_model=model.d_model, n_heads=model.n_heads, d_head=model.d_head
    )


def new_intervention(model: LoadedModel, task: PreparedTask, config: TrainConfig) -> Intervention:
    return make_intervention(config.method, config.sites, model_dims(model, task.n_pos), config.to_dict()).to(
        model.device
    )


def _trim(tokens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Drop leading columns that are padding in every row (left padding)."""
    keep = mask.any(0).nonzero()
    start = int(keep[0]) if keep.numel() else 0
    return tokens[:, start:], mask[:, start:]


class _BatchOrder:
    """Epochs of the training prompts, each a fresh shuffle from the seed, cut into batches; the
    last batch of an epoch may be smaller, so no batch holds a prompt twice and every prompt is
    drawn once per epoch."""

    def __init__(self, train_idx: Tensor, batch_size: int, seed: int):
        self.train_idx, self.batch_size = train_idx, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.queue: list[int] = []

    def next(self) -> Tensor:
        if not self.queue:
            self.queue = self.train_idx[torch.randperm(len(self.train_idx), generator=self.generator)].tolist()
        rows, self.queue = self.queue[: self.batch_size], self.queue[self.batch_size :]
        return torch.tensor(rows)


def _check_cancel(observer: RunObserver, message: str) -> None:
    if observer.cancelled():
        raise TrainingCancelled(message)


def train(
    model: LoadedModel,
    task: PreparedTask,
    config: TrainConfig,
    *,
    observer: RunObserver | None = None,
) -> TrainResult:
    """Train ``config.method`` on the task's train split, then evaluate every split.

    Both β directions share one batched forward pass. The ``observer`` hears every step, the
    step that first reaches the validation target (`validation.TargetWatch`, while the training
    goes on), the trained run's first result (the validation prompts' flip rates, before the other
    splits are evaluated) and any wait for the model; it is asked whether to cancel before every
    step and after the final evaluation (TrainingCancelled). A NaN or infinite loss raises
    TrainingDiverged; a batch that would not fit in memory raises ActscaleError before anything
    runs (`check_memory`). The same seed gives the same parameters on a CPU.
    """
    observer = observer or RunObserver()
    config = _runnable(model, task, config)
    start = time.perf_counter()
    # The test prompts' base pass comes with their evaluation, after the run's first result.
    base = base_pass(model, task, config.sites, autocast=config.bf16, splits=("train", "val"))
    base_done = time.perf_counter()
    intervention = new_intervention(model, task, config)
    fit = _fit(model, task, intervention, config, observer) if intervention.fitted else None  # no step then
    steps = _optimise(model, task, base, intervention, config, start, observer) if fit is None else _Steps()
    _check_cancel(observer, f"cancelled after step {steps.step}")
    steps_done = time.perf_counter()
    result = evaluate(model, task, intervention, config, base=base, on_result=observer.first_result)
    _check_cancel(observer, f"cancelled during the evaluation after step {steps.step}")  # nothing stored either
    return TrainResult(
        config,
        intervention,
        result.metrics,
        steps.history,
        result.analysis,
        result.groups,
        steps.step,
        time.perf_counter() - start,
        steps.stopped_early,
        {
            "base_pass_s": round(base_done - start, 3),
            "steps_s": round(steps_done - base_done, 3),
            **{k: round(v, 3) for k, v in result.seconds.items()},
            **(steps.watch.timing() if steps.watch is not None else {}),
        },
        steps.cycles_run,
        fit,
    )


def _runnable(model: LoadedModel, task: PreparedTask, config: TrainConfig) -> TrainConfig:
    """``config`` with its precision resolved, once it is known to fit the task and the memory."""
    config = resolve_autocast(config, model)
    if config.one_length and not task.fixed_length:
        raise ActscaleError(f"{config.method} needs prompts of one length; prepare the task with fixed_length=True")
    check_memory(model, task, config)
    return config


def _fit(
    model: LoadedModel, task: PreparedTask, intervention: Intervention, config: TrainConfig, observer: RunObserver
) -> dict[str, Any]:
    """A fitted method's parameters (`Intervention.fit`), holding the model as a step would."""
    with holding(model.lock, observer):
        return intervention.fit(
            model, task, functools.partial(last_position_logits, model, autocast=config.bf16), observer.cancelled
        )


def _schedule(optimiser: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A cycle's learning rate: cosine decay from ``config.lr`` over its steps unless the config
    says constant (ours): with an L1 term, Adam keeps unneeded scalars jittering around 0 at
    about the step size; a step size that shrinks to 0 lets them settle there. Each cycle starts
    again at ``config.lr`` (a warm restart; Adam's moments are kept)."""
    for group in optimiser.param_groups:
        group["lr"] = config.lr
    if config.schedule != "cosine":
        return None
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.steps)


@dataclass
class _Steps:
    """The optimisation's state across cycles: the history's rows, the last step, the streak of
    steps with L_E = 0 that early stopping counts, the watch for the validation target, and at
    the end whether it stopped early and the cycles it ran."""

    history: list[dict[str, float]] = field(default_factory=list)
    step: int = 0
    zero_streak: int = 0
    watch: TargetWatch | None = None
    stopped_early: bool = False
    cycles_run: int = 1


def _optimise(
    model: LoadedModel,
    task: PreparedTask,
    base: BaseOutputs,
    intervention: Intervention,
    config: TrainConfig,
    start: float,
    observer: RunObserver,
) -> _Steps:
    """The training steps, and where they ended (`_Steps`). A cycle is ``config.steps`` steps;
    after each but the last allowed, the run ends if the validation prompts' flip rates reach
    ``config.target`` in both directions."""
    optimiser = torch.optim.Adam(intervention.parameters(), lr=config.lr)
    order = _BatchOrder(task.split_indices("train"), config.batch_size, config.seed)
    # Only a run with a target looks for it (one of one cycle trains the steps it was given).
    watched = observer.watches_target and config.cycles > 1
    state = _Steps(watch=TargetWatch(task, base, config, start) if watched else None)
    for cycle in range(1, config.cycles + 1):
        schedule = _schedule(optimiser, config)
        for _ in range(config.steps):
            state.step += 1
            _check_cancel(observer, f"cancelled at step {state.step} of {cycle * config.steps}")
            with holding(model.lock, observer):
                terms, delta = _train_step(model, task, base, intervention, config, order.next(), state.step)
                optimiser.zero_grad(set_to_none=True)
                terms.total.backward()
                optimiser.step()
                if schedule is not None:
                    schedule.step()
            state.cycles_run = cycle
            if _record_step(model, task, intervention, config, observer, state, (terms, delta), cycle, start):
                state.stopped_early = True
                return state
        if cycle < config.cycles and min(validation_flips(model, task, intervention, config)) >= config.target:
            return state
    return state


def _record_step(
    model: LoadedModel,
    task: PreparedTask,
    intervention: Intervention,
    config: TrainConfig,
    observer: RunObserver,
    state: _Steps,
    outputs: tuple[LossTerms, Tensor],
    cycle: int,
    start: float,
) -> bool:
    """Record a step in the history, tell the observer, and say whether early stopping ends the
    run here (its rule reads the validation prompts; the training batch where there are none)."""
    info = _step_info(state.step, cycle * config.steps, *outputs, time.perf_counter() - start)
    row: dict[str, float] = {k: v for k, v in asdict(info).items() if k != "n_steps"}
    if config.early_stop:
        val_loss = validation_effectiveness(model, task, intervention, config)
        if val_loss is not None:
            row["val_effectiveness"] = val_loss
        zero = (info.effectiveness if val_loss is None else val_loss) == 0.0
        state.zero_streak = state.zero_streak + 1 if zero else 0
    state.history.append(row)
    observer.step(info)
    if state.watch is not None:
        state.watch.after_step(model, intervention, state.step, (info.flip_acc_pos, info.flip_acc_neg), observer)
    return bool(config.early_stop) and state.zero_streak >= config.early_stop


def _train_step(
    model: LoadedModel,
    task: PreparedTask,
    base: BaseOutputs,
    intervention: Intervention,
    config: TrainConfig,
    rows: Tensor,
    step: int,
) -> tuple[LossTerms, Tensor]:
    """One forward pass of the batch ``rows`` at β = +1 and β = −1 side by side; returns the
    loss terms (not yet backpropagated) and Δ per row ([2·batch], the β = +1 half first)."""
    tokens, mask = _trim(task.tokens[rows], task.attention_mask[rows])
    b, device = rows.numel(), model.device
    beta = torch.cat([torch.ones(b), -torch.ones(b)]).to(device)
    correct = task.correct_ids[rows].repeat(2).to(device)
    wrong = task.wrong_ids[rows].repeat(2).to(device)
    base_logits = base.logits[rows].repeat(2, 1).to(device)
    tokens, mask = tokens.repeat(2, 1), mask.repeat(2, 1)
    with steer(model.bridge, intervention, beta, mask=mask):
        logits = last_position_logits(model, tokens, mask, config.bf16)
    terms = objective(
        logits,
        base_logits,
        correct,
        wrong,
        beta,
        intervention.minimality(),
        margin=config.margin,
        lambda_f=config.lambda_f,
        lambda_m=config.lambda_m,
    )
    if not torch.isfinite(terms.total):
        raise TrainingDiverged(
            f"the loss became {float(terms.total.detach())} at step {step}; lower the learning rate "
            f"(now {config.lr}) or the margin"
        )
    return terms, logit_diff(logits.detach(), correct, wrong)


def _step_info(step: int, n_steps: int, terms: LossTerms, delta: Tensor, elapsed: float) -> StepInfo:
    b = delta.shape[0] // 2
    return StepInfo(
        step=step,
        n_steps=n_steps,
        loss=float(terms.total.detach()),
        effectiveness=float(terms.effectiveness.detach()),
        faithfulness=float(terms.faithfulness.detach()),
        minimality=float(terms.minimality.detach()),
        flip_acc_pos=float((delta[:b] > 0).double().mean()),
        flip_acc_neg=float((delta[b:] < 0).double().mean()),
        elapsed=elapsed,
    )
