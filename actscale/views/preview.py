"""The Train page's validation preview of a prepared task, as tables: the prompts as the model
sees them with the unmodified model's preference, and the prompts left out with the reason."""

from __future__ import annotations

import pandas as pd

from actscale.engine.evaluation import base_pass
from actscale.engine.models import LoadedModel
from actscale.engine.objective import logit_diff
from actscale.engine.tasks import PreparedTask
from actscale.engine.tasks.examples import SPLITS
from actscale.views.words import counted


def preview_task(
    model: LoadedModel, task: PreparedTask, sites: tuple[str, ...] = (), autocast: bool = False
) -> pd.DataFrame:
    """The validation preview of a prepared task: one row per kept prompt with its split, its
    tokens (as the model sees them), the answer pair, the unmodified model's ``Δ`` and the
    token it predicts next. ``picks`` says which answer the model prefers (``a+`` when Δ > 0).

    Runs the unmodified model once over every prompt (`base_pass`, cached per model, prompts,
    ``sites`` and precision): with a run's sites and precision, the training of these prompts
    reuses that pass instead of running the model again before its first step.
    """
    base = base_pass(model, task, sites, autocast=autocast)
    delta = logit_diff(base.logits, task.correct_ids, task.wrong_ids)  # [n]
    top = base.logits.argmax(-1)  # [n]
    return pd.DataFrame(
        {
            "split": [e.split for e in task.examples],
            "group": [e.group for e in task.examples],
            "prompt": [e.prompt for e in task.examples],
            "correct": [e.correct for e in task.examples],
            "wrong": [e.wrong for e in task.examples],
            "delta_base": delta.tolist(),
            "picks": ["a+" if d > 0 else "a−" for d in delta.tolist()],
            "prediction": [model.tokenizer.decode([int(i)]) for i in top.tolist()],
            "n_tokens": [len(t) for t in task.str_tokens],
            # ␣ marks a space, so " Mary" and "Mary" (different tokens) look different.
            "tokens": [" ".join(_visible(t) for t in toks) for toks in task.str_tokens],
        }
    )


def groups_text(task: PreparedTask) -> str:
    """How the kept prompts' groups fall into the splits: ``"8 groups: 5 in train, 2 in val, 1 in
    test; none is in two splits"``, or where groups are shared (generated prompts split one by
    one) ``"2 groups: 2 in train, 2 in val, 2 in test; test shares groups with training"``; ""
    where no prompt has a group."""
    per = {s: {e.group for e in task.examples if e.split == s and e.group} for s in SPLITS}
    named = sorted(set().union(*per.values()))
    if not named:
        return ""
    spread = ", ".join(f"{len(per[s])} in {s}" for s in SPLITS if per[s])
    shared = sum(len(g) for g in per.values()) > len(named)
    if not shared:
        return f"{counted(len(named), 'group')}: {spread}; none is in two splits"
    return f"{counted(len(named), 'group')}: {spread}; " + (
        "test shares groups with training" if per["test"] & per["train"] else "some are in two splits"
    )


def _visible(token: str) -> str:
    return "[" + token.replace(" ", "␣").replace("\n", "\\n") + "]"


def dropped_frame(task: PreparedTask) -> pd.DataFrame:
    """The prompts ``prepare_task`` left out, with the reason for each and, for a file, the row
    (or line) it came from."""
    return pd.DataFrame(
        [
            {"row": e.source, "prompt": e.prompt, "correct": e.correct, "wrong": e.wrong, "reason": reason}
            for e, reason in task.dropped
        ],
        columns=["row", "prompt", "correct", "wrong", "reason"],
    )
