"""The sweep grid (actscale.runs.sweeps): order, defaults, the size cap, the base run's examples."""

from __future__ import annotations

import pytest

from actscale.engine.tasks import Example
from actscale.engine.training import TrainConfig
from actscale.errors import ActscaleError
from actscale.runs.migrations import migrate_config
from actscale.runs.records import RunRecord
from actscale.runs.sweeps import MAX_SWEEP, base_examples, check_sweep_size, sweep_configs

BASE = TrainConfig(
    model="tiny-llama", method="activscalar", steps=18, lambda_m=0.05, lambda_f=1.0, margin=2.0, seed=3, n_prompts=16
)


def grid(configs):
    return [(c.lambda_m, c.lambda_f, c.margin, c.seed) for c in configs]


def test_grid_order_lambda_m_outermost_then_lambda_f_then_margin_then_seed():
    configs = sweep_configs(BASE, [0.1, 0.01], [1.0, 0.5], [2.0, 1.0], seeds=[0, 7])
    assert grid(configs) == [
        (lm, lf, m, s) for lm in (0.1, 0.01) for lf in (1.0, 0.5) for m in (2.0, 1.0) for s in (0, 7)
    ]
    assert grid(configs)[:3] == [(0.1, 1.0, 2.0, 0), (0.1, 1.0, 2.0, 7), (0.1, 1.0, 1.0, 0)]
    assert len(configs) == 16


def test_everything_else_is_the_base_config():
    configs = sweep_configs(BASE, [0.2], [0.0], [3.0])
    assert len(configs) == 1
    assert configs[0] == BASE.replace(lambda_m=0.2, lambda_f=0.0, margin=3.0)
    assert configs[0].seed == 3 and configs[0].steps == 18  # the base's seed and steps by default


def test_steps_override():
    assert [c.steps for c in sweep_configs(BASE, [0.1, 0.2], [1.0], [2.0], steps=2)] == [2, 2]


def test_the_base_may_be_a_stored_runs_config():
    stored = {
        **BASE.to_dict(),
        "run_id": "0123456789abcdef",
        "dataset_hash": "abc",
        "created": "2024-01-01",
        "n_pos": 16,
        "model_dims": {"n_layers": 2, "d_model": 64, "n_heads": 4, "d_head": 16, "d_vocab": 192},
    }
    record = RunRecord.from_json(migrate_config(stored), {}, stored_format=0)
    assert sweep_configs(record.config, [0.1], [1.0], [2.0]) == sweep_configs(BASE, [0.1], [1.0], [2.0])


def test_the_cap():
    assert MAX_SWEEP == 27
    # a value given twice is one run (0.01 and 0.010 are one number), the order kept
    twice = sweep_configs(BASE, [0.01, 0.05, 0.010], [1.0], [2.0, 2.0], seeds=[3, 0, 3])
    assert [(c.lambda_m, c.seed) for c in twice] == [(0.01, 3), (0.01, 0), (0.05, 3), (0.05, 0)]
    assert len(sweep_configs(BASE, [1, 2, 3], [1, 2, 3], [1, 2, 3])) == 27
    with pytest.raises(ActscaleError, match="that sweep is 32 runs; at most 27 at a time"):
        sweep_configs(BASE, [0.001, 0.01], [0, 0.5, 1, 2], [1, 2, 3, 4])
    with pytest.raises(ActscaleError, match="that sweep is 4 runs; at most 3 at a time"):
        sweep_configs(BASE, [1, 2], [1], [1], seeds=[0, 1], limit=3)
    check_sweep_size(27)
    with pytest.raises(ActscaleError):
        check_sweep_size(28)


def test_a_value_the_config_rejects_is_an_actscale_error():
    with pytest.raises(ActscaleError):
        sweep_configs(BASE, [-1.0], [1.0], [2.0])


def test_base_examples_keep_prompts_answers_and_split():
    rows = [
        {"prompt": "When Mary and John", "correct": " Mary", "wrong": " John", "split": "test", "extra": 1},
        {"prompt": "The capital of", "correct": " Paris", "wrong": " Rome"},
    ]
    assert base_examples(rows) == [
        Example("When Mary and John", " Mary", " John", "test"),
        Example("The capital of", " Paris", " Rome", ""),
    ]
