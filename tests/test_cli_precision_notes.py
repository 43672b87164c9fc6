"""The command line's notes where bfloat16 autocast is asked of a device that only emulates it
(actscale.cli.precision): `train` before it trains, `eval` and `analyse` of a bf16 run before
their passes; none where bf16 is native or not asked."""

from __future__ import annotations

import json

import pytest

TRAIN_NOTE = (
    "note: --autocast bf16 on {device}, {said}: PyTorch emulates bfloat16 there, and a training step takes many "
    "times as long as in float32 (about 20 times on a 2-core AVX2 CPU, docs/measured.md); --autocast off (the "
    "default) trains in float32\n"
)


PASS_NOTE = (
    "note: {what} on cpu, a CPU without AVX512-BF16 or AMX: PyTorch emulates bfloat16 there, and a pass takes "
    "several times as long as in float32 (6–7 times on a 2-core AVX2 CPU, docs/measured.md){instead}\n"
)


@pytest.mark.parametrize(
    ("autocast", "device", "native", "said"),
    [
        ("bf16", "cpu", False, "a CPU without AVX512-BF16 or AMX"),
        ("bf16", "cuda:0", False, "a GPU without bf16 support"),
        ("bf16", "cpu", True, None),
        ("bf16", "mps", False, None),
        ("off", "cpu", False, None),
        ("auto", "cpu", False, None),
    ],
)
def test_train_says_where_bf16_autocast_is_emulated(monkeypatch, capsys, autocast, device, native, said):
    """`--autocast bf16` on a device without native bfloat16 trains, after one note (20 times
    slower a step on the AVX2-only CPU: docs/measured.md); nothing is said anywhere else."""
    import actscale.engine.models as models
    from actscale.cli.precision import say_emulated_training
    from actscale.engine.training import TrainConfig

    monkeypatch.setattr(models, "native_bf16", lambda _device: native)
    say_emulated_training(TrainConfig(autocast=autocast), device)
    assert capsys.readouterr().err == ("" if said is None else TRAIN_NOTE.format(device=device, said=said))


def test_eval_and_analyse_of_a_bf16_run_say_where_bf16_is_emulated(monkeypatch, capsys, tmp_path):
    """A run trained under bf16 autocast is evaluated and checked in it (the run's precision):
    where the CPU emulates bfloat16, each command says so once; analyse names the option that
    runs its passes in float32, and with it says nothing."""
    import actscale.engine.models as models
    from actscale.cli import main

    common = ["--model", "tiny-llama", "--steps", "2", "--n-prompts", "8", "--n-test", "4", "--store", str(tmp_path)]
    assert main(["train", *common, "--autocast", "bf16", "--device", "cpu"]) == 0
    run_id = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_id"]
    monkeypatch.setattr(models, "native_bf16", lambda _device: False)
    store = ["--store", str(tmp_path), "--device", "cpu"]
    assert main(["eval", "--run", run_id, *store]) == 0
    what = f"run {run_id}'s passes (it was trained under bfloat16 autocast)"
    assert capsys.readouterr().err.splitlines()[0] + "\n" == PASS_NOTE.format(what=what, instead="")
    checks = ["analyse", "--run", run_id, *store, "--prompts", "4", "--draws", "1", "--no-side-effects"]
    assert main(checks) == 0
    instead = "; --precision float32 runs them in float32"
    expected = PASS_NOTE.format(what="the checks' passes (--precision run)", instead=instead)
    assert capsys.readouterr().err.splitlines()[0] + "\n" == expected
    assert main([*checks, "--precision", "float32"]) == 0
    assert not capsys.readouterr().err.startswith("note:")
