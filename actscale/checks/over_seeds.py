"""Stability over seeds (docs/method.md §7.5): the same configuration trained over K seeds,
selection frequencies, rank correlations and top-k overlaps."""

from __future__ import annotations

import statistics
from collections.abc import Callable
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


def stability_configs(bundle: RunBundle, seeds: int, vary: str = "seed") -> list[TrainConfig]:
    """The run's configuration over ``seeds`` seeds, the run's own first: the training seed
    varies with the data fixed (``vary="seed"``: optimisation variance), or the data seed with
    the training seed fixed (``"data"``: data variance; generated tasks only)."""
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
    configs = stability_configs(bundle, options.seeds, options.vary)
    same_data = options.vary == "seed"
    task = run_task(model, bundle) if same_data else None
    bundles = trainer(configs, [Example.from_record(r) for r in bundle.dataset] if same_data else None)
    tau = bundle.record.config.tau
    mags = _magnitudes_over_runs(model, bundle, bundles, task)  # [K n]
    selected = mags > tau
    comps = Components(
        method_class(bundle.method),
        bundle.sites,
        magnitudes(bundle, task or run_task(model, bundle)),
    )
    pairs = _pairs(bundles, mags, k_top, options.vary)
    freq = selected.float().mean(0)
    consensus = mags.mean(0)
    in_all = torch.nonzero(selected.all(0)).flatten()
    ranked = in_all[torch.sort(-consensus[in_all], stable=True).indices]
    part = {
        "vary": options.vary,
        "k_top": k_top,
        "tau": tau,
        "runs": [_run_row(b, int(sel.sum())) for b, sel in zip(bundles, selected, strict=True)],
        "pairs": pairs,
        "n_selected_all": int(selected.all(0).sum()),
        "n_selected_any": int(selected.any(0).sum()),
        "mean_spearman": statistics.mean(float(p["spearman"]) for p in pairs) if pairs else float("nan"),
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
    ActscaleError where a run's parameters have another shape than ``bundle``'s."""
    flat: list[Tensor] = []
    tasks: dict[str, PreparedTask] = {}
    for b in bundles:
        if b.params.keys() != bundle.params.keys() or any(
            b.params[k].shape != bundle.params[k].shape for k in bundle.params
        ):
            cfg, n_pos = b.record.config, (b.record.provenance.n_pos, bundle.record.provenance.n_pos)
            raise ActscaleError(
                f"run {b.run_id} (seed {cfg.seed}, data seed {cfg.data_seed}) has parameters of another shape than "
                f"run {bundle.run_id} (n_pos {n_pos[0]} against {n_pos[1]}): its components do not line up"
            )
        t = tasks.setdefault(b.run_id, task or run_task(model, b))
        per_site = magnitudes(b, t)
        flat.append(torch.cat([per_site[s].reshape(-1) for s in bundle.sites]))
    return torch.stack(flat)


def _pairs(bundles: list[RunBundle], mags: Tensor, k_top: int, vary: str) -> list[dict[str, Any]]:
    """Every pair of runs: the Spearman correlation of their magnitudes and their top-k overlap."""
    tops = [set(torch.sort(-m, stable=True).indices[:k_top].tolist()) for m in mags]
    pairs: list[dict[str, Any]] = []
    for i, j in combinations(range(len(bundles)), 2):
        shared = len(tops[i] & tops[j])
        pairs.append(
            {
                "a": bundles[i].run_id,
                "b": bundles[j].run_id,
                "seed_a": _seed_of(bundles[i], vary),
                "seed_b": _seed_of(bundles[j], vary),
                "spearman": spearman(mags[i], mags[j]),
                "top_k_shared": shared,
                "top_k_jaccard": shared / len(tops[i] | tops[j]) if tops[i] | tops[j] else float("nan"),
            }
        )
    return pairs


def _seed_of(bundle: RunBundle, vary: str) -> int:
    config = bundle.record.config
    return config.seed if vary == "seed" else config.data_seed
