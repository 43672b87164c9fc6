"""Every model's hooks are checked as it loads (actscale.engine.models.wiring): each site's hook
fires once, the residual stream after a layer is the one before plus attn_out and mlp_out, and
the identity intervention leaves the logits bit-identical; a model wired otherwise is refused
with one line naming the hook and the layer."""

from __future__ import annotations

import pytest
import torch

from actscale.engine.models import load_model, tiny_model, wiring
from actscale.engine.models import loading as loading_module
from actscale.engine.models.wiring import check_wiring
from actscale.errors import ModelLoadError


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_the_test_models_pass(name):
    assert check_wiring(load_model(name, "cpu")) is None


def _resid_off(model):
    """A block whose output enters the residual stream changed after its hooks read it (what a
    post-norm does): one more than attn_out and mlp_out add up to."""
    model.bridge.hook_dict["blocks.0.hook_resid_post"].add_hook(lambda act, hook: act + 1.0, is_permanent=True)
    return model


def _attn_out_fires_twice(bridge):
    """blocks.1.hook_attn_out called a second time in the same forward pass."""
    attn_out = bridge.hook_dict["blocks.1.hook_attn_out"]
    bridge.hook_dict["blocks.1.hook_resid_pre"].add_hook(lambda act, hook: attn_out(act), is_permanent=True)
    return bridge


def test_a_residual_that_is_not_the_sum_of_the_sites_is_refused():
    with pytest.raises(ModelLoadError) as err:
        check_wiring(_resid_off(tiny_model(2, 64, "cpu")))
    assert str(err.value) == (
        "model tiny-llama-2x64 refused: at layer 0 the residual stream after the block is not the one before "
        "plus blocks.0.hook_attn_out and blocks.0.hook_mlp_out (off by up to 1): what a scale multiplies there "
        "is not what enters the residual stream"
    )


def test_a_hook_that_fires_twice_is_refused():
    with pytest.raises(ModelLoadError) as err:
        model = tiny_model(2, 64, "cpu")
        _attn_out_fires_twice(model.bridge)
        check_wiring(model)
    assert str(err.value) == (
        "model tiny-llama-2x64 refused: blocks.1.hook_attn_out fired 2 times in one forward pass, not once "
        "(a scale there would be applied that many times)"
    )


def test_an_identity_that_changes_the_logits_is_refused(monkeypatch):
    real = wiring.make_intervention

    def not_identity(*args, **kwargs):
        iv = real(*args, **kwargs)
        with torch.no_grad():
            for p in iv.parameters():
                p.add_(0.5)  # α = 0 is the identity; α = 0.5 scales by 1.5
        return iv

    monkeypatch.setattr(wiring, "make_intervention", not_identity)
    with pytest.raises(ModelLoadError) as err:
        check_wiring(tiny_model(2, 64, "cpu"))
    assert str(err.value) == "model tiny-llama-2x64 refused: the identity intervention on every site changes the logits"


def test_loading_refuses_a_wrongly_wired_model(monkeypatch):
    real = loading_module.boot_tiny

    def miswired(name, device, **kwargs):
        return _attn_out_fires_twice(real(name, device, **kwargs))

    monkeypatch.setattr(loading_module, "boot_tiny", miswired)
    with pytest.raises(ModelLoadError, match=r"^model tiny-gpt2 refused: blocks\.1\.hook_attn_out fired 2 times"):
        load_model("tiny-gpt2", "cpu")
