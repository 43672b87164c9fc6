"""What a run reads from its validation prompts while it trains: the flip rates against its
target (the end of a cycle, and the first step that reaches it: the run's first result while the
training goes on), the effectiveness early stopping counts, and the outcome a bundle stores.

The training prompts stand in where a task has none (`PreparedTask.choice_split`). Nothing here
takes a gradient or draws a random number, so reading the validation prompts never changes what
a run learns.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor

from actscale.engine.config import TrainConfig
from actscale.engine.evaluation import BaseOutputs, steered_logits
from actscale.engine.interventions import Intervention
from actscale.engine.models import LoadedModel
from actscale.engine.objective import effectiveness, flip_metrics, logit_diff
from actscale.engine.observer import RunObserver, holding
from actscale.engine.tasks import PreparedTask

# A run looks for the step that reaches its target (`TargetWatch`) among its first this many
# steps, after each of them: a run that gets there later shows its first result when trained,
# and one that never does pays for no more than these looks (each one or two forward passes of
# the validation prompts, a quarter to half a training step).
TARGET_CHECKS = 6


class TargetWatch:
    """The first step after which the validation prompts flip at least ``config.target`` both
    ways, among the run's first TARGET_CHECKS steps, told to the observer at once
    (`RunObserver.target_reached`) with those prompts' `flip_metrics` (base rate, n, intervals):
    the run's first result, while the training goes on for faithfulness and minimality.
    ``step`` and ``seconds`` (since ``start``, the run's start) say when it was found."""

    def __init__(self, task: PreparedTask, base: BaseOutputs, config: TrainConfig, start: float) -> None:
        self.task, self.base, self.config, self.start = task, base, config, start
        self.checks = 0
        self.step: int | None = None
        self.seconds: float | None = None

    def after_step(
        self,
        model: LoadedModel,
        intervention: Intervention,
        step: int,
        batch_flips: tuple[float, float],
        observer: RunObserver,
    ) -> None:
        """Tell ``observer`` if ``step`` (just taken; ``batch_flips``: its training batch's flip
        rates at β = +1 and β = −1) is the first to reach the target; nothing where it was
        reached before or the step is past the ones looked at."""
        if self.step is not None or step > TARGET_CHECKS:
            return
        self.checks += 1
        metrics = self._reached(model, intervention, batch_flips, observer)
        if metrics is not None:
            self.step, self.seconds = step, time.perf_counter() - self.start
            observer.target_reached(step, self.task.choice_split, metrics)

    def _reached(
        self, model: LoadedModel, intervention: Intervention, batch_flips: tuple[float, float], observer: RunObserver
    ) -> dict[str, Any] | None:
        """The validation prompts' `flip_metrics` where both directions reach the target, else
        None. A pass per direction, as the evaluation runs them (so the same figures), the one the
        step's batch flipped less first: where it falls short, the other is not run."""
        task, idx = self.task, self.task.split_indices(self.task.choice_split)
        tokens, mask = task.tokens[idx], task.attention_mask[idx]
        correct, wrong = task.correct_ids[idx], task.wrong_ids[idx]
        logits: dict[float, Tensor] = {}
        for beta in (1.0, -1.0) if batch_flips[0] <= batch_flips[1] else (-1.0, 1.0):
            with holding(model.lock, observer):  # a wait for another session's use is told
                logits[beta] = steered_logits(model, intervention, tokens, mask, beta, autocast=self.config.bf16)
            if _flip_rate(logits[beta], beta, correct, wrong) < self.config.target:
                return None
        return flip_metrics(self.base.logits[idx], logits[1.0], logits[-1.0], correct, wrong, task.groups_of(idx))

    def timing(self) -> dict[str, float]:
        """The run's timing entries: ``target_s`` and ``target_step`` where the target was seen."""
        if self.step is None or self.seconds is None:
            return {}
        return {"target_s": round(self.seconds, 3), "target_step": self.step}


def target_outcome(config: TrainConfig, metrics: dict[str, dict[str, Any]], cycles_run: int) -> dict[str, Any] | None:
    """Whether a run that trains until its validation target (more than one cycle allowed)
    reached it: the flip rates of the split its choices read (validation, or training without
    any) against ``config.target``, with the steps and cycles it took; None for a run of one
    cycle, whose steps were given and which has no target. Stored in the bundle
    (``info.target``) for the CLI, the Train page and the report to say so when it was not."""
    if config.cycles == 1:
        return None
    split = "val" if metrics.get("val", {}).get("n_prompts") else "train"
    pos, neg = float(metrics[split]["flip_acc_pos"]), float(metrics[split]["flip_acc_neg"])
    return {
        "target": config.target,
        "split": split,
        "n": int(metrics[split]["n_prompts"]),
        "flip_acc_pos": pos,
        "flip_acc_neg": neg,
        "met": min(pos, neg) >= config.target,
        "cycles_run": cycles_run,
        "cycles": config.cycles,
        "steps": config.steps,
    }


def validation_flips(
    model: LoadedModel, task: PreparedTask, intervention: Intervention, config: TrainConfig
) -> tuple[float, float]:
    """The flip rates at β = +1 and β = −1 on the validation prompts (the training prompts for a
    run without any), no gradient."""
    idx = task.split_indices(task.choice_split)
    pos, neg = _steered_pair(model, task, intervention, config, idx)
    correct, wrong = task.correct_ids[idx], task.wrong_ids[idx]
    return _flip_rate(pos, 1.0, correct, wrong), _flip_rate(neg, -1.0, correct, wrong)


def _flip_rate(logits: Tensor, beta: float, correct: Tensor, wrong: Tensor) -> float:
    """The share of prompts flipped at ``beta`` (±1): Δ > 0 at +1, Δ < 0 at −1 (docs/method.md
    §4), as k / n in float64."""
    return int((logit_diff(logits, correct, wrong) * beta > 0).sum()) / logits.shape[0]


def _steered_pair(
    model: LoadedModel, task: PreparedTask, intervention: Intervention, config: TrainConfig, idx: Tensor
) -> tuple[Tensor, Tensor]:
    """The last position's logits of the prompts ``idx`` at β = +1 and β = −1 (no gradient)."""
    tokens, mask = task.tokens[idx], task.attention_mask[idx]
    with torch.no_grad():
        return (
            steered_logits(model, intervention, tokens, mask, 1.0, autocast=config.bf16),
            steered_logits(model, intervention, tokens, mask, -1.0, autocast=config.bf16),
        )


def validation_effectiveness(
    model: LoadedModel, task: PreparedTask, intervention: Intervention, config: TrainConfig
) -> float | None:
    """``L_E`` on the validation prompts at β = ±1 (no gradient), or None without any."""
    idx = task.split_indices("val")
    if idx.numel() == 0:
        return None
    pos, neg = _steered_pair(model, task, intervention, config, idx)
    correct, wrong = task.correct_ids[idx], task.wrong_ids[idx]
    hinge = torch.cat(
        [
            effectiveness(logit_diff(pos, correct, wrong), torch.ones(len(idx)), config.margin),
            effectiveness(logit_diff(neg, correct, wrong), -torch.ones(len(idx)), config.margin),
        ]
    )
    return float(hinge.mean())
