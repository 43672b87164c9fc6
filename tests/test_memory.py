"""Memory (issue 4, part 6), at the engine level.

Prompts longer than the model's context are dropped with a reason; a training step that would
not fit in the memory available is refused with a clear one-line message before anything runs
(instead of the process being killed, which would take the dashboard's server down); and a
model that is dropped is really released (nothing in the engine keeps it alive).
"""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import observer

from actscale.engine import resources, training
from actscale.engine.config import TrainConfig
from actscale.engine.interventions import hook_count
from actscale.engine.resources import available_memory_bytes, check_memory, resolve_autocast, step_memory_bytes
from actscale.engine.tasks import Example, prepare_task
from actscale.errors import ActscaleError, DatasetError
from actscale.runs.api import build_task, train_run
from actscale.runs.store import RunStore

CONFIG = TrainConfig(model="tiny-llama", task="ioi", method="activscalar", steps=2, n_prompts=12, early_stop=0)


def _prepare(model, examples, fixed_length=False):
    return prepare_task(
        examples, model.tokenizer, prepend_bos=model.prepend_bos, fixed_length=fixed_length, max_len=model.n_ctx
    )


def test_prompt_longer_than_the_context_is_dropped_with_a_reason(tiny_llama):
    assert tiny_llama.n_ctx == 256
    fits = " ".join(["Mary"] * 255)  # 255 words + BOS = 256 tokens: fits exactly
    too_long = " ".join(["Mary"] * 256)  # 257 tokens
    examples = [
        Example(fits, " Mary", " John"),
        Example(too_long, " Mary", " John"),
        Example("When Mary and John went to the store", " Mary", " John"),
    ]
    task = _prepare(tiny_llama, examples)
    assert [e.prompt for e in task.examples] == [fits, examples[2].prompt]
    assert task.n_pos == 256
    assert task.dropped == [(examples[1], "longer than the model's context (256 tokens)")]
    assert "1 longer than the model's context (256 tokens)" in task.summary()


def test_only_too_long_prompts_is_a_clear_error(tiny_llama):
    with pytest.raises(DatasetError) as info:
        _prepare(tiny_llama, [Example(" ".join(["Mary"] * 400), " Mary", " John")] * 3)
    message = str(info.value)
    assert "no usable prompts" in message and "context" in message and "\n" not in message


def test_custom_dataset_with_a_too_long_prompt_trains_on_the_rest(tiny_llama, tmp_path):
    rows = ["prompt,correct,wrong"] + [
        f'"When Mary and John went to the {p}, John gave a drink to", Mary, John'
        for p in ("store", "park", "school", "office")
    ]
    rows.append(" ".join(["Mary"] * 300) + ", Mary, John")
    path = tmp_path / "data.csv"
    path.write_text("\n".join(rows) + "\n")
    config = TrainConfig(
        model="tiny-llama", task="custom", dataset=str(path), method="dynscalar", steps=2, early_stop=0
    )
    task = build_task(tiny_llama, config)
    assert len(task.examples) == 4 and "1 longer than the model's context" in task.summary()
    bundle = train_run(config, tiny_llama, store=RunStore(tmp_path / "runs"), task=task)
    assert any("context" in d["reason"] for d in bundle.info["dropped"])


# ---- the memory guard ---------------------------------------------------------------------

BUNDLED_DIMS = SimpleNamespace(n_layers=30, d_model=576, n_heads=9, d_vocab=49152, d_mlp=1536)  # SmolLM2-135M


def test_step_estimate_scales_and_is_sane():
    one = step_memory_bytes(BUNDLED_DIMS, n_pos=20, batch_size=8)
    assert step_memory_bytes(BUNDLED_DIMS, n_pos=20, batch_size=16) == 2 * one  # linear in the batch
    assert step_memory_bytes(BUNDLED_DIMS, n_pos=40, batch_size=8) > 2 * one - 4 * 16 * 4 * 49152  # >= linear in n_pos
    # The default IOI step on the bundled model: a few hundred MB, not KB and not tens of GB.
    assert 50e6 < one < 2e9
    # A page asking for batch 4096 of 2,048-token prompts gets a number far beyond any machine.
    assert step_memory_bytes(BUNDLED_DIMS, n_pos=2048, batch_size=4096) > 1e13


def test_the_bf16_estimate_adds_the_weight_copies_and_fits_the_measured_peaks():
    # The bundled model's matrices: 30 x (4 x 576^2 + 3 x 576 x 1536) + 49152 x 576 numbers,
    # 2 bytes each under bfloat16 autocast.
    matrices = 30 * (4 * 576**2 + 3 * 576 * 1536) + 49152 * 576
    plain = step_memory_bytes(BUNDLED_DIMS, n_pos=16, batch_size=8)
    assert step_memory_bytes(BUNDLED_DIMS, n_pos=16, batch_size=8, bf16=True) == int(2 * matrices + 0.62 * plain)
    # Resident peaks `make bench` measured for 4, 8, 16 and 32 prompts of 16 tokens (MB).
    for batch, peak_mb in ((4, 426), (8, 542), (16, 830), (32, 1458)):
        ratio = step_memory_bytes(BUNDLED_DIMS, n_pos=16, batch_size=batch, bf16=True) / (peak_mb * 1e6)
        assert 0.95 <= ratio <= 1.07, (batch, ratio)


def test_measured_step_memory_is_below_the_estimate(tiny_llama):
    """The estimate is an upper bound: the activations a real step keeps for its backward pass
    (saved tensors, measured through autograd's hooks) stay below it."""
    task = build_task(tiny_llama, CONFIG)
    iv = training.new_intervention(tiny_llama, task, CONFIG)
    b = 8
    tokens = task.tokens[:b].repeat(2, 1)
    beta = torch.cat([torch.ones(b), -torch.ones(b)])
    saved = {"bytes": 0}

    def pack(t):
        saved["bytes"] += t.numel() * t.element_size()
        return t

    with tiny_llama.lock, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with training.steer(tiny_llama.bridge, iv, beta):
            logits = training.last_position_logits(tiny_llama, tokens)
        logits.sum().backward()
    assert hook_count(tiny_llama.bridge) == 0
    estimate = step_memory_bytes(tiny_llama, task.n_pos, b)
    assert 0 < saved["bytes"] < estimate, (saved["bytes"], estimate)


def test_available_memory_is_read():
    cpu = available_memory_bytes("cpu")
    assert cpu is None or cpu > 0
    with open("/proc/meminfo") as fh:
        total = int(next(line for line in fh if line.startswith("MemTotal")).split()[1]) * 1024
    assert cpu is None or cpu <= total
    assert available_memory_bytes("mps") is None  # cannot be told: nothing is checked
    if not torch.cuda.is_available():
        assert available_memory_bytes("cuda") is None
    else:
        assert available_memory_bytes("cuda") > 0


def test_a_batch_that_does_not_fit_is_refused_before_anything_runs(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setattr(resources, "available_memory_bytes", lambda device: 1_000_000)  # 1 MB free

    def no_base_pass(*args, **kwargs):
        raise AssertionError("the base pass ran although the batch cannot fit")

    monkeypatch.setattr(training, "base_pass", no_base_pass)
    store = RunStore(tmp_path / "runs")
    steps: list = []
    with pytest.raises(ActscaleError) as info:
        train_run(CONFIG.replace(batch_size=64), tiny_llama, store=store, observer=observer(steps.append))
    message = str(info.value)
    assert "\n" not in message
    assert "needs about" in message and "lower the batch size (now 64)" in message and "1.0 MB" in message
    assert not steps and hook_count(tiny_llama.bridge) == 0 and not store.root.exists()


def test_the_guard_lets_a_fitting_batch_through(tiny_llama, tmp_path, monkeypatch):
    config = resolve_autocast(CONFIG, tiny_llama)  # the engine takes resolved configs
    task = build_task(tiny_llama, config)
    need = step_memory_bytes(tiny_llama, task.n_pos, min(CONFIG.batch_size, 2 * len(task.split_indices("train"))))
    monkeypatch.setattr(resources, "available_memory_bytes", lambda device: need)
    check_memory(tiny_llama, task, config)  # exactly enough: no error
    monkeypatch.setattr(resources, "available_memory_bytes", lambda device: need - 1)
    with pytest.raises(ActscaleError):
        check_memory(tiny_llama, task, config)
    monkeypatch.setattr(resources, "available_memory_bytes", lambda device: None)  # unknown: not checked
    check_memory(tiny_llama, task, config.replace(batch_size=10**5))
    monkeypatch.undo()
    bundle = train_run(CONFIG, tiny_llama, store=RunStore(tmp_path / "runs"))  # the real machine: fits
    assert bundle.metrics["train"]["n_params"] > 0


# ---- one resident model -------------------------------------------------------------------


def test_a_dropped_model_is_released(tmp_path):
    """Switching models must free the previous one: after training, evaluating and a job on a
    model, nothing in the engine (caches, jobs, hooks) keeps it alive once the caller drops it."""
    from actscale.engine.models import load_model
    from actscale.runs.jobs import JobManager

    model = load_model("tiny-gpt2", "cpu")
    store = RunStore(tmp_path / "runs")
    train_run(CONFIG.replace(model="tiny-gpt2"), model, store=store)
    job = JobManager().submit([CONFIG.replace(model="tiny-gpt2", seed=1)], model, store)
    job.thread.join(120)
    assert job.state == "done", job.error
    refs = [weakref.ref(model), weakref.ref(model.bridge)]
    del model, job
    gc.collect()
    assert [r() for r in refs] == [None, None], "the engine keeps a dropped model alive"


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="the resident peak is read on Linux")
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="the resident peak is read on Linux")
def test_the_bench_measures_a_peak_in_a_new_process():
    """`make bench` (d) measures each point's peak in a new process (a warm heap reads low);
    that process builds the same task and its peak is within ±30% of the estimate."""
    from actscale.engine.models import tiny_model
    from benchmarks.scaling import peak_in_new_process

    fields = {"task": "ioi", "method": "activscalar", "n_prompts": 160, "n_test": 8, "batch_size": 32}
    peak = peak_in_new_process("tiny", "cpu", fields, layers=4, width=256)
    assert isinstance(peak, int) and peak > 0
    model = tiny_model(4, 256, "cpu")
    task = build_task(model, TrainConfig(model=model.name, **fields))
    assert 0.7 <= step_memory_bytes(model, task.n_pos, 32) / peak <= 1.3, peak
    # a model that cannot be loaded: no figure, and the bench goes on
    assert peak_in_new_process("no-such-model-xyz", "cpu", fields) is None
