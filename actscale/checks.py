"""Does the map mean anything? The checks of docs/method.md §7, from a stored run and the model.

A trained run's map is a claim that *these* components carry the behaviour. Each check tests
it with forward passes only, on the same test prompts (paired, so the curves compare like with
like):

- **sufficiency**: keep the top-k components (by the relative magnitude that defines
  ``n_effective``), zero the rest, for k on a log grid; ``k90`` is the smallest k whose mean
  flip rate reaches 90% of the full run's (bisected between grid points);
- **necessity**: the full run without its top-k (k = 1, 4, 16, …);
- **random control**: the top-k's parameters moved onto k random components of the same sites
  (keeping each one's relative magnitude), ``draws`` times, at k90;
- **ablation**: zero- and mean-ablation (mean over the training prompts) of the same top-k
  components, without any scaling: what a classical knock-out says;
- **stability** over seeds, the **generalisation** matrix over groups and **side effects** on
  neutral text (a run of any length), when asked for.

Variants (a parameter set, or an ablation) are stacked along the batch dimension: one forward
pass carries several of them, each on its own slice of rows. Results go into the bundle as
``checks.json`` (+ ``checks.safetensors`` for per-component arrays), written atomically, so
every page draws them without a model. No Streamlit here.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from itertools import combinations
from typing import Any

import torch
from torch import Tensor

from actscale.config import TrainConfig
from actscale.errors import ActscaleError, TrainingCancelled
from actscale.interventions import Intervention, make_intervention, method_class
from actscale.models import LoadedModel, last_position_logits, padding_inputs
from actscale.objective import kl_divergence, logit_diff, wilson_interval
from actscale.sites import hook_name
from actscale.store import CHECKS_VERSION, RunBundle, RunStore, load_bundle, load_checks, save_checks
from actscale.tasks import Example, PreparedTask
from actscale.training import CancelFlag, train_token_mask

PRECISIONS = ("run", "bf16", "float32")
VARY = ("seed", "data")
MAX_GENERALISATION_GROUPS = 8
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class CheckOptions:
    """What `run_checks` computes, and how (the defaults keep the default IOI ActivScalar run's
    checks within a minute on two CPU cores; see docs/checks.md)."""

    prompts: int = 16  # test prompts every variant is evaluated on (the first ones of the split)
    draws: int = 20  # random placements per k
    seeds: int = 0  # stability over this many seeds (the run's own included); 0 or 1: none
    vary: str = "seed"  # "seed": training seed, same data (optimisation variance); "data": data seed
    generalisation: bool = False  # train one run per group and test it on every other group
    side_effects: bool = True  # for runs of any length: KL and perplexity on neutral text
    # The passes' precision: "run" (the run's own: bfloat16 autocast for a run trained under it,
    # else float32), "bf16" or "float32". A bf16 run checked in float32 is another computation:
    # on seed 0's default run 47 of its 48 flips agreed and Δ moved by up to 0.45.
    precision: str = "run"
    rows_per_pass: int = 128  # prompts (all variants together) in one forward pass
    random_seed: int = 0  # draws of the random control
    executor: str = "local"  # where the seeds' and groups' runs train: "local" or "ray"
    ray_address: str | None = None  # a Ray cluster's address ("auto": a local one)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ActscaleError(f"unknown precision {self.precision!r}: choose run, bf16 or float32")
        if self.vary not in VARY:
            raise ActscaleError(f"unknown stability variation {self.vary!r}: choose seed or data")
        for name, lo, hi in (("prompts", 1, 100_000), ("draws", 1, 10_000), ("seeds", 0, 100)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ActscaleError(f"{name} must be a whole number between {lo} and {hi}")
        if not 1 <= self.rows_per_pass <= 100_000:
            raise ActscaleError("rows_per_pass must be between 1 and 100,000")


# ---------------------------------------------------------------- components
class Components:
    """Every component of a run, flat over its sites (in order), ranked by relative magnitude
    (largest first; ties by position in the flat order, so the ranking is deterministic)."""

    def __init__(self, method: type[Intervention], sites: Sequence[str], magnitudes: Mapping[str, Tensor]):
        self.method = method
        self.sites = tuple(sites)
        self.shapes = {s: tuple(magnitudes[s].shape) for s in self.sites}
        sizes = [magnitudes[s].numel() for s in self.sites]
        self.offsets = dict(zip(self.sites, [sum(sizes[:i]) for i in range(len(sizes))], strict=True))
        self.sizes = dict(zip(self.sites, sizes, strict=True))
        self.magnitude = torch.cat([magnitudes[s].reshape(-1).float() for s in self.sites])
        self.order = torch.sort(-self.magnitude, stable=True).indices
        self.n = int(self.magnitude.numel())

    def top(self, k: int) -> Tensor:
        return self.order[:k]

    def mask(self, idx: Tensor) -> Tensor:
        out = torch.zeros(self.n, dtype=torch.bool)
        out[idx] = True
        return out

    def site_slice(self, site: str) -> slice:
        return slice(self.offsets[site], self.offsets[site] + self.sizes[site])

    def positioned(self, site: str) -> bool:
        return "position" in self.method.component_axes(site)

    def label(self, flat: int) -> str:
        """e.g. "mlp_out L12 P7" (layer, then position and head where the method has them)."""
        site = next(s for s in self.sites if self.offsets[s] <= flat < self.offsets[s] + self.sizes[s])
        index = torch.unravel_index(torch.tensor(flat - self.offsets[site]), self.shapes[site])
        axes = self.method.component_axes(site)
        short = {"layer": "L", "position": "P", "head": "H"}
        return " ".join([site, *(f"{short.get(a, a)}{int(i)}" for a, i in zip(axes, index, strict=True))])


def _payloads(params: Mapping[str, Tensor], comps: Components) -> dict[str, tuple[str, Tensor]]:
    """Each parameter tensor as [n components of its site, payload] (the layout every method's
    tensors share: the component axes first)."""
    out = {}
    for name, tensor in params.items():
        site = name.split(".", 1)[1]
        if site in comps.sizes:
            out[name] = (site, tensor.detach().float().reshape(comps.sizes[site], -1))
    return out


def keep_params(params: Mapping[str, Tensor], comps: Components, keep: Tensor) -> dict[str, Tensor]:
    """The run's parameters with every component outside ``keep`` ([n] bool) set to the
    identity (zero parameters: α = 0, v = 0, w = b = 0 all leave the activation as it is)."""
    out = {}
    for name, (site, flat) in _payloads(params, comps).items():
        rows = keep[comps.site_slice(site)].to(flat.dtype).unsqueeze(-1)
        out[name] = (flat * rows).reshape(params[name].shape)
    return out


def transplant_params(
    params: Mapping[str, Tensor], comps: Components, analysis: Mapping[str, Tensor], src: Tensor, dst: Tensor
) -> dict[str, Tensor]:
    """Zero parameters except at components ``dst``, which get the parameters of components
    ``src`` (same sites, one to one), rescaled so each keeps its relative magnitude."""
    payloads = _payloads(params, comps)
    out = {name: torch.zeros_like(flat) for name, (_, flat) in payloads.items()}
    for site in comps.sites:
        lo, hi = comps.offsets[site], comps.offsets[site] + comps.sizes[site]
        pick = (src >= lo) & (src < hi)
        s, d = src[pick] - lo, dst[pick] - lo
        if not s.numel():
            continue
        scale = comps.method.transplant_scale(analysis, site, s, d).float().unsqueeze(-1)
        for name, (tsite, flat) in payloads.items():
            if tsite == site:
                out[name][d] = flat[s] * scale
    return {name: out[name].reshape(params[name].shape) for name in out}


def k_grid(n: int) -> list[int]:
    """1, 2, 4, … below ``n``, then ``n``."""
    return sorted({*(2**i for i in range(max(1, n.bit_length())) if 2**i < n), n})


def necessity_grid(n: int) -> list[int]:
    """1, 4, 16, … below ``n``: the top-k removed (coarser than the sufficiency grid: every
    necessity point costs as much as a sufficiency point, and k90 needs only the latter)."""
    return [4**i for i in range(n.bit_length()) if 4**i < n]


def random_draws(comps: Components, top: Tensor, draws: int, seed: int) -> list[Tensor]:
    """``draws`` random placements of the components ``top``: for each site, as many
    components of that site, drawn uniformly without replacement."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(draws):
        dst = torch.empty_like(top)
        for site in comps.sites:
            lo, hi = comps.offsets[site], comps.offsets[site] + comps.sizes[site]
            pick = (top >= lo) & (top < hi)
            dst[pick] = lo + torch.randperm(hi - lo, generator=gen)[: int(pick.sum())]
        out.append(dst)
    return out


# ---------------------------------------------------------------- batched evaluation
@dataclass
class _Variant:
    """One thing to evaluate: a parameter set at β = ±1, or an ablation (β plays no part)."""

    name: str
    params: dict[str, Tensor] | None = None
    ablate: Tensor | None = None  # [n] bool
    kind: str = "steer"  # "steer", "zero" or "mean"

    @property
    def betas(self) -> tuple[float, ...]:
        return (1.0, -1.0) if self.kind == "steer" else (0.0,)


@dataclass
class _Context:
    """What every forward pass of one run's checks shares."""

    model: LoadedModel
    bundle: RunBundle
    template: Intervention  # the run's intervention (its trained parameters)
    comps: Components
    tokens: Tensor  # [N pos] the check prompts
    mask: Tensor
    correct: Tensor
    wrong: Tensor
    options: CheckOptions
    base_logits: Tensor = field(default_factory=lambda: torch.zeros(0))
    means: dict[str, Tensor] = field(default_factory=dict)
    cancel: CancelFlag | None = None

    @property
    def n(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def precision_name(self) -> str:
        """The passes' precision, "bf16" or "float32" ("run": the run's own)."""
        if self.options.precision != "run":
            return self.options.precision
        return "bf16" if self.bundle.config.get("autocast") == "bf16" else "float32"

    @property
    def bf16(self) -> bool:
        """Whether the passes run under bfloat16 autocast (`last_position_logits` sets it: an
        autocast block around that call would be switched off inside it)."""
        return self.precision_name == "bf16"

    def intervention(self, params: Mapping[str, Tensor]) -> Intervention:
        cfg = self.bundle.config
        iv = make_intervention(cfg["method"], tuple(cfg["sites"]), self.template.dims, cfg)
        iv.load_named_tensors(params)
        return iv.to(self.model.device)


def _ablation_edit(ctx: _Context, variant: _Variant, site: str, layer: int, act: Tensor, mask: Tensor) -> Tensor:
    """Zero- or mean-ablate the variant's components at (site, layer); pad positions are kept."""
    assert variant.ablate is not None
    comps = ctx.comps
    chosen = variant.ablate[comps.site_slice(site)].reshape(comps.shapes[site])[layer]  # [pos (head)] or [(head)]
    width = act.shape[1]
    if comps.positioned(site):
        chosen = ctx.template.columns(chosen, width).unsqueeze(0)  # [1 pos (head)]
    else:
        chosen = chosen.reshape(1, 1, *chosen.shape)  # [1 1 (head)]
    where = chosen.to(act.device).unsqueeze(-1) & mask.to(act.device, torch.bool).reshape(
        *mask.shape, *([1] * (act.dim() - 2))
    )
    if variant.kind == "zero":
        fill = torch.zeros((), dtype=act.dtype, device=act.device)
    else:
        mean = ctx.means[site][layer]
        mean = (
            ctx.template.columns(mean, width).unsqueeze(0)
            if comps.positioned(site)
            else mean.reshape(1, 1, *mean.shape)
        )
        fill = mean.to(act.device, act.dtype)
    return torch.where(where, fill, act)


def _check_cancel(ctx: _Context) -> None:
    if ctx.cancel is not None and ctx.cancel.is_set():
        raise TrainingCancelled("the checks were cancelled; nothing was written")


def _evaluate(ctx: _Context, variants: list[_Variant], progress: Callable[[int], None] | None = None) -> list[dict]:
    """Per variant and β, the per-prompt Δ, faithfulness KL and full KL: [{β: (Δ, kl_f, kl)}]."""
    segments = [(i, beta) for i, v in enumerate(variants) for beta in v.betas]
    per_pass = max(1, ctx.options.rows_per_pass // ctx.n)
    out: list[dict[float, tuple[Tensor, Tensor, Tensor]]] = [{} for _ in variants]
    ivs: dict[int, Intervention] = {}
    for start in range(0, len(segments), per_pass):
        _check_cancel(ctx)
        chunk = segments[start : start + per_pass]
        for i, _ in chunk:  # built per chunk: a SteerVec parameter set is megabytes
            params = variants[i].params
            if params is not None and i not in ivs:
                ivs[i] = ctx.intervention(params)
        for i in [i for i in ivs if all(i != j for j, _ in chunk)]:
            del ivs[i]
        logits = _forward_chunk(ctx, [(variants[i], ivs.get(i), beta) for i, beta in chunk])
        for j, (i, beta) in enumerate(chunk):
            lg = logits[j * ctx.n : (j + 1) * ctx.n]
            out[i][beta] = (
                logit_diff(lg, ctx.correct, ctx.wrong),
                kl_divergence(ctx.base_logits, lg, ctx.correct, ctx.wrong),
                kl_divergence(ctx.base_logits, lg),
            )
        if progress is not None:
            progress(len(chunk) * ctx.n)
    return out


def _forward_chunk(ctx: _Context, segments: list[tuple[_Variant, Intervention | None, float]]) -> Tensor:
    """Last-position logits of the check prompts under each segment's variant, stacked."""
    n, dev = ctx.n, ctx.model.device

    def hook(act: Tensor, hook: object = None, *, site: str, layer: int) -> Tensor:  # noqa: ARG001 - a hook's signature
        parts = []
        for j, (variant, iv, beta) in enumerate(segments):
            seg = act[j * n : (j + 1) * n]
            if iv is not None:
                parts.append(iv(seg, site=site, layer=layer, beta=torch.full((n,), beta, device=dev), mask=ctx.mask))
            else:
                parts.append(_ablation_edit(ctx, variant, site, layer, seg, ctx.mask))
        return torch.cat(parts)

    hooks = [
        (hook_name(site, layer), _partial_hook(hook, site, layer))
        for site in ctx.template.sites
        for layer in range(ctx.template.dims.n_layers)
    ]
    tokens = ctx.tokens.repeat(len(segments), 1)
    mask = ctx.mask.repeat(len(segments), 1)
    with ctx.model.lock, torch.no_grad(), _flush_denormal():
        with ctx.model.bridge.hooks(fwd_hooks=hooks, reset_hooks_end=True):
            return last_position_logits(ctx.model, tokens, mask, autocast=ctx.bf16).float().cpu()


@contextlib.contextmanager
def _flush_denormal() -> Iterator[None]:
    """Subnormal floats flushed to zero on the CPU for the block: a random placement can drive
    activations towards them, and arithmetic on subnormals is many times slower (their
    contribution, below 1e-38, changes no logit). Back to torch's default (off) afterwards."""
    supported = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if supported:
            torch.set_flush_denormal(False)


def _partial_hook(fn: Callable[..., Tensor], site: str, layer: int) -> Callable[..., Tensor]:
    def bound(act: Tensor, hook: object = None) -> Tensor:
        return fn(act, hook, site=site, layer=layer)

    return bound


def _rate(hits: Tensor) -> tuple[float, list[float]]:
    k, n = int(hits.sum()), int(hits.numel())
    return (k / n if n else 0.0), [round(x, 6) for x in wilson_interval(k, n)]


def _steer_row(k: int, result: dict[float, tuple[Tensor, Tensor, Tensor]]) -> dict[str, Any]:
    (dp, fp, kp), (dn, fn, kn) = result[1.0], result[-1.0]
    row: dict[str, Any] = {"k": k}
    row["flip_acc_pos"], row["flip_acc_pos_ci95"] = _rate(dp > 0)
    row["flip_acc_neg"], row["flip_acc_neg_ci95"] = _rate(dn < 0)
    row["mean_flip"] = (row["flip_acc_pos"] + row["flip_acc_neg"]) / 2
    row.update(
        logit_diff_pos=float(dp.mean()),
        logit_diff_neg=float(dn.mean()),
        faithfulness_kl=float(torch.cat([fp, fn]).mean()),
        kl_full=float(torch.cat([kp, kn]).mean()),
    )
    return row


def _ablation_row(k: int, kind: str, result: dict[float, tuple[Tensor, Tensor, Tensor]]) -> dict[str, Any]:
    d, f, kl = result[0.0]
    row: dict[str, Any] = {"k": k, "kind": kind}
    row["prefers_pos"], row["prefers_pos_ci95"] = _rate(d > 0)
    row["prefers_neg"], row["prefers_neg_ci95"] = _rate(d < 0)
    row.update(logit_diff=float(d.mean()), faithfulness_kl=float(f.mean()), kl_full=float(kl.mean()))
    return row


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return float(torch.tensor(ordered, dtype=torch.float64).quantile(q)) if ordered else float("nan")


# ---------------------------------------------------------------- preparing a run
def _run_task(model: LoadedModel, bundle: RunBundle) -> PreparedTask:
    from actscale.api import build_task  # api imports the store and training; no cycle at call time

    config = TrainConfig.from_bundle(bundle.config)
    examples = [Example.from_record(r) for r in bundle.dataset]
    n_pos = int(bundle.config["n_pos"]) if config.fixed_length and config.positions == "answer" else None
    return build_task(model, config, examples, n_pos=n_pos)


def _magnitudes(bundle: RunBundle, task: PreparedTask) -> dict[str, Tensor]:
    method = method_class(bundle.config["method"])
    out = {}
    for site in bundle.config["sites"]:
        stored = bundle.analysis.get(f"magnitude.{site}")
        if stored is None:
            mask = train_token_mask(task.attention_mask, task.split_indices("train"))
            stored = method.relative_magnitude(bundle.params, bundle.analysis, site, mask)
        out[site] = stored.float()
    return out


def _mean_activations(
    model: LoadedModel, task: PreparedTask, comps: Components, n_layers: int, batch: int = 32
) -> dict[str, Tensor]:
    """The mean activation over the training prompts' real tokens: per (layer, position) for
    positioned components, per layer (over every token) otherwise."""
    rows = task.split_indices("train")
    if not rows.numel():
        rows = torch.arange(task.tokens.shape[0])
    tokens, mask = task.tokens[rows], task.attention_mask[rows].float()
    sums: dict[str, list[Tensor | None]] = {s: [None] * n_layers for s in comps.sites}
    current = [mask[:0]]  # the mask of the batch being run

    def capture(act: Tensor, hook: object = None, *, site: str, layer: int) -> None:  # noqa: ARG001
        a = act.detach().float().cpu()
        m = current[0].reshape(*current[0].shape, *([1] * (a.dim() - 2)))
        total = (a * m).sum(0) if comps.positioned(site) else (a * m).sum((0, 1))
        prev = sums[site][layer]
        sums[site][layer] = total if prev is None else prev + total

    hooks = [
        (hook_name(s, layer), _partial_capture(capture, s, layer)) for s in comps.sites for layer in range(n_layers)
    ]
    with model.lock, torch.no_grad(), model.bridge.hooks(fwd_hooks=hooks, reset_hooks_end=True):
        for start in range(0, tokens.shape[0], batch):
            sl = slice(start, start + batch)
            current[0] = mask[sl]
            last_position_logits(model, tokens[sl], task.attention_mask[rows][sl])
    per_pos = mask.sum(0).clamp_min(1)  # [pos]
    out = {}
    for site in comps.sites:
        stacked = torch.stack([t for t in sums[site] if t is not None])
        if comps.positioned(site):
            out[site] = stacked / per_pos.reshape(1, -1, *([1] * (stacked.dim() - 2)))
        else:
            out[site] = stacked / float(mask.sum().clamp_min(1))
    return out


def _partial_capture(fn: Callable[..., None], site: str, layer: int) -> Callable[..., None]:
    def bound(act: Tensor, hook: object = None) -> None:
        fn(act, hook, site=site, layer=layer)

    return bound


def _context(
    model: LoadedModel, bundle: RunBundle, options: CheckOptions, cancel: CancelFlag | None
) -> tuple[_Context, PreparedTask, Tensor]:
    from actscale.api import intervention_from_bundle

    template = intervention_from_bundle(bundle, model)
    task = _run_task(model, bundle)
    test = task.split_indices("test")
    if not test.numel():
        raise ActscaleError(f"run {bundle.run_id} has no test prompts to check its map on")
    rows = test[: options.prompts]
    comps = Components(type(template), template.sites, _magnitudes(bundle, task))
    ctx = _Context(
        model=model,
        bundle=bundle,
        template=template,
        comps=comps,
        tokens=task.tokens[rows],
        mask=task.attention_mask[rows],
        correct=task.correct_ids[rows],
        wrong=task.wrong_ids[rows],
        options=options,
        cancel=cancel,
    )
    with model.lock, torch.no_grad():
        ctx.base_logits = last_position_logits(model, ctx.tokens, ctx.mask, autocast=ctx.bf16).float().cpu()
    return ctx, task, rows


# ---------------------------------------------------------------- the checks
def map_checks(
    model: LoadedModel,
    bundle: RunBundle,
    options: CheckOptions = CheckOptions(),
    on_progress: Progress | None = None,
    cancel: CancelFlag | None = None,
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Sufficiency, necessity, the random control and the ablations of ``bundle``'s map
    (docs/method.md §7.1–4), as (checks.json part, tensors)."""
    start = time.perf_counter()
    ctx, task, rows = _context(model, bundle, options, cancel)
    comps, n = ctx.comps, ctx.comps.n
    ctx.means = _mean_activations(model, task, comps, ctx.template.dims.n_layers)
    grid = k_grid(n)
    learned = ctx.template.named_tensors()
    # Rows, for the progress bar: sufficiency and necessity over their grids, up to four
    # bisection steps, the random draws and the two knock-outs at k90.
    total = ctx.n * (2 * len(grid) + 2 * len(necessity_grid(n)) + 2 * 4 + 2 * options.draws + 2)
    done = [0]

    def advance(rows_done: int, what: str = "") -> None:
        done[0] += rows_done
        if on_progress is not None:
            on_progress(min(1.0, done[0] / total), what)

    def suff(k: int) -> _Variant:
        return _Variant(f"top{k}", keep_params(learned, comps, comps.mask(comps.top(k))))

    variants = [suff(k) for k in grid]
    removed = necessity_grid(n)
    variants += [_Variant(f"minus{k}", keep_params(learned, comps, ~comps.mask(comps.top(k)))) for k in removed]
    results = _evaluate(ctx, variants, lambda r: advance(r, "sufficiency and necessity"))
    sufficiency = {k: _steer_row(k, results[i]) for i, k in enumerate(grid)}
    necessity = [_steer_row(k, results[len(grid) + i]) for i, k in enumerate(removed)]
    full = sufficiency[n]
    target = 0.9 * full["mean_flip"]
    # The smallest grid k reaching the target, then bisection between it and the grid point
    # below (which assumes the curve rises in between; every evaluated k is kept on the curve).
    k90 = next(k for k in grid if sufficiency[k]["mean_flip"] >= target - 1e-12)
    lo = max([k for k in grid if k < k90], default=0)
    while k90 - lo > 1:
        mid = (lo + k90) // 2
        sufficiency[mid] = _steer_row(mid, _evaluate(ctx, [suff(mid)], lambda r: advance(r, "k90"))[0])
        if sufficiency[mid]["mean_flip"] >= target - 1e-12:
            k90 = mid
        else:
            lo = mid
    random_ks = [k90]  # one k: a minute holds 20 draws at one k (docs/checks.md, "the time budget")
    random_rows = []
    for k in random_ks:
        top = comps.top(k)
        draws = random_draws(comps, top, options.draws, options.random_seed + k)
        rand = _evaluate(
            ctx,
            [
                _Variant(f"random{k}.{d}", transplant_params(learned, comps, bundle.analysis, top, dst))
                for d, dst in enumerate(draws)
            ],
            lambda r: advance(r, "random control"),
        )
        per_draw = [_steer_row(k, r) for r in rand]
        row: dict[str, Any] = {"k": k, "draws": options.draws}
        for name in ("mean_flip", "flip_acc_pos", "flip_acc_neg"):
            values = [d[name] for d in per_draw]
            row[name] = values
            row[f"{name}_median"] = _quantile(values, 0.5)
            row[f"{name}_p05"] = _quantile(values, 0.05)
            row[f"{name}_p95"] = _quantile(values, 0.95)
        random_rows.append(row)
    ablations = [
        _Variant(f"{kind}{k}", ablate=comps.mask(comps.top(k)), kind=kind)
        for k in random_ks
        for kind in ("zero", "mean")
    ]
    abl = _evaluate(ctx, ablations, lambda r: advance(r, "ablation"))
    ablation_rows = [
        _ablation_row(k, kind, abl[i])
        for i, (k, kind) in enumerate((k, kind) for k in random_ks for kind in ("zero", "mean"))
    ]
    at_k90 = sufficiency[k90]
    random_at_k90 = next(r for r in random_rows if r["k"] == k90)
    part = {
        "prompts": {"split": "test", "n": ctx.n, "rows": rows.tolist(), "of": int(task.split_indices("test").numel())},
        "precision": ctx.precision_name,
        "precision_agreement": _agreement(bundle, rows, ctx.base_logits, results[len(grid) - 1], ctx),
        "n_components": n,
        "magnitude": comps.method.magnitude_label,
        "grid": grid,
        "sufficiency": [sufficiency[k] for k in sorted(sufficiency)],
        "necessity": necessity,
        "full": full,
        "target": target,
        "k90": k90,
        "k90_frac": k90 / n,
        "top_components": [
            {"rank": i + 1, "component": comps.label(int(c)), "magnitude": float(comps.magnitude[c])}
            for i, c in enumerate(comps.top(min(k90, 50)).tolist())
        ],
        "random": random_rows,
        "learned_above_random_p95": bool(at_k90["mean_flip"] > random_at_k90["mean_flip_p95"]),
        "ablation": ablation_rows,
        "seconds_map": round(time.perf_counter() - start, 3),
    }
    return part, {"order": comps.order.clone(), "magnitude": comps.magnitude.clone()}


def _agreement(bundle: RunBundle, rows: Tensor, base_logits: Tensor, full: dict, ctx: _Context) -> dict[str, Any]:
    """How often the checks' passes (their precision) agree with the run's own evaluation on
    the sign of Δ: unmodified, and the full run at β = ±1."""
    stored = bundle.deltas()
    if not {"base", "pos", "neg"} <= stored.keys():
        return {"agree": None, "n": 0}
    base = logit_diff(base_logits, ctx.correct, ctx.wrong)
    pairs = [(stored["base"][rows], base), (stored["pos"][rows], full[1.0][0]), (stored["neg"][rows], full[-1.0][0])]
    agree = sum(int(((a > 0) == (b > 0)).sum()) for a, b in pairs)
    worst = max(float((a - b).abs().max()) for a, b in pairs)
    return {"agree": agree, "n": 3 * int(rows.numel()), "max_abs_delta_change": worst}


# ---------------------------------------------------------------- stability over seeds
Trainer = Callable[[list[TrainConfig], list[Example] | None], list[RunBundle]]


def executor_trainer(
    model: LoadedModel,
    store: RunStore,
    cancel: CancelFlag | None = None,
    on_progress: Progress | None = None,
    executor: str = "local",
    ray_address: str | None = None,
) -> Trainer:
    """Train (or reuse from ``store``) configs through `executors.run_configs`: one after
    another on ``model`` (``local``), or on a Ray cluster whose workers load the model."""
    from actscale.executors import RunProgress, run_configs

    def run(configs: list[TrainConfig], examples: list[Example] | None) -> list[RunBundle]:
        finished: set[int] = set()

        def progress(event: RunProgress) -> None:
            if event.state in ("done", "reused"):
                finished.add(event.index)
            if on_progress is not None:
                step = event.step / event.n_steps if event.n_steps else 0.0
                fraction = (len(finished) + (0.0 if event.index in finished else step)) / len(configs)
                on_progress(min(1.0, fraction), f"run {event.index + 1} of {len(configs)}")

        return run_configs(
            configs,
            executor=executor,
            ray_address=ray_address,
            store=store,
            examples=examples,
            on_progress=progress,
            cancel=cancel,
            model=model if executor == "local" else None,
        )

    return run


def stability_configs(bundle: RunBundle, seeds: int, vary: str = "seed") -> list[TrainConfig]:
    """The run's configuration over ``seeds`` seeds, the run's own first: the training seed
    varies with the data fixed (``vary="seed"``: optimisation variance), or the data seed with
    the training seed fixed (``"data"``: data variance; generated tasks only)."""
    base = TrainConfig.from_bundle(bundle.config)
    if vary == "data" and base.task == "custom":
        raise ActscaleError("a custom dataset has one draw of its data: vary the training seed instead")
    if vary == "seed":
        return [base.replace(seed=base.seed + i, data_seed=base.data_seed) for i in range(seeds)]
    return [base.replace(data_seed=base.data_seed + i, seed=base.seed) for i in range(seeds)]


def _average_ranks(x: Tensor) -> Tensor:
    import pandas as pd

    return torch.tensor(pd.Series(x.double().numpy()).rank(method="average").to_numpy())


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman's rank correlation (average ranks for ties); nan when either is constant."""
    ra, rb = _average_ranks(a), _average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / denom if denom else float("nan")


def stability(
    model: LoadedModel,
    bundle: RunBundle,
    options: CheckOptions,
    trainer: Trainer,
    k_top: int,
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Selection frequency per component, the consensus map, rank correlations and top-k
    overlaps over ``options.seeds`` runs of the same configuration (docs/method.md §7.5)."""
    configs = stability_configs(bundle, options.seeds, options.vary)
    same_data = options.vary == "seed"
    task = _run_task(model, bundle) if same_data else None
    bundles = trainer(configs, [Example.from_record(r) for r in bundle.dataset] if same_data else None)
    tau = float(bundle.config.get("tau", 0.05))
    flat: list[Tensor] = []
    tasks: dict[str, PreparedTask] = {}
    for b in bundles:
        if b.params.keys() != bundle.params.keys() or any(
            b.params[k].shape != bundle.params[k].shape for k in bundle.params
        ):
            raise ActscaleError(
                f"run {b.run_id} (seed {b.config['seed']}, data seed {b.config['data_seed']}) has parameters of "
                f"another shape than run {bundle.run_id} (n_pos {b.config['n_pos']} against {bundle.config['n_pos']}): "
                "its components do not line up"
            )
        t = tasks.setdefault(b.run_id, task or _run_task(model, b))
        per_site = _magnitudes(b, t)
        flat.append(torch.cat([per_site[s].reshape(-1) for s in bundle.config["sites"]]))
    mags = torch.stack(flat)  # [K n]
    selected = mags > tau
    comps = Components(
        method_class(bundle.config["method"]),
        bundle.config["sites"],
        _magnitudes(bundle, task or _run_task(model, bundle)),
    )
    tops = [set(torch.sort(-m, stable=True).indices[:k_top].tolist()) for m in mags]
    pairs: list[dict[str, Any]] = []
    for i, j in combinations(range(len(bundles)), 2):
        shared = len(tops[i] & tops[j])
        pairs.append(
            {
                "a": bundles[i].run_id,
                "b": bundles[j].run_id,
                "seed_a": _seed_of(bundles[i], options.vary),
                "seed_b": _seed_of(bundles[j], options.vary),
                "spearman": spearman(mags[i], mags[j]),
                "top_k_shared": shared,
                "top_k_jaccard": shared / len(tops[i] | tops[j]) if tops[i] | tops[j] else float("nan"),
            }
        )
    freq = selected.float().mean(0)
    consensus = mags.mean(0)
    in_all = torch.nonzero(selected.all(0)).flatten()
    ranked = in_all[torch.sort(-consensus[in_all], stable=True).indices]
    part = {
        "vary": options.vary,
        "k_top": k_top,
        "tau": tau,
        "runs": [
            {
                "run_id": b.run_id,
                "seed": int(b.config["seed"]),
                "data_seed": int(b.config.get("data_seed", b.config["seed"])),
                "n_effective": int(b.metrics.get("test", {}).get("n_effective", int(sel.sum()))),
                "test_mean_flip": _mean_flip(b.metrics.get("test", {})),
            }
            for b, sel in zip(bundles, selected, strict=True)
        ],
        "pairs": pairs,
        "n_selected_all": int(selected.all(0).sum()),
        "n_selected_any": int(selected.any(0).sum()),
        "mean_spearman": statistics.mean(float(p["spearman"]) for p in pairs) if pairs else float("nan"),
        "stable_components": [
            {"component": comps.label(int(c)), "consensus": float(consensus[c]), "frequency": float(freq[c])}
            for c in ranked[:50].tolist()
        ],
    }
    tensors = {}
    for site in bundle.config["sites"]:
        sl = comps.site_slice(site)
        tensors[f"stability.freq.{site}"] = freq[sl].reshape(comps.shapes[site]).contiguous()
        tensors[f"stability.consensus.{site}"] = consensus[sl].reshape(comps.shapes[site]).contiguous()
    return part, tensors


def _seed_of(bundle: RunBundle, vary: str) -> int:
    return int(bundle.config["seed"] if vary == "seed" else bundle.config.get("data_seed", bundle.config["seed"]))


def _mean_flip(metrics: Mapping[str, Any]) -> float | None:
    if isinstance(metrics.get("flip_acc_pos"), float) and isinstance(metrics.get("flip_acc_neg"), float):
        return (metrics["flip_acc_pos"] + metrics["flip_acc_neg"]) / 2
    return None


# ---------------------------------------------------------------- generalisation over groups
def run_groups(bundle: RunBundle) -> list[str]:
    """The groups of a run's prompts (IOI template families, CCC countries, a file's groups)."""
    return sorted({str(r.get("group") or "") for r in bundle.dataset} - {""})


def generalisation_configs(bundle: RunBundle) -> list[tuple[str, TrainConfig]]:
    """One configuration per group: trained on that group alone, every other group held out
    for test (each run's per-group test metrics are one row of the matrix)."""
    groups = run_groups(bundle)
    if len(groups) < 2:
        raise ActscaleError(f"run {bundle.run_id}'s prompts carry {len(groups)} group(s): the matrix needs at least 2")
    if len(groups) > MAX_GENERALISATION_GROUPS:
        raise ActscaleError(
            f"run {bundle.run_id}'s prompts carry {len(groups)} groups; the matrix trains one run per group, "
            f"so it takes at most {MAX_GENERALISATION_GROUPS}"
        )
    base = TrainConfig.from_bundle(bundle.config)
    return [(g, base.replace(test_groups=tuple(h for h in groups if h != g))) for g in groups]


def generalisation(bundle: RunBundle, trainer: Trainer) -> dict[str, Any]:
    """The matrix of docs/method.md §7.6: row = the group trained on, column = the group tested on
    (the diagonal: the trained group's own validation prompts), flip rates with intervals."""
    groups = run_groups(bundle)
    pairs = generalisation_configs(bundle)
    # A file's prompts, their splits cleared: each run splits them by its own held-out groups.
    examples = (
        [Example.from_record({**r, "split": ""}) for r in bundle.dataset] if bundle.config["task"] == "custom" else None
    )
    runs = trainer([cfg for _, cfg in pairs], examples)
    cells = []
    for (train_group, _), run in zip(pairs, runs, strict=True):
        by_group = {(g["split"], g["group"]): g for g in run.info.get("group_metrics", [])}
        for test_group in groups:
            split = "val" if test_group == train_group else "test"
            g = by_group.get((split, test_group))
            cell: dict[str, Any] = {"train": train_group, "test": test_group, "split": split, "run_id": run.run_id}
            if g is None or not g.get("n_prompts"):
                cell["n_prompts"] = 0  # e.g. no prompt of the run's one length in that group
            else:
                cell.update({k: g[k] for k in g if k not in ("split", "group")})
                cell["mean_flip"] = _mean_flip(g)
            cells.append(cell)
    return {"groups": groups, "method": bundle.config["method"], "cells": cells}


# ---------------------------------------------------------------- side effects off-task
def neutral_sentences() -> list[str]:
    """The project's neutral text: sentences about nothing the tasks ask (no one giving anything
    to anyone, no capitals), one per line of ``actscale/data/neutral.txt``."""
    text = resources.files("actscale").joinpath("data/neutral.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _tokenise_texts(model: LoadedModel, texts: Sequence[str], prepend_bos: bool) -> tuple[Tensor, Tensor]:
    bos = model.tokenizer.bos_token_id if prepend_bos else None
    ids = [([bos] if bos is not None else []) + model.tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    width = max(len(i) for i in ids)
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    tokens = torch.full((len(ids), width), pad, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for r, row in enumerate(ids):
        tokens[r, width - len(row) :] = torch.tensor(row)
        mask[r, width - len(row) :] = 1
    return tokens, mask


def all_position_logits(model: LoadedModel, tokens: Tensor, mask: Tensor) -> Tensor:
    """Logits at every position of left-padded prompts: [batch pos d_vocab]."""
    return model.bridge(tokens.to(model.device), **padding_inputs(mask, model.device)).float().cpu()


def side_effects(
    model: LoadedModel, bundle: RunBundle, cancel: CancelFlag | None = None, batch: int = 16
) -> dict[str, Any]:
    """A run of any length applied at every position of neutral text at β = ±1: per-token KL
    from the unmodified model, perplexity before and after, and how often the top-1 next token
    changes (docs/method.md §7.7)."""
    from actscale.api import intervention_from_bundle, resolved_prepend_bos
    from actscale.interventions import steer

    config = TrainConfig.from_bundle(bundle.config)
    if config.fixed_length:
        raise ActscaleError(
            f"a {config.method} run is tied to its prompts' positions: side effects on other text need "
            "a run of any length (DynScalar)"
        )
    iv = intervention_from_bundle(bundle, model)
    texts = neutral_sentences()
    tokens, mask = _tokenise_texts(model, texts, resolved_prepend_bos(model, config))
    sums: dict[float, dict[str, list[float]]] = {b: {"kl": [], "top1": []} for b in (1.0, -1.0)}
    nll: dict[float, list[float]] = {b: [] for b in (0.0, 1.0, -1.0)}
    n_tokens = 0
    for start in range(0, tokens.shape[0], batch):
        if cancel is not None and cancel.is_set():
            raise TrainingCancelled("the checks were cancelled; nothing was written")
        t, m = tokens[start : start + batch], mask[start : start + batch]
        # Predictions of the next real token: positions whose next position is real.
        pred = (m[:, :-1] * m[:, 1:]).bool()
        target = t[:, 1:]
        with model.lock, torch.no_grad():
            base = all_position_logits(model, t, m)
            steered = {}
            for beta in (1.0, -1.0):
                with steer(model.bridge, iv, beta, batch=t.shape[0], mask=m):
                    steered[beta] = all_position_logits(model, t, m)
        n_tokens += int(pred.sum())
        for beta, logits in ((0.0, base), *steered.items()):
            lp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
            for r in range(t.shape[0]):
                nll[beta].append(float(-(lp[r][pred[r]]).mean()) if pred[r].any() else float("nan"))
        lp0 = torch.log_softmax(base[:, :-1], dim=-1)
        for beta, logits in steered.items():
            lp = torch.log_softmax(logits[:, :-1], dim=-1)
            kl = (lp0.exp() * (lp0 - lp)).sum(-1)  # [b pos-1]
            same = lp.argmax(-1) == lp0.argmax(-1)
            for r in range(t.shape[0]):
                sums[beta]["kl"].append(float(kl[r][pred[r]].mean()))
                sums[beta]["top1"].append(float(same[r][pred[r]].float().mean()))
    rows = []
    base_ppl = math.exp(statistics.mean(nll[0.0]))
    for beta in (1.0, -1.0):
        per_sentence = sums[beta]["kl"]
        rows.append(
            {
                "beta": beta,
                "kl_per_token_mean": statistics.mean(per_sentence),
                "kl_per_token_sd": statistics.stdev(per_sentence) if len(per_sentence) > 1 else 0.0,
                "kl_per_token_max": max(per_sentence),
                "perplexity_base": base_ppl,
                "perplexity_steered": math.exp(statistics.mean(nll[beta])),
                "top1_unchanged": statistics.mean(sums[beta]["top1"]),
            }
        )
    return {"n_sentences": len(texts), "n_tokens": n_tokens, "rows": rows}


@contextlib.contextmanager
def _stage(on_progress: Progress | None, lo: float, hi: float) -> Iterator[Progress]:
    """A progress callback for one stage, mapped into [lo, hi] of the whole."""

    def report(fraction: float, what: str) -> None:
        if on_progress is not None:
            on_progress(lo + (hi - lo) * min(1.0, max(0.0, fraction)), what)

    yield report
    report(1.0, "")


def run_checks(
    model: LoadedModel,
    bundle: RunBundle,
    options: CheckOptions = CheckOptions(),
    *,
    store: RunStore | None = None,
    trainer: Trainer | None = None,
    on_progress: Progress | None = None,
    cancel: CancelFlag | None = None,
) -> dict[str, Any]:
    """Every check ``options`` asks for on ``bundle``, written into the bundle (merged with the
    checks it already has: a part computed now replaces the stored one). Returns checks.json's
    content. Runs the stability seeds and the generalisation runs need are trained into
    ``store`` (default: the bundle's own folder's store), or reused from it."""
    start = time.perf_counter()
    store = store or RunStore(bundle.path.parent)
    store.check_writable()  # the checks are written into the bundle
    stages = ["map"] + (["stability"] if options.seeds >= 2 else [])
    stages += ["generalisation"] if options.generalisation else []
    stages += (
        ["side_effects"] if options.side_effects and not method_class(bundle.config["method"]).fixed_length else []
    )
    old = load_checks(bundle.path)
    data, tensors = (dict(old[0]), dict(old[1])) if old else ({}, {})
    for i, stage in enumerate(stages):
        with _stage(on_progress, i / len(stages), (i + 1) / len(stages)) as report:
            report(0.0, stage)
            if stage == "map":
                part, new = map_checks(model, bundle, options, report, cancel)
                data["map"] = part
                tensors.update({f"map.{k}": v for k, v in new.items()})
            elif stage == "stability":
                k_top = int(data.get("map", {}).get("k90") or 20)
                train = trainer or executor_trainer(model, store, cancel, report, options.executor, options.ray_address)
                part, new = stability(model, bundle, options, train, k_top)
                data["stability"] = part
                tensors = {k: v for k, v in tensors.items() if not k.startswith("stability.")} | new
            elif stage == "generalisation":
                train = trainer or executor_trainer(model, store, cancel, report, options.executor, options.ray_address)
                data["generalisation"] = generalisation(bundle, train)
            else:
                data["side_effects"] = side_effects(model, bundle, cancel)
    data["options"] = asdict(options)
    data["seconds"] = round(time.perf_counter() - start, 3)
    data["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    save_checks(bundle.path, data, tensors)
    return {**data, "version": CHECKS_VERSION, "tensors": sorted(tensors)}


def reload(bundle: RunBundle) -> RunBundle:
    """The bundle read again from its folder (after its checks were written)."""
    return load_bundle(bundle.path)
