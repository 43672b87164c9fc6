"""Stability over seeds (docs/method.md §7.5): the same configuration trained over K seeds,
selection frequencies, rank correlations and top-k overlaps."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from itertools import combinations
from typing import Any

import torch
from torch import Tensor

from actscale.checks.components import Components
from actscale.checks.options import CheckOptions, Progress
from actscale.checks.passes import magnitudes, run_task
from actscale.engine.config import TrainConfig
from actscale.engine.interventions import method_class
from actscale.engine.models import LoadedModel
from actscale.engine.tasks import Example, PreparedTask
from actscale.engine.tasks.registry import task_spec
from actscale.engine.training import CancelFlag
from actscale.errors import ActscaleError
from actscale.runs.bundle import RunBundle
from actscale.runs.progress import RunProgress, SweepObserver
from actscale.runs.store import RunStore

Trainer = Callable[[list[TrainConfig], list[Example] | None], list[RunBundle]]


def sweep_trainer(
    model: LoadedModel,
    store: RunStore,
    cancel: CancelFlag | None = None,
    on_progress: Progress | None = None,
    executor: str = "local",
    ray_address: str | None = None,
) -> Trainer:
    """Train (or reuse from ``store``) configs through `executors.run_configs`: one after
    another on ``model`` (``local``), or on a Ray cluster whose workers load the model."""
    from actscale.runs.executors import run_configs

    def run(configs: list[TrainConfig], examples: list[Example] | None) -> list[RunBundle]:
        observer = _ChecksSweep(len(configs), cancel, on_progress)
        model_here = model if executor == "local" else None
        return run_configs(
            configs,
            executor=executor,
            ray_address=ray_address,
            store=store,
            examples=examples,
            observer=observer,
            model=model_here,
        )

    return run


class _ChecksSweep(SweepObserver):
    """The check's runs as one share of its progress bar (finished runs whole, the running one
    by its steps); the check's cancel stops them."""

    def __init__(self, n: int, cancel: CancelFlag | None, on_progress: Progress | None) -> None:
        self.n, self.cancel, self.on_progress = n, cancel, on_progress
        self.finished: set[int] = set()

    def progress(self, event: RunProgress) -> None:
        if event.state in ("done", "reused"):
            self.finished.add(event.index)
        if self.on_progress is not None:
            step = event.step / event.n_steps if event.n_steps else 0.0
            fraction = (len(self.finished) + (0.0 if event.index in self.finished else step)) / self.n
            self.on_progress(min(1.0, fraction), f"run {event.index + 1} of {self.n}")

    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()


VARIES = {
    "data": "the data seed varied: other prompts and another split, the same training seed (data variance)",
    "seed": "the training seed varied on the same prompts: only the batch order changes, since every method "
    "starts at the identity (the weakest variation)",
}


def resolved_vary(bundle: RunBundle, vary: str) -> str:
    """``vary`` with "auto" resolved: the data seed where the task draws its data, the training
    seed for a dataset file (one draw of its data)."""
    if vary != "auto":
        return vary
    return "seed" if task_spec(bundle.record.config.task).from_file else "data"


def stability_configs(bundle: RunBundle, seeds: int, vary: str = "auto") -> list[TrainConfig]:
    """The run's configuration over ``seeds`` seeds, the run's own first: the data seed with the
    training seed fixed (``"data"``: data variance; generated tasks only), or the training seed
    with the data fixed (``"seed"``: optimisation variance); `resolved_vary` for "auto"."""
    vary = resolved_vary(bundle, vary)
    base = bundle.record.config
    if vary == "data" and task_spec(base.task).from_file:
        raise ActscaleError("a dataset file has one draw of its data: vary the training seed instead")
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
    vary = resolved_vary(bundle, options.vary)
    configs = stability_configs(bundle, options.seeds, vary)
    same_data = vary == "seed"
    task = run_task(model, bundle) if same_data else None
    bundles = trainer(configs, [Example.from_record(r) for r in bundle.dataset] if same_data else None)
    tau = bundle.record.config.tau
    mags = _magnitudes_over_runs(model, bundle, bundles, task)  # [K n]
    selected = mags > tau
    comps = Components(method_class(bundle.method), bundle.sites, magnitudes(bundle, task or run_task(model, bundle)))
    pairs = _pairs(bundles, mags, k_top, vary, tau)
    freq = selected.float().mean(0)
    consensus = mags.mean(0)
    in_all = torch.nonzero(selected.all(0)).flatten()
    ranked = in_all[torch.sort(-consensus[in_all], stable=True).indices]
    part = {
        "vary": vary,
        "varies": VARIES[vary],
        "k_top": k_top,
        "tau": tau,
        "runs": [_run_row(b, int(sel.sum())) for b, sel in zip(bundles, selected, strict=True)],
        "pairs": pairs,
        "n_selected_all": int(selected.all(0).sum()),
        "n_selected_any": int(selected.any(0).sum()),
        # over the components effective in either run of a pair (the near-zero rest would dominate)
        "spearman_over": "effective in either run",
        "mean_spearman": _mean(p["spearman"] for p in pairs),
        "mean_spearman_all": _mean(p["spearman_all"] for p in pairs),
        "stable_components": [
            {"component": comps.label(int(c)), "consensus": float(consensus[c]), "frequency": float(freq[c])}
            for c in ranked[:50].tolist()
        ],
    }
    tensors = {
        f"stability.{name}.{site}": values[comps.site_slice(site)].reshape(comps.shapes[site]).contiguous()
        for site in bundle.sites
        for name, values in (("freq", freq), ("consensus", consensus))
    }
    return part, tensors


def _run_row(b: RunBundle, n_selected: int) -> dict[str, Any]:
    """One run of the stability check: its seeds, effective components and test flip rate."""
    return {
        "run_id": b.run_id,
        "seed": b.record.config.seed,
        "data_seed": b.record.config.data_seed,
        "n_effective": n_selected if (test := b.record.split("test")).n_effective is None else test.n_effective,
        "test_mean_flip": test.mean_flip,
    }


def _magnitudes_over_runs(
    model: LoadedModel, bundle: RunBundle, bundles: list[RunBundle], task: PreparedTask | None
) -> Tensor:
    """Each run's component magnitudes, flattened in ``bundle``'s site order: [runs, components].
    Answer-aligned runs count positions back from the answer, so a run drawn on other data whose
    longest prompt differs is aligned on the answer (positions ``bundle`` lacks dropped, positions
    the other run lacks read 0). ActscaleError where the components cannot line up."""
    method = method_class(bundle.method)
    aligned = bundle.record.config.positions == "answer"
    flat: list[Tensor] = []
    for b in bundles:
        same = b.params.keys() == bundle.params.keys() and all(
            b.params[k].shape == bundle.params[k].shape for k in bundle.params
        )
        if not same and not (aligned and b.params.keys() == bundle.params.keys()):
            cfg, n_pos = b.record.config, (b.record.provenance.n_pos, bundle.record.provenance.n_pos)
            raise ActscaleError(
                f"run {b.run_id} (seed {cfg.seed}, data seed {cfg.data_seed}) has parameters of another shape than "
                f"run {bundle.run_id} (n_pos {n_pos[0]} against {n_pos[1]}): its components do not line up"
            )
        per_site = magnitudes(b, task if same and task is not None else run_task(model, b))
        width = bundle.record.provenance.n_pos
        sites = [_on_answer(per_site[s], method.component_axes(s), width).reshape(-1) for s in bundle.sites]
        flat.append(torch.cat(sites))
    return torch.stack(flat)


def _on_answer(values: Tensor, axes: tuple[str, ...], width: int | None) -> Tensor:
    """``values`` with its position axis right-aligned (on the answer) to ``width``."""
    if "position" not in axes or width is None or values.shape[axes.index("position")] == width:
        return values
    axis = axes.index("position")
    have = values.shape[axis]
    if have > width:
        return values.narrow(axis, have - width, width)
    pad = list(values.shape)
    pad[axis] = width - have
    return torch.cat([values.new_zeros(pad), values], dim=axis)


def _mean(values: Iterable[float]) -> float:
    kept = [float(v) for v in values if v == v]
    return statistics.mean(kept) if kept else float("nan")


def _pairs(bundles: list[RunBundle], mags: Tensor, k_top: int, vary: str, tau: float) -> list[dict[str, Any]]:
    """Every pair of runs: the Spearman correlation of their magnitudes over the components
    effective (> τ) in either run, and over all; their top-k overlap next to the overlap two
    random k-sets of the same components share by chance (hypergeometric: mean k²/n, and the
    chance of sharing at least as many)."""
    tops = [set(torch.sort(-m, stable=True).indices[:k_top].tolist()) for m in mags]
    n, pairs = int(mags.shape[1]), []
    for i, j in combinations(range(len(bundles)), 2):
        shared, union = len(tops[i] & tops[j]), (mags[i] > tau) | (mags[j] > tau)
        k = min(k_top, n)
        pairs.append(
            {
                "a": bundles[i].run_id,
                "b": bundles[j].run_id,
                "seed_a": _seed_of(bundles[i], vary),
                "seed_b": _seed_of(bundles[j], vary),
                "n_union": int(union.sum()),
                "spearman": spearman(mags[i][union], mags[j][union]) if int(union.sum()) >= 3 else float("nan"),
                "spearman_all": spearman(mags[i], mags[j]),
                "top_k_shared": shared,
                "top_k_jaccard": shared / len(tops[i] | tops[j]) if tops[i] | tops[j] else float("nan"),
                "top_k_chance": k * k / n if n else float("nan"),
                "top_k_p": overlap_p(shared, k, n),
            }
        )
    return pairs


def overlap_p(shared: int, k: int, n: int) -> float:
    """The chance that two k-sets drawn at random from n components share at least ``shared``
    (the hypergeometric upper tail)."""
    total = math.comb(n, k)
    return sum(math.comb(k, s) * math.comb(n - k, k - s) for s in range(shared, k + 1)) / total if total else 1.0


def _seed_of(bundle: RunBundle, vary: str) -> int:
    config = bundle.record.config
    return config.seed if vary == "seed" else config.data_seed
