"""A run bundle: one folder per run, read with json and safetensors only, and checked before use.

Layout (docs/interfaces.md, Run bundle)::

    <store>/<run_id>/config.json  params.safetensors  metrics.json  history.csv  dataset.jsonl
                     analysis.safetensors  analysis.json        (ours: what the dashboard draws)
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import load_file, save_file

from actscale.engine.interventions import ModelDims, make_intervention
from actscale.errors import ActscaleError, BrokenBundleError
from actscale.runs.migrations import FORMAT_VERSION, format_version, migrate_config
from actscale.runs.records import RunRecord

# \Z, not $: "$" also matches before a trailing newline, which would let "<16 hex>\n" through.
RUN_ID = re.compile(r"^[0-9a-f]{16}\Z")
REQUIRED_FILES = ("config.json", "params.safetensors", "metrics.json", "history.csv", "dataset.jsonl")
CHECKS_FILES = ("checks.json", "checks.safetensors")  # written by the map checks, after the run
OPTIONAL_FILES = ("analysis.safetensors", "analysis.json", *CHECKS_FILES)
BUNDLE_FILES = REQUIRED_FILES + OPTIONAL_FILES
MAX_BUNDLE_BYTES = 200_000_000
# Keys of config.json that do not define the run: when it was made, and where a custom
# dataset file happened to lie (its content is pinned by dataset_hash).
_NOT_IDENTITY = ("created", "dataset", "run_id", "format_version")


def default_store() -> Path:
    """``$ACTSCALE_STORE``, else ``runs/`` in the current folder."""
    return Path(os.environ.get("ACTSCALE_STORE") or "runs")


def run_id_for(config: dict[str, Any]) -> str:
    """A short hash of the canonical config (minus the created time and the dataset path)."""
    identity = {k: v for k, v in config.items() if k not in _NOT_IDENTITY}
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def canonical_run_id(config: dict[str, Any]) -> str | None:
    """The id a stored run's config gets today, after canonicalisation (a bundle stored before a
    field was canonicalised keeps its folder's id; this is its alias). None where the config
    lacks a field that later versions define (its meaning then cannot be known) or is invalid."""
    from actscale.engine.config import OMITTED_AT_DEFAULT, TrainConfig

    # from_bundle fills positions; the fields config.json omits at their default may be absent
    known = {f.name for f in fields(TrainConfig)} - {"positions", *OMITTED_AT_DEFAULT}
    if not known <= config.keys():
        return None
    try:
        record = TrainConfig.from_bundle(migrate_config(config)).to_record()
        canonical = {**{k: v for k, v in config.items() if k not in OMITTED_AT_DEFAULT}, **record}
    except (ActscaleError, TypeError, ValueError):
        return None
    return run_id_for(canonical)


def check_run_id(run_id: str) -> str:
    """Run ids come from links and uploads: only 16 hex digits can name a folder."""
    if not isinstance(run_id, str) or not RUN_ID.match(run_id):
        raise ActscaleError(f"invalid run id {str(run_id)[:40]!r}: a run id is 16 hexadecimal digits")
    return run_id


@dataclass
class BundleContents:
    """What `RunStore.save` writes: a new run's files, before it has a folder and a run id."""

    config: dict[str, Any]
    params: dict[str, torch.Tensor]
    metrics: dict[str, dict[str, Any]]
    history: list[dict[str, float]]
    dataset: list[dict[str, Any]]
    analysis: dict[str, torch.Tensor] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunBundle:
    """A run as read back from disk."""

    run_id: str
    path: Path
    config: dict[str, Any]
    metrics: dict[str, dict[str, float]]
    history: list[dict[str, float]]
    params: dict[str, torch.Tensor]
    dataset: list[dict[str, str]]
    analysis: dict[str, torch.Tensor] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    # The format its files were written in (`config` is in today's: runs/migrations).
    stored_format: int = FORMAT_VERSION
    # config.json and metrics.json as typed records: what pages, reports and checks read.
    record: RunRecord = None  # type: ignore[assignment]  # load_bundle always sets it

    @property
    def method(self) -> str:
        return self.record.config.method

    @property
    def sites(self) -> tuple[str, ...]:
        return self.record.config.sites

    @property
    def summary(self) -> dict[str, Any]:
        """``analysis.json``: written by the engine, but optional and unchecked, so only a dict
        is used."""
        return self.info if isinstance(self.info, dict) else {}

    def hnorm(self, site: str) -> torch.Tensor | None:
        """Mean ``‖h‖`` per [layer pos (head)] on the training prompts, if stored."""
        return self.analysis.get(f"hnorm.{site}")

    def cos(self, site: str) -> torch.Tensor | None:
        """SteerVec: the mean ``cos(v, h)`` per [layer pos (head)], if stored."""
        return self.analysis.get(f"cos.{site}")

    def dynalpha(self, site: str) -> torch.Tensor | None:
        """DynScalar: the scalars on every prompt at β = +1, [n layer pos (head)], if stored."""
        return self.analysis.get(f"dynalpha.{site}")

    def deltas(self) -> dict[str, torch.Tensor]:
        """Per-prompt ``Δ`` of the unmodified model (``base``) and at β = ±1 (``pos``, ``neg``),
        those that are stored."""
        return {k: v for k in ("base", "pos", "neg") if (v := self.analysis.get(f"delta.{k}")) is not None}

    def checks(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
        """The run's map checks (checks.json and its tensors), or None until they are run."""
        return load_checks(self.path)

    def str_tokens(self) -> list[list[str]]:
        """Each dataset prompt's tokens as strings, where stored (else [])."""
        tokens = self.summary.get("str_tokens")
        return tokens if isinstance(tokens, list) else []


@dataclass(frozen=True)
class RunListing:
    """One row of `RunStore.list`: a readable run, or a broken one with the reason."""

    run_id: str
    path: Path
    ok: bool
    reason: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    record: RunRecord | None = None  # a readable run's config and metrics, typed


CHECKS_VERSION = 1


def load_checks(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """A bundle folder's checks (checks.json, and checks.safetensors where written); None when
    the run has none. A damaged file reads as none (the checks can be run again)."""
    folder = Path(path)
    try:
        data = json.loads((folder / "checks.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != CHECKS_VERSION:
        return None
    tensors: dict[str, torch.Tensor] = {}
    if (folder / "checks.safetensors").is_file():
        try:
            tensors = load_file(str(folder / "checks.safetensors"))
        except Exception:  # noqa: BLE001 - any damage reads as "no tensors"
            tensors = {}
    return data, tensors


def save_checks(path: str | Path, data: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Write the checks next to the bundle's files, each by an atomic rename: the tensors
    first, then checks.json (which names the tensors), so a reader never sees half of them."""
    folder = Path(path)
    data = {**data, "version": CHECKS_VERSION, "tensors": sorted(tensors)}
    if tensors:
        fd, tmp = tempfile.mkstemp(prefix=".checks-", suffix=".safetensors", dir=folder)
        os.close(fd)
        try:
            save_file({k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()}, tmp)
            os.replace(tmp, folder / "checks.safetensors")
        finally:
            Path(tmp).unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".checks-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, allow_nan=True)
        os.replace(tmp, folder / "checks.json")
    finally:
        Path(tmp).unlink(missing_ok=True)


def mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str), encoding="utf-8")


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    columns = ["step", "loss", "effectiveness", "faithfulness", "minimality"]
    extra = sorted({k for row in history for k in row} - set(columns))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns + extra)
        writer.writeheader()
        for row in history:
            writer.writerow(row)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BrokenBundleError(f"{path.name} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BrokenBundleError(f"{path.name} is not valid JSON ({type(exc).__name__})") from None


def _read_summary(path: Path) -> tuple[dict, dict]:
    config = _read_json(path / "config.json")
    metrics = _read_json(path / "metrics.json")
    if not isinstance(config, dict) or "method" not in config or "sites" not in config:
        raise BrokenBundleError("config.json lacks the method or the sites")
    if not isinstance(metrics, dict) or not all(isinstance(v, dict) for v in metrics.values()):
        raise BrokenBundleError("metrics.json is not {split: {metric: value}}")
    for name in REQUIRED_FILES:
        if not (path / name).is_file():
            raise BrokenBundleError(f"{name} is missing")
    return config, metrics


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return dict(load_safetensors_bytes(path.read_bytes()))
    except FileNotFoundError:
        raise BrokenBundleError(f"{path.name} is missing") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise BrokenBundleError(f"{path.name} is not a readable safetensors file ({type(exc).__name__})") from None


def expected_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The tensor names and shapes params.safetensors must hold for this config.

    The config may come from an upload: the dimensions must be positive integers, and the
    intervention is built on the meta device, so absurd sizes allocate nothing.
    """
    dims = config["model_dims"]
    sizes = {k: dims[k] for k in ("n_layers", "d_model", "n_heads", "d_head")} | {"n_pos": config["n_pos"]}
    bad = [k for k, v in sizes.items() if not isinstance(v, int) or isinstance(v, bool) or v < 1]
    if bad:
        raise ValueError(f"{', '.join(bad)} must be positive integers")
    if not isinstance(config["sites"], list) or not all(isinstance(s, str) for s in config["sites"]):
        raise ValueError("sites must be a list of names")
    with torch.device("meta"):
        iv = make_intervention(config["method"], tuple(config["sites"]), ModelDims(**sizes), config)
    return {key.replace("__", "."): tuple(p.shape) for key, p in iv.params.items()}


def _check_shapes(found: dict[str, tuple[tuple[int, ...], str]], shapes: dict[str, tuple[int, ...]]) -> None:
    for name, shape in shapes.items():
        if name not in found:
            raise BrokenBundleError(f"params.safetensors lacks {name}")
        got, dtype = found[name]
        if got != shape:
            raise BrokenBundleError(f"{name} has shape {list(got)}, expected {list(shape)} for this model")
        if dtype not in ("F32", "float32", str(torch.float32)):
            raise BrokenBundleError(f"{name} is {dtype}, expected float32")


def _config_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    try:
        return expected_shapes(config)
    except (KeyError, TypeError, ValueError, RuntimeError, ActscaleError) as exc:
        raise BrokenBundleError(f"config.json is incomplete or invalid ({type(exc).__name__}: {exc})") from None


def _check_run_id(path: Path, config: dict[str, Any], expected_id: str | None) -> str:
    run_id = path.name if expected_id == "folder" else str(config.get("run_id", ""))
    if expected_id == "folder" and config.get("run_id") != run_id:
        raise BrokenBundleError(f"config.json names run {str(config.get('run_id'))[:40]!r}, not its folder {run_id}")
    return run_id


def _tensor_headers(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Names, shapes and dtypes from a safetensors header, without reading the data; a
    truncated or extended file fails here (the header must cover the file exactly)."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            return {k: (tuple(fh.get_slice(k).get_shape()), str(fh.get_slice(k).get_dtype())) for k in fh.keys()}
    except FileNotFoundError:
        raise BrokenBundleError(f"{path.name} is missing") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise BrokenBundleError(f"{path.name} is not a readable safetensors file ({type(exc).__name__})") from None


def verify_bundle(path: Path, expected_id: str | None = "folder") -> tuple[dict, dict, RunRecord]:
    """Every check `load_bundle` makes, reading tensor headers only (what `RunStore.list` uses);
    returns (config, metrics) as stored (not migrated: the run id is computed from it) and the
    run's `RunRecord`, or raises BrokenBundleError naming the first problem."""
    path = Path(path)
    config, metrics = _read_summary(path)
    format_version(config)
    _check_run_id(path, config, expected_id)
    _check_shapes(_tensor_headers(path / "params.safetensors"), _config_shapes(config))
    if (path / "analysis.safetensors").is_file():
        _tensor_headers(path / "analysis.safetensors")
    if (path / "analysis.json").is_file():
        _read_json(path / "analysis.json")
    _read_history(path / "history.csv")
    _read_dataset(path / "dataset.jsonl")
    return config, metrics, read_record(config, metrics)


def read_record(config: dict[str, Any], metrics: dict[str, Any]) -> RunRecord:
    """config.json (as stored) and metrics.json as a `RunRecord`; BrokenBundleError where the
    configuration is not one a run can have (edited by hand, or made by a method or task this
    process does not know)."""
    try:
        return RunRecord.from_json(migrate_config(config), metrics, format_version(config))
    except (ActscaleError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, BrokenBundleError):
            raise
        raise BrokenBundleError(f"config.json is not a valid run configuration ({exc})") from None


def load_bundle(path: Path, expected_id: str | None = "folder") -> RunBundle:
    """Read and check a bundle, its config migrated to today's format; raise BrokenBundleError
    naming the first problem."""
    path = Path(path)
    config, metrics = _read_summary(path)
    stored_format = format_version(config)
    run_id = _check_run_id(path, config, expected_id)
    shapes = _config_shapes(config)
    params = _read_tensors(path / "params.safetensors")
    _check_shapes({k: (tuple(v.shape), str(v.dtype)) for k, v in params.items()}, shapes)
    analysis = _read_tensors(path / "analysis.safetensors") if (path / "analysis.safetensors").is_file() else {}
    info = _read_json(path / "analysis.json") if (path / "analysis.json").is_file() else {}
    history = _read_history(path / "history.csv")
    dataset = _read_dataset(path / "dataset.jsonl")
    record = read_record(config, metrics)
    config = migrate_config(config)
    return RunBundle(run_id, path, config, metrics, history, params, dataset, analysis, info, stored_format, record)


def _read_history(path: Path) -> list[dict[str, float]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return [{k: float(v) for k, v in row.items() if k and v not in (None, "")} for row in csv.DictReader(fh)]
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise BrokenBundleError(f"history.csv is not readable ({type(exc).__name__})") from None


def _read_dataset(path: Path) -> list[dict[str, str]]:
    rows = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise ValueError("a row is not an object")
                    rows.append(row)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BrokenBundleError(f"dataset.jsonl is not readable ({type(exc).__name__})") from None
    return rows
