"""The CUDA path (issue 10, part 3): identity at initialisation, one short training (float32
and under bfloat16 autocast, the parameters float32 on the GPU) and two jobs training at once
on the GPU model. Marked ``cuda``; skipped where no CUDA GPU is available."""

from __future__ import annotations

import pytest
import torch
from test_interventions import METHODS, fresh, tokens

from actscale.engine.config import TrainConfig
from actscale.engine.interventions import hook_count, steer
from actscale.engine.models import load_model
from actscale.engine.resources import available_memory_bytes
from actscale.runs.api import train_run
from actscale.runs.jobs import JobManager
from actscale.runs.store import RunStore

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(scope="module")
def gpu_llama():
    return load_model("tiny-llama", "cuda")


@pytest.mark.parametrize("method", METHODS)
def test_identity_at_initialisation_on_cuda(gpu_llama, method):
    x = tokens().to("cuda")
    iv = fresh(gpu_llama, method, ("attn_out", "mlp_out", "head")).to("cuda")
    with torch.no_grad():
        clean = gpu_llama.bridge(x)
        for beta in (1.0, -1.0):
            with steer(gpu_llama.bridge, iv, beta, batch=3):
                assert torch.equal(gpu_llama.bridge(x), clean)
    assert hook_count(gpu_llama.bridge) == 0


@pytest.mark.parametrize("autocast", ["off", "bf16"])
def test_one_short_training_on_cuda(gpu_llama, tmp_path, autocast):
    config = TrainConfig(model="tiny-llama", device="cuda", steps=5, n_prompts=16, n_test=8, autocast=autocast)
    bundle = train_run(config, gpu_llama, store=RunStore(tmp_path))
    assert bundle.config["device"] == "cuda"
    assert {v.dtype for v in bundle.params.values()} == {torch.float32}
    assert len(bundle.history) == 5 and set(bundle.metrics) == {"train", "val", "test"}
    assert all(p.requires_grad is False for p in gpu_llama.bridge.parameters())


def test_free_device_memory_is_what_the_check_reads(gpu_llama):
    free, _total = torch.cuda.mem_get_info()
    assert abs(available_memory_bytes("cuda") - free) < 64 * 2**20


def test_two_jobs_at_once_on_the_gpu(gpu_llama, tmp_path):
    store = RunStore(tmp_path)
    manager = JobManager()
    configs = [TrainConfig(model="tiny-llama", device="cuda", steps=6, n_prompts=16, n_test=8, seed=s) for s in (1, 2)]
    jobs = [manager.submit([c], gpu_llama, store) for c in configs]
    assert all(j.wait(300) for j in jobs)
    assert [j.state for j in jobs] == ["done", "done"], [j.error for j in jobs]
    assert len({j.run_ids[0] for j in jobs}) == 2 and hook_count(gpu_llama.bridge) == 0
