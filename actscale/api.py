"""The small public API that the command line, the dashboard and notebooks all call.

    from actscale import load_model, TrainConfig, train_run, load_run
    model = load_model("bundled")
    bundle = train_run(TrainConfig(task="ioi", method="activscalar"), model)
    bundle.metrics["test"]["flip_acc_pos"]
"""
from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch

from actscale.errors import ActscaleError
from actscale.interventions import Intervention, make_intervention
from actscale.models import LoadedModel
from actscale.store import RunBundle, RunStore, check_run_id, load_bundle, run_id_for
from actscale.tasks import Example, PreparedTask, generate_ccc, generate_ioi, prepare_task, read_dataset
from actscale.objective import logit_diff
from actscale.training import CancelFlag, StepInfo, TrainConfig, TrainResult, base_pass, evaluate, train

__version__ = "0.1.0"


def task_examples(config: TrainConfig) -> list[Example]:
    """The raw examples the config asks for (before tokenisation)."""
    if config.task == "ioi":
        return generate_ioi(config.n_prompts, config.seed, config.templates or None)
    if config.task == "ccc":
        return generate_ccc(config.n_prompts, config.seed, config.memory_is_correct)
    return read_dataset(config.dataset)


def build_task(model: LoadedModel, config: TrainConfig, examples: list[Example] | None = None) -> PreparedTask:
    """Tokenise the config's examples for ``model``: single-token answers, one length for
    ActivScalar and SteerVec, a deterministic split from the seed."""
    def prepare(items: list[Example]) -> PreparedTask:
        return prepare_task(
            items, model.tokenizer, prepend_bos=model.prepend_bos, fixed_length=config.fixed_length,
            seed=config.seed, test_frac=config.test_frac, test_templates=config.test_templates,
            max_len=model.n_ctx,
        )

    if examples is not None or config.task == "custom" or not config.fixed_length:
        return prepare(task_examples(config) if examples is None else examples)
    # Generated prompts come from templates of several token lengths, and ActivScalar and
    # SteerVec keep one length: draw eight times as many, keep n_prompts of the most common length.
    drawn = task_examples(config.replace(n_prompts=8 * config.n_prompts))
    kept = prepare(drawn).examples
    by_prompt = {(e.prompt, e.correct, e.wrong) for e in kept}
    chosen = [e for e in drawn if (e.prompt, e.correct, e.wrong) in by_prompt][: config.n_prompts]
    return prepare(chosen)


def preview_task(model: LoadedModel, task: PreparedTask) -> pd.DataFrame:
    """The validation preview of a prepared task: one row per kept prompt with its split, its
    tokens (as the model sees them), the answer pair, the unmodified model's ``Δ`` and the
    token it predicts next. ``picks`` says which answer the model prefers (``a+`` when Δ > 0).

    Runs the unmodified model once (no sites hooked); the result is cached with the task.
    """
    base = base_pass(model, task, ())
    delta = logit_diff(base.logits, task.correct_ids, task.wrong_ids)  # [n]
    top = base.logits.argmax(-1)  # [n]
    return pd.DataFrame({
        "split": [e.split for e in task.examples],
        "prompt": [e.prompt for e in task.examples],
        "correct": [e.correct for e in task.examples],
        "wrong": [e.wrong for e in task.examples],
        "delta_base": delta.tolist(),
        "picks": ["a+" if d > 0 else "a−" for d in delta.tolist()],
        "prediction": [model.tokenizer.decode([int(i)]) for i in top.tolist()],
        "n_tokens": [len(t) for t in task.str_tokens],
        # ␣ marks a space, so " Mary" and "Mary" (different tokens) look different.
        "tokens": [" ".join(_visible(t) for t in toks) for toks in task.str_tokens],
    })


def _visible(token: str) -> str:
    return "[" + token.replace(" ", "␣").replace("\n", "\\n") + "]"


def dropped_frame(task: PreparedTask) -> pd.DataFrame:
    """The prompts ``prepare_task`` left out, with the reason for each."""
    return pd.DataFrame(
        [{"prompt": e.prompt, "correct": e.correct, "wrong": e.wrong, "reason": reason} for e, reason in task.dropped],
        columns=["prompt", "correct", "wrong", "reason"],
    )


def package_versions() -> dict[str, str]:
    versions = {"actscale": __version__, "torch": torch.__version__}
    for name in ("transformers", "transformer-lens"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def run_config(model: LoadedModel, task: PreparedTask, config: TrainConfig) -> dict[str, Any]:
    """The config.json of a run: everything needed to rerun it (interfaces.md)."""
    record = config.to_dict()
    record.update(
        device=model.device,
        dtype="float32",
        weights_hash=model.weights_hash,
        dataset_hash=task.dataset_hash,
        n_pos=task.n_pos,
        model_dims={"n_layers": model.n_layers, "d_model": model.d_model, "n_heads": model.n_heads,
                    "d_head": model.d_head, "d_vocab": model.d_vocab},
        versions=package_versions(),
    )
    return record


def expected_run_id(model: LoadedModel, task: PreparedTask, config: TrainConfig) -> str:
    """The run id this configuration will have: the dashboard opens it instead of retraining."""
    return run_id_for(run_config(model, task, config))


def position_labels(task: PreparedTask) -> list[str]:
    """A label per position for fixed-length runs: the token all train prompts share there, or
    the most common one followed by '…' where they differ (names, places)."""
    idx = task.split_indices("train").tolist() or list(range(len(task.examples)))
    labels = []
    for pos in range(task.n_pos):
        seen: dict[str, int] = {}
        for i in idx:
            toks = task.str_tokens[i]
            offset = task.n_pos - len(toks)
            if pos >= offset:
                seen[toks[pos - offset]] = seen.get(toks[pos - offset], 0) + 1
        if not seen:
            labels.append(f"{pos}:")
            continue
        top = max(seen, key=lambda k: (seen[k], k))
        labels.append(f"{pos}:{top}" + ("" if len(seen) == 1 else "…"))
    return labels


def save_result(store: RunStore, model: LoadedModel, task: PreparedTask, result: TrainResult) -> RunBundle:
    config = run_config(model, task, result.config)
    info = {
        "position_labels": position_labels(task),
        "str_tokens": task.str_tokens,
        "dropped": [{"prompt": e.prompt, "reason": r} for e, r in task.dropped],
        "summary": task.summary(),
        "steps_run": result.steps_run,
        "seconds": round(result.seconds, 3),
        "stopped_early": result.stopped_early,
        "model_name": model.name,
    }
    path = store.save(config, result.intervention.named_tensors(), result.metrics, result.history,
                      task.to_records(), result.analysis, info)
    return load_bundle(path)


def train_run(config: TrainConfig, model: LoadedModel, *, store: RunStore | str | Path | None = None,
              task: PreparedTask | None = None, on_step: Callable[[StepInfo], None] | None = None,
              cancel: CancelFlag | None = None, reuse: bool = True,
              on_wait: Callable[[], None] | None = None) -> RunBundle:
    """Train (or reuse) the run ``config`` describes and return its stored bundle.

    A run whose configuration is already in the store is loaded, not retrained. Cancelling or
    a diverging loss raises before anything is written.
    """
    store = store if isinstance(store, RunStore) else RunStore(store)
    if config.model != model.name:
        config = config.replace(model=model.name)
    task = task or build_task(model, config)
    run_id = expected_run_id(model, task, config)
    if reuse and store.exists(run_id):
        try:
            return store.load(run_id)
        except ActscaleError:
            pass  # a broken copy is replaced by a fresh run
    result = train(model, task, config, on_step=on_step, cancel=cancel, on_wait=on_wait)
    return save_result(store, model, task, result)


def load_run(run: str | Path, store: RunStore | str | Path | None = None) -> RunBundle:
    """A run by id (in ``store``) or by folder path."""
    path = Path(run)
    if path.is_dir() and (path / "config.json").exists():
        return load_bundle(path)
    store = store if isinstance(store, RunStore) else RunStore(store)
    return store.load(check_run_id(str(run)))


def intervention_from_bundle(bundle: RunBundle, model: LoadedModel) -> Intervention:
    """The bundle's trained intervention, ready to steer ``model`` (which must be the same)."""
    cfg = bundle.config
    if cfg.get("weights_hash") != model.weights_hash:
        raise ActscaleError(
            f"run {bundle.run_id} was trained on model {cfg.get('model')!r} "
            f"(weights {cfg.get('weights_hash')}); the loaded model is {model.name!r} ({model.weights_hash})"
        )
    iv = make_intervention(
        cfg["method"], tuple(cfg["sites"]), n_layers=model.n_layers, n_pos=cfg["n_pos"], d_model=model.d_model,
        n_heads=model.n_heads, d_head=model.d_head, normalize=cfg.get("normalize", True),
    )
    try:
        iv.load_named_tensors(bundle.params)
    except ValueError as exc:  # the bundle's shapes are for other model dimensions
        raise ActscaleError(f"run {bundle.run_id} does not fit the loaded model {model.name!r}: {exc}") from None
    return iv.to(model.device)


def evaluate_run(bundle: RunBundle, model: LoadedModel, dataset: str | Path | None = None,
                 beta: float = 1.0) -> dict[str, dict[str, float]]:
    """Metrics of a stored run on its own dataset (or on ``dataset``), with strength ``beta``."""
    config = TrainConfig.from_dict(bundle.config)
    iv = intervention_from_bundle(bundle, model)
    if dataset is None:
        examples = [Example(r["prompt"], r["correct"], r["wrong"], r.get("split", "")) for r in bundle.dataset]
    else:
        examples = read_dataset(dataset)
    task = build_task(model, config, examples)
    if config.fixed_length and task.n_pos != iv.n_pos:
        raise ActscaleError(
            f"this {config.method} run is tied to prompts of {iv.n_pos} tokens; the dataset's prompts have {task.n_pos}"
        )
    metrics, _ = evaluate(model, task, iv, config, beta=beta)
    return metrics
