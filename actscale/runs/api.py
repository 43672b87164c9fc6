"""The small public API that the command line, the dashboard and notebooks all call.

from actscale import load_model, TrainConfig, train_run, load_run
model = load_model("bundled")
bundle = train_run(TrainConfig(task="ioi", method="activscalar"), model)
bundle.record.split("test").flip_acc_pos
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from actscale._version import __version__
from actscale.engine.config import TrainConfig
from actscale.engine.evaluation import evaluate
from actscale.engine.interventions import Intervention, make_intervention
from actscale.engine.models import LoadedModel
from actscale.engine.objective import MINIMALITY_NAMES
from actscale.engine.observer import RunObserver
from actscale.engine.resources import resolve_autocast
from actscale.engine.tasks import Example, PreparedTask, prepare_task, read_dataset
from actscale.engine.tasks.prepared import check_groups_known, check_held_out
from actscale.engine.tasks.registry import task_spec
from actscale.engine.tokens import text_ids
from actscale.engine.training import TrainResult, model_dims, target_outcome, train
from actscale.errors import ActscaleError
from actscale.runs.bundle import RUN_ID, BundleContents, RunBundle, check_run_id, load_bundle, run_id_for
from actscale.runs.records import SplitMetrics
from actscale.runs.store import RunStore


def resolved_prepend_bos(model: LoadedModel, config: TrainConfig) -> bool:
    """The config's ``prepend_bos``, or the model's own default where it leaves it open."""
    return model.prepend_bos if config.prepend_bos is None else bool(config.prepend_bos)


def task_examples(config: TrainConfig, oversample: int = 1) -> list[Example]:
    """The raw examples the config asks for (before tokenisation). Generated tasks come with
    their test prompts (and CCC with every split) assigned; ``oversample`` draws that many
    times more of each, for a caller that keeps only one prompt length."""
    return task_spec(config.task).draw(config, oversample)


def build_task(
    model: LoadedModel, config: TrainConfig, examples: Sequence[Example] | None = None, n_pos: int | None = None
) -> PreparedTask:
    """Tokenise the config's examples for ``model``: single-token answers, one length for
    fixed-length methods with absolute positions (every length, left-padded, otherwise),
    deterministic train / validation / test splits from the data seed. ``n_pos``: pad to
    this width and drop longer prompts (a stored answer-aligned run's width)."""

    from_file = task_spec(config.task).from_file

    def prepare(items: list[Example]) -> PreparedTask:
        return prepare_task(
            items,
            model.tokenizer,
            prepend_bos=resolved_prepend_bos(model, config),
            fixed_length=config.one_length,
            seed=config.data_seed,
            test_frac=config.test_frac if from_file else 0.0,
            val_frac=config.val_frac,
            test_templates=config.test_templates,
            test_groups=config.test_groups,
            max_len=model.n_ctx,
            by_group=from_file,  # a file's groups never span two splits
            n_pos=n_pos,
            unique=from_file,  # a user's file may repeat a row
        )

    if examples is not None:  # a stored run's prompts, split as they were
        return prepare(list(examples))
    if from_file or not config.one_length:
        return prepare(task_examples(config))
    return prepare(_of_one_length(model, config, prepare))


def checked_task(model: LoadedModel, config: TrainConfig, examples: Sequence[Example] | None = None) -> PreparedTask:
    """`build_task` for a run a user asked for (`train_run`, the command line's ``train`` and
    ``sweep``, the Train page): DatasetError, saying why, where a held-out group is in none of a
    file's rows, or the groups and templates held out for test leave no test prompt (a run
    without a test split). The checks' own runs (the generalisation matrix holds out every group
    but one, and shows a cell of none) build theirs with `build_task`."""
    task = build_task(model, config, examples)
    from_file = task_spec(config.task).from_file
    if from_file:  # the generators refuse an unknown family or country themselves
        check_groups_known(task, config.test_groups)
    why = "no prompt is in the test split"
    if config.one_length and not from_file:  # a file's prompts of other lengths are dropped, and counted
        why = f"no prompt held out has the {task.n_pos} tokens of the training prompts, the one length "
        why += "absolute positions take (answer-aligned positions take others)"
    check_held_out(task, config.test_templates, config.test_groups, why)
    return task


def _of_one_length(
    model: LoadedModel, config: TrainConfig, prepare: Callable[[list[Example]], PreparedTask]
) -> list[Example]:
    """A generated task's prompts for a fixed-length method with absolute positions. The
    templates have several token lengths and such a method keeps one: draw eight times as many,
    take the most common length among the training and validation prompts (never the test
    prompts: they must not shape training), and keep the asked number of each split among the
    prompts of that length."""
    drawn = task_examples(config, oversample=8)
    trainval = prepare([e for e in drawn if e.split != "test"])
    bos = 1 if resolved_prepend_bos(model, config) and model.tokenizer.bos_token_id is not None else 0
    kept = {(e.prompt, e.correct, e.wrong) for e in trainval.examples}

    def fits(e: Example) -> bool:
        if e.split != "test":
            return (e.prompt, e.correct, e.wrong) in kept
        return bos + len(text_ids(model.tokenizer, e.prompt)) == trainval.n_pos

    quota = Counter(e.split for e in task_examples(config))
    chosen = []
    for e in drawn:
        if quota[e.split] > 0 and fits(e):
            quota[e.split] -= 1
            chosen.append(e)
    return chosen


def package_versions() -> dict[str, str]:
    versions = {"actscale": __version__, "torch": torch.__version__}
    for name in ("transformers", "transformer-lens"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def run_config(model: LoadedModel, task: PreparedTask, config: TrainConfig) -> dict[str, Any]:
    """The config.json of a run: everything needed to rerun it (docs/interfaces.md)."""
    config = resolve_autocast(config, model)
    record = config.to_record()
    record.update(
        prepend_bos=resolved_prepend_bos(model, config),  # the value used, not "the model's default"
        device=model.device,
        dtype="bfloat16 autocast, parameters float32" if config.bf16 else "float32",
        weights_hash=model.weights_hash,
        dataset_hash=task.dataset_hash,
        n_pos=task.n_pos,
        model_dims={
            "n_layers": model.n_layers,
            "d_model": model.d_model,
            "n_heads": model.n_heads,
            "d_head": model.d_head,
            "d_vocab": model.d_vocab,
        },
        versions=package_versions(),
    )
    return record


def expected_run_id(model: LoadedModel, task: PreparedTask, config: TrainConfig) -> str:
    """The run id this configuration will have: the dashboard opens it instead of retraining."""
    return run_id_for(run_config(model, task, config))


def save_result(
    store: RunStore, model: LoadedModel, task: PreparedTask, result: TrainResult, *, replace: bool = False
) -> RunBundle:
    config = run_config(model, task, result.config)
    info = {
        "position_labels": task.position_labels(),
        "position_coverage": task.position_coverage(),
        "str_tokens": task.str_tokens,
        "dropped": [
            {"prompt": e.prompt, "correct": e.correct, "wrong": e.wrong, "row": e.source, "reason": r}
            for e, r in task.dropped
        ],
        "summary": task.summary(),
        "steps_run": result.steps_run,
        "seconds": round(result.seconds, 3),
        "timing": result.timing,
        "stopped_early": result.stopped_early,
        "target": target_outcome(result.config, result.metrics, result.cycles_run),
        "model_name": model.name,
        "group_metrics": result.groups,
        **({"fit": result.fit} if result.fit is not None else {}),
    }
    params = result.intervention.named_tensors()
    contents = BundleContents(config, params, result.metrics, result.history, task.to_records(), result.analysis, info)
    path = store.save(contents, replace=replace)
    return load_bundle(path)


def train_run(
    config: TrainConfig,
    model: LoadedModel,
    *,
    store: RunStore | str | Path | None = None,
    task: PreparedTask | None = None,
    observer: RunObserver | None = None,
    reuse: bool = True,
) -> RunBundle:
    """Train (or reuse) the run ``config`` describes and return its stored bundle.

    A run whose configuration is already in the store is loaded, not retrained; with
    ``reuse=False`` it is trained again and replaces the stored one (whose map checks it keeps
    where the parameters are byte-identical: `RunStore.save`). The ``observer`` hears the steps
    and the first result and may cancel (`training.train`); cancelling or a diverging loss raises
    before anything is written.
    """
    store = store if isinstance(store, RunStore) else RunStore(store)
    if config.model != model.name:
        config = config.replace(model=model.name)
    task = task or checked_task(model, config)
    run_id = expected_run_id(model, task, config)
    if reuse and (stored := store.resolve(run_id)) is not None:
        try:
            return store.load(stored)
        except ActscaleError:
            pass  # a broken copy is replaced by a fresh run
    store.check_writable()  # refused before training, not after it
    result = train(model, task, config, observer=observer)
    return save_result(store, model, task, result, replace=not reuse)


def load_run(run: str | Path, store: RunStore | str | Path | None = None) -> RunBundle:
    """A run by id (in ``store``) or by folder path; ActscaleError naming a folder that is not a
    run's, or a path that is not there."""
    path = Path(run)
    if path.is_dir() and (path / "config.json").exists():
        return load_bundle(path)
    if path.is_dir() and not RUN_ID.match(path.name):
        raise ActscaleError(f"{path} is a folder but not a run's: it has no config.json")
    if len(path.parts) > 1 and not path.exists():
        raise ActscaleError(f"no run folder {path}")
    store = store if isinstance(store, RunStore) else RunStore(store)
    return store.load(check_run_id(str(run)))


def intervention_from_bundle(bundle: RunBundle, model: LoadedModel) -> Intervention:
    """The bundle's trained intervention, ready to steer ``model`` (which must be the same)."""
    cfg, made = bundle.record.config, bundle.record.provenance
    if made.weights_hash != model.weights_hash:
        raise ActscaleError(
            f"run {bundle.run_id} was trained on model {cfg.model!r} "
            f"(weights {made.weights_hash or None}); the loaded model is {model.name!r} ({model.weights_hash})"
        )
    iv = make_intervention(cfg.method, cfg.sites, model_dims(model, made.n_pos), cfg.to_dict())
    try:
        iv.load_named_tensors(bundle.params)
    except ValueError as exc:  # the bundle's shapes are for other model dimensions
        raise ActscaleError(f"run {bundle.run_id} does not fit the loaded model {model.name!r}: {exc}") from None
    return iv.to(model.device)


def evaluate_run(
    bundle: RunBundle, model: LoadedModel, dataset: str | Path | None = None, beta: float = 1.0
) -> dict[str, dict[str, float]]:
    """Metrics of a stored run with strength ``beta``: per split on its own dataset, or on every
    usable row of the file ``dataset`` as one set, under the key "dataset" (`evaluate_file`)."""
    if dataset is not None:
        return evaluate_file(bundle, model, dataset, beta)[0]
    config = bundle.record.config
    iv = intervention_from_bundle(bundle, model)
    examples = [Example.from_record(r) for r in bundle.dataset]
    # Answer-aligned: the prompts are padded to the run's width (longer ones dropped), so every
    # per-position statistic lines up with the parameters.
    task = build_task(model, config, examples, n_pos=iv.n_pos if iv.answer_aligned else None)
    if config.fixed_length and task.n_pos != iv.n_pos:
        raise ActscaleError(
            f"this {config.method} run is tied to prompts of {iv.n_pos} tokens; the dataset's prompts have {task.n_pos}"
        )
    return evaluate(model, task, iv, config, beta=beta).metrics


def plan_run(
    config: TrainConfig, model: LoadedModel, examples: Sequence[Example] | None, checked: bool = False
) -> tuple[TrainConfig, PreparedTask, str]:
    """The config as it runs on ``model``, its tokenised task (from ``examples`` when given;
    `checked_task`'s when ``checked``) and the run id it will have. A worker and this process
    plan a run with the same code, so both give the same run id."""
    if config.model != model.name:
        config = config.replace(model=model.name)
    task = (checked_task if checked else build_task)(model, config, examples)
    return config, task, expected_run_id(model, task, config)


MINIMALITY = MINIMALITY_NAMES  # kept from the run itself when it is evaluated on another file


def evaluate_file(
    bundle: RunBundle, model: LoadedModel, path: str | Path, beta: float = 1.0
) -> tuple[dict[str, dict[str, float]], PreparedTask]:
    """Every usable row of the CSV/JSONL ``path`` evaluated as one set (a split column is
    ignored: nothing trains on these prompts), as ``{"dataset": metrics}``, and the task, whose
    `summary()` says how many rows were dropped and why (a wrong answer length; a prompt longer
    than the run's width; for a run with absolute positions, any other length than its own; a
    row repeating an earlier one, which would count twice).
    The minimality figures are the run's own: its parameters, measured on its training prompts."""
    config = bundle.record.config
    iv = intervention_from_bundle(bundle, model)
    examples = [dataclasses.replace(e, split="test") for e in read_dataset(path)]
    task = prepare_task(
        examples,
        model.tokenizer,
        prepend_bos=resolved_prepend_bos(model, config),
        fixed_length=config.one_length,
        test_frac=0.0,
        max_len=model.n_ctx,
        n_pos=iv.n_pos if iv.answer_aligned or config.one_length else None,
        require_train=False,
        unique=True,
    )
    (metrics,) = evaluate(model, task, iv, config, beta=beta).metrics.values()  # every row is a test row
    own = next(iter(bundle.record.splits.values()), SplitMetrics()).to_json()
    metrics = {**metrics, **{k: own[k] for k in MINIMALITY if k in own}}
    return {"dataset": metrics}, task
