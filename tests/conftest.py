"""Shared fixtures: the tiny random models of the two architecture families (the engine's
test seam, no download) and a fresh run store per test."""
from __future__ import annotations

import os

import pytest

# Tests never reach the hub, whatever the machine's network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_llama():
    from actscale.models import load_model

    return load_model("tiny-llama", "cpu")


@pytest.fixture(scope="session")
def tiny_gpt2():
    from actscale.models import load_model

    return load_model("tiny-gpt2", "cpu")


@pytest.fixture(params=["tiny-llama", "tiny-gpt2"])
def tiny_model(request, tiny_llama, tiny_gpt2):
    """Each test that takes this runs once per architecture family."""
    return tiny_llama if request.param == "tiny-llama" else tiny_gpt2


@pytest.fixture
def store(tmp_path, monkeypatch):
    from actscale.store import RunStore

    root = tmp_path / "runs"
    monkeypatch.setenv("ACTSCALE_STORE", str(root))
    return RunStore(root)


@pytest.fixture(scope="session")
def bundled():
    """The real bundled model (slow tests only)."""
    from actscale.models import load_model

    return load_model("bundled", "cpu")


@pytest.fixture(autouse=True)
def _threads(request):
    """Tiny models run fastest on one thread (two threads mostly spin on such small matrices,
    and far worse on a busy machine); the real model's slow tests use every core."""
    import torch

    before = torch.get_num_threads()
    slow = request.node.get_closest_marker("slow") is not None
    torch.set_num_threads((os.cpu_count() or 1) if slow else 1)
    yield
    torch.set_num_threads(before)
