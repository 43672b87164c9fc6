"""Sites: the hook-name table, parsing, and that each hook is the activation docs/method.md §1 means."""

from __future__ import annotations

import pytest
import torch

from actscale.engine.interventions import ModelDims, make_intervention, steer
from actscale.engine.sites import (
    DEFAULT_SITES,
    SITES,
    SiteAddress,
    hook_name,
    is_head_site,
    parse_hook_name,
    parse_sites,
)
from actscale.errors import ActscaleError


def test_hook_names_and_their_inverse():
    assert SITES == ("attn_out", "mlp_out", "head", "resid_post")
    assert DEFAULT_SITES == ("attn_out", "mlp_out")
    assert [hook_name(s, 3) for s in SITES] == [
        "blocks.3.hook_attn_out",
        "blocks.3.hook_mlp_out",
        "blocks.3.attn.hook_z",
        "blocks.3.hook_resid_post",
    ]
    for site in SITES:
        assert parse_hook_name(hook_name(site, 11)) == SiteAddress(site, 11)
    for bad in ("blocks.x.hook_mlp_out", "blocks.1.hook_mlp_outx", "blocks.1.attn.hook_q"):
        with pytest.raises(KeyError):
            parse_hook_name(bad)
    assert is_head_site("head") and not any(is_head_site(s) for s in SITES if s != "head")


def test_parse_sites():
    assert parse_sites("attn_out, mlp_out") == ("attn_out", "mlp_out")
    assert parse_sites(["head"]) == ("head",)
    with pytest.raises(ActscaleError) as info:
        parse_sites("attn_out,mlp")
    assert str(info.value) == "unknown site(s) mlp: choose from attn_out, mlp_out, head, resid_post"
    with pytest.raises(ActscaleError, match="^site listed twice in head,head$"):
        parse_sites("head,head")
    with pytest.raises(ActscaleError, match="^no sites given: choose from attn_out, mlp_out, head, resid_post$"):
        parse_sites(" , ")


def test_activation_shapes_at_each_site(tiny_model):
    shapes = {}

    def capture(site):
        def hook(act, hook):
            shapes[site] = tuple(act.shape)

        return hook

    x = torch.randint(4, 150, (3, 5), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        tiny_model.bridge.run_with_hooks(x, fwd_hooks=[(hook_name(s, 1), capture(s)) for s in SITES])
    d, h, dh = tiny_model.d_model, tiny_model.n_heads, tiny_model.d_head
    assert shapes == {"attn_out": (3, 5, d), "mlp_out": (3, 5, d), "head": (3, 5, h, dh), "resid_post": (3, 5, d)}


def _modules(bridge, layer):
    """The Hugging Face module whose output each site is, reached around TransformerLens."""
    block = bridge.blocks[layer]
    return {
        "attn_out": block.attn.o.original_component,  # the attention's output projection
        "mlp_out": block.mlp.original_component,
        "resid_post": block.original_component,  # the whole decoder block
    }


@pytest.mark.parametrize("site", ["attn_out", "mlp_out", "resid_post"])
def test_each_site_is_the_module_output_it_names(tiny_model, site):
    """ActivScalar with α = −0.5 at one layer equals halving that Hugging Face module's output
    with a bare PyTorch forward hook: the hook names point at the activations docs/method.md means."""
    layer, bridge = 1, tiny_model.bridge
    x = torch.randint(4, 150, (2, 6), generator=torch.Generator().manual_seed(1))
    iv = make_intervention(
        "activscalar",
        (site,),
        ModelDims(
            n_layers=tiny_model.n_layers,
            n_pos=6,
            d_model=tiny_model.d_model,
            n_heads=tiny_model.n_heads,
            d_head=tiny_model.d_head,
        ),
    )

    with torch.no_grad():
        iv.tensor("alpha", site)[layer] = -0.5

    def halve(module, args, out):
        return (out[0] * 0.5, *out[1:]) if isinstance(out, tuple) else out * 0.5

    with torch.no_grad():
        clean = bridge(x)
        with steer(bridge, iv, 1.0, batch=2):
            steered = bridge(x)
        handle = _modules(bridge, layer)[site].register_forward_hook(halve)
        try:
            bare = bridge(x)
        finally:
            handle.remove()
    assert torch.equal(steered, bare)
    assert not torch.equal(steered, clean)
