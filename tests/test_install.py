"""`pip install .` gives a working package: a new virtual environment installs it (not editable,
from a copy of the project's files), finds its runtime dependencies installed, and then
`python -m actscale --help` answers and the package's data files are there.

The new environment (made without pip) sees this environment's packages, pip and setuptools
included, through a .pth file, so pip checks the declared dependencies against installed
versions instead of downloading them again; `make test`
itself installs them from pyproject.toml into a new .venv, which is the full check.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import actscale

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=900, check=False)


def test_pip_install_then_help(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "actscale", source / "actscale", ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    made = run(getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    purelib = run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path)
    (Path(purelib.stdout.strip()) / "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = run(
        str(python), "-m", "pip", "install", "-q", "--no-index", "--no-build-isolation", str(source), cwd=tmp_path
    )
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]
    helped = run(str(python), "-m", "actscale", "--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr[-2000:]
    assert helped.stdout.startswith("usage: python -m actscale [-h] {train,sweep,eval,analyse,list} ...")
    probe = (
        "import json, importlib.metadata as md, importlib.resources as r, actscale; print(json.dumps(["
        "actscale.__file__, actscale.__version__, md.version('actscale'), "
        "r.files('actscale').joinpath('data/countries.csv').is_file(), "
        "r.files('actscale').joinpath('data/neutral.txt').is_file(), "
        "sorted(str(q) for q in md.requires('actscale') if 'extra' not in q)]))"
    )
    found = run(str(python), "-c", probe, cwd=tmp_path)
    assert found.returncode == 0, found.stderr[-2000:]
    path, version, dist_version, countries, neutral, requires = json.loads(found.stdout)
    assert Path(path).is_relative_to(venv) and version == dist_version == actscale.__version__
    assert countries and neutral
    assert "torch==2.13.0" in requires and "transformer-lens==4.3.0" in requires
