"""Hostile datasets at the command line (issue 4, part 3): random bytes, Latin-1 text, wrong
columns and unusable answers each end `train` with exit 2 and one error line, no traceback and
no run stored."""

from __future__ import annotations

import os
import subprocess
import sys

from dataset_strategies import csv_bytes

CLI_FILES = {
    "random.csv": bytes(range(256)) * 4,
    "latin1.jsonl": '{"prompt": "Caf\u00e9 Mary", "correct": " Mary", "wrong": " John"}\n'.encode("latin-1"),
    "columns.csv": b"question,answer\nWhen Mary and John went to the store,Mary\n",
    "answers.csv": csv_bytes(
        ["prompt", "correct", "wrong"],
        [
            ["When Mary and John went to the store, John gave a drink to", " Mary Anne", " John"],
            [" ".join(["Mary"] * 300), " Mary", " John"],
            ["When Mary and John went to the store, John gave a drink to", " zzzz", " qqqq"],
        ],
    ),
}


def test_cli_hostile_datasets_exit_2(tmp_path):
    env = {
        **os.environ,
        "ACTSCALE_STORE": str(tmp_path / "runs"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
    }
    procs = {}
    for name, data in CLI_FILES.items():  # started together: each spends its time importing
        path = tmp_path / name
        path.write_bytes(data)
        procs[name] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "actscale",
                "train",
                "--model",
                "tiny-llama",
                "--task",
                "custom",
                "--dataset",
                str(path),
                "--steps",
                "1",
                "--device",
                "cpu",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, f"{name}: exit {proc.returncode}: {err}"
        assert out == "", f"{name}: stdout {out!r}"
        assert "Traceback" not in err
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and err.splitlines()[-1] == errors[0], f"{name}: {err!r}"
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
