"""The map checks over seeds and families (actscale.checks, docs/method.md §7): stability between
runs of other seeds, the rank correlation it reads, and the generalisation matrix over IOI's
families, on tiny-model runs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from actscale import checks
from actscale.checks import (
    CheckOptions,
    over_seeds,
)
from actscale.engine.training import TrainConfig
from actscale.runs.api import train_run
from actscale.runs.bundle import load_bundle
from actscale.runs.store import RunStore


def test_stability_over_two_seeds(tiny_llama, tmp_path):
    store = RunStore(tmp_path / "runs")
    bundle = train_run(
        TrainConfig(model=tiny_llama.name, method="activscalar", steps=3, n_prompts=16, n_test=8),
        tiny_llama,
        store=store,
    )
    out = checks.run_checks(tiny_llama, bundle, CheckOptions(prompts=8, draws=5, seeds=2, precision="float32"))
    s = out["stability"]
    # the default varies the data seed (IOI draws its data), with the training seed fixed
    assert [r["seed"] for r in s["runs"]] == [0, 0] and [r["data_seed"] for r in s["runs"]] == [0, 1]
    assert s["vary"] == "data" and s["varies"] == over_seeds.VARIES["data"]
    assert s["runs"][0]["run_id"] == bundle.run_id  # the run's own seed is reused, not retrained
    (pair,) = s["pairs"]
    n = sum(bundle.analysis[f"magnitude.{site}"].numel() for site in bundle.sites)
    assert pair["top_k_chance"] == s["k_top"] ** 2 / n
    assert pair["top_k_p"] == over_seeds.overlap_p(pair["top_k_shared"], s["k_top"], n)
    assert s["n_selected_all"] <= s["n_selected_any"]
    assert len(store.list()) == 2
    _, tensors = load_bundle(bundle.path).checks()
    for site in bundle.sites:
        freq = tensors[f"stability.freq.{site}"]
        assert freq.shape == bundle.analysis[f"magnitude.{site}"].shape
        assert set(torch.unique(freq).tolist()) <= {0.0, 0.5, 1.0}


def test_stability_pairs_rank_over_the_effective_components_and_count_overlaps_against_chance():
    """Over every component the many near-zero ones agree and dominate the correlation; over the
    components effective (> τ) in either run it says how the two maps rank what they use."""
    a = torch.tensor([0.9, 0.5, 0.3, 0.0, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006])
    b = torch.tensor([0.2, 0.5, 0.9, 0.0, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006])
    bundles = [
        SimpleNamespace(run_id=r, record=SimpleNamespace(config=SimpleNamespace(seed=i))) for i, r in enumerate("xy")
    ]
    (pair,) = over_seeds._pairs(bundles, torch.stack([a, b]), 2, "seed", 0.05)
    assert (pair["n_union"], pair["spearman"]) == (3, pytest.approx(-1.0))
    assert pair["spearman_all"] == pytest.approx(157 / 165)  # 0.95: the seven near-zero ones agree
    # top-2: {0, 1} and {2, 1} share 1, where two random 2-sets of 10 share 2·2/10 on average
    assert (pair["top_k_shared"], pair["top_k_chance"], pair["top_k_p"]) == (1, 0.4, pytest.approx(17 / 45))
    # two random 2-sets of 4 components share both with chance 1/C(4,2); at least none with chance 1
    assert over_seeds.overlap_p(2, 2, 4) == pytest.approx(1 / 6) and over_seeds.overlap_p(0, 2, 4) == 1.0
    assert over_seeds.overlap_p(1, 2, 4) == pytest.approx(5 / 6)


def test_stability_aligns_answer_aligned_runs_of_other_widths_on_the_answer():
    values = torch.tensor([[1.0, 2.0, 3.0]])  # [layer, position], the last position next to the answer
    axes = ("layer", "position")
    assert over_seeds._on_answer(values, axes, 5).tolist() == [[0.0, 0.0, 1.0, 2.0, 3.0]]
    assert over_seeds._on_answer(values, axes, 2).tolist() == [[2.0, 3.0]]
    assert over_seeds._on_answer(values, ("layer",), 2) is values


def test_stability_varies_the_data_by_default_and_the_training_seed_for_a_file():
    def of(task):
        return SimpleNamespace(record=SimpleNamespace(config=SimpleNamespace(task=task)))

    assert [over_seeds.resolved_vary(of(t), "auto") for t in ("ioi", "ccc", "custom")] == ["data", "data", "seed"]
    assert over_seeds.resolved_vary(of("ioi"), "seed") == "seed" and CheckOptions().vary == "auto"


def test_spearman():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert checks.spearman(a, a * 10) == pytest.approx(1.0)
    assert checks.spearman(a, -a) == pytest.approx(-1.0)
    assert checks.spearman(torch.tensor([1.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 2.0])) == pytest.approx(1.0)


def test_generalisation_matrix_for_ioi_families(tiny_llama, tmp_path):
    store = RunStore(tmp_path / "runs")
    bundle = train_run(
        TrainConfig(model=tiny_llama.name, method="dynscalar", steps=2, n_prompts=16, n_test=16),
        tiny_llama,
        store=store,
    )
    groups = checks.run_groups(bundle)
    assert groups == ["coordinated", "scene-first", "subordinate", "two-sentences"]
    out = checks.run_checks(
        tiny_llama, bundle, CheckOptions(prompts=8, draws=5, generalisation=True, side_effects=False)
    )
    g = out["generalisation"]
    assert g["groups"] == groups and len(g["cells"]) == 16
    diagonal = [c for c in g["cells"] if c["train"] == c["test"]]
    assert [c["split"] for c in diagonal] == ["val"] * 4
    assert all(c["split"] == "test" for c in g["cells"] if c["train"] != c["test"])
    assert sum(c["n_prompts"] for c in g["cells"] if c["train"] == "coordinated" and c["split"] == "test") == 16
    assert len({c["run_id"] for c in g["cells"]}) == 4


def test_generalisation_of_a_fixed_length_ioi_run_trains_each_row_on_its_family_alone(tiny_llama, tmp_path):
    """ActivScalar with absolute positions keeps one token length, so its prompts carry only the
    families with templates of that length (here two of four). Each row's run must train on its
    family alone: holding out the run's other families was not enough, since IOI draws from every
    template, and the row "coordinated" had trained on the two families the run never had (its
    own validation cell empty, every cell of the matrix 0 prompts)."""
    store = RunStore(tmp_path / "runs")
    bundle = train_run(TrainConfig(model=tiny_llama.name, steps=2, n_prompts=16, n_test=16), tiny_llama, store=store)
    out = checks.run_checks(tiny_llama, bundle, CheckOptions(prompts=8, draws=5, generalisation=True))
    g = out["generalisation"]
    cells = [(c["train"], c["test"], c["split"], c["n_prompts"]) for c in g["cells"]]
    assert g["groups"] == ["coordinated", "two-sentences"] and cells == [
        ("coordinated", "coordinated", "val", 3),
        ("coordinated", "two-sentences", "test", 16),
        ("two-sentences", "coordinated", "test", 16),
        ("two-sentences", "two-sentences", "val", 3),
    ]
    for family in g["groups"]:
        run = store.load(next(c["run_id"] for c in g["cells"] if c["train"] == family))
        assert {m["group"] for m in run.info["group_metrics"] if m["split"] in ("train", "val")} == {family}
