"""The bfloat16 autocast option (issue 10, part 3), on the CPU: the frozen model runs under
torch.autocast while the intervention's parameters stay float32; exact identity at
initialisation; runs without it keep their run ids (the option is left out of config.json)."""

from __future__ import annotations

import pytest
import torch
from test_interventions import METHODS, fresh, randomise, tokens

from actscale.engine.config import TrainConfig
from actscale.engine.interventions import hook_count, steer
from actscale.engine.models import BF16_MIN_WIDTH, bf16_pays, last_position_logits, native_bf16
from actscale.engine.resources import resolve_autocast
from actscale.engine.sites import SITES
from actscale.errors import ActscaleError
from actscale.runs.api import build_task, run_config, train_run
from actscale.runs.store import RunStore

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


def test_auto_is_resolved_before_the_run_id(tiny_llama, store, monkeypatch):
    """ "auto" never reaches config.json: it becomes bf16 where the device computes bf16 natively
    and the model is at least BF16_MIN_WIDTH wide, else off, and the run is then the very run
    asked for explicitly (same id, same parameters)."""
    import actscale.engine.models.forward as models  # where the precision rule reads them

    assert TrainConfig().autocast == "off" and CONFIG.autocast == "off"  # float32 by default, on every machine
    auto_config = CONFIG.replace(autocast="auto")
    with pytest.raises(RuntimeError, match="resolved against the loaded model"):
        _ = auto_config.bf16
    assert tiny_llama.d_model == 64 < BF16_MIN_WIDTH and not bf16_pays(tiny_llama)  # too narrow to pay
    plain = train_run(CONFIG, tiny_llama, store=store)
    auto = train_run(auto_config, tiny_llama, store=store)
    assert auto.run_id == plain.run_id and "autocast" not in auto.config
    # A wide enough model on native hardware (both faked here): "auto" is the bf16 run.
    monkeypatch.setattr(models, "BF16_MIN_WIDTH", 64)
    monkeypatch.setattr(models, "native_bf16", lambda device: device == "cpu")
    assert bf16_pays(tiny_llama)
    bf16 = train_run(CONFIG.replace(autocast="bf16"), tiny_llama, store=store)
    auto = train_run(auto_config, tiny_llama, store=store, reuse=False)
    assert auto.run_id == bf16.run_id != plain.run_id and auto.config["autocast"] == "bf16"
    assert all(torch.equal(auto.params[k], bf16.params[k]) for k in bf16.params)
    # DynScalar's "auto" stays float32 (its bf16 runs differ from its float32 ones).
    dyn = TrainConfig(model="tiny-llama", method="dynscalar", autocast="auto")
    assert resolve_autocast(dyn, tiny_llama).autocast == "off"
    assert resolve_autocast(dyn.replace(autocast="bf16"), tiny_llama).autocast == "bf16"
    steervec = TrainConfig(model="tiny-llama", method="steervec", autocast="auto")
    assert resolve_autocast(steervec, tiny_llama).autocast == "bf16"
    assert resolve_autocast(steervec.replace(autocast="off"), tiny_llama).autocast == "off"  # the default stays
    from actscale.ui.train_form import auto_precision_label as _auto_precision_label

    assert _auto_precision_label(tiny_llama) == "auto: bfloat16 here (dynscalar: float32)"
    # A stored run read back keeps its precision: config.json's missing autocast is "off".
    assert TrainConfig.from_bundle(plain.config).autocast == "off"


def test_the_methods_kept_in_float32_under_auto():
    from actscale.engine.interventions import float32_under_auto

    assert float32_under_auto() == ("dynscalar",)


def test_native_bf16_is_false_where_it_is_emulated(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert native_bf16("cpu") is False
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert native_bf16("cpu") is True
    assert native_bf16("mps") is False


def test_unknown_autocast_is_one_line():
    with pytest.raises(ActscaleError, match="^unknown autocast 'fp8': choose auto, off or bf16$"):
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


def test_a_padded_batch_under_autocast_has_finite_logits_and_float32_is_unchanged(tiny_llama):
    """Left-padded prompts go in with a 4-D boolean mask (`padding_inputs`). With the 2-D mask
    the model's float32 additive mask holds -3.4e38, which is -inf in bfloat16: a pad position
    sees no key, softmaxes to NaN, and 0 x NaN carries it into every logit of the batch."""
    from actscale.engine.models import padding_inputs

    task = build_task(tiny_llama, TrainConfig(model="tiny-llama", method="dynscalar", n_prompts=16, n_test=8))
    tokens, mask = task.tokens[:8], task.attention_mask[:8]
    assert not bool(mask.all())  # padded
    plain = {"attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0), "logits_to_keep": 1}
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.isnan(tiny_llama.bridge(tokens, **plain)[:, -1]).all()  # the failure it fixes
        steered = last_position_logits(tiny_llama, tokens, mask, autocast=True)
        assert bool(torch.isfinite(steered).all())
        # float32: the same logits as with the 2-D mask, to the bit
        assert torch.equal(last_position_logits(tiny_llama, tokens, mask), tiny_llama.bridge(tokens, **plain)[:, -1])
    assert padding_inputs(torch.ones(2, 5, dtype=torch.long), "cpu") == {}  # no padding: nothing passed
    sees = padding_inputs(torch.tensor([[0, 0, 1, 1]]), "cpu")["attention_mask"][0, 0]
    assert sees.tolist() == [
        [True, False, False, False],  # a pad position sees itself only
        [False, True, False, False],
        [False, False, True, False],  # real tokens see the real tokens up to themselves
        [False, False, True, True],
    ]


def test_dynscalar_trains_under_autocast_on_prompts_of_every_length(tiny_llama, store):
    bundle = train_run(
        TrainConfig(model="tiny-llama", method="dynscalar", steps=3, n_prompts=16, n_test=8, autocast="bf16"),
        tiny_llama,
        store=store,
    )
    assert bundle.config["autocast"] == "bf16"
    assert all(bool(torch.isfinite(v).all()) for v in bundle.params.values())
    assert all(m["faithfulness_kl"] == m["faithfulness_kl"] for m in bundle.metrics.values())  # not NaN
