"""The house's shape, checked: no module over 400 lines, no function over 50 (data tables
aside, named below), in the package and in the code beside it (the app, its pages, the
benchmarks, the tests), and no import cycle among the package's modules, counting the imports
inside functions too (a cycle hidden in a function is still a cycle; imports for annotations alone,
under `if TYPE_CHECKING:`, never run and are not counted)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "actscale"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50
# Functions that are data tables (a list of rows written out), at most three.
DATA_TABLES: set[str] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
# Held to the same sizes: the dashboard's entry point and pages, `make bench`'s code, the tests.
BESIDE = {
    module_name(p): p
    for p in [
        ROOT / "app.py",
        *(q for folder in ("app_pages", "benchmarks", "tests") for q in (ROOT / folder).glob("*.py")),
    ]
}
SIZED = {**MODULES, **BESIDE}


def test_no_module_is_over_400_lines():
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in SIZED.items()}
    seen = {"app", "app_pages.2_Explore", "benchmarks.bench", "tests.test_layout", "tests.conftest"}
    assert len(sizes) > 40 and seen <= sizes.keys()  # the walk sees them
    assert {n: s for n, s in sizes.items() if s > MAX_MODULE_LINES} == {}


def function_lengths() -> dict[str, int]:
    lengths = {}
    for name, path in SIZED.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lengths[f"{name}.{node.name}"] = node.end_lineno - node.lineno + 1
    return lengths


def test_no_function_is_over_50_lines():
    assert len(DATA_TABLES) <= 3
    lengths = function_lengths()
    long = {n: k for n, k in lengths.items() if k > MAX_FUNCTION_LINES and n not in DATA_TABLES}
    assert long == {}
    assert len(DATA_TABLES) <= 3 and DATA_TABLES <= lengths.keys()
    # The walk sees the package's functions (an empty walk would pass vacuously).
    assert len(lengths) > 500 and lengths["actscale.checks.sufficiency.map_checks"] > 20
    assert lengths["benchmarks.experiments.markdown"] > 5 and lengths["tests.tiny_gguf.write_tiny_gguf"] > 20


def imported_modules(name: str, path: Path) -> set[str]:
    """The package's modules that ``name`` imports, anywhere in the file: ``from actscale.x
    import y`` is an import of ``actscale.x.y`` where that is a module, else of ``actscale.x``."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    # Imports under `if TYPE_CHECKING:` are for annotations only and never run.
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in MODULES}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    graph = {name: imported_modules(name, path) for name, path in MODULES.items()}
    assert "actscale.engine.training" in graph["actscale.runs.api"]  # the scan sees the imports
    assert cycles(graph) == []


def test_every_module_imports_first():
    """Each module imported first, before any other of the package's (its entry in sys.modules
    and every other actscale module removed in between), in one new interpreter: a module that
    works only after another was imported, or a cycle that bites at import time, fails here."""
    script = (
        "import importlib, sys, traceback\n"
        "failed = []\n"
        f"for name in {sorted(m for m in MODULES if not m.endswith('__main__'))!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'actscale' or m.startswith('actscale.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        failed.append(name + ': ' + traceback.format_exc().strip().splitlines()[-1])\n"
        "print('\\n'.join(failed))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == ""


def test_one_home_for_tokenising_and_padding():
    """Tokenising (the tokenizer called on text) and left padding live in actscale.engine.tokens
    alone: every other module goes through it."""
    calls = {}
    for name, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        found = [w for w in ("add_special_tokens=False)", "torch.full((len(") if w in text]
        if found:
            calls[name] = found
    assert calls == {"actscale.engine.tokens": ["add_special_tokens=False)", "torch.full((len("]}


def test_one_door_for_hooks():
    """Hooks reach a model through actscale.engine.interventions.steering alone (`at_sites`,
    and `steer` built on it)."""
    doors = {
        name
        for name, path in MODULES.items()
        if any(w in path.read_text(encoding="utf-8") for w in (".hooks(fwd_hooks", "add_hook(", "run_with_hooks("))
    }
    assert doors == {"actscale.engine.interventions.steering"}
