"""Evaluating an intervention: the unmodified model's pass (`base_pass`, computed once per
(model, dataset) and reused by every step, every evaluation and every run of a sweep on the
same data), the steered logits, and every metric of docs/method.md §4 per split. Nothing here
depends on which method made the run: the method's own behaviour comes from its class."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from actscale.engine.config import TrainConfig, checked_beta  # noqa: F401 - TrainConfig re-exported: `from actscale.engine.training import TrainConfig`
from actscale.engine.interventions import Intervention, at_sites, steer
from actscale.engine.models import LoadedModel, last_position_logits
from actscale.engine.objective import (
    Minimality,
    flip_metrics,
    logit_diff,
    rate_hits,
    split_metrics,
    wilson_interval,
)
from actscale.engine.tasks import SPLITS, PreparedTask


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


_BASE_CACHE: OrderedDict[tuple, BaseOutputs] = OrderedDict()
_BASE_CACHE_LOCK = threading.Lock()
_BASE_CACHE_SIZE = 4
# Prompts per forward pass. The unmodified model's first pass sums the training prompts'
# activation statistics batch by batch, so its batches are part of every run's numbers and stay
# at 16. A pass that only yields logits gives the same bits at any batch size (checked on a CPU
# with one and two threads) and runs faster in larger ones: the evaluation's passes take 32
# (docs/measured.md, "The evaluation's batch").
STATS_BATCH = 16
EVAL_BATCH = 32


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

    def capture(self, act: Tensor, site: str, layer: int) -> None:
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
    stats_batch: int = STATS_BATCH,
    autocast: bool = False,
    splits: tuple[str, ...] | None = None,
) -> BaseOutputs:
    """Run the unmodified model over the task's prompts of ``splits`` (None: all) and the
    training prompts (the activation statistics are theirs), cached per model, dataset, sites
    and precision (a run under bfloat16 autocast compares itself with the model under
    autocast). A later call for more splits computes only the rows still missing: training
    asks for the training and validation prompts, and the test prompts' pass comes with their
    evaluation, after the run's first result (in batches of `EVAL_BATCH`: no statistics then)."""
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
        result = _base_rows(model, task, sites, wanted.nonzero().flatten(), stats_batch, autocast, stats=True)
    else:  # the statistics are there already: only the missing rows' logits
        assert cached.computed is not None  # `has` was False
        missing = (wanted & ~cached.computed).nonzero().flatten()
        more = _base_rows(model, task, sites, missing, EVAL_BATCH, autocast, stats=False)
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
    logits = torch.zeros(task.tokens.shape[0], model.d_vocab)
    computed = torch.zeros(task.tokens.shape[0], dtype=torch.bool)
    with model.lock, torch.no_grad(), at_sites(model.bridge, sites if stats else (), model.n_layers, recorder.capture):
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


def steered_logits(
    model: LoadedModel,
    intervention: Intervention,
    tokens: Tensor,
    mask: Tensor,
    beta: float,
    eval_batch: int = EVAL_BATCH,
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
    beta = checked_beta(beta, signed=False)
    record: dict[tuple[str, int], list[Tensor]] | None = {} if intervention.records else None
    first_split, named = _evaluation_parts(task)
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
        pos_parts.append(steered_logits(model, intervention, tokens, mask, beta, record=record, autocast=bf16))
        neg_parts.append(steered_logits(model, intervention, tokens, mask, -beta, autocast=bf16))
        seconds[name] = time.perf_counter() - started
        if k == 0 and on_result is not None and name == "eval_s":
            correct, wrong = task.correct_ids[idx], task.wrong_ids[idx]
            groups = task.groups_of(idx)
            on_result(first_split, flip_metrics(base.logits[idx], pos_parts[0], neg_parts[0], correct, wrong, groups))
    if base is None:  # a task without a single prompt
        base = base_pass(model, task, config.sites, autocast=config.bf16)
    order = torch.argsort(torch.cat(parts))  # back to the task's row order
    pos, neg = torch.cat(pos_parts)[order], torch.cat(neg_parts)[order]
    if record is not None:
        record = {key: [torch.cat(chunks)[order]] for key, chunks in record.items()}
    return _evaluation(task, intervention, config, base, pos, neg, record, seconds)


def _evaluation_parts(task: PreparedTask) -> tuple[str, list[tuple[str, Tensor]]]:
    """The split read first (validation; training where there is none) and the rows of the two
    parts, named by the timing key each part's seconds go to."""
    first_split = task.choice_split
    first = task.split_indices(first_split)
    in_first = torch.zeros(task.tokens.shape[0], dtype=torch.bool)
    in_first[first] = True
    named = [
        (name, idx)
        for name, idx in (("eval_s", first), ("rest_eval_s", (~in_first).nonzero().flatten()))
        if idx.numel()
    ]
    return first_split, named


def _evaluation(
    task: PreparedTask,
    intervention: Intervention,
    config: TrainConfig,
    base: BaseOutputs,
    pos: Tensor,
    neg: Tensor,
    record: dict[tuple[str, int], list[Tensor]] | None,
    seconds: dict[str, float],
) -> Evaluation:
    """The metrics per split and the analysis arrays, from the steered logits in row order."""
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
            groups = task.groups_of(idx)
            metrics[split] = split_metrics(
                base.logits[idx], pos[idx], neg[idx], task.correct_ids[idx], task.wrong_ids[idx], minimality, groups
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
    n_components = n_effective = n_cells = n_cells_effective = 0
    for site in intervention.sites:
        magnitude = method.relative_magnitude(params, analysis, site, train_tokens).detach().float().contiguous()
        analysis[f"magnitude.{site}"] = magnitude
        n_components += magnitude.numel()
        n_effective += int((magnitude > tau).sum())
        cells = method.cell_magnitude(params, analysis, site, train_tokens).detach().float()
        n_cells += int(cells.isfinite().sum())
        n_cells_effective += int((cells > tau).sum())
    return Minimality(
        float(intervention.minimality().detach()),
        intervention.n_params,
        n_components,
        n_effective,
        n_cells,
        n_cells_effective,
    )


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
        for name, hits in rate_hits(d_base[idx], d_pos[idx], d_neg[idx]):
            k = int(hits.sum())
            row[name] = k / idx.numel()
            row[f"{name}_ci95"] = [round(x, 6) for x in wilson_interval(k, int(idx.numel()))]
        rows.append(row)
    return rows
