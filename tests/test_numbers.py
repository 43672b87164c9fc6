"""Numbers a researcher can present (issue 8): comparable minimality, baselines, intervals,
validation, groups, and test prompts that cannot change a trained run."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from actscale.engine.config import TrainConfig
from actscale.engine.objective import wilson_interval
from actscale.engine.tasks import IOI_FAMILY_OF
from actscale.runs.api import build_task, train_run
from actscale.runs.store import RunStore
from actscale.views import analysis


def config(model, **changes) -> TrainConfig:
    base = dict(model=model.name, task="ioi", steps=3, n_prompts=16, n_test=12, batch_size=4, device="cpu")
    return TrainConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_llama):
    root = tmp_path_factory.mktemp("numbers") / "runs"
    store = RunStore(root)
    return store, {
        m: train_run(config(tiny_llama, method=m, sites=("attn_out", "head"), lr=0.5), tiny_llama, store=store)
        for m in ("activscalar", "steervec", "dynscalar")
    }


def test_test_prompts_cannot_change_a_trained_run(tiny_llama, tmp_path):
    """More, fewer or other test prompts: the same training prompts, the same parameters."""
    params = []
    for n_test in (4, 12, 30):
        cfg = config(tiny_llama, n_test=n_test)
        task = build_task(tiny_llama, cfg)
        assert len(task.split_indices("test")) == n_test
        params.append(train_run(cfg, tiny_llama, store=RunStore(tmp_path / str(n_test))).params)
        train_prompts = [e.prompt for e in task.examples if e.split != "test"]
        if n_test == 4:
            first = train_prompts
        assert train_prompts == first
    assert all(torch.equal(params[0][k], p[k]) for p in params[1:] for k in params[0])


def test_minimality_counts_components_against_their_own_activation(runs, tiny_llama):
    _, bundles = runs
    L, H, n_pos = tiny_llama.n_layers, tiny_llama.n_heads, bundles["activscalar"].config["n_pos"]
    expected_components = {
        "activscalar": L * n_pos + L * n_pos * H,  # one per scalar
        "steervec": L * n_pos + L * n_pos * H,  # one per vector, not per number
        "dynscalar": L + L * H,  # one per (site, layer[, head])
    }
    for method, bundle in bundles.items():
        m = bundle.metrics["test"]
        assert m["n_components"] == expected_components[method], method
        assert 0 <= m["n_effective"] <= m["n_components"]
        assert m["effective_frac"] == m["n_effective"] / m["n_components"]
        # the stored magnitude of each component is what n_effective counts
        tau = bundle.config["tau"]
        assert sum(int((bundle.analysis[f"magnitude.{s}"] > tau).sum()) for s in bundle.sites) == m["n_effective"]
    # SteerVec: ‖v[s,l,i]‖ / mean ‖h[s,l,i]‖ at its own site, layer and position
    sv = bundles["steervec"]
    ratio = sv.params["vector.attn_out"].norm(dim=-1) / sv.analysis["hnorm.attn_out"]
    assert torch.allclose(sv.analysis["magnitude.attn_out"], ratio)
    # DynScalar: the mean |α| over the training prompts' real tokens
    dyn = bundles["dynscalar"]
    mask = analysis.train_token_mask(dyn)
    alpha = dyn.analysis["dynalpha.attn_out"].abs()  # [n layer pos]
    by_hand = torch.stack([alpha[:, layer][mask].mean() for layer in range(L)])
    assert torch.allclose(dyn.analysis["magnitude.attn_out"], by_hand)


def test_every_split_has_a_base_rate_and_intervals(runs):
    _, bundles = runs
    bundle = bundles["activscalar"]
    assert set(bundle.metrics) == {"train", "val", "test"}
    splits = [r["split"] for r in bundle.dataset]
    base = bundle.analysis["delta.base"]
    for split, m in bundle.metrics.items():
        rows = [i for i, s in enumerate(splits) if s == split]
        k = int((base[rows] > 0).sum())
        assert m["n_prompts"] == len(rows) and m["acc_base"] == k / len(rows)
        assert m["acc_base_ci95"] == [round(x, 6) for x in wilson_interval(k, len(rows))]
        for name in ("flip_acc_pos", "flip_acc_neg"):
            lo, hi = m[f"{name}_ci95"]
            assert lo <= m[name] <= hi
    text = analysis.rate_text(bundle.record.split("test"), "flip_acc_neg")
    m = bundle.metrics["test"]
    lo, hi = m["flip_acc_neg_ci95"]
    # IOI's test prompts come from 2 template families: too few for an interval by group, said.
    assert m["n_groups"] == 2 and "flip_acc_neg_cluster95" not in m
    assert text == (
        f"{1 - m['acc_base']:.2f} → {m['flip_acc_neg']:.2f} [{lo:.2f}, {hi:.2f}] (n = {m['n_prompts']} from 2 groups)"
    )


def test_old_bundles_get_recomputed_minimality_or_na(runs, tmp_path):
    """A bundle written before n_components existed shows the figure recomputed from its arrays,
    or "n/a" where they are missing — never its old n_effective, which counted other units."""
    store, bundles = runs
    for method, bundle in bundles.items():
        root = tmp_path / method
        shutil.copytree(bundle.path, root / bundle.run_id)
        old = {
            s: {
                k: v
                for k, v in m.items()
                if k not in ("n_components", "effective_frac", "acc_base") and not k.endswith("_ci95")
            }
            | {"n_effective": 123456}
            for s, m in bundle.metrics.items()
        }
        (root / bundle.run_id / "metrics.json").write_text(json.dumps(old))
        filled = analysis.filled_metrics(RunStore(root).load(bundle.run_id))
        for split, m in filled.items():
            new = bundle.metrics[split]
            assert (m.n_components, m.n_effective) == (new["n_components"], new["n_effective"]), method
            assert m.acc_base == new["acc_base"] and list(m.flip_acc_neg_ci95) == new["flip_acc_neg_ci95"]
    # SteerVec without the stored ‖h‖: n/a
    sv = bundles["steervec"]
    root = tmp_path / "bare"
    shutil.copytree(sv.path, root / sv.run_id)
    (root / sv.run_id / "metrics.json").write_text(json.dumps({"test": {"n_effective": 0, "n_prompts": 3}}))
    (root / sv.run_id / "analysis.safetensors").unlink()
    filled = analysis.filled_metrics(RunStore(root).load(sv.run_id))
    assert filled["test"].n_effective is None and filled["test"].effective_frac is None


def test_reliability_summary_by_hand(runs):
    _, bundles = runs
    bundle = bundles["activscalar"]
    frame, summary = analysis.reliability(bundle, "test")
    a, splits = bundle.analysis, [r["split"] for r in bundle.dataset]
    rows = [i for i, s in enumerate(splits) if s == "test"]
    pos, neg, base = a["delta.pos"][rows], a["delta.neg"][rows], a["delta.base"][rows]
    assert summary["n"] == len(rows) == len(frame)
    assert summary["never_flipped_pos"] == pytest.approx(float((pos <= 0).double().mean()))
    assert summary["never_flipped_neg"] == pytest.approx(float((neg >= 0).double().mean()))
    assert summary["wrong_way_pos"] == pytest.approx(float((pos < base).double().mean()))
    assert summary["wrong_way_neg"] == pytest.approx(float((neg > base).double().mean()))
    assert list(frame["shortfall"]) == sorted(frame["shortfall"], reverse=True)  # worst first


def test_ccc_countries_never_span_two_splits(tiny_llama):
    task = build_task(tiny_llama, TrainConfig(model="tiny-llama", task="ccc", method="dynscalar"))
    by_split = {s: {e.group for e in task.examples if e.split == s} for s in ("train", "val", "test")}
    assert len(task.split_indices("test")) == 200  # the default test size of generated tasks
    assert all(by_split.values())
    assert not (
        by_split["train"] & by_split["val"]
        or by_split["train"] & by_split["test"]
        or by_split["val"] & by_split["test"]
    )
    assert all(e.group and e.group in e.prompt for e in task.examples)


def test_a_held_out_ioi_family_is_only_in_test(tiny_llama):
    cfg = TrainConfig(model="tiny-llama", method="dynscalar", n_test=20, test_groups=("scene-first",))
    task = build_task(tiny_llama, cfg)
    families = {s: {IOI_FAMILY_OF[e.template] for e in task.examples if e.split == s} for s in ("train", "val", "test")}
    assert families["test"] == {"scene-first"}
    assert "scene-first" not in families["train"] | families["val"]
    assert len({len(t) for t, e in zip(task.str_tokens, task.examples) if e.split == "test"}) == 2  # two lengths


def test_best_on_validation_never_reads_test():
    import pandas as pd

    rows = []
    for run, val_flip, val_kl, test_flip in (("a", 0.9, 0.1, 1.0), ("b", 1.0, 0.3, 0.1), ("c", 1.0, 0.2, 0.2)):
        rows += [
            {"run_id": run, "split": "val", "flip_acc": val_flip, "faithfulness_kl": val_kl, "effective_frac": 0.1},
            {"run_id": run, "split": "test", "flip_acc": test_flip, "faithfulness_kl": 0.0, "effective_frac": 0.1},
        ]
    df = pd.DataFrame(rows)
    assert analysis.best_on_validation(df) == "c"  # best validation flips, then the lower KL; test ignored
    assert analysis.best_on_validation(df[df["run_id"] == "a"]) is None  # nothing to choose between


# ---------------------------------------------------------------- one run id per experiment (issue 11)
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from actscale.engine.tasks import IOI_TEMPLATES  # noqa: E402
from actscale.runs.bundle import run_id_for  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(
    method=st.sampled_from(["activscalar", "steervec", "dynscalar"]),
    task=st.sampled_from(["ioi", "ccc"]),
    sites=st.permutations(["attn_out", "mlp_out", "head"]).map(lambda p: p[:2]),
    spell_defaults=st.booleans(),
    as_int=st.booleans(),
    groups=st.permutations(["coordinated", "scene-first"]),
    irrelevant=st.booleans(),
)
def test_equivalent_spellings_give_one_run_id(method, task, sites, spell_defaults, as_int, groups, irrelevant):
    """A default and its explicit spelling give the same config, hence the same run id."""
    from actscale.engine.interventions import method_class

    plain = TrainConfig(
        method=method,
        task=task,
        sites=tuple(sorted(sites, key=["attn_out", "mlp_out", "head"].index)),
        test_groups=tuple(sorted(groups)) if task == "ioi" else (),
    )
    d = method_class(method).defaults
    spelled = TrainConfig(
        method=method,
        task=task,
        sites=tuple(sites),  # any order
        steps=d.steps if spell_defaults else None,
        cycles=4 if spell_defaults else None,  # the method's steps spelled out are one cycle unless cycles are too
        lr=d.lr if spell_defaults else None,
        batch_size=float(d.batch_size) if as_int else d.batch_size,  # 8.0 is 8
        lambda_m=d.lambda_m if spell_defaults else None,
        margin=2 if as_int else 2.0,  # an int is the same float
        data_seed=0 if spell_defaults else None,  # the seed's value
        templates=tuple(IOI_TEMPLATES) if task == "ioi" and spell_defaults else (),  # the full list is ()
        test_groups=tuple(groups) if task == "ioi" else (),  # any order
        normalize=not irrelevant if method != "dynscalar" else True,  # an option only DynScalar reads
        memory_is_correct=not irrelevant if task == "ioi" else True,  # an option only CCC reads
        test_frac=0.3 if irrelevant else 0.2,  # custom data only
        positions="answer" if irrelevant and method == "dynscalar" else "auto",  # DynScalar reads no positions
    )
    assert spelled == plain
    assert run_id_for(spelled.to_dict()) == run_id_for(plain.to_dict())


def test_different_experiments_keep_different_ids():
    base = TrainConfig()
    for change in (
        {"lr": 0.2},
        {"templates": ("ioi-1", "ioi-0")},
        {"sites": ("attn_out",)},
        {"seed": 1},
        {"test_groups": ("scene-first",)},
        {"data_seed": 5},
    ):
        assert run_id_for(base.replace(**change).to_dict()) != run_id_for(base.to_dict()), change


def test_a_change_that_rounds_to_zero_has_no_sign_arrow_or_colour():
    """A metric tile's change: "±0.00" without arrow or colour where it rounds to zero (it had
    been "+0.00" under a green arrow, or "-0.00" under a red one); signed otherwise."""
    from actscale.views.analysis import change_delta

    off = {"delta_arrow": "off", "delta_color": "off"}
    assert change_delta(0.0, 2) == ("±0.00", off)
    assert change_delta(-0.004, 2, " vs unmodified 0.50") == ("±0.00 vs unmodified 0.50", off)
    assert change_delta(0.00004, 4) == ("±0.0000", off)
    assert change_delta(0.005001, 2) == ("+0.01", {})
    assert change_delta(-0.25, 3, " vs β = 0") == ("-0.250 vs β = 0", {})


def test_counts_in_words():
    from actscale.views.words import counted

    assert [counted(n, "run") for n in (0, 1, 2)] == ["0 runs", "1 run", "2 runs"]
    assert counted(1, "broken bundle") == "1 broken bundle" and counted(3, "query", "queries") == "3 queries"
