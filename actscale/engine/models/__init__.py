"""Loading a language model and wrapping it in TransformerLens's `TransformerBridge` (`loading`):
the bundled model and any GGUF file (`gguf`), the tiny test models (`tiny`), the loaded model
and the model cache (`base`), and the forward pass's padding and precision (`forward`)."""

from actscale.engine.models.base import (
    BUNDLED,
    BUNDLED_FOLDER,
    BUNDLED_PACKAGE,
    CONVERSION_VERSION,
    QUIET_DEPTH,
    TINY_MODELS,
    LoadedModel,
    boot,
    cache_dir,
    parameter_fingerprint,
    quiet,
    resolve_device,
    wrap_bridge,
)
from actscale.engine.models.forward import (
    BF16_MIN_WIDTH,
    bf16_pays,
    last_position_logits,
    native_bf16,
    padding_inputs,
)
from actscale.engine.models.gguf import (
    bundled_gguf_path,
    bundled_model_folder,
    convert_gguf,
    converted_folder,
    file_sha256,
    gguf_architecture,
    gguf_model_folder,
    is_gguf_name,
    readable_gguf,
)
from actscale.engine.models.loading import load_model
from actscale.engine.models.tiny import boot_tiny, tiny_model, tiny_tokenizer

__all__ = [
    "BF16_MIN_WIDTH",
    "BUNDLED",
    "BUNDLED_FOLDER",
    "BUNDLED_PACKAGE",
    "CONVERSION_VERSION",
    "LoadedModel",
    "QUIET_DEPTH",
    "TINY_MODELS",
    "bf16_pays",
    "boot",
    "boot_tiny",
    "bundled_gguf_path",
    "bundled_model_folder",
    "cache_dir",
    "convert_gguf",
    "converted_folder",
    "file_sha256",
    "gguf_architecture",
    "gguf_model_folder",
    "is_gguf_name",
    "last_position_logits",
    "load_model",
    "native_bf16",
    "padding_inputs",
    "parameter_fingerprint",
    "quiet",
    "readable_gguf",
    "resolve_device",
    "tiny_model",
    "tiny_tokenizer",
    "wrap_bridge",
]
