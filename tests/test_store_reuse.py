"""A stored run met again (actscale.runs.store, api): reused under an older id, trained again with
--no-reuse and replaced with its checks only where the parameters agree, said on stderr, and an
upload of a stored run."""

from __future__ import annotations

import json

from conftest import observer
from test_store import config

from actscale.engine.tasks import IOI_TEMPLATES
from actscale.runs.api import train_run
from actscale.runs.bundle import run_id_for


def test_a_run_stored_under_an_older_id_is_reused_and_opens_under_todays(tiny_llama, store):
    """A bundle written before `positions` was recorded (and with the template list spelled
    out) keeps its folder id; today's id for the same experiment finds it, so training it again
    reuses it and a link with either id opens it."""
    import shutil

    cfg = config(tiny_llama, steps=2)
    today = train_run(cfg, tiny_llama, store=store)
    old_config = {k: v for k, v in today.config.items() if k != "positions"}
    old_config["templates"] = list(IOI_TEMPLATES)
    old_id = run_id_for(old_config)
    assert old_id != today.run_id
    shutil.copytree(today.path, store.root / old_id)
    old_config["run_id"] = old_id
    (store.root / old_id / "config.json").write_text(json.dumps(old_config))
    store.delete(today.run_id)

    assert store.aliases() == {today.run_id: old_id}
    assert store.resolve(today.run_id) == old_id and store.resolve(old_id) == old_id
    assert store.load(today.run_id).run_id == old_id
    steps = []
    again = train_run(cfg, tiny_llama, store=store, observer=observer(lambda i: steps.append(i.step)))
    assert steps == [] and again.run_id == old_id  # reused, not retrained
    # A config missing a field whose meaning later versions define is never aliased.
    del old_config["n_test"]
    (store.root / old_id / "config.json").write_text(json.dumps(old_config))
    assert store.aliases() == {} and store.resolve(today.run_id) is None


def test_no_reuse_trains_again_and_replaces_the_stored_run_with_its_checks_where_the_parameters_agree(
    tiny_llama, store
):
    """`reuse=False` (`train --no-reuse`): trained again, the new bundle replaces the stored one;
    the stored run's map checks come along where the parameters are byte-identical, not where
    they differ (here the stored parameters were changed on disk)."""
    import torch
    from safetensors.torch import save_file

    from actscale.runs.bundle import save_checks

    cfg = config(tiny_llama)
    first = train_run(cfg, tiny_llama, store=store)
    save_checks(first.path, {"map": {"k90": 3}}, {"map.share": torch.ones(2)})
    (first.path / "stray.txt").write_text("a file of the folder it replaces")
    steps = []
    again = train_run(cfg, tiny_llama, store=store, reuse=False, observer=observer(lambda i: steps.append(i.step)))
    assert steps == [1, 2, 3] and again.run_id == first.run_id and [r.run_id for r in store.list()] == [first.run_id]
    assert not (again.path / "stray.txt").exists()  # the folder is the new run's
    data, tensors = again.checks()
    assert data["map"] == {"k90": 3} and torch.equal(tensors["map.share"], torch.ones(2))
    assert all(torch.equal(again.params[k], first.params[k]) for k in first.params)
    # The stored parameters no longer those a training gives: the checks do not hold for the new run.
    save_file({k: v + 1 for k, v in again.params.items()}, str(again.path / "params.safetensors"))
    third = train_run(cfg, tiny_llama, store=store, reuse=False)
    assert third.checks() is None and all(torch.equal(third.params[k], first.params[k]) for k in first.params)
    assert [p.name for p in store.root.iterdir() if p.name.startswith(".")] == []  # no temporary or trash left
    # Without reuse=False a stored run is kept as it is.
    (third.path / "stray.txt").write_text("kept")
    assert train_run(cfg, tiny_llama, store=store).path.joinpath("stray.txt").read_text() == "kept"


def test_train_no_reuse_says_whether_the_stored_runs_checks_were_kept(tiny_llama, store, capsys):
    from actscale.cli import main
    from actscale.runs.bundle import save_checks
    from actscale.runs.store import replaced_text

    args = ["train", "--model", "tiny-llama", "--device", "cpu", "--steps", "3", "--n-prompts", "16"]
    args += ["--n-test", "8", "--store", str(store.root)]
    assert main(args) == 0
    run_id = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_id"]
    assert main([*args, "--no-reuse"]) == 0
    assert capsys.readouterr().err.splitlines()[-1] == f"replaced the stored run {run_id} with this training"
    save_checks(store.path(run_id), {"map": {}}, {})
    assert main([*args, "--no-reuse"]) == 0
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"replaced the stored run {run_id} with this training; its map checks are kept: the parameters are "
        "byte-identical"
    )
    assert replaced_text("0123456789abcdef", True, False) == (
        "replaced the stored run 0123456789abcdef with this training; its map checks were dropped, since the "
        "parameters differ: run analyse again"
    )


def test_an_upload_of_a_stored_run_keeps_it_and_adds_its_checks_only_where_it_has_none(tiny_llama, store, tmp_path):
    """`import_zip` of a run already stored: the stored run is kept and says so; an upload with
    map checks gives them to a stored run without any (the parameters byte-identical), and never
    overwrites stored checks."""
    import torch

    from actscale.runs.bundle import save_checks
    from actscale.runs.store import RunStore

    first = train_run(config(tiny_llama), tiny_llama, store=store)
    other = RunStore(tmp_path / "other")
    run_id = first.run_id
    fresh = other.import_zip(store.export_zip(run_id))
    assert (fresh.run_id, fresh.outcome, fresh.text()) == (run_id, "added", f"Imported run {run_id}.")
    kept = other.import_zip(store.export_zip(run_id))
    assert (kept.outcome, kept.text()) == (
        "kept",
        f"Run {run_id} is already in the store: the stored run is kept as it is.",
    )
    # The sender ran the checks: the receiver's copy, without any, takes them.
    save_checks(first.path, {"map": {"k90": 3}}, {"map.share": torch.ones(2)})
    added = other.import_zip(store.export_zip(run_id))
    assert (added.outcome, added.text()) == (
        "checks added",
        f"Run {run_id} is already in the store: the upload's map checks were added to it (the parameters are "
        "byte-identical).",
    )
    data, tensors = other.load(run_id).checks()
    assert data["map"] == {"k90": 3} and torch.equal(tensors["map.share"], torch.ones(2))
    # Stored checks are never overwritten by an upload's.
    save_checks(first.path, {"map": {"k90": 5}}, {"map.share": torch.zeros(2)})
    assert other.import_zip(store.export_zip(run_id)).outcome == "kept"
    assert other.load(run_id).checks()[0]["map"] == {"k90": 3}


def test_an_upload_whose_parameters_differ_brings_no_checks_and_replaces_a_broken_bundle(tiny_llama, store, tmp_path):
    """Parameters that differ (another machine's training, here changed on disk): the stored run
    is kept without the upload's checks; a broken stored bundle is replaced by the upload."""
    import torch
    from safetensors.torch import save_file

    from actscale.runs.bundle import save_checks
    from actscale.runs.store import RunStore

    first = train_run(config(tiny_llama), tiny_llama, store=store)
    run_id = first.run_id
    save_checks(first.path, {"map": {"k90": 5}}, {"map.share": torch.zeros(2)})
    third = RunStore(tmp_path / "third")
    third.import_zip(store.export_zip(run_id))
    (third.path(run_id) / "checks.json").unlink()
    params = third.load(run_id).params
    save_file({k: v + 1 for k, v in params.items()}, str(third.path(run_id) / "params.safetensors"))
    before = (third.path(run_id) / "params.safetensors").read_bytes()
    differ = third.import_zip(store.export_zip(run_id))
    assert differ.outcome == "checks differ" and differ.text() == (
        f"Run {run_id} is already in the store and is kept without the upload's map checks: the upload's parameters "
        "differ from the stored run's, so its checks do not hold for them (delete the stored run, then upload, to "
        "keep the upload's)."
    )
    assert third.load(run_id).checks() is None and (third.path(run_id) / "params.safetensors").read_bytes() == before
    # A broken stored bundle is replaced by the upload.
    (third.path(run_id) / "metrics.json").write_text("{")
    replaced = third.import_zip(store.export_zip(run_id))
    assert (replaced.outcome, replaced.text()) == (
        "replaced",
        f"Imported run {run_id} in place of the broken bundle stored under its id.",
    )
    assert third.load(run_id).checks()[0]["map"] == {"k90": 5}
    assert [p.name for p in third.root.iterdir() if p.name.startswith(".")] == []
