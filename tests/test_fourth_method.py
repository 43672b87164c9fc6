"""A fourth method, defined in this file alone, goes through every layer without an edit to the
package: it registers, trains on the tiny model, is stored, reloads, evaluates, and its Explore
page renders (issue 7's acceptance test of the method registry)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest
from torch import Tensor
from typing_extensions import override

from actscale.engine.config import TrainConfig
from actscale.engine.interventions import (
    Intervention,
    MethodDefaults,
    ModelDims,
    Recorder,
    register_method,
    registered_methods,
    unregister_method,
)
from actscale.engine.sites import is_head_site
from actscale.runs.api import evaluate_run, load_run, train_run
from actscale.runs.store import RunStore

PAGE = str(Path(__file__).resolve().parents[1] / "app_pages" / "2_Explore.py")
SITES = ("attn_out", "mlp_out", "head")


class LayerScalar(Intervention):
    """``h' = h · (1 + β·g[s,l(,head)])``: one scalar per site and layer (and head), shared by
    every position, so prompts of any length are fine."""

    method = "layerscalar"
    label = "LayerScalar (a scalar per site and layer)"
    fixed_length = False
    defaults = MethodDefaults(steps=4, lr=0.1, batch_size=4, lambda_m=0.01)
    magnitude_name, magnitude_label, magnitude_signed = "gain", "g", True

    @classmethod
    @override
    def param_shapes(cls, site: str, dims: ModelDims) -> dict[str, tuple[int, ...]]:
        return {"gain": (dims.n_layers, dims.n_heads)} if is_head_site(site) else {"gain": (dims.n_layers,)}

    @override
    def edit(self, act: Tensor, site: str, layer: int, beta: Tensor, record: Recorder | None) -> Tensor:
        gain = self.tensor("gain", site)[layer]  # [] or [n_heads]
        if is_head_site(site):
            gain = gain.unsqueeze(-1)  # [n_heads 1]
        return act * (1 + beta.reshape(-1, *([1] * (act.dim() - 1))) * gain)

    @classmethod
    @override
    def component_axes(cls, site: str) -> tuple[str, ...]:
        return ("layer", "head") if is_head_site(site) else ("layer",)

    @classmethod
    @override
    def component_values(cls, params, analysis, site: str) -> Tensor:
        return params[f"gain.{site}"]


@pytest.fixture(scope="module")
def registered():
    register_method(LayerScalar)
    yield
    unregister_method("layerscalar")


@pytest.fixture(scope="module")
def stored(registered, tmp_path_factory, tiny_llama):
    root = tmp_path_factory.mktemp("fourth") / "runs"
    config = TrainConfig(model="tiny-llama", method="layerscalar", sites=SITES, n_prompts=16, early_stop=0)
    return root, train_run(config, tiny_llama, store=RunStore(root))


def test_it_is_registered_with_its_defaults(registered):
    assert registered_methods()[-1] == "layerscalar"
    config = TrainConfig(method="layerscalar")
    assert (config.steps, config.lr, config.batch_size, config.lambda_m) == (4, 0.1, 4, 0.01)
    assert config.fixed_length is False


def test_it_trains_stores_reloads_and_evaluates(stored, tiny_llama):
    root, bundle = stored
    n_layers, n_heads = tiny_llama.n_layers, tiny_llama.n_heads
    assert bundle.method == "layerscalar"
    assert {k: tuple(v.shape) for k, v in bundle.params.items()} == {
        "gain.attn_out": (n_layers,),
        "gain.mlp_out": (n_layers,),
        "gain.head": (n_layers, n_heads),
    }
    assert bundle.metrics["train"]["n_params"] == 2 * n_layers + n_layers * n_heads
    # Its default steps are a cycle: at most 4 of them, until validation reaches the target.
    target = bundle.info["target"]
    assert len(bundle.history) == 4 * target["cycles_run"] and target["cycles"] == 4
    assert target["met"] or target["cycles_run"] == 4
    assert any(float(v.abs().sum()) > 0 for v in bundle.params.values())  # it learned something
    again = load_run(bundle.run_id, store=RunStore(root))
    assert all(torch.equal(again.params[k], v) for k, v in bundle.params.items())
    metrics = evaluate_run(again, tiny_llama)
    assert metrics["test"]["flip_acc_pos"] == bundle.metrics["test"]["flip_acc_pos"]
    assert metrics["test"]["logit_diff_neg"] == pytest.approx(bundle.metrics["test"]["logit_diff_neg"], abs=1e-5)
    # β = 0 is the unmodified model, exactly
    zero = evaluate_run(again, tiny_llama, beta=0.0)
    assert zero["test"]["logit_diff_pos"] == zero["test"]["logit_diff_base"]


def test_its_explore_page_renders(stored, monkeypatch):
    root, bundle = stored
    monkeypatch.setenv("ACTSCALE_STORE", str(root))
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["run"] = bundle.run_id
    at.run()
    assert not at.exception and not at.error
    # its components per layer are bars (plotly); the head site's two maps (layer × head) are heatmaps,
    # SVG images until made interactive, as are the training curves
    keys = [c.proto.id.split("-fig-", 1)[1] for c in at.get("plotly_chart")]
    assert keys == ["components-attn_out", "components-mlp_out"] and len(at.get("image")) == 3
    at.query_params["interactive"] = "1"
    at.run()
    keys = [c.proto.id.split("-fig-", 1)[1] for c in at.get("plotly_chart")]
    assert keys == ["components-attn_out", "components-mlp_out", "components-head", "head-dyn", "history"]
    bars = json.loads(
        next(c for c in at.get("plotly_chart") if c.proto.id.endswith("-fig-components-attn_out")).proto.spec
    )
    assert bars["data"][0]["type"] == "bar"
    assert bars["data"][0]["y"] == pytest.approx(bundle.params["gain.attn_out"].tolist())
    heads = json.loads(next(c for c in at.get("plotly_chart") if c.proto.id.endswith("-fig-head-dyn")).proto.spec)
    assert heads["data"][0]["zmid"] == 0  # signed: centred on "no change"
    at.session_state["explore_tab"] = "Top components"  # opening the tab draws it
    at.run()
    tables = [d.value for d in at.dataframe if "abs" in d.value.columns]
    assert len(tables) == 1 and list(tables[0]["metric"].unique()) == ["gain"]
