"""The bfloat16 autocast option (issue 10, part 3), on the CPU: the frozen model runs under
torch.autocast while the intervention's parameters stay float32; exact identity at
initialisation; runs without it keep their run ids (the option is left out of config.json)."""

from __future__ import annotations

import pytest
import torch
from test_interventions import METHODS, fresh, randomise, tokens

from actscale.api import build_task, run_config, train_run
from actscale.config import TrainConfig
from actscale.errors import ActscaleError
from actscale.interventions import hook_count, steer
from actscale.models import last_position_logits
from actscale.sites import SITES
from actscale.store import RunStore

CONFIG = TrainConfig(model="tiny-llama", steps=3, n_prompts=16, n_test=8)


@pytest.mark.parametrize("method", METHODS)
def test_identity_at_initialisation_under_autocast(tiny_model, method):
    x = tokens()
    iv = fresh(tiny_model, method, SITES)
    clean = last_position_logits(tiny_model, x, autocast=True)
    assert clean.dtype == torch.float32
    assert not torch.equal(clean, last_position_logits(tiny_model, x))  # bfloat16 really ran
    with torch.no_grad():
        for beta in (1.0, -1.0):
            with steer(tiny_model.bridge, iv, beta, batch=3):
                assert torch.equal(last_position_logits(tiny_model, x, autocast=True), clean), (method, beta)
        randomise(iv)
        with steer(tiny_model.bridge, iv, 1.0, batch=3):
            assert not torch.equal(last_position_logits(tiny_model, x, autocast=True), clean)
    assert hook_count(tiny_model.bridge) == 0


def test_training_under_autocast_keeps_float32_parameters(tiny_llama, store):
    config = CONFIG.replace(autocast="bf16")
    bundle = train_run(config, tiny_llama, store=store)
    assert {v.dtype for v in bundle.params.values()} == {torch.float32}
    assert bundle.config["autocast"] == "bf16"
    assert bundle.config["dtype"] == "bfloat16 autocast, parameters float32"
    plain = train_run(CONFIG, tiny_llama, store=store)
    assert plain.run_id != bundle.run_id and "autocast" not in plain.config and plain.config["dtype"] == "float32"
    # Trained for real: the parameters moved, to other values than in float32.
    assert all(bool(v.abs().sum() > 0) for v in bundle.params.values())
    assert any(not torch.equal(bundle.params[k], plain.params[k]) for k in plain.params)
    # The stored config reads back as the same configuration.
    assert TrainConfig.from_bundle(bundle.config).autocast == "bf16"
    assert TrainConfig.from_bundle(plain.config).autocast == "off"
    # Both folders already carry today's ids: neither is taken for an older spelling.
    assert store.aliases() == {}


def test_the_default_leaves_config_json_as_it_was(tiny_llama):
    task = build_task(tiny_llama, CONFIG)
    record = run_config(tiny_llama, task, CONFIG)
    assert "autocast" not in record and record["dtype"] == "float32"


def test_unknown_autocast_is_one_line():
    with pytest.raises(ActscaleError, match="^unknown autocast 'fp8': choose off or bf16$"):
        TrainConfig(autocast="fp8")


def test_cli_flag(tmp_path, capsys, monkeypatch):
    from actscale.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = ["train", "--model", "tiny-llama", "--steps", "1", "--n-prompts", "8", "--n-test", "4", "--autocast", "bf16"]
    assert main([*argv, "--store", str(tmp_path)]) == 0
    run = RunStore(tmp_path).list()[0]
    assert run.config["autocast"] == "bf16"
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:  # argparse's own exit, status 2, one line
        main([*argv[:-1], "fp16", "--store", str(tmp_path)])
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith("error: argument --autocast: invalid choice: 'fp16'")
