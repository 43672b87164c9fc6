"""The intervention interface: an `nn.Module` holding only its parameters, whose hook functions
are made per `steer` call with β, the attention mask and a recorder bound into their closures."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from actscale.engine.sites import is_head_site

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
    # A method set from the prompts without gradient steps (DiffMean): `fit` sets its parameters
    # and `training.train` runs no step; the optimiser's fields keep the method's defaults.
    fitted: ClassVar[bool] = False
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
        read by methods that have options of their own."""
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
    def cell_magnitude(
        cls, params: Mapping[str, Tensor], analysis: Mapping[str, Tensor], site: str, train_tokens: Tensor
    ) -> Tensor:
        """The relative change of the activation in each *cell* (site, layer, position[, head]),
        the unit every method is compared in (docs/method.md §4): [layer pos (head)], NaN at a
        position no training prompt reaches. The default suits methods whose components are the
        cells (one per position): `relative_magnitude`."""
        return cls.relative_magnitude(params, analysis, site, train_tokens)

    # Whether `transplant_scale` needs what the method reads from the activation at the moved
    # components' new places (`transplant_reads`, captured on the check prompts).
    transplant_reads_activations: bool = False

    @classmethod
    def transplant_scale(
        cls,
        analysis: Mapping[str, Tensor],  # noqa: ARG003 - the default needs no activation statistics
        site: str,  # noqa: ARG003
        src: Tensor,
        dst: Tensor,  # noqa: ARG003
        learned: Tensor | None = None,  # noqa: ARG003
        moved: Mapping[str, Tensor] | None = None,  # noqa: ARG003
        reads: Tensor | None = None,  # noqa: ARG003
    ) -> Tensor:
        """The factor for a component's parameters moved from component ``src`` to component
        ``dst`` of ``site`` (flat indices into `component_axes`, [k] each) so that it applies its
        learned relative magnitude there (the map checks' random control, docs/method.md §7.3).
        ``learned``: the moved components' relative magnitudes [k]; ``moved``: their parameters
        ({tensor: [k, payload]}); ``reads``: what the method reads from the activation at every
        component of the site over the check prompts' real tokens ([components, tokens, ...],
        given where `transplant_reads_activations`). The default, 1, suits scalars multiplying
        the activation: their size is already relative."""
        return torch.ones(src.shape[0])

    def transplant_reads(self, act: Tensor) -> Tensor:
        """What the method reads from an activation [tokens, ...] when it computes its edit (the
        default: the activation itself)."""
        return act

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

    def fit(
        self, model: Any, task: Any, logits: Callable[[Tensor, Tensor], Tensor], cancelled: Callable[[], bool]
    ) -> dict[str, Any]:
        """A `fitted` method's parameters from ``task``'s training (and validation) prompts, set in
        place; returns what was measured and chosen (stored as the run's ``info.fit``).
        ``logits(tokens, mask)``: the model's last-position logits. Raises TrainingCancelled when
        ``cancelled()`` says so."""
        raise NotImplementedError(f"{self.method} is trained by gradient steps, not fitted")

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


def expand_beta(beta: Tensor, act: Tensor) -> Tensor:
    """[batch] -> [batch, 1, 1(, 1)] so it broadcasts over the activation."""
    return beta.reshape(-1, *([1] * (act.dim() - 1)))


def positioned_axes(site: str) -> tuple[str, ...]:
    return ("layer", "position", "head") if is_head_site(site) else ("layer", "position")
