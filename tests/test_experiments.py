"""`python -m benchmarks.experiments`: the selection rule and the tables (the runs themselves are
docs/measured.md's figures, not tests)."""

from __future__ import annotations

import json

from actscale.engine.config import TrainConfig
from benchmarks import experiments


def score(changes: dict, flip: float, frac: float) -> dict:
    return {"changes": changes, "val_mean_flip": flip, "val_effective_frac": frac}


def test_choose_takes_the_smallest_effective_fraction_within_the_tolerance_of_the_best():
    scores = [score({"steps": 12}, 0.95, 0.187), score({"steps": 18}, 0.95, 0.105), score({"steps": 25}, 0.90, 0.05)]
    assert experiments.choose(scores)["changes"] == {"steps": 18}
    # 0.983 is within 0.02 of 1.00, and has the smaller effective fraction
    scores = [score({"a": 1}, 1.0, 0.307), score({"a": 2}, 0.983, 0.172), score({"a": 3}, 0.979, 0.01)]
    assert experiments.choose(scores)["changes"] == {"a": 2}
    # equal fractions: the first (cheapest) in the grid's order
    assert experiments.choose([score({"a": 1}, 0.9, 0.1), score({"a": 2}, 0.9, 0.1)])["changes"] == {"a": 1}


def test_first_result_grid_holds_valid_configs_and_starts_at_the_float32_default_of_before():
    assert experiments.FIRST_RESULT_GRID[0] == {"batch_size": 8, "autocast": "off"}
    for changes in experiments.FIRST_RESULT_GRID:
        # spelled out, so a row is the same run whatever today's defaults are
        assert {"batch_size", "autocast"} <= changes.keys()
        config = TrainConfig(model="bundled", task="ioi", method="activscalar", seed=1, n_test=1, **changes)
        assert config.n_test == 1 and config.data_seed == 1
    assert len({json.dumps(c, sort_keys=True) for c in experiments.FIRST_RESULT_GRID}) == len(
        experiments.FIRST_RESULT_GRID
    )


def test_first_result_table():
    result = {
        "{}": {"val_mean_flip": 0.95, "val_effective_frac": 0.1053, "steps_s": 18.46, "run_ids": []},
        '{"autocast": "bf16"}': {"val_mean_flip": 0.95, "val_effective_frac": 0.106, "steps_s": 11.36, "run_ids": []},
    }
    assert experiments.markdown("first-result", result).splitlines() == [
        "| ActivScalar, IOI (settings, the rest default) | validation mean flip | effective fraction | steps' s |",
        "|---|---|---|---|",
        "| {} | 0.950 | 0.105 | 18.5 |",
        '| {"autocast": "bf16"} | 0.950 | 0.106 | 11.4 |',
    ]


def test_cycles_line_names_each_seeds_cycles_and_an_unmet_target():
    def target(cycles_run: int, pos: float, neg: float, met: bool) -> dict:
        return {"cycles_run": cycles_run, "cycles": 4, "flip_acc_pos": pos, "flip_acc_neg": neg, "met": met}

    targets = [target(1, 1.0, 1.0, True), target(3, 1.0, 0.9, True), target(4, 1.0, 0.6, False)]
    assert experiments._cycles_line("ioi dynscalar", targets) == (  # noqa: SLF001 - the table's line
        "- ioi dynscalar (seeds 1, 2, 3): 1 of 4 cycles, validation 1.00/1.00; 3 of 4 cycles, validation "
        "1.00/0.90; 4 of 4 cycles, validation 1.00/0.60 (target not reached)"
    )


def test_defaults_over_models_averages_each_configurations_scores_before_the_rule(monkeypatch):
    """Two families that disagree: the rule reads the configurations' mean over the models."""
    monkeypatch.setattr(experiments, "GRID", {"activscalar": [{"steps": 12}, {"steps": 18}]})
    per_model = {  # (validation mean flip, effective fraction) of 12 and 18 steps
        "bundled": [(1.0, 0.26), (1.0, 0.17)],
        "gemma.gguf": [(0.90, 0.30), (1.0, 0.32)],
    }

    def defaults(model, store):
        rows = per_model[model.name]
        return {"activscalar": {"grid": [score(c, f, e) for c, (f, e) in zip(experiments.GRID["activscalar"], rows)]}}

    monkeypatch.setattr(experiments, "defaults", defaults)
    models = [type("M", (), {"name": name}) for name in per_model]
    result = experiments.defaults_over(models, store=None)
    assert list(result["models"]) == ["bundled", "gemma.gguf"]
    grid = result["combined"]["activscalar"]["grid"]
    assert [(g["val_mean_flip"], round(g["val_effective_frac"], 6)) for g in grid] == [(0.95, 0.28), (1.0, 0.245)]
    # 12 steps is 0.05 below 18 on the mean: outside the tolerance, so 18 steps is chosen
    assert result["combined"]["activscalar"]["chosen"] == {"steps": 18}
    lines = experiments.markdown("defaults", {**result, "models": {}}).splitlines()
    assert lines == [
        "### Over the models (each configuration's validation scores averaged)",
        "",
        "- activscalar: chosen {'steps': 18}; {'steps': 12} 0.950 "
        "(effective fraction 0.280); {'steps': 18} 1.000 (effective fraction 0.245)",
    ]
