"""How `make test` shares the suite between its pytest-xdist workers (`--dist loadgroup`).

A unit of work runs whole in one worker. Each test module is one unit, so its module-scoped
fixtures (a trained tiny run, a Streamlit server, a Ray cluster) are built once. The real model's
slow modules are cut by the run they share instead: the tests that train or read one of the
default runs in the session's store (conftest's `bundled_run`) form one unit, so that run is
trained in one worker, and every other slow test is a unit of its own. The heaviest units go
first, so that the workers finish close together.

xdist's own grouping (`xdist_group` marks) renames each test's `_nodeid`, which pytest 9 no
longer reads; this scheduler groups by the node ids themselves. A node id that no rule below
names is scheduled with its module, which costs time and never correctness;
tests/test_scheduling.py checks that every rule still names a collected test.
"""

from __future__ import annotations

from xdist.scheduler import LoadScopeScheduling

# Modules cut into units by the rules below rather than run whole.
SPLIT_MODULES = ("tests/test_bundled_slow.py", "tests/test_checks_slow.py")

# Node-id prefixes of the tests that share one of the default runs, and the unit they form.
SHARED_RUNS = {
    "tests/test_bundled_slow.py::test_flip_targets_on_held_out_prompts[ioi-activscalar-": "IOI's default runs",
    "tests/test_bundled_slow.py::test_flip_targets_on_held_out_prompts[ioi-steervec-": "IOI's default runs",
    "tests/test_bundled_slow.py::test_diffmean_and_the_floor_share_the_default_runs_split[ioi]": "IOI's default runs",
    "tests/test_checks_slow.py::test_default_ioi_activscalar_map_is_sparse_and_": "IOI's default runs",
    "tests/test_checks_slow.py::test_analyse_with_three_seeds_": "IOI's default runs",
    "tests/test_bundled_slow.py::test_flip_targets_on_held_out_prompts[ccc-": "CCC's default runs",
    "tests/test_bundled_slow.py::test_diffmean_and_the_floor_share_the_default_runs_split[ccc]": "CCC's default runs",
}

# The heaviest units, heaviest first (minutes each on one core; docs/measured.md, "The suite in
# two workers"); the others follow in the order pytest collected them. A worker is handed its
# next unit while its last two tests run, so a heavy unit may wait behind a long test.
FIRST = (
    "IOI's default runs",
    "CCC's default runs",
    "tests/test_executors.py",
    "tests/test_alignment.py",
    "tests/test_checks_slow.py::test_dynscalar_generalisation_matrix_over_ioi_families_and_side_effects",
    "tests/test_bundled_slow.py::test_flip_targets_on_held_out_prompts[ioi-dynscalar-test_groups4-None]",
    "tests/test_second_family.py",  # where Gemma 3 270M is installed (`make second-model`)
    "tests/test_e2e_browser.py",
    "tests/test_e2e_present.py",
)


def unit_of(nodeid: str) -> str:
    """The unit of work that the test ``nodeid`` runs in."""
    for prefix, unit in SHARED_RUNS.items():
        if nodeid.startswith(prefix):
            return unit
    module = nodeid.split("::", 1)[0]
    return nodeid if module in SPLIT_MODULES else module


def heaviest_first(units: list[str]) -> list[str]:
    """``units`` (in collection order) with those named in ``FIRST`` moved ahead, in its order."""
    rank = {unit: i for i, unit in enumerate(FIRST)}
    return sorted(units, key=lambda unit: rank.get(unit, len(FIRST)))


class SuiteScheduling(LoadScopeScheduling):
    """xdist's scope scheduling with `unit_of` as the scope, the units of ``FIRST`` first and the
    others in collection order."""

    def __init__(self, config, log=None) -> None:
        super().__init__(config, log)
        config.option.loadscopereorder = False  # xdist's own order: most tests first

    def _split_scope(self, nodeid: str) -> str:
        return unit_of(nodeid)

    def _assign_work_unit(self, node) -> None:
        waiting = heaviest_first(list(self.workqueue))
        self.workqueue.move_to_end(waiting[0], last=False)
        super()._assign_work_unit(node)
