"""Any `.gguf` file as a model (issue 10, part 2): de-quantised once into the cache keyed by the
file's hash, through the bundled model's conversion path; one-line errors (exit status 2) for a
missing file, a file that is not GGUF and an architecture transformers cannot read."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_gguf import write_tiny_gguf

from actscale.engine.models import bundled_gguf_path, gguf_architecture, is_gguf_name, load_model
from actscale.engine.models import gguf as models
from actscale.errors import ModelLoadError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-test.gguf")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("ACTSCALE_CACHE", str(root))
    return root


def sha16(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def test_names():
    assert is_gguf_name("model.gguf") and is_gguf_name(" ~/Models/Llama-3.Q4_K_M.GGUF ")
    assert not is_gguf_name("bundled") and not is_gguf_name("gpt2") and not is_gguf_name("gguf")


def test_a_gguf_file_is_converted_once_into_the_cache_keyed_by_its_hash(tiny_file, cache, monkeypatch, tmp_path):
    model = load_model(str(tiny_file), "cpu")
    digest = sha16(tiny_file)
    folder = cache / "models" / f"gguf-{digest}"
    assert model.name == str(tiny_file) and model.weights_hash == digest
    assert json.loads((folder / "actscale.json").read_text()) == {
        "version": 1,
        "source": "tiny-test.gguf",
        "weights_hash": digest,
    }
    assert (model.n_layers, model.d_model, model.n_heads, model.d_vocab) == (2, 64, 4, model.d_vocab)
    assert model.prepend_bos and model.tokenizer.bos_token == "<|bos|>"
    # Every task word is one token, as with a real checkpoint's tokenizer.
    assert [len(model.tokenizer(w, add_special_tokens=False).input_ids) for w in (" Mary", " John", " store")] == [
        1,
        1,
        1,
    ]
    # Later loads, and a renamed copy of the same file, use the converted folder.
    monkeypatch.setattr(models, "convert_gguf", lambda *_: pytest.fail("converted twice"))
    again = load_model(str(tiny_file), "cpu")
    copy = shutil.copy(tiny_file, tmp_path / "renamed.gguf")
    renamed = load_model(str(copy), "cpu")
    assert again.weights_hash == renamed.weights_hash == digest
    assert sorted(p.name for p in (cache / "models").iterdir()) == [f"gguf-{digest}", "gguf-hashes.json"]


def test_another_file_is_another_model(tiny_file, cache, tmp_path):
    other = write_tiny_gguf(tmp_path / "other.gguf", seed=1)
    a, b = load_model(str(tiny_file), "cpu"), load_model(str(other), "cpu")
    assert a.weights_hash != b.weights_hash == sha16(other)


def test_the_hash_is_remembered_by_path_size_and_time(tiny_file, cache, monkeypatch):
    first = models.file_sha256(tiny_file)
    monkeypatch.setattr(models.hashlib, "sha256", lambda: pytest.fail("hashed twice"))
    assert models.file_sha256(tiny_file) == first


def test_errors_are_one_line(cache, tmp_path):
    with pytest.raises(ModelLoadError, match=r"^model file .*missing\.gguf does not exist$"):
        load_model(str(tmp_path / "missing.gguf"), "cpu")
    text = tmp_path / "notes.gguf"
    text.write_text("not a checkpoint")
    with pytest.raises(ModelLoadError, match=r"notes\.gguf is not a GGUF file \(it does not start with the GGUF magic"):
        load_model(str(text), "cpu")
    folder = tmp_path / "folder.gguf"
    folder.mkdir()
    with pytest.raises(ModelLoadError, match=r"folder\.gguf is not a file$"):
        load_model(str(folder), "cpu")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 10)
    with pytest.raises(ModelLoadError, match=r"^broken\.gguf: its GGUF metadata cannot be read"):
        load_model(str(broken), "cpu")


def test_an_architecture_transformers_cannot_read(cache, tmp_path):
    path = write_tiny_gguf(tmp_path / "exotic.gguf", architecture="rwkv6")
    assert gguf_architecture(path) == "rwkv6"
    with pytest.raises(ModelLoadError) as info:
        load_model(str(path), "cpu")
    message = str(info.value)
    assert message.startswith("exotic.gguf: transformers cannot read GGUF models of architecture 'rwkv6' (it reads ")
    assert "llama" in message and "qwen2" in message and "\n" not in message
    assert not (cache / "models" / f"gguf-{sha16(path)}").exists()


def cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "ACTSCALE_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "actscale", *args], cwd=ROOT, env=env, capture_output=True, text=True)


def test_a_gguf_path_trains_through_the_cli(tiny_file, cache, tmp_path):
    out = cli(
        "train", "--model", str(tiny_file), "--task", "ioi", "--steps", "2", "--n-prompts", "8", "--n-test", "4",
        "--store", str(tmp_path / "runs"), cache=cache,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    config = json.loads((Path(result["bundle"]) / "config.json").read_text())
    assert config["model"] == str(tiny_file) and config["weights_hash"] == sha16(tiny_file)
    assert config["model_dims"]["n_layers"] == 2 and set(result["metrics"]) == {"train", "val", "test"}


def test_cli_errors_exit_2_with_one_line(cache, tmp_path):
    (tmp_path / "notes.gguf").write_text("hello")
    for name, message in (
        (str(tmp_path / "missing.gguf"), "does not exist"),
        (str(tmp_path / "notes.gguf"), "is not a GGUF file"),
    ):
        out = cli("train", "--model", name, "--store", str(tmp_path / "runs"), cache=cache)
        assert out.returncode == 2 and message in out.stderr, out.stderr
        assert out.stderr.count("\n") == 2 and out.stderr.startswith("loading model")  # progress, then the error


@pytest.mark.slow
def test_the_bundled_gguf_file_as_a_path_is_the_bundled_model(cache, bundled):
    """The bundled model's own file, named by its path: converted into the hash-keyed folder,
    with the bundled model's weights hash and the same logits."""
    import torch

    path = bundled_gguf_path()
    model = load_model(str(path), "cpu")
    assert model.weights_hash == bundled.weights_hash
    assert (cache / "models" / f"gguf-{model.weights_hash}" / "actscale.json").is_file()
    tokens = bundled.tokenizer("When Mary and John went to the store, John gave a drink to", return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model.bridge(tokens.input_ids), bundled.bridge(tokens.input_ids))
