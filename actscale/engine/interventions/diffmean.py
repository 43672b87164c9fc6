"""DiffMean (docs/method.md §2): the training-free steering baseline every recent benchmark reports
(mean-difference vectors, CAA; AxBench reports it for every setting).

Per (site, layer), ``v`` is the mean difference of the last-position activations between the
clean training prompts and their counterfactuals (docs/method.md §5), oriented from the prompts
with the lower logit difference to those with the higher, so β = +1 pushes towards a+. It is
added at the last position, ``h'[−1] = h[−1] + β·s·v``, at **one** (site, layer) with strength
``s``: the layer is the one whose vector moves the validation prompts' mean Δ fastest,
``∂Δ/∂s = ⟨∇_h Δ, v⟩`` at s = 0 (every layer's from one forward and backward pass), and the
strength the one of ``STRENGTHS`` that flips the most validation prompts both ways (ties: the
smaller). Test prompts are never read. The fit takes two capture passes over the training pairs,
one backward pass and two batched passes over the validation prompts; no training step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor
from typing_extensions import override

from actscale.engine.interventions.base import Intervention, MethodDefaults, ModelDims, Recorder, expand_beta
from actscale.engine.interventions.registry import register_method
from actscale.engine.interventions.steering import at_sites, steer
from actscale.engine.objective import logit_diff
from actscale.engine.sites import is_head_site
from actscale.errors import ActscaleError, TrainingCancelled

STRENGTHS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)  # multiples of the mean difference tried on validation
ROWS_PER_PASS = 128
Shift = tuple[str, int, Tensor]  # a vector added at the last position of (site, layer)
Logits = Callable[[Tensor, Tensor], Tensor]  # (tokens, mask) -> last-position logits (`models.last_position_logits`)


@register_method
class DiffMean(Intervention):
    """``h'[−1] = h[−1] + β·v[s,l]``: ``v`` = s × the mean clean − counterfactual difference at the
    one (site, layer) and strength chosen on validation, zero at every other layer."""

    method = "diffmean"
    label = "DiffMean (a mean-difference vector at one layer; no training)"
    # Its vector sits at the last position, so no length ties it; it keeps the prompts ActivScalar
    # and SteerVec keep (one length on the generated tasks), so the three share one split.
    fixed_length = True
    fitted: ClassVar[bool] = True
    # Nothing is trained: the optimiser's fields do not matter and are kept at these values.
    defaults = MethodDefaults(steps=1, lr=0.1, batch_size=4, lambda_m=0.0)
    magnitude_name, magnitude_label = "norm_ratio", "‖v‖/‖h‖ (last position)"

    def __init__(self, sites: tuple[str, ...], dims: ModelDims, *, answer_aligned: bool = False):
        super().__init__(sites, dims, answer_aligned=answer_aligned)
        self.measured: dict[str, Tensor] = {}  # every layer's mean difference, set by `fit`

    @classmethod
    @override
    def param_shapes(cls, site: str, dims: ModelDims) -> dict[str, tuple[int, ...]]:
        if is_head_site(site):
            raise ActscaleError("diffmean adds one vector per layer at attn_out, mlp_out or resid_post, not per head")
        return {"vector": (dims.n_layers, dims.d_model)}

    @override
    def edit(self, act: Tensor, site: str, layer: int, beta: Tensor, record: Recorder | None) -> Tensor:
        shift = expand_beta(beta, act[:, -1:]) * self.tensor("vector", site)[layer]
        return torch.cat([act[:, :-1], act[:, -1:] + shift], dim=1)

    @classmethod
    @override
    def component_axes(cls, site: str) -> tuple[str, ...]:
        return ("layer",)

    @classmethod
    @override
    def component_values(cls, params: Mapping[str, Tensor], analysis: Mapping[str, Tensor], site: str) -> Tensor:
        """``‖v‖ / mean‖h‖`` at the last position, per layer (``‖v‖`` without ``‖h‖``)."""
        size = params[f"vector.{site}"].norm(dim=-1)
        hnorm = analysis.get(f"hnorm.{site}")
        return size if hnorm is None else size / hnorm[:, -1].clamp_min(1e-6)

    @classmethod
    @override
    def cell_magnitude(
        cls, params: Mapping[str, Tensor], analysis: Mapping[str, Tensor], site: str, train_tokens: Tensor
    ) -> Tensor:
        """Its relative change at the last position, 0 at every other reached position."""
        hnorm = analysis[f"hnorm.{site}"]
        cells = torch.zeros_like(hnorm, dtype=torch.float32)
        cells[:, -1] = cls.component_values(params, analysis, site)
        return cells.masked_fill(~train_tokens.bool().any(0).reshape(1, -1), float("nan"))

    @classmethod
    @override
    def transplant_scale(
        cls,
        analysis: Mapping[str, Tensor],
        site: str,
        src: Tensor,
        dst: Tensor,
        learned: Tensor | None = None,
        moved: Mapping[str, Tensor] | None = None,
        reads: Tensor | None = None,
    ) -> Tensor:
        """A vector moved to another layer is rescaled by the mean ‖h‖ at the last position there
        against where it was chosen, so ‖v‖/‖h‖ is kept."""
        hnorm = analysis[f"hnorm.{site}"][:, -1].float()
        return hnorm[dst] / hnorm[src].clamp_min(1e-6)

    @property
    @override
    def n_params(self) -> int:
        """The chosen vector (every other layer's is zero)."""
        return sum(int((self.tensor("vector", s).abs().sum(-1) != 0).sum()) * self.dims.d_model for s in self.sites)

    @override
    def analysis_arrays(
        self, hdir: Mapping[str, Tensor], record: Mapping[tuple[str, int], list[Tensor]]
    ) -> dict[str, Tensor]:
        """``measured.<site>``: every layer's oriented mean difference (the chosen one, times its
        strength, is the parameter)."""
        return {f"measured.{site}": v.contiguous() for site, v in self.measured.items()}

    @override
    def fit(self, model: Any, task: Any, logits: Logits, cancelled: Callable[[], bool]) -> dict[str, Any]:
        """Measure the vectors on the training pairs, choose the (site, layer) and the strength on
        the validation prompts (training prompts where there are none), and set the parameters.
        ``logits(tokens, mask)``: the model's last-position logits (`models.last_position_logits`)."""
        start = time.perf_counter()
        run = _Fitting(model, self, logits, cancelled)
        vectors, orientation, n_pairs = run.mean_differences(task)
        split = task.choice_split
        rows = task.split_indices(split)
        batch = (task.tokens[rows], task.attention_mask[rows], task.correct_ids[rows], task.wrong_ids[rows])
        candidates = [(site, layer) for site in self.sites for layer in range(self.dims.n_layers)]
        moves = run.moves(batch, vectors)
        site, layer = candidates[int(torch.argmax(moves))]
        tried = run.flips(batch, [(site, layer, s * vectors[site][layer]) for s in STRENGTHS])
        best = max(range(len(STRENGTHS)), key=lambda i: (tried[i][0] + tried[i][1], -i))
        self.measured = {s: v.detach().cpu().float() for s, v in vectors.items()}
        with torch.no_grad():
            for s in self.sites:
                self.tensor("vector", s).zero_()
            self.tensor("vector", site)[layer] = STRENGTHS[best] * vectors[site][layer]
        return {
            "split": split,
            "n": int(rows.numel()),
            "n_pairs": n_pairs,
            "orientation": orientation,
            "site": site,
            "layer": layer,
            "strength": STRENGTHS[best],
            "moves": {s: [round(float(m), 6) for m, (c, _) in zip(moves, candidates) if c == s] for s in self.sites},
            "strengths": [{"strength": s, "flip_acc_pos": p, "flip_acc_neg": n} for s, (p, n) in zip(STRENGTHS, tried)],
            "seconds": round(time.perf_counter() - start, 3),
        }


@dataclass(frozen=True)
class _Fitting:
    """What a fit's passes share: the model (its lock and bridge), the intervention being fitted
    (its sites and dimensions), the model's last-position logits, and whether to stop."""

    model: Any
    iv: DiffMean
    logits: Logits
    cancelled: Callable[[], bool]

    def check(self) -> None:
        if self.cancelled():
            raise TrainingCancelled("cancelled while fitting diffmean")

    def mean_differences(self, task: Any) -> tuple[dict[str, Tensor], int, int]:
        """Per site [layer d]: the mean last-position activation of the clean training prompts
        minus their counterfactuals', oriented towards the higher logit difference; the
        orientation (±1); how many pairs."""
        rows = task.counterfactual_rows("train")
        if not rows.numel():
            raise ActscaleError(
                "diffmean needs training prompts with a counterfactual (IOI and CCC have them; a file needs its "
                f"counterfactual column): {task.counterfactual_summary('train')}"
            )
        mask, correct, wrong = task.attention_mask[rows], task.correct_ids[rows], task.wrong_ids[rows]
        sums: dict[str, list[Tensor]] = {}
        deltas = []
        for sign, tokens in ((1.0, task.tokens[rows]), (-1.0, task.counterfactual_tokens[rows])):
            self.check()
            last: dict[tuple[str, int], Tensor] = {}

            def capture(act: Tensor, site: str, layer: int, last: dict = last) -> None:
                last[(site, layer)] = act[:, -1].detach().float().cpu()

            with self.model.lock, torch.no_grad(), self._at_sites(capture):
                deltas.append(logit_diff(self.logits(tokens, mask).float().cpu(), correct, wrong))
            for site in self.iv.sites:
                mean = torch.stack([last[(site, layer)].mean(0) for layer in range(self.iv.dims.n_layers)])
                sums.setdefault(site, []).append(sign * mean)
        orientation = 1 if float((deltas[0] - deltas[1]).mean()) >= 0 else -1
        return {s: orientation * (pair[0] + pair[1]) for s, pair in sums.items()}, orientation, int(rows.numel())

    def moves(self, batch: tuple[Tensor, ...], vectors: Mapping[str, Tensor]) -> Tensor:
        """Per (site, layer), flat in the sites' order: how fast its vector moves the mean Δ of
        the ``batch`` prompts, ``∂Δ/∂s`` at s = 0, from one forward and backward pass with every
        layer's vector attached at strength 0."""
        tokens, mask, correct, wrong = batch
        probe = DiffMean(self.iv.sites, self.iv.dims).to(self.model.device)  # zero: the gradient is ∇_h Δ
        with self.model.lock, steer(self.model.bridge, probe, 1.0, batch=int(tokens.shape[0]), mask=mask):
            out = self.logits(tokens, mask)
            logit_diff(out, correct.to(out.device), wrong.to(out.device)).mean().backward()
        grads = {s: probe.tensor("vector", s).grad.detach().cpu() for s in self.iv.sites}  # type: ignore[union-attr]
        return torch.cat([(grads[s] * vectors[s]).sum(-1) for s in self.iv.sites])

    def flips(self, batch: tuple[Tensor, ...], shifts: list[Shift]) -> list[tuple[float, float]]:
        """Per shift, the share of prompts preferring a+ at β = +1 and a− at β = −1."""
        deltas = self.deltas(batch, shifts)
        return [(float((d[0] > 0).double().mean()), float((d[1] < 0).double().mean())) for d in deltas]

    def deltas(self, batch: tuple[Tensor, ...], shifts: list[Shift]) -> Tensor:
        """Δ of the ``batch`` prompts with each shift added at the last position at β = +1 and
        β = −1: [shifts, 2, prompts], several shifts to a forward pass."""
        tokens, mask, correct, wrong = batch
        n = int(tokens.shape[0])
        per_pass = max(1, ROWS_PER_PASS // (2 * n))
        out = []
        for start in range(0, len(shifts), per_pass):
            self.check()
            chunk = shifts[start : start + per_pass]
            rows = 2 * len(chunk)
            adds: dict[tuple[str, int], Tensor] = {}
            for j, (site, layer, vector) in enumerate(chunk):  # segment j: n rows at β = +1, then n at β = −1
                add = adds.setdefault((site, layer), torch.zeros(rows * n, vector.shape[-1]))
                add[2 * j * n : (2 * j + 1) * n] += vector
                add[(2 * j + 1) * n : (2 * j + 2) * n] -= vector

            def edit(act: Tensor, site: str, layer: int, adds: dict = adds) -> Tensor | None:
                add = adds.get((site, layer))
                if add is None:
                    return None
                return torch.cat([act[:, :-1], act[:, -1:] + add.to(act.device, act.dtype).unsqueeze(1)], dim=1)

            with self.model.lock, torch.no_grad(), self._at_sites(edit):
                both = self.logits(tokens.repeat(rows, 1), mask.repeat(rows, 1)).float().cpu()
            out.append(logit_diff(both, correct.repeat(rows), wrong.repeat(rows)).reshape(len(chunk), 2, n))
        return torch.cat(out)

    def _at_sites(self, fn: Callable[[Tensor, str, int], Tensor | None]) -> Any:
        return at_sites(self.model.bridge, self.iv.sites, self.iv.dims.n_layers, fn)
