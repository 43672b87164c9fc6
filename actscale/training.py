"""Training an intervention: only its parameters are optimised; the model stays frozen.

The unmodified model's last-position logits and activation statistics are computed once per
(model, dataset) in `base_pass` and reused by every step, every evaluation and every run of a
sweep on the same data.
"""
from __future__ import annotations

import contextlib
import math
import re
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from torch import Tensor

from actscale.errors import ActscaleError, TrainingCancelled, TrainingDiverged
from actscale.interventions import FIXED_LENGTH_METHODS, METHODS, DynScalar, Intervention, make_intervention, steer
from actscale.models import LoadedModel, last_position_logits
from actscale.objective import logit_diff, objective, split_metrics
from actscale.sites import DEFAULT_SITES, hook_name, parse_sites
from actscale.tasks import PreparedTask

TASKS = ("ioi", "ccc", "custom")


# Per-method defaults (ours, method.md §3), measured on the bundled model; see the README.
# A scalar per position learns fast with a large step; a vector per position has D times as
# many coordinates, each with a small gradient, so its L1 weight is far smaller.
METHOD_DEFAULTS: dict[str, dict[str, float | int]] = {
    "activscalar": {"steps": 18, "lr": 0.1, "batch_size": 8, "lambda_m": 0.05},
    "steervec": {"steps": 25, "lr": 0.01, "batch_size": 4, "lambda_m": 1e-4},
    "dynscalar": {"steps": 40, "lr": 0.015, "batch_size": 8, "lambda_m": 1e-3},
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run; plain data, validated on construction.

    Defaults (ours, method.md §3) are the ones the acceptance targets were measured with; see
    the README's table.
    """

    model: str = "bundled"
    task: str = "ioi"
    method: str = "activscalar"
    sites: tuple[str, ...] = DEFAULT_SITES
    steps: int | None = None             # None: the method's default (METHOD_DEFAULTS)
    lr: float | None = None
    batch_size: int | None = None
    margin: float = 2.0
    lambda_f: float = 1.0
    lambda_m: float | None = None
    seed: int = 0
    n_prompts: int = 48
    test_frac: float = 0.2
    dataset: str = ""                    # custom task: path of the CSV/JSONL file
    device: str = "auto"
    tau: float = 0.05                    # n_effective threshold (method.md §4)
    normalize: bool = True               # DynScalar: dot product with h/‖h‖ (ours)
    memory_is_correct: bool = True       # CCC: a+ is the remembered capital
    templates: tuple[str, ...] = ()      # IOI templates to use; () = all
    test_templates: tuple[str, ...] = () # IOI templates held out for the test split
    early_stop: int = 0                  # stop after this many consecutive steps with L_E = 0 (0 = off)
    schedule: str = "cosine"             # learning rate: "cosine" decay to 0 over the steps, or "constant"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sites", parse_sites(self.sites))
        if self.method in METHOD_DEFAULTS:
            # Fields left at None take the method's default, so config.json holds real values.
            for name, value in METHOD_DEFAULTS[self.method].items():
                if getattr(self, name) is None:
                    object.__setattr__(self, name, value)
        object.__setattr__(self, "templates", tuple(self.templates))
        object.__setattr__(self, "test_templates", tuple(self.test_templates))
        if self.method not in METHODS:
            raise ActscaleError(f"unknown method {self.method!r}: choose from {', '.join(METHODS)}")
        if self.schedule not in ("cosine", "constant"):
            raise ActscaleError(f"unknown schedule {self.schedule!r}: choose cosine or constant")
        if self.task not in TASKS:
            raise ActscaleError(f"unknown task {self.task!r}: choose from {', '.join(TASKS)}")
        if self.task == "custom" and not self.dataset:
            raise ActscaleError("the custom task needs a dataset file (--dataset FILE)")
        checks = [
            (self.steps >= 1, "steps must be at least 1"),
            (self.batch_size >= 1, "batch size must be at least 1"),
            (self.n_prompts >= 2, "n_prompts must be at least 2"),
            (math.isfinite(self.lr) and self.lr > 0, "the learning rate must be a positive number"),
            (math.isfinite(self.margin) and self.margin >= 0, "the margin must be a number >= 0"),
            (math.isfinite(self.lambda_f) and self.lambda_f >= 0, "lambda_f must be a number >= 0"),
            (math.isfinite(self.lambda_m) and self.lambda_m >= 0, "lambda_m must be a number >= 0"),
            (0 <= self.test_frac < 1, "test_frac must be in [0, 1)"),
            (self.tau >= 0, "tau must be >= 0"),
            (self.early_stop >= 0, "early_stop must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ActscaleError(message)

    @property
    def fixed_length(self) -> bool:
        return self.method in FIXED_LENGTH_METHODS

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known})

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes``; switching the method also switches to the new method's
        defaults for the fields not given in ``changes``."""
        data = self.to_dict()
        if changes.get("method", self.method) != self.method:
            for name in METHOD_DEFAULTS.get(changes["method"], {}):
                data[name] = None
        return TrainConfig.from_dict({**data, **changes})


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
    """The unmodified model on every prompt of a task, computed once.

    ``logits`` [n d_vocab] at each prompt's last token; ``hnorm[site]`` mean ``‖h‖`` per
    [layer pos (head)] over the training prompts; ``hdir[site]`` the mean unit activation per
    [layer pos (head) d] (so that the mean of ``cos(v, h)`` is ``v·hdir/‖v‖``).
    """

    logits: Tensor
    hnorm: dict[str, Tensor]
    hdir: dict[str, Tensor]


@dataclass
class TrainResult:
    config: TrainConfig
    intervention: Intervention
    metrics: dict[str, dict[str, float | int]]
    history: list[dict[str, float]]
    analysis: dict[str, Tensor]
    steps_run: int
    seconds: float
    stopped_early: bool


_BASE_CACHE: "OrderedDict[tuple, BaseOutputs]" = OrderedDict()
_BASE_CACHE_LOCK = threading.Lock()
_BASE_CACHE_SIZE = 4


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def base_pass(model: LoadedModel, task: PreparedTask, sites: tuple[str, ...], eval_batch: int = 16) -> BaseOutputs:
    """Run the unmodified model once over the task (cached per model, dataset and sites)."""
    key = (id(model), model.weights_hash, task.dataset_hash, tuple(sites))
    with _BASE_CACHE_LOCK:
        if key in _BASE_CACHE:
            _BASE_CACHE.move_to_end(key)
            return _BASE_CACHE[key]
    train_rows = set(task.split_indices("train").tolist())
    n, n_pos = task.tokens.shape
    sums: dict[str, Tensor] = {}
    dirs: dict[str, Tensor] = {}
    counts = torch.zeros(n_pos)
    current: dict[str, Any] = {}

    def capture(act: Tensor, hook: Any, site: str, layer: int) -> None:
        rows = current["train"]
        if rows.numel() == 0:
            return
        a = act[rows].detach().float().cpu()  # [b pos (head) d]
        mask = current["mask"][rows].float()
        norm = a.norm(dim=-1)  # [b pos (head)]
        shape_mask = mask.reshape(*mask.shape, *([1] * (norm.dim() - 2)))
        s = sums.setdefault(site, torch.zeros(model.n_layers, *norm.shape[1:]))
        s[layer] += (norm * shape_mask).sum(0)
        unit = a / norm.clamp_min(1e-6).unsqueeze(-1)
        d = dirs.setdefault(site, torch.zeros(model.n_layers, *unit.shape[1:]))
        d[layer] += (unit * shape_mask.unsqueeze(-1)).sum(0)

    hooks = [(hook_name(s, l), (lambda act, hook, s=s, l=l: capture(act, hook, s, l))) for s in sites for l in range(model.n_layers)]
    out = []
    with model.lock, torch.no_grad(), model.bridge.hooks(fwd_hooks=hooks, reset_hooks_end=True):
        for sl in _batches(n, eval_batch):
            idx = torch.arange(sl.start, sl.stop)
            current["train"] = torch.tensor([i - sl.start for i in idx.tolist() if i in train_rows], dtype=torch.long)
            current["mask"] = task.attention_mask[sl]
            counts += task.attention_mask[sl][current["train"]].float().sum(0)
            out.append(last_position_logits(model, task.tokens[sl], task.attention_mask[sl]).float().cpu())
    denom = counts.clamp_min(1)
    hnorm = {s: v / denom.reshape(1, -1, *([1] * (v.dim() - 2))) for s, v in sums.items()}
    hdir = {s: v / denom.reshape(1, -1, *([1] * (v.dim() - 2))) for s, v in dirs.items()}
    result = BaseOutputs(torch.cat(out), hnorm, hdir)
    with _BASE_CACHE_LOCK:
        _BASE_CACHE[key] = result
        while len(_BASE_CACHE) > _BASE_CACHE_SIZE:
            _BASE_CACHE.popitem(last=False)
    return result


def new_intervention(model: LoadedModel, task: PreparedTask, config: TrainConfig) -> Intervention:
    return make_intervention(
        config.method, config.sites, n_layers=model.n_layers, n_pos=task.n_pos, d_model=model.d_model,
        n_heads=model.n_heads, d_head=model.d_head, normalize=config.normalize,
    ).to(model.device)


def _trim(tokens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Drop leading columns that are padding in every row (left padding)."""
    keep = mask.any(0).nonzero()
    start = int(keep[0]) if keep.numel() else 0
    return tokens[:, start:], mask[:, start:]


def available_memory_bytes(device: str) -> int | None:
    """Memory a new allocation can get on ``device``: free memory on a CUDA GPU; on a Linux CPU
    ``MemAvailable`` from /proc/meminfo, capped by the container's cgroup limit; None where it
    cannot be told (MPS, other systems), and then nothing is checked."""
    if device.startswith("cuda"):
        try:
            return int(torch.cuda.mem_get_info(torch.device(device))[0])
        except (RuntimeError, AssertionError, ValueError):
            return None
    if device != "cpu":
        return None
    try:
        found = re.search(r"^MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    except OSError:
        return None
    if found is None:
        return None
    available = int(found.group(1)) * 1024
    try:  # in a container /proc/meminfo shows the host; the cgroup's limit is what counts
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            available = min(available, int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return max(0, available)


def step_memory_bytes(model: LoadedModel, n_pos: int, batch_size: int) -> int:
    """A rough, generous estimate of one training step's float32 activation memory.

    Both β directions run in one batch (2·batch rows). Per layer and token, the backward pass
    keeps about 32·d_model numbers (measured on the tiny models: 28-30, with an MLP twice as
    wide as d_model) plus the attention pattern, 2·n_heads·n_pos; the last position's logits
    add a few copies of d_vocab per row.
    """
    rows = 2 * batch_size
    per_layer = rows * n_pos * (32 * model.d_model + 2 * model.n_heads * n_pos)
    logits = 4 * rows * model.d_vocab
    return 4 * (model.n_layers * per_layer + logits)


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:.1f} MB"


def check_memory(model: LoadedModel, task: PreparedTask, config: TrainConfig) -> None:
    """Raise ActscaleError before training when a step would not fit in the memory available,
    instead of letting the process be killed (which takes the dashboard's server with it)."""
    available = available_memory_bytes(model.device)
    if available is None:
        return
    n_train = len(task.split_indices("train"))
    batch = min(config.batch_size, max(1, 2 * n_train))  # a batch never exceeds twice the train split
    need = step_memory_bytes(model, task.n_pos, batch)
    if need > available:
        raise ActscaleError(
            f"this batch needs about {_size(need)} of memory for a training step ({batch} prompts of "
            f"{task.n_pos} tokens, both directions) but only {_size(available)} is available on "
            f"{model.device}; lower the batch size (now {config.batch_size}) or use shorter prompts"
        )


@contextlib.contextmanager
def _holding(lock: threading.RLock, on_wait: Callable[[], None] | None):
    """Hold ``lock``; if another session holds it, tell ``on_wait`` first, then wait."""
    if not lock.acquire(blocking=False):
        if on_wait is not None:
            on_wait()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def train(model: LoadedModel, task: PreparedTask, config: TrainConfig, *,
          on_step: Callable[[StepInfo], None] | None = None, cancel: CancelFlag | None = None,
          on_wait: Callable[[], None] | None = None) -> TrainResult:
    """Train ``config.method`` on the task's train split, then evaluate on train and test.

    Both β directions share one batched forward pass. ``on_step`` gets a StepInfo after every
    step; ``cancel.is_set()`` is checked before every step and after the final evaluation and
    raises TrainingCancelled. A NaN or infinite loss raises TrainingDiverged; a batch that would
    not fit in memory raises ActscaleError before anything runs (`check_memory`). The same seed
    gives the same parameters on a CPU. ``on_wait`` is called when a step has to wait for
    another session's use of the model.
    """
    if config.fixed_length and not task.fixed_length:
        raise ActscaleError(f"{config.method} needs prompts of one length; prepare the task with fixed_length=True")
    check_memory(model, task, config)
    start = time.perf_counter()
    base = base_pass(model, task, config.sites)
    intervention = new_intervention(model, task, config)
    optimiser = torch.optim.Adam(intervention.parameters(), lr=config.lr)
    # Cosine decay (ours): with an L1 term, Adam keeps unneeded scalars jittering around 0 at
    # about the step size; a step size that shrinks to 0 lets them settle there.
    schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.steps)
                if config.schedule == "cosine" else None)
    train_idx = task.split_indices("train")
    generator = torch.Generator().manual_seed(config.seed)
    history: list[dict[str, float]] = []
    order: list[int] = []
    zero_streak = 0
    stopped_early = False
    step = 0
    device = model.device
    for step in range(1, config.steps + 1):
        if cancel is not None and cancel.is_set():
            raise TrainingCancelled(f"cancelled at step {step} of {config.steps}")
        if len(order) < min(config.batch_size, len(train_idx)):
            order += train_idx[torch.randperm(len(train_idx), generator=generator)].tolist()
        rows = torch.tensor(order[: config.batch_size])
        order = order[config.batch_size:]
        tokens, mask = _trim(task.tokens[rows], task.attention_mask[rows])
        b = rows.numel()
        beta = torch.cat([torch.ones(b), -torch.ones(b)]).to(device)
        correct = task.correct_ids[rows].repeat(2).to(device)
        wrong = task.wrong_ids[rows].repeat(2).to(device)
        base_logits = base.logits[rows].repeat(2, 1).to(device)
        with _holding(model.lock, on_wait):
            with steer(model.bridge, intervention, beta):
                logits = last_position_logits(model, tokens.repeat(2, 1), mask.repeat(2, 1))
            terms = objective(logits, base_logits, correct, wrong, beta, intervention.minimality(),
                              margin=config.margin, lambda_f=config.lambda_f, lambda_m=config.lambda_m)
            if not torch.isfinite(terms.total):
                raise TrainingDiverged(
                    f"the loss became {float(terms.total.detach())} at step {step}; lower the learning rate "
                    f"(now {config.lr}) or the margin"
                )
            optimiser.zero_grad(set_to_none=True)
            terms.total.backward()
            optimiser.step()
            if schedule is not None:
                schedule.step()
        delta = logit_diff(logits.detach(), correct, wrong)
        info = StepInfo(
            step=step, n_steps=config.steps, loss=float(terms.total.detach()), effectiveness=float(terms.effectiveness.detach()),
            faithfulness=float(terms.faithfulness.detach()), minimality=float(terms.minimality.detach()),
            flip_acc_pos=float((delta[:b] > 0).double().mean()), flip_acc_neg=float((delta[b:] < 0).double().mean()),
            elapsed=time.perf_counter() - start,
        )
        history.append({k: v for k, v in asdict(info).items() if k != "n_steps"})
        if on_step is not None:
            on_step(info)
        zero_streak = zero_streak + 1 if info.effectiveness == 0.0 else 0
        if config.early_stop and zero_streak >= config.early_stop:
            stopped_early = True
            break
    if cancel is not None and cancel.is_set():
        raise TrainingCancelled(f"cancelled after step {step} of {config.steps}")
    metrics, analysis = evaluate(model, task, intervention, config, base=base)
    if cancel is not None and cancel.is_set():  # pressed during the evaluation: still nothing stored
        raise TrainingCancelled(f"cancelled during the evaluation after step {step}")
    return TrainResult(config, intervention, metrics, history, analysis, step, time.perf_counter() - start, stopped_early)


def steered_logits(model: LoadedModel, intervention: Intervention, tokens: Tensor, mask: Tensor,
                   beta: float, eval_batch: int = 16, record: dict | None = None) -> Tensor:
    """Last-position logits of the model steered with strength ``beta``: [n d_vocab]."""
    out = []
    with model.lock, torch.no_grad():
        for sl in _batches(tokens.shape[0], eval_batch):
            t, m = (tokens[sl], mask[sl]) if isinstance(intervention, DynScalar) else _trim(tokens[sl], mask[sl])
            if isinstance(intervention, DynScalar):
                intervention._record = {} if record is not None else None
            with steer(model.bridge, intervention, beta, batch=t.shape[0]):
                out.append(last_position_logits(model, t, m).float().cpu())
            if record is not None and isinstance(intervention, DynScalar):
                for key, value in intervention._record.items():
                    record.setdefault(key, []).append(value)
                intervention._record = None
    return torch.cat(out)


def evaluate(model: LoadedModel, task: PreparedTask, intervention: Intervention, config: TrainConfig,
             base: BaseOutputs | None = None, beta: float = 1.0) -> tuple[dict[str, dict], dict[str, Tensor]]:
    """Every metric of method.md §4 on each split the task has, plus the tensors the dashboard
    draws without a model (``hnorm.<site>``, ``cos.<site>`` for SteerVec, ``dynalpha.<site>``
    for DynScalar). ``beta`` scales both directions (evaluated at +beta and -beta)."""
    base = base or base_pass(model, task, config.sites)
    record: dict | None = {} if isinstance(intervention, DynScalar) else None
    pos = steered_logits(model, intervention, task.tokens, task.attention_mask, abs(beta), record=record)
    neg = steered_logits(model, intervention, task.tokens, task.attention_mask, -abs(beta))
    l1 = float(intervention.minimality().detach())
    n_eff = intervention.n_effective(base.hnorm, config.tau)
    metrics = {}
    for split in ("train", "test"):
        idx = task.split_indices(split)
        if idx.numel() == 0:
            continue
        metrics[split] = split_metrics(
            base.logits[idx], pos[idx], neg[idx], task.correct_ids[idx], task.wrong_ids[idx],
            l1=l1, n_params=intervention.n_params, n_effective=n_eff,
        )
    analysis = {f"hnorm.{s}": v.contiguous() for s, v in base.hnorm.items()}
    # Per-prompt Δ, so the dashboard's per-example table needs no model.
    analysis["delta.base"] = logit_diff(base.logits, task.correct_ids, task.wrong_ids).contiguous()
    analysis["delta.pos"] = logit_diff(pos, task.correct_ids, task.wrong_ids).contiguous()
    analysis["delta.neg"] = logit_diff(neg, task.correct_ids, task.wrong_ids).contiguous()
    if intervention.method == "steervec":
        for site in intervention.sites:
            v = intervention.tensor("vector", site).detach().cpu()
            cos = (v * base.hdir[site]).sum(-1) / v.norm(dim=-1).clamp_min(1e-12)
            analysis[f"cos.{site}"] = cos.contiguous()
    if record:
        for site in intervention.sites:
            per_layer = [torch.cat(record[(site, layer)]) for layer in range(model.n_layers)]
            analysis[f"dynalpha.{site}"] = torch.stack(per_layer, dim=1).float().contiguous()  # [n layer pos (head)]
    return metrics, analysis
