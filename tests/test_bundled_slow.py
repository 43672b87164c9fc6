"""The acceptance targets of issue 2 on the real bundled model (SmolLM2-135M), default settings.

Minutes on a 2-core CPU: run with ``pytest -m slow``.
"""

from __future__ import annotations

import time

import pytest
import torch

from actscale.api import train_run
from actscale.models import bundled_model_folder, load_model
from actscale.training import TrainConfig

pytestmark = pytest.mark.slow


def test_warm_load(bundled):
    assert (bundled_model_folder() / "actscale.json").is_file()  # converted once, kept in the cache
    start = time.perf_counter()
    again = load_model("bundled", "cpu")
    seconds = time.perf_counter() - start
    print(f"\nwarm load of the bundled model: {seconds:.1f} s")
    assert seconds < 15  # a re-conversion takes about 30 s; the target (bench) is 3 s
    assert again.weights_hash == bundled.weights_hash
    assert (again.n_layers, again.d_model, again.n_heads) == (30, 576, 9)
    x = torch.tensor([bundled.tokenizer("When Mary and John went to the store, John gave a drink to").input_ids])
    with torch.no_grad():
        assert torch.equal(again.bridge(x), bundled.bridge(x))


@pytest.mark.parametrize(
    "task,method,test_templates,target",
    [
        ("ioi", "activscalar", (), 0.90),
        ("ioi", "steervec", (), 0.90),
        ("ccc", "activscalar", (), 0.90),
        ("ccc", "steervec", (), 0.90),
        ("ioi", "dynscalar", ("ioi-8", "ioi-9"), 0.80),  # templates (and a length) it never saw
    ],
)
def test_flip_targets_on_held_out_prompts(bundled, store, task, method, test_templates, target):
    config = TrainConfig(model="bundled", task=task, method=method, test_templates=test_templates)
    start = time.perf_counter()
    bundle = train_run(config, bundled, store=store)
    test, train = bundle.metrics["test"], bundle.metrics["train"]
    print(
        f"\n{task} {method}: {time.perf_counter() - start:.0f} s, {bundle.info['steps_run']} steps; "
        f"test {test['n_prompts']} prompts flip +{test['flip_acc_pos']:.2f} -{test['flip_acc_neg']:.2f}; "
        f"train flip +{train['flip_acc_pos']:.2f} -{train['flip_acc_neg']:.2f}; "
        f"n_params {test['n_params']} n_effective {test['n_effective']} faithfulness {test['faithfulness_kl']:.4f}"
    )
    assert test["flip_acc_pos"] >= target and test["flip_acc_neg"] >= target
    n_sites, n_layers, n_pos = len(config.sites), bundled.n_layers, bundle.config["n_pos"]
    if method == "activscalar":
        assert test["n_params"] == n_sites * n_layers * n_pos
        assert test["n_effective"] <= 0.2 * test["n_params"]
    if method == "steervec":
        assert test["n_params"] == bundled.d_model * n_sites * n_layers * n_pos
    if method == "dynscalar":
        assert test["n_params"] == n_sites * n_layers * (bundled.d_model + 1)
        lengths = {len(t) for t in bundle.info["str_tokens"]}
        assert len(lengths) >= 3  # trained and tested across prompt lengths
        held_out = [r["split"] == "test" for r in bundle.dataset]
        assert held_out == ["sunny day" in r["prompt"] for r in bundle.dataset]  # ioi-8, ioi-9 only
