"""The `sweep` command (actscale.cli): its runs printed in the grid's order, bad input refused with
exit 2 and one line, held-out prompts that leave no test split refused, and the note where bf16
is emulated."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from test_executors import HELD_OUT_NONE, ROOT

from actscale.runs.executors import RAY_ADDRESS_ENV


def cli(*args: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    full_env.pop(RAY_ADDRESS_ENV, None)
    return subprocess.run(
        [sys.executable, "-m", "actscale", "sweep", *args], cwd=ROOT, env=full_env, capture_output=True, text=True
    )


def test_cli_sweep_prints_the_runs_in_grid_order(tmp_path):
    out = cli(
        "--model", "tiny-llama", "--lambda-m", "0.01,0.05", "--seeds", "0,1", "--steps", "2",
        "--n-prompts", "8", "--n-test", "4", "--store", str(tmp_path),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    runs = json.loads(out.stdout.strip().splitlines()[-1])["runs"]
    assert [(r["config"]["lambda_m"], r["config"]["seed"], r["config"]["data_seed"]) for r in runs] == [
        (0.01, 0, 0),
        (0.01, 1, 1),
        (0.05, 0, 0),
        (0.05, 1, 1),
    ]
    assert [r["run_id"] for r in runs] == [r["config"]["run_id"] for r in runs]
    assert sorted(r["run_id"] for r in runs) == sorted(p.name for p in tmp_path.iterdir())
    assert all(set(r["metrics"]) == {"train", "val", "test"} and "created" not in r["config"] for r in runs)
    assert "sweep of 4 runs in this process" in out.stderr and "[run 4/4] done" in out.stderr
    assert "replaced" not in out.stderr
    # --no-reuse trains the grid again: each run's line says which stored run it replaced.
    again = cli(
        "--model", "tiny-llama", "--lambda-m", "0.01", "--seeds", "0,1", "--steps", "2",
        "--n-prompts", "8", "--n-test", "4", "--store", str(tmp_path), "--no-reuse",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    said = [line for line in again.stderr.splitlines() if "replaced" in line]
    assert said == [f"[run {i + 1}/2] replaced the stored run {runs[i]['run_id']} with this training" for i in (0, 1)]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--lambda-m", "0.1,x"], "error: --lambda-m takes comma-separated numbers, e.g. 0.01,0.05; got '0.1,x'"),
        (["--seeds", ","], "error: --seeds needs at least one value"),
        (["--seeds", "0,x"], "error: --seeds takes comma-separated numbers, e.g. 0,1; got '0,x'"),
        (["--workers", "2"], "error: workers is an option of the Ray executor"),
        (["--executor", "local", "--ray-address", "h:1"], "error: a Ray address was given with the local executor"),
        (["--templates", "ioi-0,ioi-0"], "error: template listed twice in ioi-0,ioi-0"),  # before any run
        (
            ["--margin", "1,2,3", "--lambda-f", "1,2,3", "--lambda-m", "1,2,3", "--seeds", "0,1"],
            "error: that sweep is 54 runs",
        ),
    ],
)
def test_cli_sweep_bad_input_is_exit_2_and_one_line(args, message, tmp_path, capsys, monkeypatch):
    from actscale.cli import main

    monkeypatch.delenv(RAY_ADDRESS_ENV, raising=False)
    assert main(["sweep", "--model", "tiny-llama", "--store", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err


def test_cli_sweep_refuses_held_out_prompts_that_leave_no_test_split(tmp_path, capsys, monkeypatch):
    from actscale.cli import main

    monkeypatch.delenv(RAY_ADDRESS_ENV, raising=False)
    assert main(["sweep", "--model", "tiny-llama", "--store", str(tmp_path), "--test-groups", "coordinated"]) == 2
    assert capsys.readouterr().err == f"sweep of 1 run in this process ...\nerror: {HELD_OUT_NONE}\n"
    assert list(tmp_path.iterdir()) == []


def test_cli_sweep_in_this_process_says_where_bf16_is_emulated(tmp_path, capsys, monkeypatch):
    """A local sweep under `--autocast bf16` on a CPU that emulates bfloat16 says so first, as
    `train` does (test_cli.py); refused here by its held-out prompts, so nothing trains."""
    import actscale.engine.models as models
    from actscale.cli import main

    monkeypatch.delenv(RAY_ADDRESS_ENV, raising=False)
    monkeypatch.setattr(models, "native_bf16", lambda _device: False)
    args = ["sweep", "--model", "tiny-llama", "--store", str(tmp_path), "--test-groups", "coordinated"]
    assert main([*args, "--autocast", "bf16", "--device", "cpu"]) == 2
    assert capsys.readouterr().err == (
        "note: --autocast bf16 on cpu, a CPU without AVX512-BF16 or AMX: PyTorch emulates bfloat16 there, and a "
        "training step takes many times as long as in float32 (about 20 times on a 2-core AVX2 CPU, "
        "docs/measured.md); --autocast off (the default) trains in float32\n"
        f"sweep of 1 run in this process ...\nerror: {HELD_OUT_NONE}\n"
    )
