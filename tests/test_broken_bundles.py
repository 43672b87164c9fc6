"""Broken bundles (issue 4, part 4).

Every way a run folder can be damaged (truncated, garbage, missing or wrongly shaped files, a
config that is not JSON or lacks keys, a run id that does not match its folder, a bundle made
for another model) is listed by `RunStore.list` as broken with a specific reason, raises
BrokenBundleError (an ActscaleError with one line) on load, and touches nothing else in the
store: the other runs keep their bytes and modification times.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from actscale.engine.training import TrainConfig
from actscale.errors import ActscaleError
from actscale.runs.api import intervention_from_bundle, load_run, train_run
from actscale.runs.bundle import REQUIRED_FILES, BrokenBundleError
from actscale.runs.store import RunStore


def _config(model: str, method: str, seed: int) -> TrainConfig:
    return TrainConfig(model=model, task="ioi", method=method, steps=3, n_prompts=12, seed=seed, early_stop=0)


@pytest.fixture(scope="module")
def pristine(tiny_llama, tiny_gpt2, tmp_path_factory):
    """A store with four good runs: three methods on tiny-llama and one on tiny-gpt2."""
    store = RunStore(tmp_path_factory.mktemp("pristine"))
    runs = {
        "llama-activscalar": train_run(_config("tiny-llama", "activscalar", 0), tiny_llama, store=store),
        "llama-steervec": train_run(_config("tiny-llama", "steervec", 1), tiny_llama, store=store),
        "llama-dynscalar": train_run(_config("tiny-llama", "dynscalar", 2), tiny_llama, store=store),
        "gpt2-activscalar": train_run(_config("tiny-gpt2", "activscalar", 3), tiny_gpt2, store=store),
    }
    return store, {k: b.run_id for k, b in runs.items()}


# ---- the ways a bundle breaks: (damage, words the reason must contain) -------------------------


def _rewrite_json(name: str, change: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        data = json.loads((run / name).read_text())
        (run / name).write_text(json.dumps(change(data)))

    return damage


def _without(key: str) -> Callable[[dict], dict]:
    return lambda d: {k: v for k, v in d.items() if k != key}


def _rewrite_params(change: Callable[[dict], dict]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        from safetensors.torch import load_file

        save_file(change(load_file(run / "params.safetensors")), str(run / "params.safetensors"))

    return damage


def _truncate(name: str, keep: float | int) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])

    return damage


def _write(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda run: (run / name).write_bytes(data)


def _remove(name: str) -> Callable[[Path], None]:
    return lambda run: (run / name).unlink()


def _make_dir(name: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        (run / name).unlink()
        (run / name).mkdir()

    return damage


def _set_dims(**dims) -> Callable[[dict], dict]:
    return lambda d: {**d, "model_dims": {**d["model_dims"], **dims}}


GARBAGE = bytes(range(256)) * 8
KINDS: dict[str, tuple[Callable[[Path], None], str]] = {
    "params truncated to half": (_truncate("params.safetensors", 0.5), "params.safetensors is not a readable"),
    "params truncated inside the header": (_truncate("params.safetensors", 12), "params.safetensors is not a readable"),
    "params empty": (_write("params.safetensors", b""), "params.safetensors is not a readable"),
    "params garbage bytes": (_write("params.safetensors", GARBAGE), "params.safetensors is not a readable"),
    "params with bytes appended": (
        lambda r: (r / "params.safetensors").write_bytes((r / "params.safetensors").read_bytes() + b"\0" * 7),
        "params.safetensors is not a readable",
    ),
    "params is a folder": (_make_dir("params.safetensors"), "params.safetensors is missing"),
    **{f"{name} missing": (_remove(name), f"{name} is missing") for name in REQUIRED_FILES},
    "tensor of the wrong shape": (
        _rewrite_params(lambda t: {k: torch.zeros(*v.shape[:-1], v.shape[-1] + 1) for k, v in t.items()}),
        "has shape",
    ),
    "tensor missing": (_rewrite_params(lambda t: dict(list(t.items())[1:])), "lacks"),
    "tensor not float32": (_rewrite_params(lambda t: {k: v.half() for k, v in t.items()}), "expected float32"),
    "config not JSON": (_write("config.json", b'{"method": "activscalar", '), "config.json is not valid JSON"),
    "config not UTF-8": (_write("config.json", b"\xff\xfe{}"), "config.json is not valid JSON"),
    "config nested too deeply": (_write("config.json", b"[" * 100_000), "config.json is not valid JSON"),
    "config a JSON list": (_write("config.json", b"[]"), "lacks the method or the sites"),
    "config without method": (_rewrite_json("config.json", _without("method")), "lacks the method or the sites"),
    "config without model_dims": (_rewrite_json("config.json", _without("model_dims")), "config.json is incomplete"),
    "config without n_pos": (_rewrite_json("config.json", _without("n_pos")), "config.json is incomplete"),
    "config with an unknown method": (
        _rewrite_json("config.json", lambda d: {**d, "method": "pickle"}),
        "config.json is incomplete",
    ),
    "config with an unknown site": (
        _rewrite_json("config.json", lambda d: {**d, "sites": ["../../etc"]}),
        "config.json is incomplete",
    ),
    "config with negative dims": (_rewrite_json("config.json", _set_dims(n_layers=-2)), "must be positive integers"),
    "config with absurd dims": (_rewrite_json("config.json", _set_dims(n_layers=10**9, d_model=10**9)), "has shape"),
    "config with text dims": (_rewrite_json("config.json", _set_dims(d_model="64")), "must be positive integers"),
    "metrics not JSON": (_write("metrics.json", GARBAGE), "metrics.json is not valid JSON"),
    "metrics wrongly shaped": (_write("metrics.json", b'{"train": 3}'), "metrics.json is not {split"),
    "history garbage": (_write("history.csv", b"step,loss\n1,abc\n"), "history.csv is not readable"),
    "history not UTF-8": (_write("history.csv", GARBAGE), "history.csv is not readable"),
    "dataset garbage": (_write("dataset.jsonl", b'{"prompt": "a"}\n[1, 2]\n'), "dataset.jsonl is not readable"),
    "analysis tensors garbage": (_write("analysis.safetensors", GARBAGE), "analysis.safetensors is not a readable"),
    "analysis info not JSON": (_write("analysis.json", b"{"), "analysis.json is not valid JSON"),
    "config run_id edited": (_rewrite_json("config.json", lambda d: {**d, "run_id": "0" * 16}), "not its folder"),
}
# Two more kinds are not about one damaged file: a run folder renamed to another id, and a good
# bundle made for another model (tested below).
BROKEN_KINDS_TRIED = len(KINDS) + 2


def test_broken_kinds_counted():
    assert BROKEN_KINDS_TRIED == 36


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()
    }


def _one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message and len(message.splitlines()) == 1, repr(message)
    return message


@pytest.fixture
def store(pristine, tmp_path):
    source, ids = pristine
    store = RunStore(tmp_path / "runs")
    shutil.copytree(source.root, store.root)
    return store, ids


@pytest.mark.parametrize("kind", list(KINDS))
def test_broken_bundle_is_listed_with_reason(store, kind):
    store, ids = store
    damage, reason = KINDS[kind]
    target = ids["llama-activscalar"] if "analysis" in kind or "absurd" in kind else ids["llama-steervec"]
    damage(store.root / target)
    before = _snapshot(store.root)  # the damaged run included: reads change nothing

    rows = {r.run_id: r for r in store.list()}
    assert set(rows) == set(ids.values())
    assert not rows[target].ok
    assert reason in rows[target].reason, rows[target].reason
    _one_line(ValueError(rows[target].reason))
    assert all(r.ok for rid, r in rows.items() if rid != target), {r.run_id: r.reason for r in rows.values()}

    with pytest.raises(BrokenBundleError) as info:
        store.load(target)
    assert reason in _one_line(info.value)
    with pytest.raises(ActscaleError):
        load_run(target, store)
    for rid in ids.values():
        if rid != target:
            store.load(rid)  # the others still load
    assert _snapshot(store.root) == before


@pytest.mark.parametrize("kind", list(KINDS))
def test_broken_bundle_upload_is_refused(store, tmp_path, kind):
    """The same damage arriving as an upload: refused, and nothing is added to the store."""
    source, ids = store
    damage, _ = KINDS[kind]
    target = ids["llama-activscalar"] if "analysis" in kind or "absurd" in kind else ids["llama-steervec"]
    damage(source.root / target)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted((source.root / target).iterdir()):
            if p.is_file():
                zf.write(p, f"{target}/{p.name}")
    uploads = RunStore(tmp_path / "uploads")
    uploads.root.mkdir()
    with pytest.raises(BrokenBundleError) as info:
        uploads.import_zip(buf.getvalue())
    _one_line(info.value)
    assert list(uploads.root.iterdir()) == []  # no run, no temporary folder


def test_run_folder_renamed_to_another_id(store):
    store, ids = store
    target = ids["llama-dynscalar"]
    fake = "f" * 16
    os.replace(store.root / target, store.root / fake)
    rows = {r.run_id: r for r in store.list()}
    assert not rows[fake].ok and "not its folder" in rows[fake].reason
    with pytest.raises(BrokenBundleError):
        store.load(fake)
    assert all(r.ok for rid, r in rows.items() if rid != fake)


def test_bundle_made_for_another_model(store, tiny_llama, tiny_gpt2):
    """A good tiny-gpt2 run opened on tiny-llama (the same dimensions, other weights)."""
    store, ids = store
    bundle = store.load(ids["gpt2-activscalar"])
    intervention_from_bundle(bundle, tiny_gpt2)  # fine on its own model
    with pytest.raises(ActscaleError) as info:
        intervention_from_bundle(bundle, tiny_llama)
    assert "trained on model 'tiny-gpt2'" in _one_line(info.value)
    # A config claiming the right weights but other dimensions: one line, not a ValueError.
    bundle.config = {**bundle.config, "weights_hash": tiny_llama.weights_hash, "n_pos": bundle.config["n_pos"] + 1}
    with pytest.raises(ActscaleError) as info:
        intervention_from_bundle(bundle, tiny_llama)
    _one_line(info.value)


def test_training_replaces_a_broken_copy_of_the_same_run(store, tiny_llama, pristine):
    """Training the configuration of a broken run stores a good run in its place (the broken
    copy is useless: the same config gives the same run) and leaves the other runs untouched."""
    store, ids = store
    target = ids["llama-steervec"]
    _truncate("params.safetensors", 0.5)(store.root / target)
    others = {k: v for k, v in _snapshot(store.root).items() if not k.startswith(target)}
    bundle = train_run(_config("tiny-llama", "steervec", 1), tiny_llama, store=store)
    assert bundle.run_id == target
    assert {r.run_id: r.ok for r in store.list()} == {rid: True for rid in ids.values()}
    assert {k: v for k, v in _snapshot(store.root).items() if not k.startswith(target)} == others
    assert sorted(p.name for p in store.root.iterdir()) == sorted(ids.values())  # no .trash or .tmp left
