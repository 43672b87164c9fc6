"""The interventions of docs/method.md §2, behind one small interface, and the registry of methods.

Each intervention is an `nn.Module` that holds only its parameters and constants (its sites and
the model's dimensions). Its hook functions are made per `steer` call, with the strength ``β``
and an optional recorder bound into their closures, so a shared intervention object never
changes state during a forward pass, and two `steer` blocks with different ``β`` never see each
other's strength.

A method is a subclass registered with `register_method`. Everything that differs between
methods lives on the class: its parameter shapes and edit, whether it is tied to one prompt
length, its default hyperparameters, what one "component" is and how large it is, and which
analysis arrays it records. Nothing outside this module branches on the method's name.

Steering strength ``β`` is per example (a ``[batch]`` tensor), so one forward pass can hold the
``β = +1`` and ``β = −1`` copies of a batch side by side. A batch's attention mask is bound the
same way: pad positions are never edited, by any method.

Positions (docs/method.md §2): a fixed-length method's parameter column ``n_pos − 1`` always meets a
prompt's last token. With absolute positions every prompt has ``n_pos`` tokens, so column ``i``
is token ``i``; with answer-aligned positions a batch ``w ≤ n_pos`` tokens wide (left-padded)
uses the last ``w`` columns, so column ``n_pos − k`` is the ``k``-th token from the end.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from typing_extensions import override

from actscale.engine.sites import hook_name, is_head_site
from actscale.errors import ActscaleError

# What a hook records: {(site, layer): tensor} for the caller of `steer` (DynScalar's scalars).
Recorder = dict[tuple[str, int], Tensor]
HookFn = Callable[..., Tensor]


@dataclass(frozen=True)
class ModelDims:
    """The model dimensions an intervention's parameter shapes depend on."""

    n_layers: int
    n_pos: int
    d_model: int
    n_heads: int
    d_head: int


@dataclass(frozen=True)
class MethodDefaults:
    """A method's own hyperparameter defaults (ours, docs/method.md §3; see docs/usage.md's table)."""

    steps: int
    lr: float
    batch_size: int
    lambda_m: float

    def as_dict(self) -> dict[str, float | int]:
        return {"steps": self.steps, "lr": self.lr, "batch_size": self.batch_size, "lambda_m": self.lambda_m}


class Intervention(nn.Module):
    """One learned edit per (site, layer); subclasses define `param_shapes` and `edit`, and say
    what a component is (`component_axes`, `component_values`).

    Shapes (docs/interfaces.md, Run bundle): per site, the first dimension is the layer.
    """

    method: ClassVar[str]
    label: ClassVar[str] = ""  # one line for pickers
    fixed_length: ClassVar[bool] = True  # tied to prompts of one token length
    options: ClassVar[tuple[str, ...]] = ()  # the TrainConfig fields `from_config` reads
    # Whether autocast "auto" may pick bfloat16 for this method (`resources.resolve_autocast`);
    # a method whose bf16 runs were not measured to match its float32 ones says False.
    auto_bf16: ClassVar[bool] = True
    defaults: ClassVar[MethodDefaults]
    # What `component_values` returns: its name in tables, its label on figures, and whether it
    # is signed (drawn on a diverging scale centred on 0) or a size (sequential scale).
    magnitude_name: ClassVar[str] = "value"
    magnitude_label: ClassVar[str] = "value"
    magnitude_signed: ClassVar[bool] = False

    def __init__(self, sites: tuple[str, ...], dims: ModelDims, *, answer_aligned: bool = False):
        super().__init__()
        self.sites = tuple(sites)
        self.dims = dims
        # A constant of the run (its config's ``positions``), like the sites: not per-call state.
        self.answer_aligned = answer_aligned
        self.params = nn.ParameterDict()
        for site in self.sites:
            for prefix, shape in self.param_shapes(site, dims).items():
                self.params[f"{prefix}__{site}"] = nn.Parameter(torch.zeros(shape))

    @classmethod
    def from_config(cls, sites: tuple[str, ...], dims: ModelDims, config: Mapping[str, Any]) -> Intervention:  # noqa: ARG003 - read by methods with options of their own
        """A fresh intervention (the identity); ``config`` is a run's config (TrainConfig fields),
        read by methods that have options of their own. A config without ``positions`` (a run
        stored before answer alignment existed) is absolute."""
        return cls(sites, dims, answer_aligned=config.get("positions") == "answer")

    # -- what subclasses define --
    @classmethod
    def param_shapes(cls, site: str, dims: ModelDims) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def edit(self, act: Tensor, site: str, layer: int, beta: Tensor, record: Recorder | None) -> Tensor:
        """``act`` is [batch pos d_model] ([batch pos n_heads d_head] at the head site);
        ``beta`` is [batch]. Returns the edited activation, same shape. ``record``, when given,
        receives whatever the method wants to keep of this pass, keyed by (site, layer)."""
        raise NotImplementedError

    @classmethod
    def component_axes(cls, site: str) -> tuple[str, ...]:
        """The axes of `component_values` at ``site``, e.g. ("layer", "position", "head")."""
        raise NotImplementedError

    @classmethod
    def component_values(cls, params: Mapping[str, Tensor], analysis: Mapping[str, Tensor], site: str) -> Tensor:
        """The size of each component at ``site`` from a bundle's tensors (no model needed),
        shaped by `component_axes`."""
        raise NotImplementedError

    @classmethod
    def relative_magnitude(
        cls,
        params: Mapping[str, Tensor],
        analysis: Mapping[str, Tensor],
        site: str,
        train_tokens: Tensor,  # noqa: ARG003 - the default needs no token mask
    ) -> Tensor:
        """The relative change each component makes to the activation it edits, shaped by
        `component_axes` (docs/method.md §4): a component is *effective* when this exceeds τ, and
        the map checks rank components by it. From a bundle's tensors: ``analysis`` holds
        ``hnorm.<site>`` and whatever the method records; ``train_tokens`` [n pos] marks the
        real tokens of the training prompts. The default, ``|component_values|``, suits
        methods whose components are scalars multiplying the activation. KeyError when an
        array it needs is not stored."""
        return cls.component_values(params, analysis, site).abs()

    @classmethod
    def transplant_scale(
        cls,
        analysis: Mapping[str, Tensor],  # noqa: ARG003 - the default needs no activation statistics
        site: str,  # noqa: ARG003
        src: Tensor,
        dst: Tensor,  # noqa: ARG003
    ) -> Tensor:
        """The factor for a component's parameters moved from component ``src`` to component
        ``dst`` of ``site`` (flat indices into `component_axes`, [k] each) so that it keeps its
        relative magnitude (the map checks' random control, docs/method.md §7). The default, 1,
        suits scalars multiplying the activation: their size is already relative."""
        return torch.ones(src.shape[0])

    def analysis_arrays(
        self,
        hdir: Mapping[str, Tensor],  # noqa: ARG002 - the default adds nothing
        record: Mapping[tuple[str, int], list[Tensor]],  # noqa: ARG002
    ) -> dict[str, Tensor]:
        """Tensors the dashboard draws without a model, beyond the shared ones (``hnorm.<site>``,
        ``delta.*``). ``hdir[site]`` is the mean unit activation per [layer pos (head) d];
        ``record`` what `edit` recorded over the evaluation's batches, in order."""
        return {}

    @property
    def records(self) -> bool:
        """Whether `edit` records anything worth keeping (the evaluation then keeps full-width,
        left-padded batches so the recorded tensors line up across batches)."""
        return False

    # -- shared behaviour --
    @property
    def n_pos(self) -> int:
        return self.dims.n_pos

    def length_problem(self, n_tokens: int) -> str:
        """Why prompts (or a batch) ``n_tokens`` positions wide cannot be steered; "" when they can."""
        if not self.fixed_length:
            return ""
        if self.answer_aligned:
            if n_tokens <= self.n_pos:
                return ""
            return (
                f"this {self.method} run counts positions back from the answer over at most {self.n_pos} "
                f"tokens; got {n_tokens}"
            )
        if n_tokens == self.n_pos:
            return ""
        return (
            f"this intervention is tied to prompts of {self.n_pos} tokens; got {n_tokens} "
            "(ActivScalar and SteerVec learn one parameter per position)"
        )

    def columns(self, values: Tensor, width: int) -> Tensor:
        """The rows of ``values`` ([n_pos ...], one per position) that a batch ``width``
        positions wide uses: the last ``width``, so the last one meets every prompt's last token
        (left padding). ValueError for a width the run cannot take."""
        problem = self.length_problem(width)
        if problem:
            raise ValueError(problem)
        return values[self.n_pos - width :]

    def forward(
        self,
        act: Tensor,
        hook: object = None,  # noqa: ARG002 - a TransformerLens hook's signature
        *,
        site: str,
        layer: int,
        beta: Tensor | None = None,
        record: Recorder | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        if beta is None:  # β is bound by `steer` into each hook's closure
            raise RuntimeError("an intervention runs only inside `steer(...)`")
        # Back to the activation's own dtype: under bfloat16 autocast the float32 parameters would
        # otherwise promote the rest of the forward pass to float32 (and the identity at β = 0
        # would no longer be exact); the cast passes the gradient on to the float32 parameters.
        edited = self.edit(act, site, layer, beta.to(act.dtype), record).to(act.dtype)
        if mask is None:
            return edited
        # Pad positions keep the model's own activation: they are never edited, so no
        # parameter is trained on them and the identity at β = 0 stays exact with padding.
        keep = mask.to(device=act.device, dtype=torch.bool).reshape(*mask.shape, *([1] * (act.dim() - 2)))
        return torch.where(keep, edited, act)

    def tensor(self, prefix: str, site: str) -> Tensor:
        return self.params[f"{prefix}__{site}"]

    def named_tensors(self) -> dict[str, Tensor]:
        """Bundle names (``alpha.attn_out``) -> detached float32 CPU tensors."""
        out = {}
        for key, p in self.params.items():
            prefix, site = key.split("__")
            out[f"{prefix}.{site}"] = p.detach().to("cpu", torch.float32).contiguous()
        return out

    def load_named_tensors(self, tensors: Mapping[str, Tensor]) -> None:
        """The inverse of `named_tensors`; shapes must match exactly."""
        expected = {k: tuple(p.shape) for k, p in self.named_tensors().items()}
        got = {k: tuple(v.shape) for k, v in tensors.items() if k in expected}
        missing = sorted(set(expected) - set(tensors))
        if missing:
            raise ValueError(f"missing tensor(s) {', '.join(missing)}")
        wrong = [
            f"{k} has shape {list(got[k])}, expected {list(expected[k])}" for k in expected if got[k] != expected[k]
        ]
        if wrong:
            raise ValueError("; ".join(wrong))
        with torch.no_grad():
            for name, value in tensors.items():
                if name in expected:
                    prefix, site = name.split(".")
                    self.tensor(prefix, site).copy_(value)

    def minimality(self) -> Tensor:
        """``‖θ‖₁`` (docs/method.md §3)."""
        return torch.stack([p.abs().sum() for p in self.params.values()]).sum()

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.params.values())

    def hooks(
        self, beta: Tensor, record: Recorder | None = None, mask: Tensor | None = None
    ) -> list[tuple[str, HookFn]]:
        """(hook name, hook function) for every site and layer, with ``beta`` ([batch]),
        ``record`` and the batch's attention ``mask`` ([batch pos], 1 on real tokens; None: no
        padding) bound into each function: the intervention itself is not changed."""
        return [
            (
                hook_name(site, layer),
                functools.partial(self, site=site, layer=layer, beta=beta, record=record, mask=mask),
            )
            for site in self.sites
            for layer in range(self.dims.n_layers)
        ]


# ---------------------------------------------------------------- the registry
_REGISTRY: dict[str, type[Intervention]] = {}


def register_method(cls: type[Intervention]) -> type[Intervention]:
    """Make ``cls`` a method every layer knows (config, training, store, CLI, dashboard).
    Usable as a class decorator; registering the same name twice replaces the first."""
    if not getattr(cls, "method", ""):
        raise ValueError(f"{cls.__name__} has no method name")
    _REGISTRY[cls.method] = cls
    return cls


def unregister_method(method: str) -> None:
    """Forget ``method`` (tests that register a method of their own clean up with this)."""
    _REGISTRY.pop(method, None)


def registered_methods() -> tuple[str, ...]:
    """The names of every registered method, in registration order."""
    return tuple(_REGISTRY)


def float32_under_auto() -> tuple[str, ...]:
    """The registered methods that autocast "auto" keeps in float32 (``auto_bf16`` False)."""
    return tuple(m for m in _REGISTRY if not _REGISTRY[m].auto_bf16)


def method_class(method: str) -> type[Intervention]:
    """The class of a registered method; ActscaleError (one line) for an unknown name."""
    try:
        return _REGISTRY[method]
    except (KeyError, TypeError):
        raise ActscaleError(f"unknown method {method!r}: choose from {', '.join(_REGISTRY)}") from None


def effective_counts(
    method: type[Intervention],
    sites: tuple[str, ...],
    params: Mapping[str, Tensor],
    analysis: Mapping[str, Tensor],
    train_tokens: Tensor,
    tau: float,
) -> tuple[int, int]:
    """(n_components, n_effective) of docs/method.md §4. KeyError when an array is not stored."""
    mags = [method.relative_magnitude(params, analysis, site, train_tokens) for site in sites]
    return sum(m.numel() for m in mags), sum(int((m > tau).sum()) for m in mags)


def make_intervention(
    method: str, sites: tuple[str, ...], dims: ModelDims, config: Mapping[str, Any] | None = None
) -> Intervention:
    """A fresh intervention (the identity) of ``method``; ``config`` holds the method's own
    options (DynScalar's ``normalize``)."""
    return method_class(method).from_config(tuple(sites), dims, config or {})


def _expand(beta: Tensor, act: Tensor) -> Tensor:
    """[batch] -> [batch, 1, 1(, 1)] so it broadcasts over the activation."""
    return beta.reshape(-1, *([1] * (act.dim() - 1)))


def _positioned_axes(site: str) -> tuple[str, ...]:
    return ("layer", "position", "head") if is_head_site(site) else ("layer", "position")


# ---------------------------------------------------------------- the three methods
@register_method
class ActivScalar(Intervention):
    """``h' = h · (1 + β·α[s,l,i])``: one scalar per (site, layer, position[, head])."""

    method = "activscalar"
    label = "ActivScalar (a scalar per site, layer, position)"
    # A scalar per position learns fast with a large step. Steps and batch size were chosen on
    # validation (`experiments defaults`): batches of 4 flip more validation prompts than 8.
    defaults = MethodDefaults(steps=18, lr=0.1, batch_size=4, lambda_m=0.05)
    magnitude_name, magnitude_label, magnitude_signed = "alpha", "α", True

    @classmethod
    @override
    def param_shapes(cls, site: str, dims: ModelDims) -> dict[str, tuple[int, ...]]:
        if is_head_site(site):
            return {"alpha": (dims.n_layers, dims.n_pos, dims.n_heads)}
        return {"alpha": (dims.n_layers, dims.n_pos)}

    @override
    def edit(self, act: Tensor, site: str, layer: int, beta: Tensor, record: Recorder | None) -> Tensor:
        alpha = self.columns(self.tensor("alpha", site)[layer], act.shape[1])  # [pos] or [pos n_heads]
        scale = 1 + _expand(beta, act) * alpha.unsqueeze(-1).unsqueeze(0)  # [batch pos (n_heads) 1]
        return act * scale

    @classmethod
    @override
    def component_axes(cls, site: str) -> tuple[str, ...]:
        return _positioned_axes(site)

    @classmethod
    @override
    def component_values(cls, params: Mapping[str, Tensor], analysis: Mapping[str, Tensor], site: str) -> Tensor:
        return params[f"alpha.{site}"]


@register_method
class SteerVec(Intervention):
    """``h' = h + β·v[s,l,i]``: one vector per (site, layer, position[, head]) — the baseline."""

    method = "steervec"
    label = "SteerVec (a vector per site, layer, position)"
    # A vector per position has D times as many coordinates, each with a small gradient, so its
    # L1 weight is far smaller.
    defaults = MethodDefaults(steps=15, lr=0.01, batch_size=4, lambda_m=1e-4)
    magnitude_name, magnitude_label = "norm_ratio", "‖v‖/‖h‖"

    @classmethod
    @override
    def param_shapes(cls, site: str, dims: ModelDims) -> dict[str, tuple[int, ...]]:
        if is_head_site(site):
            return {"vector": (dims.n_layers, dims.n_pos, dims.n_heads, dims.d_head)}
        return {"vector": (dims.n_layers, dims.n_pos, dims.d_model)}

    @override
    def edit(self, act: Tensor, site: str, layer: int, beta: Tensor, record: Recorder | None) -> Tensor:
        vector = self.columns(self.tensor("vector", site)[layer], act.shape[1])  # [pos (n_heads) d]
        return act + _expand(beta, act) * vector.unsqueeze(0)

    @classmethod
    @override
    def component_axes(cls, site: str) -> tuple[str, ...]:
        return _positioned_axes(site)

    @classmethod
    @override
    def component_values(cls, params: Mapping[str, Tensor], analysis: Mapping[str, Tensor], site: str) -> Tensor:
        """``‖v‖ / mean‖h‖`` per [layer pos (head)] (``‖v‖`` where the bundle has no ``‖h‖``)."""
        vnorm = params[f"vector.{site}"].norm(dim=-1)
        hnorm = analysis.get(f"hnorm.{site}")
        return vnorm if hnorm is None else vnorm / hnorm.clamp_min(1e-6)

    @classmethod
    @override
    def relative_magnitude(
        cls, params: Mapping[str, Tensor], analysis: Mapping[str, Tensor], site: str, train_tokens: Tensor
    ) -> Tensor:
        """``‖v[s,l,i]‖ / mean‖h[s,l,i]‖``: each vector against the mean norm of the very
        activation it is added to (one global mean would be dominated by position 0's huge
        norms and call almost every vector negligible)."""
        return params[f"vector.{site}"].norm(dim=-1) / analysis[f"hnorm.{site}"].clamp_min(1e-6)

    @classmethod
    @override
    def transplant_scale(cls, analysis: Mapping[str, Tensor], site: str, src: Tensor, dst: Tensor) -> Tensor:
        """A vector moved to another (layer, position) is rescaled by the ratio of the mean
        ‖h‖ there to the mean ‖h‖ where it was learned, so ‖v‖/‖h‖ is kept."""
        hnorm = analysis[f"hnorm.{site}"].reshape(-1).float()
        return hnorm[dst] / hnorm[src].clamp_min(1e-6)

    @override
    def analysis_arrays(
        self, hdir: Mapping[str, Tensor], record: Mapping[tuple[str, int], list[Tensor]]
    ) -> dict[str, Tensor]:
        """``cos.<site>``: the mean cosine of each vector with the activation it is added to."""
        out = {}
        for site in self.sites:
            v = self.tensor("vector", site).detach().cpu()
            out[f"cos.{site}"] = ((v * hdir[site]).sum(-1) / v.norm(dim=-1).clamp_min(1e-12)).contiguous()
        return out


@register_method
class DynScalar(Intervention):
    """``h' = h · (1 + β·α)`` with ``α = w[s,l]ᵀ ĥ + b[s,l]``: the scalar is read off the
    activation itself, so one set of parameters serves prompts of any length.

    ``normalize=True`` (the default, ours) takes the dot product with ``ĥ = h/‖h‖``; ``False``
    uses the raw activation, whose norm differs by orders of magnitude between sites.
    """

    method = "dynscalar"
    label = "DynScalar (a scalar computed from the activation; any prompt length)"
    fixed_length = False
    # DynScalar's w grows by about lr·√D per step and overshoots at 0.02.
    defaults = MethodDefaults(steps=40, lr=0.015, batch_size=8, lambda_m=1e-3)
    magnitude_name, magnitude_label = "w_norm", "‖w‖"
    options = ("normalize",)
    # Its scalars are read off the activation (α = wᵀĥ + b), which under bf16 autocast is a
    # bfloat16 number: measured over seeds 1-3, bf16 moved its validation choice of learning rate
    # (0.03 over 0.015) and moved held-out families' flips by up to a fifth either way
    # (scene-first β = -1 0.72 -> 0.53), so "auto" keeps it in float32 (docs/measured.md, "How the defaults
    # were checked"); --autocast bf16 still runs it in bf16.
    auto_bf16 = False

    def __init__(self, sites: tuple[str, ...], dims: ModelDims, normalize: bool = True):
        self.normalize = normalize
        super().__init__(sites, dims)

    @classmethod
    @override
    def from_config(cls, sites: tuple[str, ...], dims: ModelDims, config: Mapping[str, Any]) -> Intervention:
        return cls(sites, dims, normalize=bool(config.get("normalize", True)))

    @classmethod
    @override
    def param_shapes(cls, site: str, dims: ModelDims) -> dict[str, tuple[int, ...]]:
        if is_head_site(site):
            return {"w": (dims.n_layers, dims.n_heads, dims.d_head), "b": (dims.n_layers, dims.n_heads)}
        return {"w": (dims.n_layers, dims.d_model), "b": (dims.n_layers,)}

    def scalars(self, act: Tensor, site: str, layer: int) -> Tensor:
        """α for each position: [batch pos] ([batch pos n_heads] at the head site)."""
        w, b = self.tensor("w", site)[layer], self.tensor("b", site)[layer]
        h = act / act.norm(dim=-1, keepdim=True).clamp_min(1e-6) if self.normalize else act
        if is_head_site(site):
            return torch.einsum("bphd,hd->bph", h, w) + b
        return h @ w + b

    @override
    def edit(self, act: Tensor, site: str, layer: int, beta: Tensor, record: Recorder | None) -> Tensor:
        alpha = self.scalars(act, site, layer)
        if record is not None:
            record[(site, layer)] = alpha.detach().float().cpu()
        return act * (1 + _expand(beta, alpha) * alpha).unsqueeze(-1)

    @property
    @override
    def records(self) -> bool:
        return True

    @classmethod
    @override
    def component_axes(cls, site: str) -> tuple[str, ...]:
        return ("layer", "head") if is_head_site(site) else ("layer",)

    @classmethod
    @override
    def component_values(cls, params: Mapping[str, Tensor], analysis: Mapping[str, Tensor], site: str) -> Tensor:
        return params[f"w.{site}"].norm(dim=-1)

    @classmethod
    @override
    def relative_magnitude(
        cls, params: Mapping[str, Tensor], analysis: Mapping[str, Tensor], site: str, train_tokens: Tensor
    ) -> Tensor:
        """The mean of ``|α(h)|`` over the real tokens of the training prompts: the scalar it
        actually applied (recorded at β = +1), per [layer (head)]."""
        alpha = analysis[f"dynalpha.{site}"].abs()  # [n layer pos (head)]
        mask = train_tokens.to(alpha.dtype)  # [n pos]
        mask = mask.reshape(mask.shape[0], 1, mask.shape[1], *([1] * (alpha.dim() - 3)))
        return (alpha * mask).sum(dim=(0, 2)) / mask.sum(dim=(0, 2)).clamp_min(1)

    @override
    def analysis_arrays(
        self, hdir: Mapping[str, Tensor], record: Mapping[tuple[str, int], list[Tensor]]
    ) -> dict[str, Tensor]:
        """``dynalpha.<site>``: the scalars produced on every prompt, [n layer pos (head)]."""
        if not record:
            return {}
        out = {}
        for site in self.sites:
            per_layer = [torch.cat(record[(site, layer)]) for layer in range(self.dims.n_layers)]
            out[f"dynalpha.{site}"] = torch.stack(per_layer, dim=1).float().contiguous()
        return out


# ---------------------------------------------------------------- attaching to a model
@contextlib.contextmanager
def steer(
    bridge: Any,  # a TransformerBridge
    intervention: Intervention,
    beta: float | Tensor,
    batch: int | None = None,
    record: Recorder | None = None,
    mask: Tensor | None = None,
) -> Iterator[None]:
    """Attach ``intervention`` with strength ``beta`` (a number, or a [batch] tensor) for the
    duration of the block; ``record`` (a dict the caller owns) receives what the method records;
    ``mask`` is the batch's attention mask ([batch pos], as given to the model), whose pad
    positions are left unedited. Exactly the hooks added here are removed on exit, also on an
    error; the intervention object is not modified, so the same one may be used by nested or
    alternating blocks."""
    if not isinstance(beta, Tensor):
        if batch is None:
            raise ValueError("a scalar beta needs the batch size")
        beta = torch.full((batch,), float(beta))
    device = next(intervention.parameters()).device
    mask = None if mask is None or bool(mask.all()) else mask.to(device)  # no padding: nothing to mask
    with bridge.hooks(fwd_hooks=intervention.hooks(beta.to(device), record, mask), reset_hooks_end=True):
        yield


def hook_count(bridge: Any) -> int:  # a TransformerBridge
    """How many forward or backward hooks are attached to the model's hook points (0 when clean).

    ``hook_dict`` lists a hook point under each of its alias names (``blocks.0.hook_attn_out``
    is ``blocks.0.attn.hook_out``), and TransformerLens keeps its own list of the handles it
    registered with torch, so each hook point is counted once, by the larger of its two lists.
    """
    total = 0
    for hp in {id(hp): hp for hp in bridge.hook_dict.values()}.values():
        total += max(len(hp._forward_hooks), len(getattr(hp, "fwd_hooks", [])))
        total += max(len(hp._backward_hooks), len(getattr(hp, "bwd_hooks", [])))
    return total
