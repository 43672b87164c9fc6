"""The run store: a folder of run bundles. Reads never modify anything; writes are atomic
renames, so a half-written run never appears."""

from __future__ import annotations

import contextlib
import filecmp
import io
import json
import os
import shutil
import tempfile
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import save_file

from actscale.errors import ActscaleError
from actscale.runs.bundle import (
    BUNDLE_FILES,
    CHECKS_FILES,
    MAX_BUNDLE_BYTES,
    REQUIRED_FILES,
    RUN_ID,
    BrokenBundleError,
    BundleContents,
    RunBundle,
    RunListing,
    canonical_run_id,
    check_run_id,
    default_store,
    load_bundle,
    load_checks,
    mtime_ns,
    run_id_for,
    save_checks,
    verify_bundle,
    write_history,
    write_json,
)
from actscale.runs.migrations import FORMAT_VERSION, migrate_config

# What a bundle written into the store did there (`RunStore._place`, `Imported`).
ImportOutcome = Literal["added", "replaced", "kept", "checks added", "checks differ"]


class RunStore:
    """A folder of run bundles. Reads never modify anything; writes are atomic renames.

    ``readonly=True``: every write (save, delete, import) raises ActscaleError before touching
    the disk (a dashboard that serves a store to others)."""

    def __init__(self, root: str | Path | None = None, *, readonly: bool = False) -> None:
        self.root = Path(root) if root is not None else default_store()
        self.readonly = readonly

    def check_writable(self) -> None:
        """Raise ActscaleError where runs cannot be written here: a read-only store, or a path
        that is a file or lies under one (asked before a run trains, not when it is saved)."""
        if self.readonly:
            raise ActscaleError(f"the run store {self.root} is read-only")
        for folder in (self.root, *self.root.parents):
            if folder.exists():
                if not folder.is_dir():
                    raise ActscaleError(f"the run store {self.root} cannot be a folder: {folder} is a file")
                if not os.access(folder, os.W_OK | os.X_OK):
                    raise ActscaleError(f"the run store {self.root} cannot be written: {folder} is not writable")
                return

    def path(self, run_id: str) -> Path:
        return self.root / check_run_id(run_id)

    def exists(self, run_id: str) -> bool:
        return (self.path(run_id) / "config.json").is_file()

    def replacing(self, run_id: str) -> bool | None:
        """Before a run trained again on purpose replaces ``run_id`` (`save` with ``replace``):
        whether the readable run stored there has map checks; None where none is stored (or only
        a broken copy, which the new run replaces without a word)."""
        path = self.path(run_id)
        return (path / "checks.json").is_file() if self.exists(run_id) and _readable(path) else None

    def replaced(self, run_id: str, had_checks: bool | None) -> str:
        """The line for a run just saved over a stored one (``had_checks``: what `replacing` said
        before; None: it replaced none, and the line is empty)."""
        if had_checks is None:
            return ""
        return replaced_text(run_id, had_checks, (self.path(run_id) / "checks.json").is_file())

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
    def save(self, contents: BundleContents, *, replace: bool = False) -> Path:
        """Write a new bundle into a temporary folder and rename it into place, so a half-written
        run never appears; its config gets today's ``format_version``, a ``created`` time where it
        has none, and its ``run_id``. A readable run with the same id is kept as it is (the same
        config gives the same run), unless ``replace`` (a run trained again on purpose: the
        stored run's map checks come along where the parameters are byte-identical); a broken
        one is replaced."""
        self.check_writable()
        config = {**contents.config, "format_version": FORMAT_VERSION}
        config.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        run_id = run_id_for(config)
        config["run_id"] = run_id
        final = self.path(run_id)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{run_id}-", dir=self.root))
        try:
            write_json(tmp / "config.json", config)
            save_file(
                {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in contents.params.items()},
                str(tmp / "params.safetensors"),
            )
            write_json(tmp / "metrics.json", contents.metrics)
            write_history(tmp / "history.csv", contents.history)
            with open(tmp / "dataset.jsonl", "w", encoding="utf-8") as fh:
                for row in contents.dataset:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            if contents.analysis:
                save_file(
                    {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in contents.analysis.items()},
                    str(tmp / "analysis.safetensors"),
                )
            write_json(tmp / "analysis.json", contents.info)
            self._place(tmp, final, replace)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def _place(self, tmp: Path, final: Path, replace: bool) -> ImportOutcome:
        """Rename a complete bundle folder into place: "added", "replaced" (a broken run already
        there, or a readable one with ``replace``) or "kept" (a readable one, without). Another
        session saving the same run at the same moment is not an error: the first rename wins."""
        outcome: ImportOutcome
        if not final.exists():
            outcome = "added"
        else:
            readable = _readable(final)
            if readable and not replace:
                return "kept"
            outcome = "replaced"
            if readable and _same_bytes(final / "params.safetensors", tmp / "params.safetensors"):
                for name in CHECKS_FILES:  # checks of the same parameters hold for the new run
                    if (final / name).is_file():
                        shutil.copy2(final / name, tmp / name)
            with contextlib.suppress(FileNotFoundError):  # another session moved it first
                self._discard(final)
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / "config.json").is_file():
                raise
        return outcome

    def delete(self, run_id: str) -> None:
        self.check_writable()
        path = self.path(run_id)
        if not path.is_dir():
            raise ActscaleError(f"no run {run_id} in {self.root}")
        self._discard(path)

    def _discard(self, folder: Path) -> None:
        """Remove a run's folder: renamed out of the listing first, so a half-deleted folder is
        never listed as a run, then deleted."""
        trash = self.root / f".trash-{folder.name}-{uuid.uuid4().hex[:8]}"
        os.replace(folder, trash)
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
                config, metrics, record = verify_bundle(path)
                rows.append(RunListing(path.name, path, True, "", migrate_config(config), metrics, record))
            except BrokenBundleError as exc:
                rows.append(RunListing(path.name, path, False, str(exc)))
        # `created` has one-second resolution; the folder's mtime orders runs made in the same second.
        rows.sort(
            key=lambda r: (r.record.provenance.created if r.record else "", mtime_ns(r.path), r.run_id), reverse=True
        )
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

    def import_zip(self, data: bytes, max_bytes: int = MAX_BUNDLE_BYTES, *, replace: bool = False) -> Imported:
        """Validate an uploaded bundle (a zip of one run folder) and add it to the store (over a
        stored run with the same id where ``replace``, as `save`). A stored run it does not
        replace is kept, and takes the upload's map checks where it has none and the parameters
        are byte-identical (`Imported` says which).

        Only the known file names are read, each with json or safetensors; nothing is unpickled
        and no path from the archive is ever used to write.
        """
        self.check_writable()
        if len(data) > max_bytes:
            raise BrokenBundleError(
                f"the upload is {len(data) // 1_000_000} MB; the limit is {max_bytes // 1_000_000} MB"
            )
        zf, entries = _zip_entries(data, max_bytes)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".upload-", dir=self.root))
        try:
            for name in BUNDLE_FILES:
                if name in entries:
                    (tmp / name).write_bytes(_read_member(zf, entries[name], name))
            config, _, _ = verify_bundle(tmp, expected_id=None)
            run_id = run_id_for(config)
            if config.get("run_id") != run_id:
                raise BrokenBundleError("config.json does not match its run id (edited or corrupted)")
            outcome = self._place(tmp, self.path(run_id), replace)
            if outcome == "kept":
                outcome = _adopt_checks(tmp, self.path(run_id))
            return Imported(run_id, outcome)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


@dataclass(frozen=True)
class Imported:
    """What `RunStore.import_zip` did with a bundle: ``outcome`` is "added", "replaced" (a broken
    bundle stored under its id, or any with ``replace``), "kept" (the stored run, as it was),
    "checks added" (the stored run, with the upload's map checks) or "checks differ" (the stored
    run, without the upload's checks: its parameters are not the upload's)."""

    run_id: str
    outcome: ImportOutcome

    def text(self) -> str:
        """The outcome in one sentence, for the page that took the upload."""
        stored = f"Run {self.run_id} is already in the store"
        return {
            "added": f"Imported run {self.run_id}.",
            "replaced": f"Imported run {self.run_id} in place of the broken bundle stored under its id.",
            "kept": f"{stored}: the stored run is kept as it is.",
            "checks added": f"{stored}: the upload's map checks were added to it (the parameters are byte-identical).",
            "checks differ": f"{stored} and is kept without the upload's map checks: the upload's parameters differ "
            "from the stored run's, so its checks do not hold for them (delete the stored run, then upload, to keep "
            "the upload's).",
        }[self.outcome]


def _adopt_checks(upload: Path, stored: Path) -> ImportOutcome:
    """The outcome for a stored run an upload of the same id left in place: the upload's map
    checks are written into it where it has none and their parameters are byte-identical."""
    theirs = load_checks(upload)
    if theirs is None or load_checks(stored) is not None:
        return "kept"
    if not _same_bytes(upload / "params.safetensors", stored / "params.safetensors"):
        return "checks differ"
    save_checks(stored, *theirs)
    return "checks added"


def replaced_text(run_id: str, had_checks: bool, has_checks: bool) -> str:
    """The line a training that replaced the stored run ``run_id`` ends with (`train` and
    `sweep` with --no-reuse): whether its map checks (``had_checks``) came along (``has_checks``:
    the parameters are byte-identical) or were dropped."""
    text = f"replaced the stored run {run_id} with this training"
    if not had_checks:
        return text
    if has_checks:
        return f"{text}; its map checks are kept: the parameters are byte-identical"
    return f"{text}; its map checks were dropped, since the parameters differ: run analyse again"


def _readable(folder: Path) -> bool:
    """Whether the run folder passes `verify_bundle` (a broken one is replaced without a word)."""
    try:
        verify_bundle(folder)
    except BrokenBundleError:
        return False
    return True


def _same_bytes(a: Path, b: Path) -> bool:
    return a.is_file() and b.is_file() and filecmp.cmp(a, b, shallow=False)


def _zip_entries(data: bytes, max_bytes: int) -> tuple[zipfile.ZipFile, dict[str, zipfile.ZipInfo]]:
    """The archive and its members by base name (some zip tools write Windows separators; no
    path from the archive is ever used), refused with one line when it is not a zip, unpacks
    past ``max_bytes`` or lacks a required file."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
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
    return zf, entries


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> bytes:
    try:
        return zf.read(info)
    except (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, EOFError, OSError, ValueError) as exc:
        # A corrupted, encrypted or oddly compressed member.
        raise BrokenBundleError(f"{name} in the upload cannot be unpacked ({type(exc).__name__})") from None
