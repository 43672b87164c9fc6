"""Security (issue 4, part 5): ids from links, uploads, and what the code may never do.

Run ids arrive in links (``?run=``) and uploads, so no id may name a path outside the store;
an uploaded zip is read by known file names only (zip-slip names write nothing anywhere), is
size-limited, and is never unpickled; the server config keeps XSRF protection and an upload
limit; and a scan of the code fails on pickle, ``torch.load`` without ``weights_only=True``,
and ``trust_remote_code=True``.
"""

from __future__ import annotations

import ast
import io
import tokenize
import uuid
import zipfile
from pathlib import Path

import pytest
import tomllib
from hypothesis import given, settings
from hypothesis import strategies as st

from actscale.engine.training import TrainConfig
from actscale.errors import ActscaleError
from actscale.runs.api import load_run, train_run
from actscale.runs.bundle import BUNDLE_FILES, BrokenBundleError, check_run_id
from actscale.runs.store import RunStore

ROOT = Path(__file__).resolve().parents[1]

BAD_IDS = [
    "../x",
    "../../etc/passwd",
    "/etc/passwd",
    "/",
    ".",
    "..",
    "",
    " ",
    "0123456789abcdef0",  # 17 hex digits
    "0123456789abcde",  # 15
    "0123456789ABCDEF",  # uppercase
    "0123456789abcdeg",  # not hex
    "0123456789abcdef\n",  # a trailing newline ('$' would let it through)
    "\n0123456789abcdef",
    " 0123456789abcdef",
    "0123456789abcdef ",
    "0123456789abcdef/..",
    "0123456789abcdef/../../x",
    "..\\..\\x",
    "0123456789abcde/",
    "%2e%2e%2f%2e%2e%2f",
    "０１２３４５６７８９ａｂｃｄｅｆ",  # URL-encoded dots, full-width digits
    "0123456789abcdef\x00",
    "~/0123456789abcdef",
    "C:\\0123456789ab",
]


@pytest.mark.parametrize("bad", BAD_IDS + [None, 123, b"0123456789abcdef", ["0123456789abcdef"]])
def test_check_run_id_rejects(bad, tmp_path):
    with pytest.raises(ActscaleError) as info:
        check_run_id(bad)
    assert len(str(info.value).splitlines()) == 1
    store = RunStore(tmp_path / "runs")
    for call in (store.path, store.load, store.exists, store.delete, store.export_zip):
        with pytest.raises(ActscaleError):
            call(bad)
    assert not (tmp_path / "runs").exists()


def test_load_run_with_a_link_id_never_leaves_the_store(tmp_path):
    with pytest.raises(ActscaleError):
        load_run("../../etc", RunStore(tmp_path / "runs"))


@settings(max_examples=300, deadline=None, database=None)
@given(text=st.text(max_size=40) | st.text(alphabet="0123456789abcdefABCDEF./\\\n ", min_size=14, max_size=18))
def test_any_accepted_id_stays_inside_the_store(text):
    root = Path("/srv/store")
    try:
        run_id = check_run_id(text)
    except ActscaleError:
        return
    assert len(run_id) == 16 and set(run_id) <= set("0123456789abcdef")
    path = RunStore(root).path(run_id)
    assert path.parent == root and path.name == run_id


# ---- uploads -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_run(tiny_llama, tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("good"))
    config = TrainConfig(model="tiny-llama", task="ioi", method="activscalar", steps=2, n_prompts=8, early_stop=0)
    return train_run(config, tiny_llama, store=store)


def _zip(entries: dict[str, bytes], symlinks: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name in symlinks:
                info.external_attr = 0o120777 << 16  # a symbolic link in Unix zips
            zf.writestr(info, data)
    return buf.getvalue()


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _bundle_files(run) -> dict[str, bytes]:
    return {name: (run.path / name).read_bytes() for name in BUNDLE_FILES if (run.path / name).is_file()}


def test_zip_slip_names_write_nothing_outside_the_store(good_run, tmp_path):
    """Entries named ../../evil, absolute paths and folders: only the bundle's known files are
    read, by their base names, into a folder the store names itself."""
    files = _bundle_files(good_run)
    marker = f"actscale-evil-{uuid.uuid4().hex}"
    outside_abs = Path("/tmp") / marker
    sandbox = tmp_path / "sandbox"
    store = RunStore(sandbox / "a" / "b" / "runs")
    names = [
        "../../evil/config.json",
        f"/tmp/{marker}/params.safetensors",
        "x/../../../metrics.json",
        "..\\..\\history.csv",
        "dataset.jsonl",
        "analysis.safetensors",
        "deep/dir/analysis.json",
    ]
    entries = dict(
        zip(
            names,
            [
                files[n]
                for n in (
                    "config.json",
                    "params.safetensors",
                    "metrics.json",
                    "history.csv",
                    "dataset.jsonl",
                    "analysis.safetensors",
                    "analysis.json",
                )
            ],
        )
    )
    entries.update(
        {
            "../../evil.py": b"import os\n",
            f"/tmp/{marker}.sh": b"rm -rf /\n",
            "../runs2/x": b"x",
            "__init__.py": b"",
            "config.json.pkl": b"\x80\x04K\x01.",
        }
    )
    store.root.mkdir(parents=True)
    run_id = store.import_zip(_zip(entries)).run_id
    assert run_id == good_run.run_id
    assert _tree(sandbox) == {"a", "a/b", "a/b/runs", f"a/b/runs/{run_id}", *(f"a/b/runs/{run_id}/{n}" for n in files)}
    assert not outside_abs.exists() and not Path(f"/tmp/{marker}.sh").exists()
    assert {n: (store.root / run_id / n).read_bytes() for n in files} == files
    assert [r.ok for r in store.list()] == [True]


def test_symlink_entries_are_read_as_bytes_not_followed(good_run, tmp_path):
    files = _bundle_files(good_run)
    files["params.safetensors"] = b"/etc/passwd"
    store = RunStore(tmp_path / "runs")
    store.root.mkdir()
    with pytest.raises(BrokenBundleError):
        store.import_zip(_zip({f"r/{k}": v for k, v in files.items()}, symlinks=("r/params.safetensors",)))
    assert list(store.root.iterdir()) == []
    assert not any(p.is_symlink() for p in tmp_path.rglob("*"))


def test_upload_over_the_size_limit(good_run, tmp_path):
    files = _bundle_files(good_run)
    store = RunStore(tmp_path / "runs")
    store.root.mkdir()
    data = _zip({f"r/{k}": v for k, v in files.items()})
    with pytest.raises(BrokenBundleError, match="limit"):
        store.import_zip(data, max_bytes=len(data) - 1)
    # A zip bomb: small archive, huge content (declared sizes are checked before unpacking).
    bomb = _zip({**{f"r/{k}": v for k, v in files.items()}, "r/dataset.jsonl": b"\n" * 5_000_000})
    assert len(bomb) < 100_000
    with pytest.raises(BrokenBundleError, match="unpacks to"):
        store.import_zip(bomb, max_bytes=1_000_000)
    assert list(store.root.iterdir()) == []


def _flip_bit(data: bytes, needle: bytes) -> bytes:
    i = data.index(needle)
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


def test_corrupted_encrypted_and_foreign_uploads(good_run, tmp_path):
    files = _bundle_files(good_run)
    store = RunStore(tmp_path / "runs")
    store.root.mkdir()
    plain = io.BytesIO()
    with zipfile.ZipFile(plain, "w", zipfile.ZIP_STORED) as zf:
        for k, v in files.items():
            zf.writestr(f"r/{k}", v)
    stored = plain.getvalue()
    crc_broken = _flip_bit(stored, files["metrics.json"][:40])  # data changed: bad CRC
    encrypted = bytearray(stored)
    for sig, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # the 'encrypted' flag bit
        start = 0
        while (i := bytes(encrypted).find(sig, start)) != -1:
            encrypted[i + offset] |= 0x01
            start = i + 4
    for data in (
        crc_broken,
        bytes(encrypted),
        b"not a zip at all",
        b"",
        b"PK\x03\x04" + b"\0" * 100,
        b"\x80\x04\x95" + b"\0" * 50,
    ):  # the last one: a pickle's opening bytes
        with pytest.raises(BrokenBundleError) as info:
            store.import_zip(data)
        assert len(str(info.value).splitlines()) == 1
    assert list(store.root.iterdir()) == []


# ---- what the code may never contain ------------------------------------------------------

# Built by concatenation so that this file does not contain the words it looks for.
PICKLE_NAMES = {
    "pick" + "le",
    "cPick" + "le",
    "_pick" + "le",
    "di" + "ll",
    "jobl" + "ib",
    "shel" + "ve",
    "marsh" + "al",
}
TORCH_LOAD = "lo" + "ad"
REMOTE_CODE = "trust_remote" + "_code"
ALLOW_PICKLE = "allow_pick" + "le"
READ_PICKLE = "read_pick" + "le"


def _code_files() -> list[Path]:
    files = sorted((ROOT / "actscale").rglob("*.py")) + sorted((ROOT / "app_pages").glob("*.py"))
    files += [ROOT / "app.py"] if (ROOT / "app.py").is_file() else []
    return [f for f in files if f.resolve() != Path(__file__).resolve()]


def _violations(path: Path) -> list[str]:
    source = path.read_text(encoding="utf-8")
    found = []
    # Names anywhere in the code (not in comments or strings): import pickle, pickle.loads, ...
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME and tok.string in PICKLE_NAMES | {READ_PICKLE}:
            found.append(f"{path.name}:{tok.start[0]}: uses {tok.string}")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            kwargs = {k.arg: k.value for k in node.keywords}
            if name == TORCH_LOAD and owner == "torch":
                safe = kwargs.get("weights_only")
                if not (isinstance(safe, ast.Constant) and safe.value is True):
                    found.append(f"{path.name}:{node.lineno}: torch.{TORCH_LOAD} without weights_only=True")
            for key, value in kwargs.items():
                if key == REMOTE_CODE and not (isinstance(value, ast.Constant) and value.value is False):
                    found.append(f"{path.name}:{node.lineno}: {REMOTE_CODE} not False")
                if key == ALLOW_PICKLE and not (isinstance(value, ast.Constant) and value.value is False):
                    found.append(f"{path.name}:{node.lineno}: {ALLOW_PICKLE}")
    # And the plain text, for what hides in strings passed on (e.g. a kwargs dict).
    for n, line in enumerate(source.splitlines(), 1):
        code = line.split("#", 1)[0]
        if (
            f"{REMOTE_CODE}=True" in code.replace(" ", "")
            or f"'{REMOTE_CODE}':True" in code.replace(" ", "")
            or f'"{REMOTE_CODE}":True' in code.replace(" ", "")
        ):
            found.append(f"{path.name}:{n}: {REMOTE_CODE} set to True")
        if f"torch.{TORCH_LOAD}(" in code and "weights_only=True" not in code:
            found.append(f"{path.name}:{n}: torch.{TORCH_LOAD}( without weights_only=True")
    return found


def test_scanner_catches_what_it_should(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        f"import {'pick' + 'le'}\nimport torch\n"
        f"x = torch.{TORCH_LOAD}('f')\ny = torch.{TORCH_LOAD}('f', weights_only=False)\n"
        f"m = f(name, {REMOTE_CODE}=True)\nz = torch.{TORCH_LOAD}('f', weights_only=True)\n"
    )
    found = _violations(bad)
    assert len([v for v in found if "uses" in v]) == 1
    assert len([v for v in found if "weights_only" in v]) >= 2
    assert any(REMOTE_CODE in v for v in found)
    assert not any(":6:" in v for v in found)  # weights_only=True is fine


def test_code_never_unpickles_or_runs_remote_code():
    files = _code_files()
    assert len(files) >= 10 and any(f.name == "store.py" for f in files)
    found = [v for f in files for v in _violations(f)]
    assert not found, "\n".join(found)


def test_streamlit_config_keeps_xsrf_and_an_upload_limit():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    server = config["server"]
    assert server["enableXsrfProtection"] is True
    assert isinstance(server["maxUploadSize"], int) and 1 <= server["maxUploadSize"] <= 200  # MB
    assert server.get("enableCORS", True) is True  # CORS off would force XSRF off in Streamlit


def test_streamlit_config_turns_off_the_collection_after_each_script_run():
    """The live panel redraws every second; Streamlit's full collection after each run (the
    fragment's included) held the GIL 0.3-0.5 s each time and slowed training 1.5x. The option
    must still exist under this name, or Streamlit would ignore the line."""
    from streamlit import config as st_config

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False
    option = st_config._config_options_template["runner.postScriptGC"]
    assert option.default_val is True and option.type is bool
