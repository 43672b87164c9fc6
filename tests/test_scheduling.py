"""The suite's units of work under `make test`'s xdist workers (tests/scheduling.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from scheduling import FIRST, SHARED_RUNS, SPLIT_MODULES, heaviest_first, unit_of

ROOT = Path(__file__).resolve().parents[1]


def test_a_module_is_one_unit_and_the_slow_modules_go_by_the_run_they_share():
    assert unit_of("tests/test_cli.py::test_sweep[ray]") == "tests/test_cli.py"
    assert unit_of("tests/test_bundled_slow.py::test_warm_load") == "tests/test_bundled_slow.py::test_warm_load"
    flip = "tests/test_bundled_slow.py::test_flip_targets_on_held_out_prompts"
    assert unit_of(f"{flip}[ioi-steervec-test_groups1-0.9]") == "IOI's default runs"
    assert unit_of(f"{flip}[ccc-steervec-test_groups3-0.9]") == "CCC's default runs"
    assert unit_of(f"{flip}[ioi-dynscalar-test_groups4-None]") == f"{flip}[ioi-dynscalar-test_groups4-None]"
    analyse = "tests/test_checks_slow.py::test_analyse_with_three_seeds_writes_the_stability_figures"
    assert unit_of(analyse) == "IOI's default runs"


def test_the_heaviest_units_go_first_and_the_others_keep_their_order():
    units = ["tests/test_a.py", "tests/test_e2e_present.py", "tests/test_b.py", "IOI's default runs"]
    assert heaviest_first(units) == [
        "IOI's default runs",
        "tests/test_e2e_present.py",
        "tests/test_a.py",
        "tests/test_b.py",
    ]


def test_every_rule_names_a_collected_test():
    """A renamed test would fall back to its module's unit unnoticed (slower, never wrong): each
    rule must still name a test that pytest collects."""
    modules = sorted(
        {p.split("::", 1)[0] for p in [*SHARED_RUNS, *FIRST] if p.startswith("tests/")} | set(SPLIT_MODULES)
    )
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *modules],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-2000:]
    collected = [line for line in out.stdout.splitlines() if "::" in line]
    assert [p for p in SHARED_RUNS if not any(n.startswith(p) for n in collected)] == []
    assert [u for u in FIRST if u not in {unit_of(n) for n in collected}] == []
    assert {unit_of(n) for n in collected if "_slow.py" in n} >= {"IOI's default runs", "CCC's default runs"}
