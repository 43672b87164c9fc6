"""Tasks own their behaviour: the registry answers what code used to ask by comparing names,
and a task defined here, in a test file alone, is a task like the built-in ones."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from actscale.engine.config import TrainConfig
from actscale.engine.tasks import IOI_TEMPLATES, Example
from actscale.engine.tasks.registry import TASK_FIELDS, TASK_REGISTRY, TaskSpec, task_spec
from actscale.errors import ActscaleError
from actscale.runs.api import task_examples

ROOT = Path(__file__).resolve().parents[1]


def test_the_built_in_tasks_and_what_each_reads():
    assert list(TASK_REGISTRY) == ["ioi", "ccc", "custom"]
    assert {n: (t.from_file, t.default_positions, t.fields) for n, t in TASK_REGISTRY.items()} == {
        "ioi": (False, "absolute", ("templates", "test_templates", "n_prompts", "n_test")),
        "ccc": (False, "absolute", ("memory_is_correct", "n_prompts", "n_test")),
        "custom": (True, "answer", ("test_frac",)),
    }


def test_an_unknown_task_is_one_line():
    with pytest.raises(ActscaleError, match=r"^unknown task 'qa': choose from ioi, ccc, custom$"):
        task_spec("qa")
    with pytest.raises(ActscaleError, match=r"^unknown task 'qa': choose from ioi, ccc, custom$"):
        TrainConfig(task="qa")


def test_another_tasks_fields_are_reset_so_the_run_id_ignores_them():
    ccc = TrainConfig(
        task="ccc", templates=("ioi-0",), test_templates=("ioi-1",), test_frac=0.5, memory_is_correct=False
    )
    assert (ccc.templates, ccc.test_templates, ccc.test_frac, ccc.memory_is_correct) == ((), (), 0.2, False)
    ioi = TrainConfig(task="ioi", memory_is_correct=False, templates=("ioi-1", "ioi-0"))
    assert (ioi.memory_is_correct, ioi.templates) == (True, ("ioi-1", "ioi-0"))
    assert TrainConfig(task="ioi", templates=tuple(IOI_TEMPLATES)).templates == ()


def test_a_file_task_needs_its_file(tmp_path):
    with pytest.raises(ActscaleError, match=r"^the custom task needs a dataset file \(--dataset FILE\)$"):
        TrainConfig(task="custom")
    data = tmp_path / "d.csv"
    data.write_text("prompt,correct,wrong\nThe sky is,blue,green\n")
    config = TrainConfig(task="custom", dataset=str(data), n_prompts=7, n_test=3)
    assert (config.positions, config.n_prompts, config.n_test) == ("answer", 48, 200)
    assert [e.prompt for e in task_spec("custom").file_examples(config) or []] == ["The sky is"]
    assert task_spec("ioi").file_examples(TrainConfig()) is None


def test_a_task_defined_in_a_test_file_alone(monkeypatch):
    def draw(config: TrainConfig, oversample: int) -> list[Example]:
        n = oversample * config.n_prompts
        return [Example(prompt=f"Count: {i}", correct=" one", wrong=" two") for i in range(n)]

    monkeypatch.setitem(TASK_REGISTRY, "count", TaskSpec("count", "Counting", False, ("n_prompts",), draw))
    config = TrainConfig(task="count", n_prompts=5, n_test=9, memory_is_correct=False)
    # its own fields kept, every other task's at their defaults
    assert (config.n_prompts, config.n_test, config.memory_is_correct, config.positions) == (5, 200, True, "absolute")
    assert [e.prompt for e in task_examples(config)] == [f"Count: {i}" for i in range(5)]
    assert len(task_examples(config, oversample=2)) == 10
    assert set(TASK_FIELDS) >= set(TASK_REGISTRY["count"].fields)


def test_no_code_outside_the_registry_compares_a_task_name():
    pattern = re.compile(r"""task\W{0,3}\s*[!=]=\s*["']|["'](ioi|ccc|custom)["']\s*[!=]=\s*\w*task""")
    files = [*ROOT.joinpath("actscale").rglob("*.py"), *ROOT.joinpath("app_pages").glob("*.py"), ROOT / "app.py"]
    assert len(files) > 50
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in files
        if path.name != "registry.py" or path.parent.name != "tasks"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []
    assert pattern.search('if cfg.get("task") == "custom":') and pattern.search('if config.task != "ioi":')
