"""`make bench`'s arithmetic and report (the figures themselves are measured by `make bench`)."""

from __future__ import annotations

import pytest

from actscale.bench import device_description, growth_exponent, report_lines


def test_growth_exponent_is_the_log_log_slope():
    assert growth_exponent([1, 2, 4], [3, 6, 12]) == pytest.approx(1.0)
    assert growth_exponent([2, 4, 8, 16], [5, 20, 80, 320]) == pytest.approx(2.0)
    assert growth_exponent([1, 2, 4], [7, 7, 7]) == pytest.approx(0.0)


def test_the_device_comes_first():
    assert device_description("cpu").startswith("cpu: ") and "cores" in device_description("cpu")


def test_report_lines():
    results = {
        "step": {
            "step_ratio": 0.99,
            "engine_step_s": 1.16,
            "floor_step_s": 1.17,
            "round_ratios": [1.02, 0.9, 0.99],
            "batch": "8 prompts x 2 betas",
        },
        "time_to_target_float32": {"error": "model 'x' is not in the local Hugging Face cache"},
        "time_to_target": {
            "wall_s": 30.0,
            "first_result_s": 14.2,
            "dtype": "bfloat16 autocast, parameters float32",
            "rest_eval_s": 9.1,
            "n_val": 10,
            "n_rest": 238,
            "n_test": 200,
            "phases": {"start_and_imports_s": 2.4, "load_s": 0.7},
            "val_flip_acc_pos": 1.0,
            "val_flip_acc_neg": 0.9,
            "flip_acc_pos": 0.98,
            "flip_acc_neg": 0.975,
            "n_effective": 140,
            "n_components": 960,
            "targets_met": True,
        },
        "scaling": {
            "depth": {
                "width": 256,
                "time_exponent": 0.95,
                "memory_exponent": 0.9,
                "points": [
                    {
                        "layers": 2,
                        "tokens": 256,
                        "step_s": 0.1,
                        "peak_mb": 10.0,
                        "estimate_mb": 12.0,
                        "estimate_over_peak": 1.2,
                    },
                    {
                        "layers": 4,
                        "tokens": 256,
                        "precision": "bf16 autocast",
                        "step_s": 0.2,
                        "peak_mb": 20.0,
                        "estimate_mb": 28.0,
                        "estimate_over_peak": 1.4,
                    },
                ],
            }
        },
    }
    assert report_lines(results) == [
        "(a) step time ratio engine/floor: 0.99  (median; 1.16 s vs 1.17 s, 3 rounds 0.9-1.02, 8 prompts x 2 betas; "
        "target <= 1.05)",
        "(b) new process -> trained IOI ActivScalar with its validation metrics (10 prompts; bfloat16 "
        "autocast, parameters float32): 14.2 s (target <= 15 s); "
        "then the other 238 prompts' evaluation (training, and 200 test): 9.1 s; whole command 30.0 s",
        "    where the time goes: start and imports 2.4 s, load 0.7 s",
        "    validation flips +1.00 / -0.90; test flips +0.98 / -0.97, n_effective 140/960; targets met (test flips "
        ">= 0.9, effective <= 20%): True",
        "(b) (--autocast off: float32) time to target: failed: model 'x' is not in the local Hugging Face cache",
        "(d) depth (tiny Llama, width 256): step time ~ layers^0.95, peak memory ~ layers^0.9",
        "    2 layers: 256 tokens, float32, step 0.1 s, peak 10.0 MB; estimate 12.0 MB = 1.2 x measured (within +-30%)",
        "    4 layers: 256 tokens, bf16 autocast, step 0.2 s, peak 20.0 MB; estimate 28.0 MB = 1.4 x measured "
        "(OUTSIDE +-30%)",
    ]
