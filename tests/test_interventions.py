"""Interventions on the tiny models: identity at initialisation, exact edits, no leaked hooks."""

from __future__ import annotations

import pytest
import torch

from actscale.engine.interventions import ModelDims, hook_count, make_intervention, steer
from actscale.engine.models import last_position_logits
from actscale.engine.sites import SITES, hook_name

N_POS = 7


def tokens(batch: int = 3, n_pos: int = N_POS, seed: int = 0) -> torch.Tensor:
    return torch.randint(4, 150, (batch, n_pos), generator=torch.Generator().manual_seed(seed))


METHODS = ("activscalar", "steervec", "dynscalar")


def dims(model, n_pos: int = N_POS) -> ModelDims:
    return ModelDims(
        n_layers=model.n_layers, n_pos=n_pos, d_model=model.d_model, n_heads=model.n_heads, d_head=model.d_head
    )


def fresh(model, method: str, sites: tuple[str, ...], n_pos: int = N_POS):
    return make_intervention(method, sites, dims(model, n_pos))


def randomise(iv, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in iv.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("site", SITES)
@pytest.mark.parametrize("method", METHODS)
def test_identity_at_initialisation(tiny_model, method, site):
    x = tokens()
    iv = fresh(tiny_model, method, (site,))
    bridge = tiny_model.bridge
    with torch.no_grad():
        clean = bridge(x)
        for beta in (1.0, -1.0):
            with steer(bridge, iv, beta, batch=3):
                assert hook_count(bridge) == tiny_model.n_layers  # one hook per layer, really attached
                steered = bridge(x)
            assert torch.equal(steered, clean), (method, site, beta)
        # Not vacuous: the same hooks with non-zero parameters do change the logits.
        randomise(iv)
        with steer(bridge, iv, 1.0, batch=3):
            assert not torch.equal(bridge(x), clean)
    assert hook_count(bridge) == 0


def test_beta_zero_is_identity_for_trained_parameters(tiny_model):
    x = tokens()
    iv = fresh(tiny_model, "activscalar", ("attn_out", "mlp_out", "head"))
    randomise(iv)
    with torch.no_grad(), steer(tiny_model.bridge, iv, 0.0, batch=3):
        steered = tiny_model.bridge(x)
    assert torch.equal(steered, tiny_model.bridge(x))


def test_wrong_length_prompt_raises_and_leaves_no_hook(tiny_model):
    bridge = tiny_model.bridge
    x = tokens(n_pos=N_POS + 1)
    clean = bridge(x)
    iv = fresh(tiny_model, "activscalar", ("attn_out", "mlp_out"))
    with pytest.raises(ValueError) as info, torch.no_grad():
        with steer(bridge, iv, 1.0, batch=3):
            bridge(x)
    assert str(info.value) == (
        "this intervention is tied to prompts of 7 tokens; got 8 "
        "(ActivScalar and SteerVec learn one parameter per position)"
    )
    assert hook_count(bridge) == 0
    assert torch.equal(bridge(x), clean)


def test_hook_that_raises_midway_leaves_no_hook(tiny_model, monkeypatch):
    bridge = tiny_model.bridge
    x = tokens()
    clean = bridge(x)
    iv = fresh(tiny_model, "steervec", ("attn_out", "mlp_out"))
    randomise(iv)
    seen = []

    def edit(act, site, layer, beta, record):
        seen.append((site, layer))
        if layer == 1:  # layer 0's hooks have already edited the activations
            raise RuntimeError("boom")
        return act + 1.0

    monkeypatch.setattr(iv, "edit", edit)
    with pytest.raises(RuntimeError, match="^boom$"), torch.no_grad():
        with steer(bridge, iv, 1.0, batch=3):
            bridge(x)
    assert seen[0][1] == 0 and seen[-1][1] == 1
    assert hook_count(bridge) == 0
    assert torch.equal(bridge(x), clean)


def test_error_in_the_block_body_leaves_no_hook(tiny_model):
    bridge = tiny_model.bridge
    iv = fresh(tiny_model, "dynscalar", ("head", "resid_post"))
    with pytest.raises(KeyError):
        with steer(bridge, iv, 1.0, batch=3):
            assert hook_count(bridge) == 2 * tiny_model.n_layers
            raise KeyError("user code")
    assert hook_count(bridge) == 0


def test_steer_removes_only_its_own_hooks(tiny_model):
    bridge = tiny_model.bridge
    calls = []
    outer = [(hook_name("mlp_out", 0), lambda act, hook: calls.append(1))]
    iv = fresh(tiny_model, "activscalar", ("mlp_out",))
    with torch.no_grad(), bridge.hooks(fwd_hooks=outer):
        with steer(bridge, iv, 1.0, batch=3):
            bridge(tokens())
        assert hook_count(bridge) == 1  # the caller's hook is still there
        bridge(tokens())
    assert calls == [1, 1] and hook_count(bridge) == 0


def test_scalar_beta_needs_batch_and_hooks_need_steer(tiny_model):
    iv = fresh(tiny_model, "activscalar", ("attn_out",))
    with pytest.raises(ValueError, match="^a scalar beta needs the batch size$"):
        with steer(tiny_model.bridge, iv, 1.0):
            pass
    with pytest.raises(RuntimeError, match=r"^an intervention runs only inside `steer\(...\)`$"):
        iv(torch.zeros(1, N_POS, tiny_model.d_model), site="attn_out", layer=0)
    assert hook_count(tiny_model.bridge) == 0


@pytest.mark.parametrize("layer,head", [(0, 1), (1, 3)])
def test_activscalar_minus_one_on_a_head_zeroes_that_head(tiny_model, layer, head):
    """α = −1 at β = +1 on one head equals zeroing that head's hook_z output, and equals
    zeroing its slice of the output projection's input with a bare PyTorch pre-hook."""
    bridge, x, d_head = tiny_model.bridge, tokens(), tiny_model.d_head
    iv = fresh(tiny_model, "activscalar", ("head",))
    with torch.no_grad():
        iv.tensor("alpha", "head")[layer, :, head] = -1.0

    def zero_head(act, hook):
        act = act.clone()
        act[:, :, head] = 0.0
        return act

    def zero_slice(module, args):
        inp = args[0].clone()
        inp[..., head * d_head : (head + 1) * d_head] = 0.0
        return (inp,)

    with torch.no_grad():
        clean = bridge(x)
        with steer(bridge, iv, 1.0, batch=3):
            steered = bridge(x)
        manual = bridge.run_with_hooks(x, fwd_hooks=[(hook_name("head", layer), zero_head)])
        handle = bridge.blocks[layer].attn.o.original_component.register_forward_pre_hook(zero_slice)
        try:
            bare = bridge(x)
        finally:
            handle.remove()
    assert torch.equal(steered, manual)
    assert torch.equal(steered, bare)
    assert not torch.equal(steered, clean)


@pytest.mark.parametrize("beta", [1.0, -1.0, 0.5])
def test_steervec_adds_exactly_beta_v(tiny_model, beta):
    bridge, x = tiny_model.bridge, tokens()
    iv = fresh(tiny_model, "steervec", ("attn_out", "head", "resid_post"))
    randomise(iv)
    seen: dict[tuple[str, str], torch.Tensor] = {}

    def capture(tag, name):
        def hook(act, hook):
            seen[(tag, name)] = act.detach().clone()

        return hook

    names = [(site, layer, hook_name(site, layer)) for site in iv.sites for layer in range(tiny_model.n_layers)]
    with torch.no_grad(), bridge.hooks(fwd_hooks=[(n, capture("before", n)) for _, _, n in names]):
        with steer(bridge, iv, beta, batch=3):
            with bridge.hooks(fwd_hooks=[(n, capture("after", n)) for _, _, n in names]):
                bridge(x)
    assert len(seen) == 2 * len(names) == 12
    for site, layer, name in names:
        v = iv.tensor("vector", site)[layer].detach()
        assert torch.equal(seen[("after", name)], seen[("before", name)] + beta * v), (site, layer)


def test_activscalar_scales_each_position(tiny_model):
    bridge, x = tiny_model.bridge, tokens()
    iv = fresh(tiny_model, "activscalar", ("mlp_out",))
    alpha = torch.linspace(-1.0, 2.0, N_POS)
    with torch.no_grad():
        iv.tensor("alpha", "mlp_out")[1] = alpha
    seen = {}

    def capture(tag):
        def hook(act, hook):
            seen[tag] = act.detach().clone()

        return hook

    name = hook_name("mlp_out", 1)
    with torch.no_grad(), bridge.hooks(fwd_hooks=[(name, capture("before"))]):
        with steer(bridge, iv, -0.5, batch=3):
            with bridge.hooks(fwd_hooks=[(name, capture("after"))]):
                bridge(x)
    expected = seen["before"] * (1 + (-0.5) * alpha)[None, :, None]
    assert torch.equal(seen["after"], expected)


def test_dynscalar_scalar_is_dot_with_unit_activation(tiny_model):
    iv = fresh(tiny_model, "dynscalar", ("attn_out", "head"))
    randomise(iv)
    act = torch.randn(2, 5, tiny_model.d_model, generator=torch.Generator().manual_seed(3))
    w, b = iv.tensor("w", "attn_out")[1].detach(), iv.tensor("b", "attn_out")[1].detach()
    alpha = iv.scalars(act, "attn_out", 1).detach()
    assert torch.allclose(alpha, (act / act.norm(dim=-1, keepdim=True)) @ w + b, atol=1e-6)
    out = iv(act, site="attn_out", layer=1, beta=torch.tensor([1.0, -1.0])).detach()
    assert torch.allclose(out[0], act[0] * (1 + alpha[0])[:, None], atol=1e-6)
    assert torch.allclose(out[1], act[1] * (1 - alpha[1])[:, None], atol=1e-6)
    # Raw form: the dot product with the activation itself.
    raw = make_intervention("dynscalar", ("attn_out",), dims(tiny_model, 0), {"normalize": False})

    raw.load_named_tensors(
        {"w.attn_out": iv.tensor("w", "attn_out").detach(), "b.attn_out": iv.tensor("b", "attn_out").detach()}
    )
    assert torch.allclose(raw.scalars(act, "attn_out", 1).detach(), act @ w + b, atol=1e-5)


@pytest.mark.parametrize("site", ["attn_out", "head"])
def test_dynscalar_padding_is_masked(tiny_model, site):
    """A left-padded prompt gives the logits of the same prompt unpadded, with and without
    DynScalar (variable lengths are its point)."""
    short = [1, 77, 165, 40, 50, 60]
    longer = [1, 5, 6, 7, 8, 9, 10, 11, 12]
    alone = torch.tensor([short])
    padded = torch.tensor([[0, 0, 0] + short, longer])
    mask = torch.tensor([[0, 0, 0] + [1] * 6, [1] * 9])
    iv = fresh(tiny_model, "dynscalar", (site, "mlp_out"), n_pos=0)
    randomise(iv)
    with torch.no_grad():
        base_alone = last_position_logits(tiny_model, alone)
        base_padded = last_position_logits(tiny_model, padded, mask)
        with steer(tiny_model.bridge, iv, 1.0, batch=1):
            steered_alone = last_position_logits(tiny_model, alone)
        with steer(tiny_model.bridge, iv, 1.0, batch=2):
            steered_padded = last_position_logits(tiny_model, padded, mask)
    assert torch.allclose(base_padded[0], base_alone[0], atol=1e-5)
    assert torch.allclose(steered_padded[0], steered_alone[0], atol=1e-5)
    assert not torch.allclose(steered_alone, base_alone, atol=1e-3)


def test_named_tensors_round_trip_and_shape_errors(tiny_model):
    iv = fresh(tiny_model, "steervec", ("attn_out", "head"))
    randomise(iv)
    tensors = iv.named_tensors()
    assert {k: tuple(v.shape) for k, v in tensors.items()} == {
        "vector.attn_out": (2, N_POS, 64),
        "vector.head": (2, N_POS, 4, 16),
    }
    other = fresh(tiny_model, "steervec", ("attn_out", "head"))
    other.load_named_tensors(tensors)
    assert all(torch.equal(other.named_tensors()[k], v) for k, v in tensors.items())
    with pytest.raises(ValueError, match=r"^missing tensor\(s\) vector.head$"):
        other.load_named_tensors({"vector.attn_out": tensors["vector.attn_out"]})
    with pytest.raises(ValueError, match=r"^vector.attn_out has shape \[2, 6, 64\], expected \[2, 7, 64\]$"):
        other.load_named_tensors({**tensors, "vector.attn_out": torch.zeros(2, 6, 64)})


@pytest.mark.parametrize("method", METHODS)
def test_steer_binds_beta_per_block_and_leaves_the_intervention_unchanged(tiny_model, method):
    """β lives in the hook closures of one `steer` call: the same intervention object steered
    with +1 and −1 in alternating and nested blocks gives each block its own result, and
    nothing on the object changes."""
    bridge, x = tiny_model.bridge, tokens()
    iv = fresh(tiny_model, method, ("attn_out", "mlp_out"))
    randomise(iv)
    before = {k: (v if not isinstance(v, dict) else dict(v)) for k, v in vars(iv).items()}
    with torch.no_grad():
        with steer(bridge, iv, 1.0, batch=3):
            pos = bridge(x)
        with steer(bridge, iv, -1.0, batch=3):
            neg = bridge(x)
        assert not torch.equal(pos, neg)
        with steer(bridge, iv, 1.0, batch=3):
            assert torch.equal(bridge(x), pos)
            with steer(bridge, iv, -1.0, batch=3):
                both = bridge(x)  # both blocks' hooks apply: their composition
            assert torch.equal(bridge(x), pos)  # the outer block keeps its own β after the inner one
            with steer(bridge, iv, -1.0, batch=3):
                assert torch.equal(bridge(x), both)
        with steer(bridge, iv, -1.0, batch=3):
            assert torch.equal(bridge(x), neg)
    assert not torch.equal(both, pos) and not torch.equal(both, neg)
    assert hook_count(bridge) == 0
    assert vars(iv).keys() == before.keys()
    assert all(vars(iv)[k] is before[k] or vars(iv)[k] == before[k] for k in before)


def test_dynscalar_records_into_the_callers_dict_only(tiny_model):
    bridge, x = tiny_model.bridge, tokens()
    iv = fresh(tiny_model, "dynscalar", ("attn_out",))
    randomise(iv)
    record: dict = {}
    with torch.no_grad():
        with steer(bridge, iv, 1.0, batch=3, record=record):
            bridge(x)
        with steer(bridge, iv, 1.0, batch=3):  # no recorder: nothing kept anywhere
            bridge(x)
    assert sorted(record) == [("attn_out", layer) for layer in range(tiny_model.n_layers)]
    assert all(tuple(v.shape) == (3, N_POS) for v in record.values())
    assert "_record" not in vars(iv)
