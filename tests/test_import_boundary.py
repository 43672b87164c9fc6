"""Library first, app second: the engine imports, runs and is tested without Streamlit.

Only ``app.py``, ``app_pages/`` and ``actscale/ui/`` may import ``streamlit`` (house style, "The
shape we want"). Two checks keep it so: every other ``actscale`` module, found with pkgutil so a
new module is covered the day it is added, is imported in a fresh interpreter that must end
without ``streamlit`` in ``sys.modules`` (this catches an import through a third module too);
and a scan of the source finds ``import streamlit`` nowhere else.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UI_PACKAGE = "actscale.ui"

# Run in a fresh interpreter: this test process has imported streamlit already (the page tests).
# Each module is imported in turn, and the first one after which streamlit is loaded is named.
_IMPORT_ALL = r"""
import importlib, json, pkgutil, sys
from pathlib import Path
import actscale

UI = sys.argv[1]


def walk(path, prefix):
    # pkgutil.walk_packages imports every package to recurse into it, the UI's too: walk by hand.
    for info in pkgutil.iter_modules(path, prefix):
        if info.name == UI or info.name.startswith(UI + "."):
            continue
        yield info.name
        if info.ispkg:
            yield from walk([str(Path(path[0]) / info.name.rsplit(".", 1)[-1])], info.name + ".")


imported, culprits = [], []
for name in walk(list(actscale.__path__), "actscale."):
    if name.rsplit(".", 1)[-1] == "__main__":  # running it is the CLI; it imports actscale.cli only
        continue
    had = "streamlit" in sys.modules
    importlib.import_module(name)
    imported.append(name)
    if not had and "streamlit" in sys.modules:
        culprits.append(name)
print(json.dumps({"package": actscale.__file__, "imported": imported, "culprits": culprits,
                  "streamlit": sorted(m for m in sys.modules if m == "streamlit" or m.startswith("streamlit."))}))
"""


def _import_every_engine_module() -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL, UI_PACKAGE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_engine_modules_import_without_streamlit():
    result = _import_every_engine_module()
    # The checkout under test, not another copy of the package on the path.
    assert Path(result["package"]).resolve() == ROOT / "actscale" / "__init__.py"
    # Discovery found the package's modules (a walk that finds nothing would pass vacuously).
    found = [p.relative_to(ROOT).with_suffix("") for p in (ROOT / "actscale").rglob("*.py")]
    expected = {
        ".".join(p.parts[:-1] if p.name == "__init__" else p.parts)
        for p in found
        if p.name != "__main__" and p.parts[:2] != ("actscale", "ui")
    }
    assert expected - {"actscale"} == set(result["imported"])
    assert not any(m == UI_PACKAGE or m.startswith(UI_PACKAGE + ".") for m in result["imported"])
    assert result["culprits"] == [] and result["streamlit"] == [], result


def _imports_streamlit(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "streamlit" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "streamlit":
            return True
    return False


def _allowed(rel: Path) -> bool:
    return rel == Path("app.py") or rel.parts[0] == "app_pages" or rel.parts[:2] == ("actscale", "ui")


def _source_files() -> list[Path]:
    """Every Python file of the project except the tests (which drive pages with Streamlit's
    AppTest) and hidden or virtual-environment folders."""
    files = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] == "tests" or any(p.startswith(".") or p in ("venv", "build", "dist") for p in rel.parts[:-1]):
            continue
        files.append(rel)
    return sorted(files)


def test_only_the_app_imports_streamlit():
    files = _source_files()
    assert Path("actscale/views/plots/maps.py") in files and Path("app.py") in files  # the scan sees the tree
    importing = [str(rel) for rel in files if _imports_streamlit(ROOT / rel)]
    assert importing, "no file imports streamlit: the scan is broken"
    assert [f for f in importing if not _allowed(Path(f))] == []


def test_the_scan_sees_every_form_of_import(tmp_path):
    cases = {
        "import streamlit as st\n": True,
        "import streamlit.components.v1\n": True,
        "from streamlit.testing.v1 import AppTest\n": True,
        "def f():\n    from streamlit import cache_data\n": True,  # function-level imports count too
        "import streamlit_extras\n": False,
        "from .streamlit import x\n": False,  # a relative module of that name is not the package
        "# import streamlit\nx = 'import streamlit'\n": False,
    }
    for i, (source, imports) in enumerate(cases.items()):
        path = tmp_path / f"case{i}.py"
        path.write_text(source, encoding="utf-8")
        assert _imports_streamlit(path) is imports, source


def test_the_package_lists_its_api_not_its_helpers():
    """``dir(actscale)`` is the API (and the package's modules once imported): it had offered
    `Any`, `TYPE_CHECKING` and `import_module` beside it, and importing it loads no torch."""
    code = (
        "import json, sys, actscale\n"
        "first = dir(actscale)\n"
        "torch = 'torch' in sys.modules\n"
        "actscale.RunStore\n"
        "print(json.dumps([first, torch, dir(actscale), sorted(actscale.__all__)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    first, torch_loaded, after, api = json.loads(out.stdout)
    assert (first, torch_loaded) == (api, False)
    assert after == sorted(
        [*api, "engine", "errors", "runs"]
    )  # the subpackages RunStore loaded, as any package lists them
