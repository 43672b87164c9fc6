"""Every check a run asks for, in stages with progress, written into its bundle."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from actscale.checks.off_task import side_effects
from actscale.checks.options import CheckOptions, Progress
from actscale.checks.over_groups import generalisation, generalisation_configs
from actscale.checks.over_seeds import Trainer, stability, stability_configs, sweep_trainer
from actscale.checks.sufficiency import map_checks
from actscale.engine.interventions import method_class
from actscale.engine.models import LoadedModel
from actscale.engine.training import CancelFlag
from actscale.runs.bundle import CHECKS_VERSION, RunBundle, load_bundle, load_checks, save_checks
from actscale.runs.store import RunStore


@contextlib.contextmanager
def _stage(on_progress: Progress | None, lo: float, hi: float) -> Iterator[Progress]:
    """A progress callback for one stage, mapped into [lo, hi] of the whole."""

    def report(fraction: float, what: str) -> None:
        if on_progress is not None:
            on_progress(lo + (hi - lo) * min(1.0, max(0.0, fraction)), what)

    yield report
    report(1.0, "")


def check_asked(bundle: RunBundle, options: CheckOptions) -> None:
    """ActscaleError where a check ``options`` asks for cannot run on ``bundle`` (stability over
    data seeds of a dataset file; a generalisation matrix of fewer than two groups, or more than
    it takes): asked before any check runs, so that the map check's minutes are not lost with it."""
    if options.seeds >= 2:
        stability_configs(bundle, options.seeds, options.vary)
    if options.generalisation:
        generalisation_configs(bundle)


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
    check_asked(bundle, options)
    stages = ["map"] + (["stability"] if options.seeds >= 2 else [])
    stages += ["generalisation"] if options.generalisation else []
    stages += ["side_effects"] if options.side_effects and not method_class(bundle.method).fixed_length else []
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
                train = trainer or sweep_trainer(model, store, cancel, report, options.executor, options.ray_address)
                part, new = stability(model, bundle, options, train, k_top)
                data["stability"] = part
                tensors = {k: v for k, v in tensors.items() if not k.startswith("stability.")} | new
            elif stage == "generalisation":
                train = trainer or sweep_trainer(model, store, cancel, report, options.executor, options.ray_address)
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
