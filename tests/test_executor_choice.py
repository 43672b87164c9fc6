"""Choosing a sweep's executor and its Ray workers (actscale.runs.executors, ray_executor), and the
scratch stores of gone processes removed, without a cluster."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from test_executors import BASE

from actscale.errors import ActscaleError
from actscale.runs.executors import RAY_ADDRESS_ENV, resolve_executor
from actscale.runs.ray_executor import SCRATCH_PREFIX, remove_stale_scratch


def test_resolve_executor(monkeypatch):
    monkeypatch.delenv(RAY_ADDRESS_ENV, raising=False)
    assert resolve_executor(None) == ("local", None)
    assert resolve_executor("local") == ("local", None)
    assert resolve_executor("ray") == ("ray", "auto")
    assert resolve_executor("ray", "head:6379") == ("ray", "head:6379")
    assert resolve_executor(None, "head:6379") == ("ray", "head:6379")
    monkeypatch.setenv(RAY_ADDRESS_ENV, "ray://head:10001")
    assert resolve_executor(None) == ("ray", "ray://head:10001")
    assert resolve_executor("ray") == ("ray", "ray://head:10001")
    assert resolve_executor("ray", "other:6379") == ("ray", "other:6379")
    assert resolve_executor("local") == ("local", None)  # the flag wins over the variable
    with pytest.raises(ActscaleError, match="unknown executor 'spark': choose local or ray"):
        resolve_executor("spark")
    with pytest.raises(ActscaleError, match="a Ray address was given with the local executor"):
        resolve_executor("local", "head:6379")


def test_worker_count():
    from types import SimpleNamespace

    from actscale.runs.ray_executor import worker_count

    def cluster(**resources):
        return SimpleNamespace(cluster_resources=lambda: resources)

    cpu, gpu = BASE.replace(device="cpu"), BASE.replace(device="auto")
    assert worker_count(cluster(CPU=16.0), [cpu] * 40, None) == (16, False)
    assert worker_count(cluster(CPU=16.0), [cpu] * 3, None) == (3, False)  # never more than the runs
    assert worker_count(cluster(CPU=16.0, GPU=2.0), [gpu] * 8, None) == (2, True)  # one per GPU
    assert worker_count(cluster(CPU=16.0, GPU=2.0), [cpu] * 8, None) == (8, False)  # CPU runs use CPUs
    assert worker_count(cluster(CPU=16.0, GPU=2.0), [gpu] * 8, 4) == (2, True)  # no actor that cannot start
    assert worker_count(cluster(CPU=16.0), [cpu] * 8, 3) == (3, False)
    with pytest.raises(ActscaleError, match="workers must be at least 1"):
        worker_count(cluster(CPU=2.0), [cpu], 0)


def test_scratch_stores_of_gone_processes_are_removed_and_live_ones_kept(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    dead = tmp_path / f"{SCRATCH_PREFIX}{dead_pid}-abc123"
    live = tmp_path / f"{SCRATCH_PREFIX}{os.getpid()}-def456"
    older = tmp_path / f"{SCRATCH_PREFIX}x1y2z3"  # a name without a pid: not ours to judge
    other = tmp_path / "elsewhere-1-a"
    for folder in (dead, live, older, other):
        (folder / "runs").mkdir(parents=True)
    assert remove_stale_scratch(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (live, older, other))
    assert remove_stale_scratch(tmp_path) == []
