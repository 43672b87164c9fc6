"""Train page through Streamlit's AppTest, on the tiny test model: the preview, a real
background training, reuse of a stored run, Cancel, and one-line errors (the live panel and its
status line: test_page_train_progress)."""

from __future__ import annotations

import re

import pytest
from conftest import mixed_rows, svg_images
from train_page_helpers import ROOT, button, held_after_the_first_step, number, train_page

from actscale.engine.training import TrainConfig
from actscale.runs.store import RunStore


def test_train_smoke(train_store):
    at = train_page()
    assert not at.exception and not at.error
    assert at.title[0].value == "Train"
    assert any("Loaded model: tiny-llama" in c.value for c in at.caption)
    # The validation preview: one row per prompt with tokens, Δ and the prediction.
    preview = at.dataframe[0].value
    assert {"prompt", "tokens", "delta_base", "picks", "prediction", "split"} <= set(preview.columns)
    n = TrainConfig().n_prompts + TrainConfig().n_test  # the page's defaults: 48 to train and validate, 200 to test
    assert len(preview) == n == 248
    assert preview["split"].value_counts().to_dict() == {"test": 200, "train": 38, "val": 10}
    assert any(f"kept {n} of {n} prompts" in m.value for m in at.markdown)
    # each prompt's group, and how the groups fall into the splits (IOI's prompts split one by one)
    families = {f: set(preview[preview["group"] == f]["split"]) for f in preview["group"].unique()}
    assert {split for splits in families.values() for split in splits} == {"train", "val", "test"}
    shared = f"{len(families)} groups: " + ", ".join(
        f"{sum(s in splits for splits in families.values())} in {s}" for s in ("train", "val", "test")
    )
    assert f"{shared}; test shares groups with training." in [c.value for c in at.caption]
    # Every hyperparameter of TrainConfig is in the form.
    labels = {w.label.split(" (")[0] for w in at.number_input}
    assert {
        "Steps",
        "Learning rate",
        "Batch size",
        "Margin m",
        "λ_F",
        "λ_M",
        "τ",
        "Early stop after",
        "Seed",
        "Train + validation prompts",
        "Test prompts",
        "Data seed",
    } <= labels
    # an optional field left empty says what that means
    empty = {label: number(at, label).proto.placeholder for label in ("Steps", "Cycles", "Data seed")}
    assert empty == {"Steps": "method default", "Cycles": "4, or 1 with steps given", "Data seed": "the seed"}
    assert at.multiselect(key="train_methods").value == ["activscalar"]
    assert "Train" in [b.label for b in at.button]
    # The precision: float32 by default on every machine; "auto" and bf16 say what they mean here.
    from actscale.engine.models import native_bf16

    precision = next(w for w in at.selectbox if w.label == "Frozen model's precision")
    here = "native here: faster" if native_bf16("cpu") else "emulated here: many times slower"
    assert precision.value == "off"
    assert precision.options == ["auto: float32 here", "float32", f"bfloat16 autocast ({here})"]


def test_preview_follows_the_dataset_choices(train_store):
    at = train_page()
    at.number_input(key="train_n_prompts").set_value(10)
    at.number_input(key="train_n_test").set_value(6).run()
    assert len(at.dataframe[0].value) == 16
    at.radio(key="train_task").set_value("ccc").run()
    assert not at.exception and not at.error
    assert at.dataframe[0].value["prompt"].str.startswith("The capital of").all()
    # Two methods of different kinds: one preview per prompt set.
    at.multiselect(key="train_methods").set_value(["activscalar", "dynscalar"]).run()
    assert sum("DynScalar (prompts of any length)" in m.value for m in at.markdown) == 1
    assert len(at.dataframe) == 2


def test_uploaded_dataset_preview_shows_dropped_prompts_and_bad_files_one_error(train_store):
    at = train_page()
    at.radio(key="train_task").set_value("custom").run()
    assert any("Upload a CSV or JSONL" in i.value for i in at.info)
    # every column a file may have, named where it is uploaded (it had said "split (train/test)" only)
    uploader = at.get("file_uploader")[0].proto
    assert uploader.label == (
        "Dataset file: columns prompt, correct, wrong; optional split (train, val or test), group, counterfactual"
    )
    assert "split by whole groups (every row to split needs one)" in uploader.help
    good = (
        "prompt,correct,wrong\n"
        "When Mary and John went to the store John gave a drink to, Mary, John\n"
        "When Amy and Tom went to the park Tom gave a ball to, Amy, Tom\n"
        "When Kate and Ben went to the school Ben gave a book to, Kate, Ben\n"
        "Then Anne and Paul went, Anne Paul, Paul\n"
    )
    at.file_uploader(key="train_upload").upload("mine.csv", good.encode(), "text/csv")
    at.run()
    assert not at.exception and not at.error
    prompts, dropped = at.dataframe[0].value, at.dataframe[1].value
    assert len(prompts) == 3
    assert list(dropped["reason"]) == ["answer ' Anne Paul' is 2 tokens"]
    assert len(list((train_store.root.parent / "uploads").glob("*.csv"))) == 1

    at.file_uploader(key="train_upload").upload("bad.csv", b"\xff\xfe\x00garbage", "text/csv")
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and "not UTF-8" in at.error[0].value
    assert "\n" not in at.error[0].value


def test_a_held_out_family_without_test_prompts_is_one_error_and_no_train_button(train_store):
    """ActivScalar with absolute positions keeps the training prompts' one length, which no
    coordinated IOI template has: the run would have no test split (it trained so before)."""
    at = train_page()
    at.multiselect(key="train_test_groups").set_value(["coordinated"]).run()
    assert not at.exception and [e.value for e in at.error] == [
        "held out for test: coordinated, but no prompt held out has the 17 tokens of the training prompts, the one "
        "length absolute positions take (answer-aligned positions take others)"
    ]
    assert "Train" not in [b.label for b in at.button]
    at.multiselect(key="train_methods").set_value(["dynscalar"]).run()  # every length
    assert not at.error and "Train" in [b.label for b in at.button]


def test_a_bad_model_name_is_one_line(train_store):
    at = train_page()
    at.radio(key="train_model_source").set_value("Local folder").run()
    at.text_input(key="train_model_name").set_value("/no/such/model/folder").run()
    button(at, "Load model").click().run()
    assert not at.exception
    assert len(at.error) == 1 and "/no/such/model/folder" in at.error[0].value
    at.run()  # not retried on every rerun, still one line
    assert len(at.error) == 1


def test_submit_trains_in_the_background_then_reuses_the_stored_run(train_store):
    at = train_page()
    at.number_input(key="train_n_prompts").set_value(16)
    at.number_input(key="train_n_test").set_value(8)
    at.run()
    # Form widgets take their values when the form is submitted, in the same run.
    number(at, "Steps").set_value(3)
    number(at, "Early stop").set_value(0)
    button(at, "Train").click().run()  # the job runs inside this run (inline_jobs)
    assert not at.exception and not at.error
    assert "Done: 1 run trained" in at.success[0].value
    runs = [r for r in train_store.list() if r.ok]
    assert len(runs) == 1
    run_id = runs[0].run_id
    assert f"Open run {run_id} on Explore" in [p.value for p in at.get("page_link")]
    assert at.session_state["run_id"] == run_id
    assert runs[0].config["steps"] == 3 and runs[0].config["n_prompts"] == 16

    # The same configuration again: the stored run opens, nothing is trained.
    button(at, "Train").click().run()
    assert not at.exception
    assert "already trained" in at.success[0].value
    assert f"Open run {run_id} on Explore" in [p.value for p in at.get("page_link")]
    assert [r.run_id for r in train_store.list()] == [run_id]


def test_a_run_of_the_default_sites_reuses_the_previews_pass_of_the_unmodified_model(train_store, monkeypatch):
    """The preview runs the unmodified model over every prompt at the default sites and
    precision; a run of those trains and evaluates without running it again (`base_pass`'s
    cache): before its first step, and for the test prompts after it."""
    from actscale.engine import evaluation
    from actscale.ui.train_form import preview

    passes: list[tuple[int, bool]] = []
    real = evaluation._base_rows

    def counted(model, task, sites, todo, eval_batch, autocast, stats):
        passes.append((todo.numel(), stats))
        return real(model, task, sites, todo, eval_batch, autocast, stats)

    monkeypatch.setattr(evaluation, "_base_rows", counted)
    evaluation._BASE_CACHE.clear()
    preview._preview.clear()
    at = train_page()
    assert passes == [(248, True)]  # every prompt, with the training prompts' activation statistics
    number(at, "Steps").set_value(3)
    number(at, "Early stop").set_value(0)
    button(at, "Train").click().run()
    assert not at.exception and "Done: 1 run trained" in at.success[0].value
    assert passes == [(248, True)]
    run = next(r for r in train_store.list() if r.ok)
    # the default sites in float32 ("off": left out of the stored config at its default)
    assert run.config["sites"] == list(TrainConfig().sites) and run.config.get("autocast", "off") == "off"


def test_a_run_trains_on_the_prompts_the_preview_tokenised(train_store, monkeypatch):
    """The job is handed the preview's task (`previewed_tasks`): nothing tokenises the prompts
    again between the click and the first step, and the run is the one the page's check named."""
    from actscale.runs import api
    from actscale.ui.train_form import preview

    preview._preview.clear()
    at = train_page()
    built: list[str] = []
    real = api.build_task
    monkeypatch.setattr(
        api, "build_task", lambda model, config, *a, **k: built.append(config.method) or real(model, config, *a, **k)
    )
    number(at, "Steps").set_value(3)
    number(at, "Early stop").set_value(0)
    button(at, "Train").click().run()
    assert not at.exception and "Done: 1 run trained" in at.success[0].value
    (run,) = [r for r in train_store.list() if r.ok]
    assert (built, run.config["steps"], run.config["n_prompts"]) == ([], 3, TrainConfig().n_prompts)


def test_cancel_stores_nothing(train_store, monkeypatch):
    """Cancel while the job trains: this test's subject is a job running beside the page, so
    its job runs in a thread, held after its first step until the page has pressed Cancel."""
    import pandas as pd

    from actscale.ui import common
    from actscale.views.plots import lines_svg, plot_history

    first_step, pressed = held_after_the_first_step(monkeypatch)
    at = train_page()
    at.number_input(key="train_n_prompts").set_value(16)
    at.number_input(key="train_n_test").set_value(8)
    at.run()
    number(at, "Steps").set_value(100_000)
    number(at, "Early stop").set_value(0)
    button(at, "Train").click().run()
    assert first_step.wait(60), "the job never took a step"
    at.run()  # as the fragment's timer would
    assert not at.exception
    assert "step 1 of 100000" in at.get("progress")[0].proto.text
    assert re.search(r" — about \d+ s to the last step$", at.get("progress")[0].proto.text)
    # the live curves: the steps so far as an SVG image (no plotly figure redrawn every second)
    job = common.jobs().get(at.session_state["job_id"])
    curves = lines_svg(plot_history(pd.DataFrame([r for r in job.steps if r.get("run") == 0])))
    assert svg_images(at) == [curves] and not at.get("plotly_chart")
    at.button(key="cancel_training").click().run()
    assert not at.exception
    # pressed: the button drawn again in its place, disabled (a run of the page: Cancel is outside the panel's fragment)
    assert [(b.key, b.disabled) for b in at.button if b.label == "Cancel"] == [("cancel_training-pressed", True)]
    assert at.info[0].value == "Cancelling…"
    pressed.set()
    job = common.jobs().get(at.session_state["job_id"])
    assert job.wait(60) and job.state == "cancelled"
    at.run()
    assert not at.exception
    assert any(w.value == "Cancelled — nothing was stored." for w in at.warning)
    assert train_store.list() == []
    assert not [p for p in train_store.root.iterdir()] if train_store.root.exists() else True


def test_the_page_sets_every_trainconfig_field():
    """A hyperparameter added to TrainConfig must get a widget on the page."""
    import dataclasses

    from actscale.ui import train_form as tf

    covered = tf.MODEL_FIELDS + tf.DATASET_FIELDS + tf.FORM_FIELDS
    assert sorted(covered) == sorted(f.name for f in dataclasses.fields(TrainConfig))


@pytest.mark.slow  # a default-size run and a CLI process: half a minute on 2 cores
def test_the_train_page_default_run_and_the_cli_default_run_have_one_id(train_store):
    """One run id per experiment, whichever door it came through (issue 11): the page's
    default IOI ActivScalar run (templates: the full list on the page) and the CLI's (no
    templates given) are the same run."""
    import json
    import os
    import subprocess
    import sys

    at = train_page()
    button(at, "Train").click().run()  # every widget at its default; the job runs in this run
    assert not at.exception and not at.error
    (page_run,) = [r.run_id for r in train_store.list()]
    # The default adapts (cycles of the method's steps until validation reaches the target): a
    # missed target is a warning with what to try, on the page as in the CLI's JSON.
    from actscale.views.analysis import target_text

    stored = RunStore(train_store.root).load(page_run)
    target = stored.info["target"]
    assert target["cycles"] == 4 and 1 <= target["cycles_run"] <= 4
    unmet = target_text(stored.info, stored.record.config)
    assert [w.value for w in at.warning if "Validation target" in w.value] == (
        [] if target["met"] else [f"Run {page_run} (activscalar): {unmet}"]
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "actscale",
            "train",
            "--model",
            "tiny-llama",
            "--device",
            "cpu",
            "--store",
            str(train_store.root),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["run_id"] == page_run and out["target"] == target
    assert [r.run_id for r in train_store.list()] == [page_run]  # the CLI reused the page's run
    assert json.loads((train_store.root / page_run / "config.json").read_text())["templates"] == []


def test_preview_counts_both_alignments_and_the_choice_follows(train_store):
    """Issue 12: before training, the preview says how many prompts each alignment keeps, and
    the Positions choice changes which prompts the fixed-length methods train on."""
    rows = mixed_rows()
    body = "prompt,correct,wrong\n" + "".join(f'"{r["prompt"]}",{r["correct"]},{r["wrong"]}\n' for r in rows)
    at = train_page()
    at.radio(key="train_task").set_value("custom").run()
    at.file_uploader(key="train_upload").upload("mixed.csv", body.encode(), "text/csv")
    at.run()
    assert not at.exception and not at.error
    assert at.radio(key="train_positions").value == "auto"
    counts = [c.value for c in at.caption if c.value.startswith("Alignment:")]
    assert counts == [
        "Alignment: absolute positions keep 6 of 20 prompts (15 tokens); "
        "answer-aligned positions keep 18 of 20 prompts (15–18 tokens)."
    ]
    assert len(at.dataframe[0].value) == 18
    assert any(
        "(every length, positions counted back from the answer)** — kept 18 of 20" in m.value for m in at.markdown
    )
    dropped = at.dataframe[1].value
    assert list(dropped["row"]) == ["row 19", "row 20"]
    assert list(dropped["reason"]) == ["correct and wrong are the same", "answer ' Amy Tom' is 2 tokens"]
    at.radio(key="train_positions").set_value("absolute").run()
    assert not at.exception and not at.error
    assert len(at.dataframe[0].value) == 6
    assert any("(one prompt length)** — kept 6 of 20" in m.value for m in at.markdown)
    at.multiselect(key="train_methods").set_value(["dynscalar"]).run()  # no fixed-length method: no choice
    assert not at.exception and not [r for r in at.radio if r.key == "train_positions"]


def test_a_gguf_file_is_a_model_of_the_picker(train_store, tmp_path, monkeypatch):
    from tiny_gguf import write_tiny_gguf

    monkeypatch.setenv("ACTSCALE_CACHE", str(tmp_path / "cache"))
    path = write_tiny_gguf(tmp_path / "mine.gguf")
    at = train_page()
    at.radio(key="train_model_source").set_value("GGUF file").run()
    at.text_input(key="train_model_name").set_value(str(tmp_path / "missing.gguf")).run()
    button(at, "Load model").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [f"model file {tmp_path / 'missing.gguf'} does not exist"]
    at.text_input(key="train_model_name").set_value(str(path)).run()
    button(at, "Load model").click().run()
    assert not at.exception and not at.error
    assert any(str(path) in c.value and "2 layers" in c.value for c in at.caption)
