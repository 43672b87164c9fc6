"""Training an intervention: only its parameters are optimised; the model stays frozen.

The unmodified model's last-position logits and activation statistics are computed once per
(model, dataset) in `base_pass` and reused by every step, every evaluation and every run of a
sweep on the same data. Nothing here depends on which method is trained: the method's own
behaviour comes from its class (`interventions`).
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from actscale.engine.config import TrainConfig  # noqa: F401 - re-exported: `from actscale.engine.training import TrainConfig`
from actscale.engine.interventions import Intervention, ModelDims, make_intervention, steer
from actscale.engine.models import LoadedModel, last_position_logits
from actscale.engine.objective import (
    LossTerms,
    Minimality,
    effectiveness,
    flip_metrics,
    logit_diff,
    objective,
    split_metrics,
    wilson_interval,
)
from actscale.engine.resources import check_memory, resolve_autocast
from actscale.engine.sites import hook_name
from actscale.engine.tasks import SPLITS, PreparedTask
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
class BaseOutputs:
    """The unmodified model on the prompts of a task, computed once.

    ``logits`` [n d_vocab] at each prompt's last token, for the rows marked in ``computed``
    ([n] bool; None: every row; the other rows hold zeros until `base_pass` completes them);
    ``hnorm[site]`` mean ``‖h‖`` per [layer pos (head)] over the training prompts;
    ``hdir[site]`` the mean unit activation per [layer pos (head) d] (so that the mean of
    ``cos(v, h)`` is ``v·hdir/‖v‖``).
    """

    logits: Tensor
    hnorm: dict[str, Tensor]
    hdir: dict[str, Tensor]
    computed: Tensor | None = None

    def has(self, rows: Tensor) -> bool:
        """Whether the logits of ``rows`` (long indices) are computed."""
        return self.computed is None or bool(self.computed[rows].all())


@dataclass
class Evaluation:
    """Every metric of docs/method.md §4 per split, the tensors the dashboard draws without a model
    (the bundle's ``analysis.safetensors``) and the flip rates per prompt group."""

    metrics: dict[str, dict[str, Any]]
    analysis: dict[str, Tensor]
    groups: list[dict[str, Any]]
    # Seconds of the steered passes: ``eval_s`` the validation prompts (the first result; the
    # training prompts where there are none), ``rest_eval_s`` the others, evaluated after them.
    seconds: dict[str, float] = field(default_factory=dict)


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


_BASE_CACHE: OrderedDict[tuple, BaseOutputs] = OrderedDict()
_BASE_CACHE_LOCK = threading.Lock()
_BASE_CACHE_SIZE = 4


def _batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


class _ActivationStats:
    """Sums of ``‖h‖`` and of ``h/‖h‖`` per site, [layer pos (head)], over the real tokens of
    the training rows of each batch; `means` divides by the number of such tokens per position."""

    def __init__(self, n_layers: int, n_pos: int):
        self.n_layers = n_layers
        self.norms: dict[str, Tensor] = {}
        self.dirs: dict[str, Tensor] = {}
        self.counts = torch.zeros(n_pos)
        self.rows = torch.zeros(0, dtype=torch.long)  # the training rows of the current batch
        self.mask = torch.zeros(0, n_pos)  # the current batch's attention mask

    def next_batch(self, rows: Tensor, mask: Tensor) -> None:
        self.rows, self.mask = rows, mask
        self.counts += mask[rows].float().sum(0)

    def capture(self, act: Tensor, hook: Any, *, site: str, layer: int) -> None:  # noqa: ARG002 - a TransformerLens hook's signature
        if self.rows.numel() == 0:
            return
        a = act[self.rows].detach().float().cpu()  # [b pos (head) d]
        mask = self.mask[self.rows].float()
        norm = a.norm(dim=-1)  # [b pos (head)]
        shape_mask = mask.reshape(*mask.shape, *([1] * (norm.dim() - 2)))
        sums = self.norms.setdefault(site, torch.zeros(self.n_layers, *norm.shape[1:]))
        sums[layer] += (norm * shape_mask).sum(0)
        unit = a / norm.clamp_min(1e-6).unsqueeze(-1)
        dirs = self.dirs.setdefault(site, torch.zeros(self.n_layers, *unit.shape[1:]))
        dirs[layer] += (unit * shape_mask.unsqueeze(-1)).sum(0)

    def means(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        denom = self.counts.clamp_min(1)

        def mean(v: Tensor) -> Tensor:
            return v / denom.reshape(1, -1, *([1] * (v.dim() - 2)))

        return {s: mean(v) for s, v in self.norms.items()}, {s: mean(v) for s, v in self.dirs.items()}


def base_pass(
    model: LoadedModel,
    task: PreparedTask,
    sites: tuple[str, ...],
    eval_batch: int = 16,
    autocast: bool = False,
    splits: tuple[str, ...] | None = None,
) -> BaseOutputs:
    """Run the unmodified model over the task's prompts of ``splits`` (None: all) and the
    training prompts (the activation statistics are theirs), cached per model, dataset, sites
    and precision (a run under bfloat16 autocast compares itself with the model under
    autocast). A later call for more splits computes only the rows still missing: training
    asks for the training and validation prompts, and the test prompts' pass comes with their
    evaluation, after the run's first result."""
    # n_pos: the same prompts padded wider (evaluating a run on another file) give other statistics' shapes.
    key = (id(model), model.weights_hash, task.dataset_hash, task.n_pos, tuple(sites), autocast)
    n = task.tokens.shape[0]
    wanted = torch.ones(n, dtype=torch.bool)
    if splits is not None:
        wanted[:] = False
        for split in (*splits, "train"):
            wanted[task.split_indices(split)] = True
    with _BASE_CACHE_LOCK:
        cached = _BASE_CACHE.get(key)
        if cached is not None:
            _BASE_CACHE.move_to_end(key)
            if cached.has(wanted.nonzero().flatten()):
                return cached
    if cached is None:
        result = _base_rows(model, task, sites, wanted.nonzero().flatten(), eval_batch, autocast, stats=True)
    else:  # the statistics are there already: only the missing rows' logits
        assert cached.computed is not None  # `has` was False
        missing = (wanted & ~cached.computed).nonzero().flatten()
        more = _base_rows(model, task, sites, missing, eval_batch, autocast, stats=False)
        logits = cached.logits.clone()
        logits[missing] = more.logits[missing]
        computed = cached.computed | wanted
        result = BaseOutputs(logits, cached.hnorm, cached.hdir, None if bool(computed.all()) else computed)
    with _BASE_CACHE_LOCK:
        _BASE_CACHE[key] = result
        while len(_BASE_CACHE) > _BASE_CACHE_SIZE:
            _BASE_CACHE.popitem(last=False)
    return result


def _base_rows(
    model: LoadedModel,
    task: PreparedTask,
    sites: tuple[str, ...],
    todo: Tensor,
    eval_batch: int,
    autocast: bool,
    stats: bool,
) -> BaseOutputs:
    """The unmodified model's logits on the rows ``todo`` (batches of ``eval_batch`` at the
    task's full width), and with ``stats`` the training prompts' activation statistics."""
    train_rows = set(task.split_indices("train").tolist())
    recorder = _ActivationStats(model.n_layers, task.n_pos)
    hooks = [
        (hook_name(s, layer), functools.partial(recorder.capture, site=s, layer=layer))
        for s in (sites if stats else ())
        for layer in range(model.n_layers)
    ]
    logits = torch.zeros(task.tokens.shape[0], model.d_vocab)
    computed = torch.zeros(task.tokens.shape[0], dtype=torch.bool)
    with model.lock, torch.no_grad(), model.bridge.hooks(fwd_hooks=hooks, reset_hooks_end=True):
        for sl in _batches(todo.numel(), eval_batch):
            rows = todo[sl]
            mask = task.attention_mask[rows]
            in_train = [j for j, i in enumerate(rows.tolist()) if i in train_rows]
            recorder.next_batch(torch.tensor(in_train, dtype=torch.long), mask)
            out = last_position_logits(model, task.tokens[rows], mask, autocast).float().cpu()
            logits[rows] = out
            computed[rows] = True
    hnorm, hdir = recorder.means()
    return BaseOutputs(logits, hnorm, hdir, None if bool(computed.all()) else computed)


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


@contextlib.contextmanager
def _holding(lock: threading.RLock, on_wait: Callable[[], None] | None) -> Iterator[None]:
    """Hold ``lock``; if another session holds it, tell ``on_wait`` first, then wait."""
    if not lock.acquire(blocking=False):
        if on_wait is not None:
            on_wait()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


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


def _check_cancel(cancel: CancelFlag | None, message: str) -> None:
    if cancel is not None and cancel.is_set():
        raise TrainingCancelled(message)


def train(
    model: LoadedModel,
    task: PreparedTask,
    config: TrainConfig,
    *,
    on_step: Callable[[StepInfo], None] | None = None,
    cancel: CancelFlag | None = None,
    on_wait: Callable[[], None] | None = None,
    on_result: Callable[[str, dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``config.method`` on the task's train split, then evaluate every split.

    Both β directions share one batched forward pass. ``on_step`` gets a StepInfo after every
    step; ``cancel.is_set()`` is checked before every step and after the final evaluation and
    raises TrainingCancelled. A NaN or infinite loss raises TrainingDiverged; a batch that would
    not fit in memory raises ActscaleError before anything runs (`check_memory`). The same seed
    gives the same parameters on a CPU. ``on_wait`` is called when a step has to wait for
    another session's use of the model. ``on_result(split, metrics)`` gets the validation
    prompts' flip rates as soon as they are evaluated, before the other splits (`evaluate`).
    """
    config = resolve_autocast(config, model)
    if config.one_length and not task.fixed_length:
        raise ActscaleError(f"{config.method} needs prompts of one length; prepare the task with fixed_length=True")
    check_memory(model, task, config)
    start = time.perf_counter()
    # The test prompts' base pass comes with their evaluation, after the run's first result.
    base = base_pass(model, task, config.sites, autocast=config.bf16, splits=("train", "val"))
    base_done = time.perf_counter()
    intervention = new_intervention(model, task, config)
    optimiser = torch.optim.Adam(intervention.parameters(), lr=config.lr)
    # Cosine decay (ours): with an L1 term, Adam keeps unneeded scalars jittering around 0 at
    # about the step size; a step size that shrinks to 0 lets them settle there.
    schedule = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.steps)
        if config.schedule == "cosine"
        else None
    )
    order = _BatchOrder(task.split_indices("train"), config.batch_size, config.seed)
    history: list[dict[str, float]] = []
    zero_streak, stopped_early, step = 0, False, 0
    for step in range(1, config.steps + 1):
        _check_cancel(cancel, f"cancelled at step {step} of {config.steps}")
        with _holding(model.lock, on_wait):
            terms, delta = _train_step(model, task, base, intervention, config, order.next(), step)
            optimiser.zero_grad(set_to_none=True)
            terms.total.backward()
            optimiser.step()
            if schedule is not None:
                schedule.step()
        info = _step_info(step, config.steps, terms, delta, time.perf_counter() - start)
        row: dict[str, float] = {k: v for k, v in asdict(info).items() if k != "n_steps"}
        if config.early_stop:
            # The stopping rule reads the validation prompts (the training batch where there are none).
            val_loss = validation_effectiveness(model, task, intervention, config)
            if val_loss is not None:
                row["val_effectiveness"] = val_loss
            zero_streak = zero_streak + 1 if (info.effectiveness if val_loss is None else val_loss) == 0.0 else 0
        history.append(row)
        if on_step is not None:
            on_step(info)
        if config.early_stop and zero_streak >= config.early_stop:
            stopped_early = True
            break
    _check_cancel(cancel, f"cancelled after step {step} of {config.steps}")
    steps_done = time.perf_counter()
    result = evaluate(model, task, intervention, config, base=base, on_result=on_result)
    _check_cancel(cancel, f"cancelled during the evaluation after step {step}")  # nothing stored either
    return TrainResult(
        config,
        intervention,
        result.metrics,
        history,
        result.analysis,
        result.groups,
        step,
        time.perf_counter() - start,
        stopped_early,
        {
            "base_pass_s": round(base_done - start, 3),
            "steps_s": round(steps_done - base_done, 3),
            **{k: round(v, 3) for k, v in result.seconds.items()},
        },
    )


def validation_effectiveness(
    model: LoadedModel, task: PreparedTask, intervention: Intervention, config: TrainConfig
) -> float | None:
    """``L_E`` on the validation prompts at β = ±1 (no gradient), or None without any."""
    idx = task.split_indices("val")
    if idx.numel() == 0:
        return None
    tokens, mask = task.tokens[idx], task.attention_mask[idx]
    pos = steered_logits(model, intervention, tokens, mask, 1.0, autocast=config.bf16)
    neg = steered_logits(model, intervention, tokens, mask, -1.0, autocast=config.bf16)
    correct, wrong = task.correct_ids[idx], task.wrong_ids[idx]
    hinge = torch.cat(
        [
            effectiveness(logit_diff(pos, correct, wrong), torch.ones(len(idx)), config.margin),
            effectiveness(logit_diff(neg, correct, wrong), -torch.ones(len(idx)), config.margin),
        ]
    )
    return float(hinge.mean())


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


def steered_logits(
    model: LoadedModel,
    intervention: Intervention,
    tokens: Tensor,
    mask: Tensor,
    beta: float,
    eval_batch: int = 16,
    record: dict[tuple[str, int], list[Tensor]] | None = None,
    autocast: bool = False,
) -> Tensor:
    """Last-position logits of the model steered with strength ``beta``: [n d_vocab].

    ``record``, when given, collects what the method records, per (site, layer) a list with one
    tensor per batch. Batches keep the task's full (left-padded) width, so recorded tensors of
    different batches line up."""
    out = []
    with model.lock, torch.no_grad():
        for sl in _batches(tokens.shape[0], eval_batch):
            t, m = tokens[sl], mask[sl]
            batch_record: dict[tuple[str, int], Tensor] | None = {} if record is not None else None
            with steer(model.bridge, intervention, beta, batch=t.shape[0], record=batch_record, mask=m):
                out.append(last_position_logits(model, t, m, autocast).float().cpu())
            if record is not None and batch_record is not None:
                for key, value in batch_record.items():
                    record.setdefault(key, []).append(value)
    return torch.cat(out)


def evaluate(
    model: LoadedModel,
    task: PreparedTask,
    intervention: Intervention,
    config: TrainConfig,
    base: BaseOutputs | None = None,
    beta: float = 1.0,
    on_result: Callable[[str, dict[str, Any]], None] | None = None,
) -> Evaluation:
    """Every metric of docs/method.md §4 on each split the task has, plus the tensors the dashboard
    draws without a model: ``hnorm.<site>``, per-prompt ``delta.*``, each component's relative
    size ``magnitude.<site>`` (what defines ``n_effective``) and whatever the method adds
    (`Intervention.analysis_arrays`). ``beta`` scales both directions (evaluated at +beta and
    -beta). The validation prompts are evaluated first (a trained run's first result; the
    training prompts where there are none), then the others; ``on_result(split, metrics)`` gets
    the first part's `flip_metrics` as soon as they exist (its minimality figures need the
    training prompts, so they come with the rest)."""
    config = resolve_autocast(config, model)
    record: dict[tuple[str, int], list[Tensor]] | None = {} if intervention.records else None
    n = task.tokens.shape[0]
    first_split = "val" if task.split_indices("val").numel() else "train"
    first = task.split_indices(first_split)
    in_first = torch.zeros(n, dtype=torch.bool)
    in_first[first] = True
    named = [
        (name, idx)
        for name, idx in (("eval_s", first), ("rest_eval_s", (~in_first).nonzero().flatten()))
        if idx.numel()
    ]
    parts = [idx for _, idx in named]
    pos_parts, neg_parts, seconds = [], [], {}
    for k, (name, idx) in enumerate(named):
        started = time.perf_counter()
        if base is None or not base.has(idx):  # each part's base pass is timed with it
            # Every row so far, not only this part's: a cached partial pass may have been
            # evicted meanwhile (another session's task), and this one must hold them all.
            so_far = torch.cat(parts[: k + 1])
            base = base_pass(model, task, config.sites, autocast=config.bf16, splits=_splits_of(task, so_far))
        tokens, mask, bf16 = task.tokens[idx], task.attention_mask[idx], config.bf16
        pos_parts.append(steered_logits(model, intervention, tokens, mask, abs(beta), record=record, autocast=bf16))
        neg_parts.append(steered_logits(model, intervention, tokens, mask, -abs(beta), autocast=bf16))
        seconds[name] = time.perf_counter() - started
        if k == 0 and on_result is not None and name == "eval_s":
            correct, wrong = task.correct_ids[idx], task.wrong_ids[idx]
            on_result(first_split, flip_metrics(base.logits[idx], pos_parts[0], neg_parts[0], correct, wrong))
    if base is None:  # a task without a single prompt
        base = base_pass(model, task, config.sites, autocast=config.bf16)
    order = torch.argsort(torch.cat(parts))  # back to the task's row order
    pos, neg = torch.cat(pos_parts)[order], torch.cat(neg_parts)[order]
    if record is not None:
        record = {key: [torch.cat(chunks)[order]] for key, chunks in record.items()}
    analysis = {f"hnorm.{s}": v.contiguous() for s, v in base.hnorm.items()}
    # Per-prompt Δ, so the dashboard's per-example table needs no model.
    analysis["delta.base"] = logit_diff(base.logits, task.correct_ids, task.wrong_ids).contiguous()
    analysis["delta.pos"] = logit_diff(pos, task.correct_ids, task.wrong_ids).contiguous()
    analysis["delta.neg"] = logit_diff(neg, task.correct_ids, task.wrong_ids).contiguous()
    analysis.update(intervention.analysis_arrays(base.hdir, record or {}))
    minimality = _minimality(intervention, task, analysis, config.tau)
    metrics = {}
    for split in SPLITS:
        idx = task.split_indices(split)
        if idx.numel():
            metrics[split] = split_metrics(
                base.logits[idx], pos[idx], neg[idx], task.correct_ids[idx], task.wrong_ids[idx], minimality
            )
    return Evaluation(metrics, analysis, group_metrics(task, analysis), seconds)


def _splits_of(task: PreparedTask, rows: Tensor) -> tuple[str, ...]:
    """The splits the rows ``rows`` belong to."""
    return tuple(sorted({task.examples[i].split for i in rows.tolist()}))


def _minimality(intervention: Intervention, task: PreparedTask, analysis: dict[str, Tensor], tau: float) -> Minimality:
    """The run's minimality figures; adds ``magnitude.<site>`` to ``analysis``."""
    params = intervention.named_tensors()
    train_tokens = train_token_mask(task.attention_mask, task.split_indices("train"))
    method = type(intervention)
    n_components = n_effective = 0
    for site in intervention.sites:
        magnitude = method.relative_magnitude(params, analysis, site, train_tokens).detach().float().contiguous()
        analysis[f"magnitude.{site}"] = magnitude
        n_components += magnitude.numel()
        n_effective += int((magnitude > tau).sum())
    return Minimality(float(intervention.minimality().detach()), intervention.n_params, n_components, n_effective)


def train_token_mask(attention_mask: Tensor, train_rows: Tensor) -> Tensor:
    """[n pos] bool: the real tokens of the training prompts."""
    mask = torch.zeros(attention_mask.shape, dtype=torch.bool)
    mask[train_rows] = attention_mask[train_rows].bool()
    return mask


def group_metrics(task: PreparedTask, analysis: dict[str, Tensor]) -> list[dict[str, Any]]:
    """Flip rates with their base rate and interval per (split, group) — per template family,
    country or the dataset's own groups — for prompts that carry a group."""
    d_base, d_pos, d_neg = analysis["delta.base"], analysis["delta.pos"], analysis["delta.neg"]
    rows = []
    keys = sorted({(e.split, e.group) for e in task.examples if e.group}, key=lambda k: (SPLITS.index(k[0]), k[1]))
    for split, group in keys:
        idx = torch.tensor([i for i, e in enumerate(task.examples) if e.split == split and e.group == group])
        row: dict[str, Any] = {"split": split, "group": group, "n_prompts": int(idx.numel())}
        for name, hits in (
            ("acc_base", d_base[idx] > 0),
            ("flip_acc_pos", d_pos[idx] > 0),
            ("flip_acc_neg", d_neg[idx] < 0),
        ):
            k = int(hits.sum())
            row[name] = k / idx.numel()
            row[f"{name}_ci95"] = [round(x, 6) for x in wilson_interval(k, int(idx.numel()))]
        rows.append(row)
    return rows
