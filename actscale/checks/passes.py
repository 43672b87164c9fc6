"""Batched evaluation for the checks: variants (a parameter set, or an ablation) stacked
along the batch dimension, one forward pass carrying several of them, each on its own rows;
and what a run needs prepared for it (its task, magnitudes, mean activations)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from actscale.checks.components import Components
from actscale.checks.options import CheckOptions
from actscale.engine.evaluation import train_token_mask
from actscale.engine.interventions import Intervention, at_sites, make_intervention, method_class
from actscale.engine.models import LoadedModel, last_position_logits
from actscale.engine.objective import kl_divergence, logit_diff, wilson_interval
from actscale.engine.tasks import Example, PreparedTask
from actscale.engine.training import CancelFlag
from actscale.errors import ActscaleError, TrainingCancelled
from actscale.runs.bundle import RunBundle


@dataclass
class Variant:
    """One thing to evaluate: a parameter set at β = ±1, or an ablation (β plays no part)."""

    name: str
    params: dict[str, Tensor] | None = None
    ablate: Tensor | None = None  # [n] bool
    kind: str = "steer"  # "steer", "zero", "mean" or "patch" (the `Context.patch` activations put back)

    @property
    def betas(self) -> tuple[float, ...]:
        return (1.0, -1.0) if self.kind == "steer" else (0.0,)


@dataclass
class Context:
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
    # what a "patch" variant puts back: per site [prompt layer pos (head) d]
    patch: dict[str, Tensor] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def precision_name(self) -> str:
        """The passes' precision, "bf16" or "float32" ("run": the run's own)."""
        if self.options.precision != "run":  # no bundle needed (a bare context of the tests has none)
            return self.options.precision
        return self.options.precision_for(self.bundle.record.config.autocast)

    @property
    def bf16(self) -> bool:
        """Whether the passes run under bfloat16 autocast (`last_position_logits` sets it: an
        autocast block around that call would be switched off inside it)."""
        return self.precision_name == "bf16"

    def intervention(self, params: Mapping[str, Tensor]) -> Intervention:
        cfg = self.bundle.record.config
        iv = make_intervention(cfg.method, cfg.sites, self.template.dims, cfg.to_dict())
        iv.load_named_tensors(params)
        return iv.to(self.model.device)


def _ablation_edit(ctx: Context, variant: Variant, site: str, layer: int, act: Tensor, mask: Tensor) -> Tensor:
    """Zero- or mean-ablate the variant's components at (site, layer), or put each prompt's
    `Context.patch` activation back there; pad positions are kept."""
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
    elif variant.kind == "patch":
        fill = ctx.patch[site][:, layer, -width:].to(act.device, act.dtype)  # [prompt pos (head) d]
    else:
        mean = ctx.means[site][layer]
        mean = (
            ctx.template.columns(mean, width).unsqueeze(0)
            if comps.positioned(site)
            else mean.reshape(1, 1, *mean.shape)
        )
        fill = mean.to(act.device, act.dtype)
    return torch.where(where, fill, act)


def _check_cancel(ctx: Context) -> None:
    if ctx.cancel is not None and ctx.cancel.is_set():
        raise TrainingCancelled("the checks were cancelled; nothing was written")


def evaluate_variants(
    ctx: Context, variants: list[Variant], progress: Callable[[int], None] | None = None
) -> list[dict]:
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


def _forward_chunk(ctx: Context, segments: list[tuple[Variant, Intervention | None, float]]) -> Tensor:
    """Last-position logits of the check prompts under each segment's variant, stacked."""
    n, dev = ctx.n, ctx.model.device

    def edit(act: Tensor, site: str, layer: int) -> Tensor:
        parts = []
        for j, (variant, iv, beta) in enumerate(segments):
            seg = act[j * n : (j + 1) * n]
            if iv is not None:
                parts.append(iv(seg, site=site, layer=layer, beta=torch.full((n,), beta, device=dev), mask=ctx.mask))
            else:
                parts.append(_ablation_edit(ctx, variant, site, layer, seg, ctx.mask))
        return torch.cat(parts)

    tokens = ctx.tokens.repeat(len(segments), 1)
    mask = ctx.mask.repeat(len(segments), 1)
    with ctx.model.lock, torch.no_grad(), _flush_denormal():
        with at_sites(ctx.model.bridge, ctx.template.sites, ctx.template.dims.n_layers, edit):
            return last_position_logits(ctx.model, tokens, mask, autocast=ctx.bf16).float().cpu()


def applied_magnitudes(ctx: Context, param_sets: list[dict[str, Tensor]]) -> list[Tensor]:
    """Per parameter set: the relative magnitude each component applies on the check prompts at
    β = +1, measured by the method from what it records in that pass (DynScalar: the mean |α|
    over the real tokens), flat over the sites. Batched like `evaluate_variants`."""
    per_pass, n, dev = max(1, ctx.options.rows_per_pass // ctx.n), ctx.n, ctx.model.device
    out = []
    for start in range(0, len(param_sets), per_pass):
        _check_cancel(ctx)
        chunk = param_sets[start : start + per_pass]
        ivs = [ctx.intervention(p) for p in chunk]
        records: list[dict[tuple[str, int], Tensor]] = [{} for _ in chunk]

        def edit(act: Tensor, site: str, layer: int) -> Tensor:
            beta = torch.ones(n, device=dev)
            return torch.cat(
                [
                    iv(act[j * n : (j + 1) * n], site=site, layer=layer, beta=beta, mask=ctx.mask, record=records[j])
                    for j, iv in enumerate(ivs)
                ]
            )

        with ctx.model.lock, torch.no_grad(), _flush_denormal():
            with at_sites(ctx.model.bridge, ctx.template.sites, ctx.template.dims.n_layers, edit):
                tokens, mask = ctx.tokens.repeat(len(chunk), 1), ctx.mask.repeat(len(chunk), 1)
                last_position_logits(ctx.model, tokens, mask, autocast=ctx.bf16)
        for iv, params, record in zip(ivs, chunk, records, strict=True):
            arrays = iv.analysis_arrays({}, {key: [value] for key, value in record.items()})
            sites = ctx.comps.sites
            out.append(
                torch.cat(
                    [ctx.comps.method.relative_magnitude(params, arrays, s, ctx.mask.bool()).reshape(-1) for s in sites]
                )
            )
    return out


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


def _rate(hits: Tensor) -> tuple[float, list[float]]:
    k, n = int(hits.sum()), int(hits.numel())
    return (k / n if n else 0.0), [round(x, 6) for x in wilson_interval(k, n)]


def steer_row(k: int, result: dict[float, tuple[Tensor, Tensor, Tensor]]) -> dict[str, Any]:
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


def ablation_row(k: int, kind: str, result: dict[float, tuple[Tensor, Tensor, Tensor]]) -> dict[str, Any]:
    d, f, kl = result[0.0]
    row: dict[str, Any] = {"k": k, "kind": kind}
    row["prefers_pos"], row["prefers_pos_ci95"] = _rate(d > 0)
    row["prefers_neg"], row["prefers_neg_ci95"] = _rate(d < 0)
    row.update(logit_diff=float(d.mean()), faithfulness_kl=float(f.mean()), kl_full=float(kl.mean()))
    return row


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return float(torch.tensor(ordered, dtype=torch.float64).quantile(q)) if ordered else float("nan")


# preparing a run
def run_task(model: LoadedModel, bundle: RunBundle) -> PreparedTask:
    from actscale.runs.api import build_task  # api imports the store and training; no cycle at call time

    config = bundle.record.config
    examples = [Example.from_record(r) for r in bundle.dataset]
    n_pos = bundle.record.provenance.n_pos if config.fixed_length and config.positions == "answer" else None
    return build_task(model, config, examples, n_pos=n_pos)


def magnitudes(bundle: RunBundle, task: PreparedTask) -> dict[str, Tensor]:
    method = method_class(bundle.method)
    out = {}
    for site in bundle.sites:
        stored = bundle.analysis.get(f"magnitude.{site}")
        if stored is None:
            mask = train_token_mask(task.attention_mask, task.split_indices("train"))
            stored = method.relative_magnitude(bundle.params, bundle.analysis, site, mask)
        out[site] = stored.float()
    return out


def mean_activations(
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

    def capture(act: Tensor, site: str, layer: int) -> None:
        a = act.detach().float().cpu()
        m = current[0].reshape(*current[0].shape, *([1] * (a.dim() - 2)))
        total = (a * m).sum(0) if comps.positioned(site) else (a * m).sum((0, 1))
        prev = sums[site][layer]
        sums[site][layer] = total if prev is None else prev + total

    with model.lock, torch.no_grad(), at_sites(model.bridge, comps.sites, n_layers, capture):
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


def transplant_reads(model: LoadedModel, ctx: Context, batch: int = 32) -> dict[str, Tensor]:
    """Per site, what the run's method reads from the activation (`Intervention.transplant_reads`)
    at every (layer[, head]) component over the check prompts' real tokens: [components, tokens,
    d] (layer-major, heads within a layer). What a moved DynScalar component is rescaled on."""
    n_layers = ctx.template.dims.n_layers
    chunks: dict[tuple[str, int], list[Tensor]] = {(s, layer): [] for s in ctx.comps.sites for layer in range(n_layers)}
    real = [ctx.mask[:0].bool()]

    def capture(act: Tensor, site: str, layer: int) -> None:
        chunks[(site, layer)].append(ctx.template.transplant_reads(act.detach().float()[real[0]]).cpu())

    with ctx.model.lock, torch.no_grad(), at_sites(model.bridge, ctx.comps.sites, n_layers, capture):
        for start in range(0, ctx.n, batch):
            sl = slice(start, start + batch)
            real[0] = ctx.mask[sl].bool().to(ctx.tokens.device)
            last_position_logits(model, ctx.tokens[sl], ctx.mask[sl], autocast=ctx.bf16)
    out = {}
    for site in ctx.comps.sites:
        per_layer = torch.stack([torch.cat(chunks[(site, layer)]) for layer in range(n_layers)])  # [L T (H) d]
        if per_layer.dim() == 4:  # the head site: one component per (layer, head)
            per_layer = per_layer.permute(0, 2, 1, 3).reshape(-1, per_layer.shape[1], per_layer.shape[3])
        out[site] = per_layer
    return out


def sample_rows(task: PreparedTask, split: str, n: int, seed: int) -> Tensor:
    """Up to ``n`` of ``split``'s prompts drawn without replacement with ``seed`` (in dataset
    order): the prompts a check chooses on ("val") or reports on ("test")."""
    return draw_rows(task.split_indices(split), n, seed)


def draw_rows(rows: Tensor, n: int, seed: int) -> Tensor:
    """Up to ``n`` of ``rows`` drawn without replacement with ``seed``, in their own order."""
    if rows.numel() <= n:
        return rows
    pick = torch.randperm(int(rows.numel()), generator=torch.Generator().manual_seed(seed))[:n]
    return rows[pick.sort().values]


def context_on(ctx: Context, task: PreparedTask, rows: Tensor) -> Context:
    """``ctx`` on other prompts (``rows`` of ``task``): its tokens, answers and unmodified logits."""
    other = Context(
        model=ctx.model,
        bundle=ctx.bundle,
        template=ctx.template,
        comps=ctx.comps,
        tokens=task.tokens[rows],
        mask=task.attention_mask[rows],
        correct=task.correct_ids[rows],
        wrong=task.wrong_ids[rows],
        options=ctx.options,
        means=ctx.means,
        cancel=ctx.cancel,
    )
    with ctx.model.lock, torch.no_grad():
        other.base_logits = last_position_logits(ctx.model, other.tokens, other.mask, autocast=other.bf16).float().cpu()
    return other


def prepare_context(
    model: LoadedModel, bundle: RunBundle, options: CheckOptions, cancel: CancelFlag | None
) -> tuple[Context, PreparedTask, Tensor]:
    """The context of the prompts the checks report on: ``options.prompts`` test prompts drawn
    with the checks' seed (``options.random_seed``); with the task and those rows."""
    from actscale.runs.api import intervention_from_bundle

    template = intervention_from_bundle(bundle, model)
    task = run_task(model, bundle)
    if not task.split_indices("test").numel():
        raise ActscaleError(f"run {bundle.run_id} has no test prompts to check its map on")
    rows = sample_rows(task, "test", options.prompts, options.random_seed)
    comps = Components(type(template), template.sites, magnitudes(bundle, task))
    empty = torch.zeros(0, dtype=torch.long)
    ctx = Context(model, bundle, template, comps, empty, empty, empty, empty, options, cancel=cancel)
    return context_on(ctx, task, rows), task, rows
