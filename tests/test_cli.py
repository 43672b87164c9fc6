"""`python -m actscale` in a subprocess: the JSON last line and the exit statuses (docs/interfaces.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from actscale.engine.objective import METRIC_NAMES
from actscale.runs.records import SplitMetrics
from actscale.views.analysis import flips_text, rate_text

METRICS = set(METRIC_NAMES)  # every metric of docs/method.md §4
LOADING = "loading model tiny-llama ..."
TRAIN = ["train", "--model", "tiny-llama", "--device", "cpu", "--steps", "3", "--n-prompts", "16", "--n-test", "8"]

# name: (arguments after TRAIN's "train", file to write, the exact stderr lines)
# TRAIN's generated-task sizes, which a file's task does not read: said, not dropped unsaid.
FILE_NOTES = [f"note: --{name} is ignored: the custom task does not read it" for name in ("n-prompts", "n-test")]
BAD_INPUTS = {
    "learning rate out of range": (["--lr", "1e38"], None, ["error: the learning rate must be a number in (0, 10]"]),
    "negative margin": (["--margin", "-1"], None, ["error: the margin must be a number in [0, 1000]"]),
    "no prompt left to train on": (["--val-frac", "1"], None, ["error: val_frac must be a number in [0, 1)"]),
    "unknown model": (
        ["--model", "no-such-org/no-such-model-xyz"],
        None,
        [
            "loading model no-such-org/no-such-model-xyz ...",
            "error: model 'no-such-org/no-such-model-xyz' is not in the local Hugging Face cache and the hub cannot "
            "be reached (no network); use --model bundled, a local folder, or connect to the network",
        ],
    ),
    "malformed dataset": (
        ["--task", "custom", "--dataset", "bad.jsonl"],
        ("bad.jsonl", '{"prompt": "a", "correct": " b"\n'),
        [*FILE_NOTES, "error: bad.jsonl: malformed JSON on line 1: Expecting ',' delimiter"],
    ),  # before the model load
    "multi-token answers only": (
        ["--task", "custom", "--dataset", "multi.csv"],
        (
            "multi.csv",
            "prompt,correct,wrong\nWhen Mary went to the store she met, New York, Paris\n"
            "The capital is, Los Angeles, Rome\n",
        ),
        [*FILE_NOTES, LOADING, "error: no usable prompts: 2 multi-token answer"],
    ),
    "empty dataset": (
        ["--task", "custom", "--dataset", "empty.csv"],
        ("empty.csv", ""),
        [*FILE_NOTES, "error: empty.csv: file is empty"],
    ),
    "unknown site": (
        ["--sites", "attn_out,mlp"],
        None,
        ["error: unknown site(s) mlp: choose from attn_out, mlp_out, head, resid_post"],
    ),
    # before the model load (the prompts are drawn first); a template listed twice had been drawn twice as often
    "template listed twice": (
        ["--templates", "ioi-0,ioi-1,ioi-0"],
        None,
        ["error: template listed twice in ioi-0,ioi-1,ioi-0"],
    ),
    "unknown family": (
        ["--test-groups", "nofamily"],
        None,
        ["error: unknown IOI family nofamily; known: subordinate, two-sentences, coordinated, scene-first"],
    ),
    "bad argument value": (
        ["--steps", "abc"],
        None,
        ["error: argument --steps: invalid int value: 'abc' (see `python -m actscale train --help`)"],
    ),
}


def cli(args: list[str], cwd) -> subprocess.CompletedProcess:
    # One thread: tiny models gain nothing from two, and the processes share 2 cores.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("ACTSCALE_STORE", None)
    return subprocess.run(
        [sys.executable, "-m", "actscale", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every command of this module as its own process, three at a time (each pays for
    importing torch): the training and the bad inputs, then eval and list on the bundle."""
    root = tmp_path_factory.mktemp("cli")
    store = str(root / "runs")
    jobs = {
        "train": TRAIN + ["--store", store],
        # one step a cycle, two cycles, every validation prompt wanted: a target the tiny model misses
        "unmet": [*TRAIN[:-4], "--steps", "1", "--cycles", "2", "--target", "1", "--n-prompts", "16", "--n-test", "8"]
        + ["--store", str(root / "other-runs")],  # a store of its own: `list` reads the first
    }
    for name, (args, file, _) in BAD_INPUTS.items():
        if file:
            (root / file[0]).write_text(file[1])
        jobs[name] = TRAIN + args + ["--store", store]
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(cli, args, root) for name, args in jobs.items()}
        done = {name: f.result() for name, f in futures.items()}
        bundle = last_json(done["train"])["bundle"]
        own = (Path(bundle) / "dataset.jsonl").read_text().splitlines()
        long = {"prompt": " ".join(["Mary"] * 40), "correct": " Mary", "wrong": " John"}
        (root / "other.jsonl").write_text("\n".join([*own, json.dumps(long)]) + "\n")
        followups = {
            "eval": ["eval", "--run", bundle, "--device", "cpu"],
            "eval_file": ["eval", "--run", bundle, "--device", "cpu", "--dataset", str(root / "other.jsonl")],
            "list": ["list", "--store", store],
        }
        futures = {name: pool.submit(cli, args, root) for name, args in followups.items()}
        done.update({name: f.result() for name, f in futures.items()})
    return done


def test_a_missed_target_is_said_on_stderr_with_what_to_try(runs):
    out = last_json(runs["unmet"])
    val = out["metrics"]["val"]
    assert out["target"] == {
        "target": 1.0,
        "split": "val",
        "n": val["n_prompts"],
        "flip_acc_pos": val["flip_acc_pos"],
        "flip_acc_neg": val["flip_acc_neg"],
        "met": False,
        "cycles_run": 2,
        "cycles": 2,
        "steps": 1,
    }
    assert runs["unmet"].stderr.splitlines()[-1] == (
        f"Validation target not reached: after 2 steps (2 cycles of 1) the {val['n_prompts']} validation prompts "
        f"flip {val['flip_acc_pos']:.2f} at β = +1 and {val['flip_acc_neg']:.2f} at β = −1, where the target is "
        "1.00 in both directions; try more cycles, a higher learning rate (now 0.1) or more training prompts."
    )


def test_train_prints_the_json_contract(runs):
    out = last_json(runs["train"])
    assert set(out) == {"run_id", "bundle", "method", "n_params", "metrics", "target", "timing"}
    assert {"load_s", "task_s", "run_s"} <= set(out["timing"]) and all(v >= 0 for v in out["timing"].values())
    assert out["method"] == "activscalar" and out["n_params"] == 2 * 2 * 16  # |S|·L·I on tiny-llama
    assert out["bundle"].endswith(out["run_id"]) and os.path.isfile(os.path.join(out["bundle"], "params.safetensors"))
    assert set(out["metrics"]) == {"train", "val", "test"}
    for split in out["metrics"].values():
        assert set(split) == METRICS
    stderr = runs["train"].stderr.splitlines()
    assert stderr[0] == LOADING and stderr[1].startswith("kept ")
    assert [line.split()[1] for line in stderr[2:5]] == ["1/3", "2/3", "3/3"]  # progress to stderr
    # Then the first result, the validation prompts' flip rates, before the other prompts' evaluation.
    val = out["metrics"]["val"]
    read = SplitMetrics.from_json(val)
    # --steps given: one cycle of 3 steps, with no target to judge.
    assert out["target"] is None
    # The tiny model never flips the validation prompts both ways, so no step reached the target.
    assert stderr[5:] == [
        f"trained: validation flips: β = +1 {rate_text(read, 'flip_acc_pos')}, β = -1 "
        f"{rate_text(read, 'flip_acc_neg')}; evaluating the other prompts ..."
    ]
    assert stderr[5].startswith(f"trained: validation flips: β = +1 {val['acc_base']:.2f} → ")
    assert "target_step" not in out["timing"] and "target_s" not in out["timing"]


def test_eval_on_a_file_evaluates_every_usable_row_and_says_what_it_dropped(runs, tmp_path):
    out, trained = last_json(runs["eval_file"]), last_json(runs["train"])
    n = sum(m["n_prompts"] for m in trained["metrics"].values())
    assert n == 24 and set(out["metrics"]) == {"dataset"} and out["metrics"]["dataset"]["n_prompts"] == n
    dropped = "dropped 1: 1 longer than the run's 16 positions"
    assert {k: v for k, v in out["dataset"].items() if k != "path"} == {"rows": 25, "evaluated": 24, "dropped": dropped}
    read = SplitMetrics.from_json(out["metrics"]["dataset"])
    assert runs["eval_file"].stderr.splitlines()[-2:] == [
        f"{out['dataset']['path']}: evaluated 24 of 25 rows; {dropped}",
        f"evaluated: dataset flips: β = +1 {rate_text(read, 'flip_acc_pos')}, β = -1 {rate_text(read, 'flip_acc_neg')}",
    ]


def test_eval_prints_the_same_metrics(runs):
    trained, evaluated = last_json(runs["train"]), last_json(runs["eval"])
    assert evaluated["run_id"] == trained["run_id"] and evaluated["beta"] == 1.0
    assert set(evaluated["metrics"]) == {"train", "val", "test"}
    # and says so on stderr, a line a split, each rate after its base with its interval and n
    said = {"train": "training", "val": "validation", "test": "test"}
    assert runs["eval"].stderr.splitlines() == [
        f"evaluated: {said[split]} flips: β = +1 {rate_text(read, 'flip_acc_pos')}, β = -1 "
        + rate_text(read, "flip_acc_neg")
        for split in ("train", "val", "test")
        for read in [SplitMetrics.from_json(evaluated["metrics"][split])]
    ]
    for split, metrics in trained["metrics"].items():
        assert set(evaluated["metrics"][split]) == METRICS
        for name, value in metrics.items():
            assert evaluated["metrics"][split][name] == pytest.approx(value, abs=1e-6)


def test_list(runs):
    out = last_json(runs["list"])
    (run,) = out["runs"]
    assert out["store"].endswith("runs")
    assert run["run_id"] == last_json(runs["train"])["run_id"] and run["ok"] is True
    assert (run["model"], run["task"], run["method"]) == ("tiny-llama", "ioi", "activscalar")
    assert run["test"] == last_json(runs["train"])["metrics"]["test"]
    # the line a person reads names the run's test flips after their base, as eval's does
    flips = flips_text("test", SplitMetrics.from_json(run["test"]), minus="-")
    assert flips.startswith("test flips: β = +1 ") and " → " in flips
    assert runs["list"].stderr == f"{run['run_id']}  tiny-llama  ioi  activscalar  {run['created']}  {flips}\n"


def test_list_says_where_there_are_no_runs_and_refuses_a_file(tmp_path, capsys):
    """A mistyped store had listed nothing without a word, and a file as the store had been an
    empty store."""
    from actscale.cli import main

    missing, empty, afile = tmp_path / "nope", tmp_path / "empty", tmp_path / "notes.txt"
    empty.mkdir()
    afile.write_text("x")
    said = []
    for store in (missing, empty, afile):
        status = main(["list", "--store", str(store)])
        said.append((status, *capsys.readouterr()))
    assert said == [
        (0, json.dumps({"runs": [], "store": str(missing)}) + "\n", f"no runs: there is no folder {missing}\n"),
        (0, json.dumps({"runs": [], "store": str(empty)}) + "\n", f"no runs in {empty}\n"),
        (2, "", f"error: the run store {afile} is a file, not a folder of runs\n"),
    ]


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line(runs, name):
    proc, expected = runs[name], BAD_INPUTS[name][2]
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    # The message is one line; only a progress line ("loading model ...") may come before it.
    assert proc.stderr.splitlines() == expected


def test_unexpected_error_exits_1_with_one_line(monkeypatch, capsys):
    from actscale import cli as cli_module

    def broken(args):
        raise RuntimeError("disk\non fire")

    monkeypatch.setattr(cli_module, "cmd_list", broken)
    assert cli_module.main(["list"]) == 1
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "error: RuntimeError: disk on fire\n")


def test_the_program_ends_with_its_objects_out_of_the_collectors_reach(monkeypatch, tmp_path):
    """``python -m actscale`` and the ``actscale`` script go through `cli.run`: main's status,
    and every object alive then frozen (`gc.freeze`), so that the interpreter's shutdown does not
    walk a loaded model's objects; `main` alone leaves the collector as it was."""
    import gc
    import runpy

    import tomllib

    from actscale import cli as cli_module

    monkeypatch.setattr(cli_module, "main", lambda argv=None: 2)
    gc.unfreeze()
    try:
        with pytest.raises(SystemExit) as ended:
            runpy.run_module("actscale", run_name="__main__")
        assert (ended.value.code, gc.get_freeze_count() > 0) == (2, True)
        gc.unfreeze()
        monkeypatch.undo()
        assert (cli_module.main(["list", "--store", str(tmp_path)]), gc.get_freeze_count()) == (0, 0)
    finally:
        gc.unfreeze()
    scripts = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"actscale": "actscale.cli:run"}


HEAVY = ("torch", "transformer_lens", "transformers", "numpy", "pandas", "safetensors", "streamlit")


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["sweep", "--help"], ["analyse", "--help"]])
def test_help_answers_without_loading_torch(argv):
    """`import actscale` and the parser read names and defaults only: --help loads none of the
    heavy libraries (a new interpreter; this one has them loaded)."""
    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['actscale', *{argv!r}]\n"
        "try:\n    runpy.run_module('actscale', run_name='__main__')\n"
        "except SystemExit as e:\n    code = e.code\n"
        f"print(code, sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "0 []"
    assert "usage: python -m actscale" in done.stdout


RANGE = "beta must be a number in [0, 1000] (+beta and -beta are both evaluated)"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nan", f"{RANGE}, got nan"),
        ("inf", f"{RANGE}, got inf"),
        ("-1", f"{RANGE}, got -1.0"),  # both directions are evaluated: a sign would only name them twice
        ("1000.5", f"{RANGE}, got 1000.5"),
        ("x", "invalid float value: 'x'"),
    ],
)
def test_eval_refuses_a_beta_out_of_range_before_anything_loads(capsys, value, message):
    """A NaN or infinite β steered every logit to NaN and printed "β = +nan … → 0.00" as if
    measured, and ``--beta -2`` printed "β = +-2" for what it evaluated at ±2."""
    from actscale import cli as cli_module

    with pytest.raises(SystemExit) as ended:
        cli_module.main(["eval", "--run", "0" * 16, f"--beta={value}"])
    usage = "(see `python -m actscale eval --help`)"
    assert (ended.value.code, capsys.readouterr().err) == (2, f"error: argument --beta: {message} {usage}\n")
    args = cli_module.build_parser().parse_args(["eval", "--run", "0" * 16, "--beta", "1000"])
    assert args.beta == 1000.0 and cli_module.build_parser().parse_args(["eval", "--run", "r"]).beta == 1.0


def test_an_unknown_method_is_one_line_and_status_2(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "actscale", "train", "--method", "lora", "--store", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    expected = "error: unknown method 'lora': choose from activscalar, steervec, dynscalar, diffmean\n"
    assert (done.returncode, done.stderr) == (2, expected)
    assert list(tmp_path.iterdir()) == []


def test_train_prints_the_step_that_reached_the_target(capsys):
    """A run of the default steps (a target, cycles) that meets it while training says so on stderr."""
    import threading

    from actscale.cli.commands import _TrainObserver

    observer = _TrainObserver(threading.Event())
    assert observer.watches_target
    observer.target_reached(
        4,
        "val",
        {"acc_base": 0.8, "flip_acc_pos": 1.0, "flip_acc_pos_ci95": [0.72, 1.0], "n_prompts": 10,
         "flip_acc_neg": 0.9, "flip_acc_neg_ci95": [0.6, 0.98]},
    )  # fmt: skip
    assert capsys.readouterr().err == (
        "step 4: the target reached, validation flips: β = +1 0.80 → 1.00 [0.72, 1.00] (n = 10), β = -1 0.20 → 0.90 "
        "[0.60, 0.98] (n = 10); training on for faithfulness and minimality ...\n"
    )
