"""One description of the config's fields (`engine.config_fields`): the command line's options,
the Train form's widgets and the config's range checks all come from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from actscale.cli.parser import build_parser, config_fields_of
from actscale.engine.config import TrainConfig
from actscale.engine.config_fields import CONFIG_FIELDS, NUMBER_FIELDS
from actscale.errors import ActscaleError
from actscale.ui.train_form.widgets import JS_MAX_INT, number_range

ROOT = Path(__file__).resolve().parents[1]


def test_every_config_field_is_described_once():
    assert list(CONFIG_FIELDS) == [spec.name for spec in CONFIG_FIELDS.values()]
    assert sorted(CONFIG_FIELDS) == sorted(f.name for f in dataclasses.fields(TrainConfig))


def _run_options(command: str) -> dict:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # noqa: SLF001 - argparse keeps subparsers here
    return {a.dest: a for a in sub.choices[command]._actions}  # noqa: SLF001


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_each_field_has_one_option_with_its_description(command):
    options = _run_options(command)
    for name, spec in CONFIG_FIELDS.items():
        action = options[name]
        flag = spec.sweep_flag if command == "sweep" and spec.sweep_flag else spec.cli_flag
        assert action.option_strings == [flag]
        assert spec.help in action.help, name
        if spec.kind == "choice":
            assert tuple(action.choices) == spec.choices
    assert set(options) - set(CONFIG_FIELDS) == (
        {"help", "store", "no_reuse"} | ({"executor", "ray_address", "workers"} if command == "sweep" else set())
    )


def test_every_option_given_reaches_the_config():
    argv = (
        "train --model tiny-llama --task ioi --method steervec --sites head,mlp_out --device cpu --steps 7 "
        "--lr 0.02 --batch-size 3 --schedule constant --cycles 3 --target 0.8 --early-stop 2 --margin 1.5 "
        "--lambda-f 0.5 "
        "--lambda-m 0.01 --tau 0.1 --seed 4 --n-prompts 24 --n-test 30 --test-frac 0.3 --val-frac 0.25 "
        "--data-seed 9 --dataset x.csv --templates a,b --test-templates b --test-groups g1,g2 "
        "--ccc-context-is-correct --prepend-bos no --positions answer --autocast bf16 --raw-dot"
    ).split()
    assert config_fields_of(build_parser().parse_args(argv)) == {
        "model": "tiny-llama",
        "task": "ioi",
        "method": "steervec",
        "sites": ("head", "mlp_out"),
        "device": "cpu",
        "steps": 7,
        "lr": 0.02,
        "batch_size": 3,
        "schedule": "constant",
        "cycles": 3,
        "target": 0.8,
        "early_stop": 2,
        "margin": 1.5,
        "lambda_f": 0.5,
        "lambda_m": 0.01,
        "tau": 0.1,
        "seed": 4,
        "n_prompts": 24,
        "n_test": 30,
        "test_frac": 0.3,
        "val_frac": 0.25,
        "data_seed": 9,
        "dataset": "x.csv",
        "templates": ("a", "b"),
        "test_templates": ("b",),
        "test_groups": ("g1", "g2"),
        "memory_is_correct": False,
        "prepend_bos": False,
        "positions": "answer",
        "autocast": "bf16",
        "normalize": False,
    }


def test_no_option_given_is_the_default_config():
    fields = config_fields_of(build_parser().parse_args(["train"]))
    assert TrainConfig(**fields) == TrainConfig()
    assert fields["prepend_bos"] is None and fields["steps"] is None and fields["memory_is_correct"] is True


def _just_outside(name: str) -> dict:
    spec = CONFIG_FIELDS[name]
    value = spec.high + (0 if spec.high_open else 1)
    return {name: int(value) if spec.kind == "int" else float(value)}


# A file's task: test_frac splits its prompts (the generated tasks ignore it, and a file ignores
# n_prompts and n_test).
A_FILE = {"task": "custom", "dataset": "d.csv"}


def _task_using(name: str) -> dict:
    return A_FILE if name == "test_frac" else {}


@pytest.mark.parametrize("name", NUMBER_FIELDS)
def test_each_number_is_refused_past_its_described_range(name):
    with pytest.raises(ActscaleError) as info:
        TrainConfig(**_task_using(name), **_just_outside(name))
    assert str(info.value) == CONFIG_FIELDS[name].range_error()
    # ...and just inside its range it is accepted (a fraction with the other at 0, so they sum below 1)
    spec = CONFIG_FIELDS[name]
    inside = spec.high - (1 if spec.kind == "int" and spec.high_open else 0.01 if spec.high_open else 0)
    others = {"val_frac": 0.0} if name == "test_frac" else {"test_frac": 0.0} if name == "val_frac" else {}
    assert getattr(TrainConfig(**_task_using(name), **{name: inside}, **others), name) == inside


def test_the_fractions_sum_below_one_only_where_the_test_fraction_is_used():
    with pytest.raises(ActscaleError, match="test_frac [+] val_frac must be below 1"):
        TrainConfig(**A_FILE, test_frac=0.2, val_frac=0.8)
    assert TrainConfig(task="ioi", val_frac=0.8).val_frac == 0.8  # IOI draws its test prompts apart


def test_range_errors_read_as_before():
    assert CONFIG_FIELDS["lr"].range_error() == "the learning rate must be a number in (0, 10]"
    assert CONFIG_FIELDS["lambda_m"].range_error() == "lambda_m must be a number in [0, 1e6]"
    assert CONFIG_FIELDS["batch_size"].range_error() == "batch size must be between 1 and 100,000"
    assert CONFIG_FIELDS["val_frac"].range_error() == "val_frac must be a number in [0, 1)"
    assert CONFIG_FIELDS["data_seed"].range_error() == "seeds must be integers in [0, 2^63)"


def test_the_form_offers_each_number_in_its_described_range(monkeypatch, tmp_path):
    assert number_range(CONFIG_FIELDS["lr"]) == (1e-6, 10.0)
    assert number_range(CONFIG_FIELDS["val_frac"]) == (0.0, 0.95)
    assert number_range(CONFIG_FIELDS["seed"]) == (0, JS_MAX_INT)
    monkeypatch.setenv("ACTSCALE_MODEL", "tiny-llama")
    monkeypatch.setenv("ACTSCALE_STORE", str(tmp_path / "runs"))
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["model_name"] = "tiny-llama"
    at.session_state["device"] = "cpu"
    at.run()
    at = at.switch_page("app_pages/1_Train.py").run()
    by_label = {spec.label: spec for spec in CONFIG_FIELDS.values()}
    shown = {w.label: (w.min, w.max) for w in at.number_input}
    expected = {label: number_range(by_label[label]) for label in shown}
    assert shown == expected and len(shown) == 15  # every number but the test fraction (a file's only)
    schedule = next(w for w in at.selectbox if w.label == CONFIG_FIELDS["schedule"].label)
    assert schedule.options == ["cosine", "constant"] and schedule.help.startswith("Cosine: decays to 0")


def test_options_a_config_does_not_read_are_named_with_why():
    """`--templates` for CCC, `--target` with `--steps` (one cycle), `--raw-dot` for ActivScalar
    and DiffMean's optimiser options had been dropped without a word."""

    def ignored(*argv: str) -> list[tuple[str, str]]:
        asked = config_fields_of(build_parser().parse_args(["train", *argv]))
        return TrainConfig(**asked).ignored(asked)

    assert ignored() == [] and ignored("--steps", "5") == []
    assert ignored("--task", "ccc", "--templates", "ioi-0", "--target", "0.8") == [
        ("templates", "the ccc task does not read it")
    ]
    assert ignored("--steps", "5", "--target", "0.8", "--raw-dot") == [
        ("normalize", "the activscalar method has no such option"),
        ("target", "a run of one cycle has no target (the steps given are the run; give --cycles)"),
    ]
    fitted = "the diffmean method is fitted, not trained"
    assert ignored("--method", "diffmean", "--steps", "5", "--margin", "3", "--schedule", "constant") == [
        ("margin", fitted),
        ("schedule", fitted),
        ("steps", fitted),
    ]


def test_the_commands_say_which_options_they_ignore(tmp_path, capsys, monkeypatch):
    """A sweep's margins for DiffMean (fitted: no margin) are one run, and the command says why."""
    from actscale.cli import main

    monkeypatch.delenv("ACTSCALE_RAY_ADDRESS", raising=False)
    argv = ["sweep", "--model", "tiny-llama", "--method", "diffmean", "--margin", "2,3", "--store", str(tmp_path)]
    assert main(argv) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == [
        "note: --margin is ignored: the diffmean method is fitted, not trained",
        "sweep of 1 run in this process ...",
    ]
    assert len(list(tmp_path.iterdir())) == 1
