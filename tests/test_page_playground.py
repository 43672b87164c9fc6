"""The Playground page through Streamlit's AppTest, on tiny-model runs of the three methods."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_method_runs, open_page_link, param
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "app_pages" / "4_Playground.py")
METHODS = ("activscalar", "steervec", "dynscalar")
SITES = ("attn_out", "mlp_out", "head")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_llama):
    """One tiny run per method (made once for the module), in a store of their own."""
    root = tmp_path_factory.mktemp("playground") / "runs"
    return root, make_method_runs(root, tiny_llama, SITES)


@pytest.fixture(autouse=True)
def env(runs, monkeypatch):
    monkeypatch.setenv("ACTSCALE_STORE", str(runs[0]))
    monkeypatch.setenv("ACTSCALE_MODEL", "tiny-llama")


def open_page(run_id: str | None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    if run_id is not None:
        at.query_params["run"] = run_id
    return at.run()


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


DELTA = "Δ = logit(a+) − logit(a−)"


def array(value) -> np.ndarray:
    """A plotly array from a figure's JSON: a list, or a typed array ``{dtype, bdata}``."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
    return np.asarray(value)


def typed(at: AppTest, prompt: str | None = None, correct: str | None = None, wrong: str | None = None) -> AppTest:
    at.radio(key="pg_source").set_value("Type my own").run()
    if prompt is not None:
        at.text_area(key="pg_prompt").set_value(prompt)
    if correct is not None:
        at.text_input(key="pg_correct").set_value(correct)
    if wrong is not None:
        at.text_input(key="pg_wrong").set_value(wrong)
    return at.run()


@pytest.mark.parametrize("method", METHODS)
def test_smoke(runs, method):
    bundle = runs[1][method]
    at = open_page(bundle.run_id)
    assert not at.exception and not at.error
    assert at.selectbox(key="playground_run").value == bundle.run_id
    assert set(metrics(at)) == {DELTA, "p(a+)", "p(a−)"}
    # the top-10 tables before and after, and the per-example table
    tables = [d.value for d in at.dataframe]
    top = [t for t in tables if "rank_change" in t.columns]
    assert len(top) == 2 and all(len(t) == 10 for t in top)
    examples = [t for t in tables if "delta_base" in t.columns]
    assert len(examples) == 1 and len(examples[0]) == len(bundle.dataset)
    assert {"delta_pos", "delta_neg", "flipped_pos", "flipped_neg"} <= set(examples[0].columns)
    # its flips over every prompt, each after its base (the unmodified model's), as every rate is shown
    d = bundle.deltas()
    n, base = len(bundle.dataset), int((d["base"] > 0).sum())
    pos, neg = int((d["pos"] > 0).sum()), int((d["neg"] < 0).sum())
    said = f"Flips over all {n} prompts (every split): β = +1 {base} → {pos}, β = −1 {n - base} → {neg} "
    said += "(unmodified → steered)."
    assert any(said in c.value for c in at.caption)
    curve = [c for c in at.get("plotly_chart") if c.proto.id.endswith("-fig-beta-curve")]
    assert len(curve) == 1
    spec = json.loads(curve[0].proto.spec)
    assert len(array(spec["data"][0]["x"])) == 21


def test_beta_slider_changes_delta(runs):
    at = open_page(runs[1]["activscalar"].run_id)
    assert at.slider(key="pg_beta").value == 1.0
    at_plus = metrics(at)[DELTA]
    at.slider(key="pg_beta").set_value(-1.0).run()
    assert not at.exception and not at.error
    at_minus = metrics(at)[DELTA]
    assert at_plus != at_minus
    at.slider(key="pg_beta").set_value(0.0).run()
    # β = 0 is the unmodified model: no change against it, drawn without an arrow or colour (it
    # had been "+0.000" under a green arrow up)
    from streamlit.proto.Metric_pb2 import Metric

    assert [(m.delta, m.proto.direction, m.proto.color) for m in at.metric] == [
        ("±0.000 vs β = 0", Metric.NONE, Metric.GRAY),
        ("±0.0000", Metric.NONE, Metric.GRAY),
        ("±0.0000", Metric.NONE, Metric.GRAY),
    ]


def test_picking_a_dataset_prompt(runs):
    bundle = runs[1]["steervec"]
    at = open_page(bundle.run_id)
    at.selectbox(key="pg_pick").set_value(3).run()
    assert not at.exception and not at.error
    row = bundle.dataset[3]
    assert any(row["correct"] in c.value and row["wrong"] in c.value for c in at.caption)


def test_typed_multi_token_answer_is_one_error(runs):
    at = open_page(runs[1]["dynscalar"].run_id)
    typed(at, correct="Mary John")
    assert not at.exception
    assert len(at.error) == 1 and "2 tokens" in at.error[0].value
    # the per-example table needs no model and stays
    assert any("delta_base" in d.value.columns for d in at.dataframe)


def test_typed_prompt_of_the_wrong_length_is_one_error(runs):
    bundle = runs[1]["activscalar"]
    at = open_page(bundle.run_id)
    typed(at, prompt="When Mary went to the store")
    assert not at.exception
    assert len(at.error) == 1 and f"{bundle.config['n_pos']} tokens" in at.error[0].value


def test_typed_prompt_of_any_length_for_dynscalar(runs):
    at = open_page(runs[1]["dynscalar"].run_id)
    typed(at, prompt="When Mary and John went to the park, John gave a ball to", correct="Mary", wrong="John")
    assert not at.exception and not at.error
    before = metrics(at)[DELTA]
    typed(at, prompt="Then, Mary and John went to the park. John gave a ball to")
    assert not at.exception and not at.error
    assert metrics(at)[DELTA] != before


def test_empty_prompt_is_one_error(runs):
    at = open_page(runs[1]["dynscalar"].run_id)
    typed(at, prompt="   ")
    assert not at.exception and len(at.error) == 1 and "empty" in at.error[0].value


def test_invalid_run_link(runs):
    at = open_page("../../etc/passwd")
    assert not at.exception
    assert len(at.error) == 1 and "invalid run id" in at.error[0].value


def test_run_made_on_another_model_is_one_error(runs, monkeypatch):
    """A run whose weights hash is not the loaded model's: one line, and the table stays."""
    from actscale.ui import common

    real = common.resident_model

    def other_model(name=None, device=None):
        import dataclasses

        return dataclasses.replace(real(name, device), weights_hash="0000000000000000")

    monkeypatch.setattr(common, "resident_model", other_model)
    at = open_page(runs[1]["steervec"].run_id)
    assert not at.exception
    assert len(at.error) == 1 and "was trained on model" in at.error[0].value
    assert any("delta_base" in d.value.columns for d in at.dataframe)


# ---------------------------------------------------------------- links that reproduce the view
def open_link(**params: str) -> AppTest:
    """The Playground opened on a link's query parameters."""
    return open_page_link(PAGE, **params)


def test_a_link_opens_the_dataset_prompt_and_beta(runs):
    bundle = runs[1]["steervec"]
    at = open_page(bundle.run_id)
    at.selectbox(key="pg_pick").set_value(3).run()
    at.slider(key="pg_beta").set_value(-0.5).run()
    shown = metrics(at)
    assert (param(at, "example"), param(at, "beta"), param(at, "prompt")) == ("3", "-0.5", None)

    fresh = open_link(run=bundle.run_id, example="3", beta="-0.5")
    assert not fresh.exception and not fresh.error and not fresh.warning
    assert fresh.radio(key="pg_source").value == "From the run's dataset"
    assert fresh.selectbox(key="pg_pick").value == 3 and fresh.slider(key="pg_beta").value == -0.5
    assert metrics(fresh) == shown


def test_a_stale_address_never_undoes_a_choice(runs):
    """Each rerun takes the address from the browser. A rerun asked for before the browser has
    applied the last run's address change (a quick second click) brings the old ``?example=0``
    back: the session wrote that value itself, so it is not a new link and the prompt stays 3."""
    bundle = runs[1]["steervec"]
    at = open_page(bundle.run_id)
    assert param(at, "example") == "0"
    at.selectbox(key="pg_pick").set_value(3).run()
    assert param(at, "example") == "3"
    at.query_params["example"] = "0"  # the address as the browser still had it
    at.slider(key="pg_beta").set_value(0.7).run()
    assert not at.exception and not at.warning
    assert at.selectbox(key="pg_pick").value == 3
    assert (param(at, "example"), param(at, "beta")) == ("3", "0.7")


def test_a_link_opens_a_typed_prompt(runs):
    bundle = runs[1]["dynscalar"]
    prompt = "When Mary and John went to the park, John gave a ball to"
    at = typed(open_page(bundle.run_id), prompt=prompt, correct="Mary", wrong="John")
    at.slider(key="pg_beta").set_value(0.25).run()
    assert not at.exception and not at.error
    shown = metrics(at)
    assert [param(at, n) for n in ("prompt", "correct", "wrong", "beta", "example")] == [
        prompt,
        "Mary",
        "John",
        "0.25",
        None,
    ]

    fresh = open_link(run=bundle.run_id, prompt=prompt, correct="Mary", wrong="John", beta="0.25")
    assert not fresh.exception and not fresh.error and not fresh.warning
    assert fresh.radio(key="pg_source").value == "Type my own"
    assert fresh.text_area(key="pg_prompt").value == prompt
    assert (fresh.text_input(key="pg_correct").value, fresh.text_input(key="pg_wrong").value) == ("Mary", "John")
    assert metrics(fresh) == shown


@pytest.mark.parametrize(
    ("params", "warning"),
    [
        ({"beta": "2"}, "Ignored ?beta='2' from the link: β must lie between −1 and +1"),
        ({"beta": "0.33"}, "Ignored ?beta='0.33' from the link: β must be a multiple of 0.05 (the slider's step)"),
        ({"beta": "nan"}, "Ignored ?beta='nan' from the link: β must lie between −1 and +1"),
        ({"beta": "lots"}, "Ignored ?beta='lots' from the link: β must be a number"),
        ({"example": "999"}, "Ignored ?example='999' from the link: example 999 is out of range (this run has "),
        ({"prompt": "   "}, "Ignored ?prompt='   ' from the link: prompt is empty"),
        ({"correct": "x" * 101}, f"Ignored ?correct={'x' * 40!r} from the link: correct is longer than 100 characters"),
    ],
)
def test_bad_link_values_are_one_warning_and_ignored(runs, params, warning):
    bundle = runs[1]["activscalar"]
    at = open_link(run=bundle.run_id, **params)
    assert not at.exception and not at.error
    assert len(at.warning) == 1 and at.warning[0].value.startswith(warning), at.warning[0].value
    assert at.slider(key="pg_beta").value == 1.0  # the defaults
    assert at.radio(key="pg_source").value == "From the run's dataset"
    assert at.selectbox(key="pg_pick").value == 0
    assert (param(at, "beta"), param(at, "example")) == ("1", "0")


def test_a_bf16_run_says_its_stored_results_were_computed_in_bf16(runs, tiny_llama, tmp_path, monkeypatch):
    """The page steers in float32 whatever the run's precision, while a bf16 run's per-example
    table was computed under bfloat16 autocast: said for that run, and for no other."""
    from actscale.engine.training import TrainConfig
    from actscale.runs.api import train_run
    from actscale.runs.store import RunStore

    said = (
        "This run was trained under bfloat16 autocast, and its stored results (the per-example table) were "
        "computed in it; this page steers in float32, so a prompt's Δ here can differ from its stored Δ by "
        "bfloat16's rounding (docs/checks.md: up to 0.45 on the default run)."
    )
    config = TrainConfig(model="tiny-llama", autocast="bf16", steps=2, n_prompts=16, n_test=8, seed=5)
    bf16_run = train_run(config, tiny_llama, store=RunStore(tmp_path / "runs"))  # the module's store stays as it is
    monkeypatch.setenv("ACTSCALE_STORE", str(tmp_path / "runs"))
    at = open_page(bf16_run.run_id)
    assert not at.exception
    assert [c.value for c in at.caption if "bfloat16" in c.value] == [said]
    monkeypatch.setenv("ACTSCALE_STORE", str(runs[0]))
    at = open_page(runs[1]["activscalar"].run_id)
    assert not at.exception and not [c.value for c in at.caption if "bfloat16" in c.value]
