"""Running the map checks (actscale.checks.run_checks, `analyse`): the bundle's checks files
written and merged, a cancel that writes nothing, options and checks refused before any check
runs, and the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_checks import FAST, ROOT

from actscale import checks
from actscale.checks import (
    CheckOptions,
)
from actscale.engine.training import TrainConfig
from actscale.errors import ActscaleError, TrainingCancelled
from actscale.runs.api import train_run
from actscale.runs.bundle import load_bundle
from actscale.runs.store import RunStore


def test_checks_are_written_into_the_bundle_and_merged(tiny_llama, tmp_path):
    store = RunStore(tmp_path / "runs")
    bundle = train_run(
        TrainConfig(model=tiny_llama.name, method="dynscalar", steps=3, n_prompts=16, n_test=8), tiny_llama, store=store
    )
    assert bundle.checks() is None
    seen = []
    out = checks.run_checks(tiny_llama, bundle, FAST, on_progress=lambda f, w: seen.append(f))
    assert sorted(k for k in out if k in ("map", "stability", "generalisation", "side_effects")) == ["map"]
    assert seen[-1] == 1.0 and seen == sorted(seen)
    data, tensors = load_bundle(bundle.path).checks()
    assert data["version"] == 1 and data["map"]["k90"] == out["map"]["k90"]
    free = [f"map.{m}.{s}" for m in ("atp", "atp_mean", "patch") for s in ("attn_out", "mlp_out")]
    assert sorted(tensors) == sorted(["map.magnitude", "map.order", *free]) == data["tensors"]
    # The free maps are per cell (layer, position counted back from the answer), whatever the method's components.
    n_pos = max(len(t) for t in bundle.info["str_tokens"])
    assert {tuple(tensors[name].shape) for name in free} == {(tiny_llama.n_layers, n_pos)}
    assert [r["map"] for r in data["map"]["free"]["agreement"]] == ["atp", "atp_mean"]
    assert data["map"]["free"]["n"] == sum(r["split"] == "train" for r in bundle.dataset)
    local = data["map"]["free"]["localisation"]
    assert sorted(local["curves"]) == ["atp", "atp_mean", "learned", "random 1", "random 2", "random 3"]
    # a random tiny model: the counterfactual names move Δ no more than its noise, so nothing is
    # patched (and no patching ranking joins the curves); the patch tensors are all NaN
    patched = data["map"]["free"]["patching"]
    assert (patched["patched"], patched["rankings"], patched["mode"]) == (0, [], "top")
    assert patched["why"].startswith("the counterfactual prompts move Δ by ")
    assert all(bool(tensors[f"map.patch.{s}"].isnan().all()) for s in ("attn_out", "mlp_out"))
    assert local["n_cells"] == 2 * tiny_llama.n_layers * n_pos and local["n_prompts"] == data["map"]["prompts"]["n"]
    # A later call adds a part and keeps the others.
    side = checks.run_checks(tiny_llama, bundle, CheckOptions(prompts=8, draws=5, precision="float32"))
    assert "side_effects" in side and side["map"]["k90"] == out["map"]["k90"]
    rows = side["side_effects"]["rows"]
    assert [r["beta"] for r in rows] == [1.0, -1.0]
    assert side["side_effects"]["n_sentences"] == len(checks.neutral_sentences()) >= 100
    assert all(r["kl_per_token_mean"] >= 0 and 0 <= r["top1_unchanged"] <= 1 for r in rows)
    # The bundle still verifies, lists, exports with its checks, and imports elsewhere.
    assert [r.ok for r in store.list()] == [True]
    other = RunStore(tmp_path / "other")
    run_id = other.import_zip(store.export_zip(bundle.run_id)).run_id
    assert other.load(run_id).checks()[0]["map"]["k90"] == out["map"]["k90"]


def test_cancel_writes_nothing(tiny_llama, check_runs):
    import threading

    bundle = check_runs[1]["steervec"]
    before = sorted(p.name for p in bundle.path.iterdir())
    flag = threading.Event()
    flag.set()
    with pytest.raises(TrainingCancelled, match="the checks were cancelled; nothing was written"):
        checks.run_checks(tiny_llama, bundle, FAST, cancel=flag)
    assert sorted(p.name for p in bundle.path.iterdir()) == before


def test_errors(tiny_llama, check_runs):
    with pytest.raises(ActscaleError, match="^unknown precision 'half': choose run, bf16 or float32$"):
        CheckOptions(precision="half")
    with pytest.raises(ActscaleError, match="^draws must be a whole number between 1 and 10000$"):
        CheckOptions(draws=0)
    with pytest.raises(ActscaleError, match="side effects on other text need a run of any length"):
        checks.side_effects(tiny_llama, check_runs[1]["activscalar"])
    many = check_runs[1]["activscalar"]
    fake = type(many)(**{**many.__dict__, "dataset": [{**r, "group": f"g{i}"} for i, r in enumerate(many.dataset)]})
    with pytest.raises(
        ActscaleError, match=r"carry \d+ groups; the matrix trains one run per group, so it takes at most 8"
    ):
        checks.generalisation_configs(fake)


def test_a_check_that_cannot_run_is_refused_before_any_check_runs(
    tiny_llama, check_runs, tmp_path, monkeypatch, capsys
):
    """`--generalisation` on a run of no groups, or `--vary data` on a file's run, had failed
    after the map check ran (minutes on the bundled model) and lost it with them."""
    import actscale.checks.run as checks_run
    import actscale.engine.models as models
    from actscale.cli import main
    from actscale.engine.tasks import generate_ioi

    monkeypatch.setattr(checks_run, "map_checks", lambda *a, **k: pytest.fail("the map check ran"))
    root, bundles = check_runs
    run = bundles["activscalar"]
    for group, carry in (("", "no group"), ("g", "one group ('g')")):
        fake = type(run)(**{**run.__dict__, "dataset": [{**r, "group": group} for r in run.dataset]})
        with pytest.raises(ActscaleError) as refused:
            checks.run_checks(tiny_llama, fake, CheckOptions(generalisation=True), store=RunStore(root))
        assert str(refused.value) == (
            f"run {run.run_id}'s prompts carry {carry}: the generalisation matrix needs at least 2"
        )
    # quoted: IOI's prompts hold commas
    rows = "".join(f'"{e.prompt}",{e.correct},{e.wrong}\n' for e in generate_ioi(20, seed=3))
    (data := tmp_path / "rows.csv").write_text("prompt,correct,wrong\n" + rows)
    store = RunStore(tmp_path / "runs")
    filed = train_run(
        TrainConfig(model="tiny-llama", task="custom", dataset=str(data), steps=2), tiny_llama, store=store
    )
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("the model loaded"))
    capsys.readouterr()
    argv = ["analyse", "--run", filed.run_id, "--store", str(store.root), "--seeds", "3", "--vary", "data"]
    assert main(argv) == 2
    assert capsys.readouterr().err == "error: a dataset file has one draw of its data: vary the training seed instead\n"
    assert not (filed.path / "checks.json").exists()


def test_cli_analyse(check_runs, tmp_path):
    root, bundles = check_runs
    run_id = bundles["dynscalar"].run_id
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "actscale",
            "analyse",
            "--run",
            run_id,
            "--store",
            str(root),
            "--prompts",
            "8",
            "--draws",
            "5",
            "--precision",
            "float32",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["run_id"] == run_id and result["checks"] == ["map", "side_effects"]
    assert "checks 100.0%" in out.stderr
    # then what the map check found, in the sentence Explore shows
    from actscale.views.analysis import k90_text

    written = json.loads((root / run_id / "checks.json").read_text())
    assert out.stderr.splitlines()[-1] == f"map check: {k90_text(written)}" and k90_text(written)
    bad = subprocess.run(
        [sys.executable, "-m", "actscale", "analyse", "--run", "0123456789abcdef", "--store", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [f"error: no run 0123456789abcdef in {tmp_path}"]


def test_cli_defaults_are_the_engines():
    from actscale.cli import build_parser

    args = build_parser().parse_args(["analyse", "--run", "x"])
    d = CheckOptions()
    assert (args.prompts, args.draws, args.precision, args.seeds) == (d.prompts, d.draws, d.precision, d.seeds)
    assert (d.prompts, d.draws, d.precision) == (16, 20, "run")
