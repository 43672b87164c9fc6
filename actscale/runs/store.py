"""The run store: one folder per run, written atomically, read with json and safetensors only.

Layout (docs/interfaces.md, Run bundle)::

    <store>/<run_id>/config.json  params.safetensors  metrics.json  history.csv  dataset.jsonl
                     analysis.safetensors  analysis.json        (ours: what the dashboard draws)
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import load_file, save_file

from actscale.errors import ActscaleError
from actscale.engine.interventions import ModelDims, make_intervention

# \Z, not $: "$" also matches before a trailing newline, which would let "<16 hex>\n" through.
RUN_ID = re.compile(r"^[0-9a-f]{16}\Z")
REQUIRED_FILES = ("config.json", "params.safetensors", "metrics.json", "history.csv", "dataset.jsonl")
OPTIONAL_FILES = ("analysis.safetensors", "analysis.json", "checks.json", "checks.safetensors")
BUNDLE_FILES = REQUIRED_FILES + OPTIONAL_FILES
MAX_BUNDLE_BYTES = 200_000_000
# Keys of config.json that do not define the run: when it was made, and where a custom
# dataset file happened to lie (its content is pinned by dataset_hash).
_NOT_IDENTITY = ("created", "dataset", "run_id")


class BrokenBundleError(ActscaleError):
    """A bundle folder or upload that cannot be read; the message says why."""


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
        record = TrainConfig.from_bundle(config).to_record()
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

    @property
    def method(self) -> str:
        return self.config["method"]

    @property
    def sites(self) -> tuple[str, ...]:
        return tuple(self.config["sites"])

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


class RunStore:
    """A folder of run bundles. Reads never modify anything; writes are atomic renames.

    ``readonly=True``: every write (save, delete, import) raises ActscaleError before touching
    the disk (a dashboard that serves a store to others)."""

    def __init__(self, root: str | Path | None = None, *, readonly: bool = False) -> None:
        self.root = Path(root) if root is not None else default_store()
        self.readonly = readonly

    def check_writable(self) -> None:
        """Raise ActscaleError where this store is read-only."""
        if self.readonly:
            raise ActscaleError(f"the run store {self.root} is read-only")

    def path(self, run_id: str) -> Path:
        return self.root / check_run_id(run_id)

    def exists(self, run_id: str) -> bool:
        return (self.path(run_id) / "config.json").is_file()

    def resolve(self, run_id: str) -> str | None:
        """The folder holding run ``run_id``: its own, or that of a run stored under an older
        id whose config canonicalises to ``run_id`` (an alias); None if neither is here."""
        if self.exists(run_id):
            return run_id
        return self.aliases().get(check_run_id(run_id))

    def aliases(self) -> dict[str, str]:
        """Today's id -> folder id, for every stored run whose folder id is an older spelling."""
        out: dict[str, str] = {}
        if not self.root.is_dir():
            return out
        for path in sorted(self.root.iterdir()):
            if not RUN_ID.match(path.name) or not (path / "config.json").is_file():
                continue
            try:
                config = json.loads((path / "config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(config, dict) and (today := canonical_run_id(config)) not in (None, path.name):
                out.setdefault(today, path.name)
        return out

    # ---- writing ----
    def save(
        self,
        config: dict[str, Any],
        params: dict[str, torch.Tensor],
        metrics: dict,
        history: list[dict[str, float]],
        dataset: list[dict[str, str]],
        analysis: dict[str, torch.Tensor] | None = None,
        info: dict[str, Any] | None = None,
    ) -> Path:
        """Write a bundle into a temporary folder and rename it into place, so a half-written
        run never appears. A readable run with the same id is kept as it is; a broken one is
        replaced."""
        self.check_writable()
        config = dict(config)
        config.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        run_id = run_id_for(config)
        config["run_id"] = run_id
        final = self.path(run_id)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{run_id}-", dir=self.root))
        try:
            _write_json(tmp / "config.json", config)
            save_file(
                {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in params.items()},
                str(tmp / "params.safetensors"),
            )
            _write_json(tmp / "metrics.json", metrics)
            _write_history(tmp / "history.csv", history)
            with open(tmp / "dataset.jsonl", "w", encoding="utf-8") as fh:
                for row in dataset:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            if analysis:
                save_file(
                    {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in analysis.items()},
                    str(tmp / "analysis.safetensors"),
                )
            _write_json(tmp / "analysis.json", info or {})
            self._place(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def _place(self, tmp: Path, final: Path) -> None:
        """Rename a complete bundle folder into place. A readable run already there is kept (the
        same config gives the same run); a broken one is replaced. Another session saving the
        same run at the same moment is not an error: the first rename wins."""
        if final.exists():
            try:
                verify_bundle(final)
                return
            except BrokenBundleError:
                trash = self.root / f".trash-{final.name}-{uuid.uuid4().hex[:8]}"
                os.replace(final, trash)
                shutil.rmtree(trash, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / "config.json").is_file():
                raise

    def delete(self, run_id: str) -> None:
        self.check_writable()
        path = self.path(run_id)
        if not path.is_dir():
            raise ActscaleError(f"no run {run_id} in {self.root}")
        # Rename first so a half-deleted folder is never listed as a run.
        trash = self.root / f".trash-{run_id}-{uuid.uuid4().hex[:8]}"
        os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    # ---- reading ----
    def load(self, run_id: str) -> RunBundle:
        """The run ``run_id``, or the run stored under an older id it is an alias of."""
        path = self.path(self.resolve(run_id) or run_id)
        if not path.is_dir():  # say so, rather than "config.json is missing"
            raise ActscaleError(f"no run {run_id} in {self.root}")
        return load_bundle(path)

    def list(self) -> list[RunListing]:
        """Every run folder, newest first; broken ones are listed with the reason."""
        if not self.root.is_dir():
            return []
        rows = []
        for path in self.root.iterdir():
            if not path.is_dir() or not RUN_ID.match(path.name):
                continue
            try:
                config, metrics = verify_bundle(path)
                rows.append(RunListing(path.name, path, True, "", config, metrics))
            except BrokenBundleError as exc:
                rows.append(RunListing(path.name, path, False, str(exc)))
        # `created` has one-second resolution; the folder's mtime orders runs made in the same second.
        rows.sort(key=lambda r: (str(r.config.get("created", "")), _mtime_ns(r.path), r.run_id), reverse=True)
        return rows

    # ---- moving bundles between stores ----
    def export_zip(self, run_id: str) -> bytes:
        path = self.path(run_id)
        verify_bundle(path)  # never hand out a broken bundle (headers only: no tensor is read)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in BUNDLE_FILES:
                if (path / name).is_file():
                    zf.write(path / name, f"{run_id}/{name}")
        return buf.getvalue()

    def import_zip(self, data: bytes, max_bytes: int = MAX_BUNDLE_BYTES) -> str:
        """Validate an uploaded bundle (a zip of one run folder) and add it to the store.

        Only the known file names are read, each with json or safetensors; nothing is unpickled
        and no path from the archive is ever used to write.
        """
        self.check_writable()
        if len(data) > max_bytes:
            raise BrokenBundleError(
                f"the upload is {len(data) // 1_000_000} MB; the limit is {max_bytes // 1_000_000} MB"
            )
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
            # Base names only (some zip tools write Windows separators): no path from the archive
            # is ever used.
            entries = {i.filename.replace("\\", "/").rsplit("/", 1)[-1]: i for i in zf.infolist() if not i.is_dir()}
            total = sum(i.file_size for i in entries.values())
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise BrokenBundleError(f"the upload is not a zip archive of a run bundle ({exc})") from None
        if total > max_bytes:
            raise BrokenBundleError(
                f"the bundle unpacks to {total // 1_000_000} MB; the limit is {max_bytes // 1_000_000} MB"
            )
        missing = [n for n in REQUIRED_FILES if n not in entries]
        if missing:
            raise BrokenBundleError(f"the upload is missing {', '.join(missing)}")
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".upload-", dir=self.root))
        try:
            for name in BUNDLE_FILES:
                if name in entries:
                    try:
                        content = zf.read(entries[name])
                    except (
                        zipfile.BadZipFile,
                        zlib.error,
                        RuntimeError,
                        NotImplementedError,
                        EOFError,
                        OSError,
                        ValueError,
                    ) as exc:
                        # A corrupted, encrypted or oddly compressed member.
                        raise BrokenBundleError(
                            f"{name} in the upload cannot be unpacked ({type(exc).__name__})"
                        ) from None
                    (tmp / name).write_bytes(content)
            config, _ = verify_bundle(tmp, expected_id=None)
            run_id = run_id_for(config)
            if config.get("run_id") != run_id:
                raise BrokenBundleError("config.json does not match its run id (edited or corrupted)")
            self._place(tmp, self.path(run_id))
            return run_id
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


# ---- the map checks (docs/method.md §7), added to a bundle by `actscale.checks.run_checks` ----
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


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str), encoding="utf-8")


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
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


def verify_bundle(path: Path, expected_id: str | None = "folder") -> tuple[dict, dict]:
    """Every check `load_bundle` makes, reading tensor headers only (what `RunStore.list` uses);
    returns (config, metrics) or raises BrokenBundleError naming the first problem."""
    path = Path(path)
    config, metrics = _read_summary(path)
    _check_run_id(path, config, expected_id)
    _check_shapes(_tensor_headers(path / "params.safetensors"), _config_shapes(config))
    if (path / "analysis.safetensors").is_file():
        _tensor_headers(path / "analysis.safetensors")
    if (path / "analysis.json").is_file():
        _read_json(path / "analysis.json")
    _read_history(path / "history.csv")
    _read_dataset(path / "dataset.jsonl")
    return config, metrics


def load_bundle(path: Path, expected_id: str | None = "folder") -> RunBundle:
    """Read and check a bundle; raise BrokenBundleError naming the first problem."""
    path = Path(path)
    config, metrics = _read_summary(path)
    run_id = _check_run_id(path, config, expected_id)
    shapes = _config_shapes(config)
    params = _read_tensors(path / "params.safetensors")
    _check_shapes({k: (tuple(v.shape), str(v.dtype)) for k, v in params.items()}, shapes)
    analysis = _read_tensors(path / "analysis.safetensors") if (path / "analysis.safetensors").is_file() else {}
    info = _read_json(path / "analysis.json") if (path / "analysis.json").is_file() else {}
    history = _read_history(path / "history.csv")
    dataset = _read_dataset(path / "dataset.jsonl")
    return RunBundle(run_id, path, config, metrics, history, params, dataset, analysis, info)


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
