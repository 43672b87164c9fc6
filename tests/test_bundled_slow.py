"""The acceptance targets of issue 2 on the real bundled model (SmolLM2-135M), default settings.

Minutes on a 2-core CPU: run with ``pytest -m slow``.
"""

from __future__ import annotations

import time

import pytest
import torch

from actscale.engine.models import bundled_model_folder, gguf, load_model
from actscale.engine.training import TrainConfig

pytestmark = pytest.mark.slow


def test_warm_load(bundled, monkeypatch):
    assert (bundled_model_folder() / "actscale.json").is_file()  # converted once, kept in the cache
    # A warm load reads the converted folder and never converts again (its time is in the bench).
    monkeypatch.setattr(gguf, "convert_gguf", lambda *args: pytest.fail("the warm load converted again"))
    start = time.perf_counter()
    again = load_model("bundled", "cpu")
    print(f"\nwarm load of the bundled model: {time.perf_counter() - start:.1f} s")
    assert again.weights_hash == bundled.weights_hash
    assert (again.n_layers, again.d_model, again.n_heads) == (30, 576, 9)
    x = torch.tensor([bundled.tokenizer("When Mary and John went to the store, John gave a drink to").input_ids])
    with torch.no_grad():
        assert torch.equal(again.bridge(x), bundled.bridge(x))


def print_metrics(name: str, bundle, seconds: float) -> None:
    """The run's time, target and every split's numbers, for the suite's log."""
    print(f"\n{name}: {seconds:.0f} s, {bundle.info['steps_run']} steps, target {bundle.info['target']}")
    for split, m in bundle.metrics.items():
        print(
            f"  {split}: n {m['n_prompts']} base {m['acc_base']:.2f} flip +{m['flip_acc_pos']:.2f} "
            f"{m['flip_acc_pos_ci95']} -{m['flip_acc_neg']:.2f} {m['flip_acc_neg_ci95']} "
            f"KL {m['faithfulness_kl']:.4f} effective {m['n_effective']}/{m['n_components']}"
        )


def assert_method_shape(bundle, method: str, bundled, n_sites: int) -> None:
    """The method's parameter and component counts on the bundled model; DynScalar's held-out
    run trained and tested across prompt lengths, its test family alone in the test split."""
    test, n_layers, n_pos = bundle.metrics["test"], bundled.n_layers, bundle.config["n_pos"]
    if method == "activscalar":
        assert test["n_params"] == test["n_components"] == n_sites * n_layers * n_pos
        assert test["effective_frac"] <= 0.25  # measured 15% on IOI, 20% on CCC (seed 0)
    if method == "steervec":
        assert test["n_params"] == bundled.d_model * n_sites * n_layers * n_pos
        assert test["n_components"] == n_sites * n_layers * n_pos and test["n_effective"] > 0
    if method == "dynscalar":
        assert test["n_params"] == n_sites * n_layers * (bundled.d_model + 1)
        assert test["n_components"] == n_sites * n_layers
        lengths = {len(t) for t in bundle.info["str_tokens"]}
        assert len(lengths) >= 3  # trained and tested across prompt lengths
        assert {r["group"] for r in bundle.dataset if r["split"] == "test"} == {"scene-first"}
        assert "scene-first" not in {r["group"] for r in bundle.dataset if r["split"] != "test"}


def assert_countries_held_out(bundle) -> None:
    """CCC: 30 countries tested, 7 trained on, no country in two splits; intervals by country."""
    test = bundle.metrics["test"]
    countries = {s: {r["group"] for r in bundle.dataset if r["split"] == s} for s in ("train", "val", "test")}
    assert (len(countries["test"]), len(countries["train"] | countries["val"])) == (30, 7)
    assert test["n_groups"] == 30 and {"flip_acc_pos_cluster95", "flip_acc_neg_cluster95"} <= set(test)
    assert not (
        countries["train"] & countries["test"]
        or countries["val"] & countries["test"]
        or countries["train"] & countries["val"]
    )


@pytest.mark.parametrize(
    "task,method,test_groups,target",
    [
        ("ioi", "activscalar", (), 0.90),
        ("ioi", "steervec", (), 0.90),
        ("ccc", "activscalar", (), 0.90),
        ("ccc", "steervec", (), 0.90),
        ("ioi", "dynscalar", ("scene-first",), None),  # a template family (two lengths) it never saw
    ],
)
def test_flip_targets_on_held_out_prompts(bundled, bundled_run, task, method, test_groups, target):
    """Each run is trained into the session's store, where the map checks' slow tests open the
    IOI ActivScalar run again. The defaults as a user gets them, but DynScalar's held-out run is
    one cycle of its 40 steps: where it misses the validation target its default trains up to 4
    cycles (160 steps, minutes more of the suite's time on a slow CPU); its adaptive runs are
    measured in docs/measured.md, and its assertion is the same either way."""
    fields = {"cycles": 1} if method == "dynscalar" else {}
    config = TrainConfig(model="bundled", task=task, method=method, test_groups=test_groups, **fields)
    start = time.perf_counter()
    bundle = bundled_run(task=task, method=method, test_groups=test_groups, **fields)
    test = bundle.metrics["test"]
    print_metrics(f"{task} {method}", bundle, time.perf_counter() - start)
    # Every split has its base rate and an interval for every rate (issue 8).
    assert set(bundle.metrics) == {"train", "val", "test"}
    for m in bundle.metrics.values():
        assert {"acc_base", "acc_base_ci95", "flip_acc_pos_ci95", "flip_acc_neg_ci95"} <= set(m)
    assert test["n_prompts"] >= 200  # generated tasks test on 200 prompts drawn apart
    if target is not None:
        assert test["flip_acc_pos"] >= target and test["flip_acc_neg"] >= target
    else:  # held out: no target was tuned; the steered rate must beat the unmodified one beyond its interval
        assert test["flip_acc_neg_ci95"][0] > 1 - test["acc_base"]
    assert 0 < test["effective_frac"] <= 1
    if (task, method) == ("ioi", "activscalar"):  # the default reaches its validation target (0.9 each way)
        assert bundle.info["target"]["met"] and bundle.info["target"]["cycles"] == 4
    assert_method_shape(bundle, method, bundled, len(config.sites))
    if task == "ccc":
        assert_countries_held_out(bundle)


@pytest.mark.parametrize("task", ["ioi", "ccc"])
def test_diffmean_and_the_floor_share_the_default_runs_split(bundled_run, task):
    """The training-free baselines on the default IOI and CCC prompts: DiffMean fitted on the same
    prompts and split as ActivScalar and SteerVec (one dataset hash), its layer and strength chosen
    on validation; the logit-bias floor on those prompts; all with base rates and intervals."""
    from actscale.views.analysis import floor_frame, floor_result, metrics_frame

    trained = [bundled_run(task=task, method=m) for m in ("activscalar", "steervec")]
    fitted = bundled_run(task=task, method="diffmean")
    hashes = {b.record.provenance.dataset_hash for b in [*trained, fitted]}
    assert len(hashes) == 1
    fit = fitted.info["fit"]
    assert (fit["split"], fit["n"], fit["n_pairs"]) == ("val", fitted.metrics["val"]["n_prompts"], 38)
    test = fitted.metrics["test"]
    assert test["n_prompts"] == 200 and test["n_params"] == 576 and len(test["flip_acc_neg_ci95"]) == 2
    chosen = f"{fit['site']} L{fit['layer']} × {fit['strength']:g}"
    rates = f"{test['flip_acc_pos']:.2f} / {test['flip_acc_neg']:.2f} (unmodified {test['acc_base']:.2f})"
    print(f"\n{task} DiffMean {chosen}: test {rates}, KL {test['faithfulness_kl']:.3f}")
    floor = floor_result(trained[0])
    assert floor is not None and floor["split"] == "val"
    assert floor["splits"]["test"]["n_prompts"] == 200 and floor["splits"]["test"]["faithfulness_kl"] == 0.0
    shown = metrics_frame([*trained, fitted])
    both = floor_frame([*trained, fitted])
    assert set(shown["method"]) | set(both["method"]) == {"activscalar", "steervec", "diffmean", "logit-bias floor"}
    assert len(both) == 3  # one floor (one dataset), per split
