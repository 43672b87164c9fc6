"""Resource checks before work starts: how much memory a training step needs, and how much the
device has, so a batch that cannot fit fails with one line instead of killing the server."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from actscale.engine.config import TrainConfig
from actscale.engine.interventions import method_class
from actscale.engine.models import LoadedModel, bf16_pays
from actscale.engine.tasks import PreparedTask
from actscale.errors import ActscaleError


def available_memory_bytes(device: str) -> int | None:
    """Memory a new allocation can get on ``device``: free memory on a CUDA GPU; on a Linux CPU
    ``MemAvailable`` from /proc/meminfo, capped by the container's cgroup limit; None where it
    cannot be told (MPS, other systems), and then nothing is checked."""
    if device.startswith("cuda"):
        try:
            return int(torch.cuda.mem_get_info(torch.device(device))[0])
        except (RuntimeError, AssertionError, ValueError):
            return None
    if device != "cpu":
        return None
    try:
        found = re.search(r"^MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    except OSError:
        return None
    if found is None:
        return None
    available = int(found.group(1)) * 1024
    try:  # in a container /proc/meminfo shows the host; the cgroup's limit is what counts
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            available = min(available, int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return max(0, available)


# Under bfloat16 autocast, the share of the float32 estimate's activations a step keeps (fitted).
BF16_ACTIVATIONS = 0.62


def step_memory_bytes(model: LoadedModel, n_pos: int, batch_size: int, bf16: bool = False) -> int:
    """An estimate of one training step's peak memory, within ±30% of the measured peak.

    Both β directions run in one batch (2·batch rows). Per layer and token, the backward pass
    keeps about 11·d_model + 5·d_mlp numbers (norm inputs, the attention's inputs and output,
    the MLP's gate, up and activation, what the two edited sites keep), plus the attention
    pattern, 2·n_heads·n_pos; the last position's logits add a few copies of d_vocab per row.
    Fitted to the resident peak `make bench` measures (tiny Llama models of 2-16 layers at width
    256 and the bundled model: estimate / measured 0.9-1.07).

    ``bf16`` (a step under bfloat16 autocast): the step also holds a bfloat16 copy of every
    weight matrix (2 bytes a number; q, k, v and o counted at full width, which overstates
    grouped-query attention), and keeps BF16_ACTIVATIONS of the float32 activations (the
    matrix products' saved inputs are bfloat16). Fitted to the bundled model's measured peaks
    at 4-32 prompts of 16 tokens a batch (426-1458 MB: estimate / measured 0.97-1.06).
    """
    rows = 2 * batch_size
    d_mlp = model.d_mlp or 4 * model.d_model
    per_layer = rows * n_pos * (11 * model.d_model + 5 * d_mlp + 2 * model.n_heads * n_pos)
    logits = 4 * rows * model.d_vocab
    activations = 4 * (model.n_layers * per_layer + logits)
    if not bf16:
        return activations
    matrices = model.n_layers * (4 * model.d_model**2 + 3 * model.d_model * d_mlp) + model.d_vocab * model.d_model
    return int(2 * matrices + BF16_ACTIVATIONS * activations)


def format_bytes(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:.1f} MB"


def resolve_autocast(config: TrainConfig, model: LoadedModel) -> TrainConfig:
    """``config`` with ``autocast="auto"`` resolved for ``model``: "bf16" where it pays
    (`models.bf16_pays`) and the method allows it (``auto_bf16``), else "off". Runs, their ids
    and their config.json only ever hold the resolved value."""
    if config.autocast != "auto":
        return config
    bf16 = bf16_pays(model) and method_class(config.method).auto_bf16
    return config.replace(autocast="bf16" if bf16 else "off")


def check_memory(model: LoadedModel, task: PreparedTask, config: TrainConfig) -> None:
    """Raise ActscaleError before training when a step would not fit in the memory available,
    instead of letting the process be killed (which takes the dashboard's server with it)."""
    available = available_memory_bytes(model.device)
    if available is None:
        return
    n_train = len(task.split_indices("train"))
    assert config.batch_size is not None  # resolved by TrainConfig
    batch = min(config.batch_size, max(1, 2 * n_train))  # a batch never exceeds twice the train split
    need = step_memory_bytes(model, task.n_pos, batch, bf16=config.bf16)  # resolved by `train`
    if need > available:
        raise ActscaleError(
            f"this batch needs about {format_bytes(need)} of memory for a training step ({batch} prompts of "
            f"{task.n_pos} tokens, both directions) but only {format_bytes(available)} is available on "
            f"{model.device}; lower the batch size (now {config.batch_size}) or use shorter prompts"
        )
