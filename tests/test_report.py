"""The self-contained HTML report and the runs table (actscale.views.report), on tiny-model runs."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from plotly.offline import get_plotlyjs

from actscale.engine.objective import METRIC_NAMES
from actscale.engine.training import TrainConfig
from actscale.runs.api import train_run
from actscale.runs.records import SplitMetrics
from actscale.runs.store import RunStore
from actscale.views import panels
from actscale.views.analysis import rate_text
from actscale.views.report import headline_frame, render_report, runs_frame


@pytest.fixture(scope="module")
def runs(tiny_llama, tmp_path_factory):
    """One tiny run per method (head site included, so every kind of figure is drawn). ActivScalar's
    batch size is spelled out: the sentences' test reads its per-prompt answers, which must not move
    when the method's default does."""
    store = RunStore(tmp_path_factory.mktemp("report") / "runs")
    out = {}
    for method in ("activscalar", "steervec", "dynscalar"):
        batch = {"batch_size": 4} if method == "activscalar" else {}
        config = TrainConfig(
            model="tiny-llama", method=method, sites=("attn_out", "head"), steps=3, n_prompts=16, early_stop=0, **batch
        )
        out[method] = train_run(config, tiny_llama, store=store)
    return store, out


@pytest.mark.parametrize("method", ["activscalar", "steervec", "dynscalar"])
def test_report_is_self_contained_and_complete(runs, method):
    bundle = runs[1][method]
    page = render_report(bundle)
    figures = panels.run_figures(bundle)

    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert bundle.run_id in page
    for name in METRIC_NAMES:
        assert f"<td>{name}</td>" in page, name
    # the rates of the table as every page gives them, and the caption saying what their brackets hold
    test = bundle.record.split("test")
    # (IOI's four template families where every length is kept, two where one length is)
    assert (
        test.n_groups == (4 if method == "dynscalar" else 2) and f"<td>{rate_text(test, 'flip_acc_neg')}</td>" in page
    )
    assert "else with the count of groups (the Wilson interval reads the prompts as independent).</p>" in page
    # plotly.js inlined exactly once, and no script loaded from anywhere.
    js = get_plotlyjs()
    assert page.count(js[:2000]) == 1
    assert not re.search(r"<script[^>]*\bsrc\s*=", page)
    assert not re.search(r"<script[^>]*src=[\"']?https?:", page)
    # One plot div per figure, each with its title.
    assert len(figures) >= 2
    assert page.count('class="plotly-graph-div"') == len(figures)
    for i, name in enumerate(figures):
        assert f'id="figure-{i}"' in page
        assert f"<h3>{name}</h3>" in page


def test_report_escapes_every_string(runs):
    bundle = runs[1]["activscalar"]
    evil = "<script>alert('x')</script>"
    hostile = dataclasses.replace(
        bundle,
        config={**bundle.config, "model": evil, evil: "value"},
        info={**bundle.info, "summary": evil},
    )
    page = render_report(hostile)
    assert evil not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page


def test_runs_frame_lists_broken_runs_with_their_reason(runs):
    store, bundles = runs
    listings = store.list()
    df = runs_frame(listings)
    assert set(df["run_id"]) == {b.run_id for b in bundles.values()}
    assert (df["status"] == "ok").all()
    row = df.set_index("run_id").loc[bundles["activscalar"].run_id]
    test = bundles["activscalar"].metrics["test"]
    assert row["method"] == "activscalar" and row["task"] == "ioi" and row["model"] == "tiny-llama"
    assert row["test_flip_acc_pos"] == test["flip_acc_pos"] and row["test_acc_base"] == test["acc_base"]
    lo, hi = test["flip_acc_pos_ci95"]
    n = test["n_prompts"]
    assert test["n_groups"] == 2  # too few for an interval by group: the count is said instead
    assert row["test β = +1"] == (
        f"{test['acc_base']:.2f} → {test['flip_acc_pos']:.2f} [{lo:.2f}, {hi:.2f}] (n = {n} from 2 groups)"
    )
    assert row["n_params"] == test["n_params"] and row["n_components"] == test["n_components"]

    head = headline_frame(listings)
    assert list(head["run"]) == [r.run_id for r in listings]
    assert head["effective / components"].str.match(r"^\d+ / \d+$").all()
    assert head["test flip β=−1 (unmodified → steered)"].str.match(r"^\d\.\d\d → \d\.\d\d \[").all()


def test_runs_frame_of_a_broken_listing(tmp_path):
    store = RunStore(tmp_path)
    (tmp_path / "0123456789abcdef").mkdir(parents=True)
    (tmp_path / "0123456789abcdef" / "config.json").write_text("{not json")
    df = runs_frame(store.list())
    assert df.loc[0, "status"] == "broken"
    assert "config.json" in df.loc[0, "reason"]
    assert headline_frame(store.list()).empty


# ---------------------------------------------------------------- a report worth sending
def with_test_metrics(bundle, **test):
    """``bundle`` with its test metrics replaced (n_components kept, so nothing is recomputed)."""
    split = SplitMetrics.from_json({**bundle.record.split("test").to_json(), **test})
    return dataclasses.replace(
        bundle, record=dataclasses.replace(bundle.record, splits={**bundle.record.splits, "test": split})
    )


def measured(runs):
    """The default run's test numbers (docs/measured.md), on a tiny run."""
    return with_test_metrics(
        runs[1]["activscalar"],
        n_prompts=200,
        acc_base=0.86,
        flip_acc_pos=0.88,
        flip_acc_pos_ci95=[0.83, 0.92],
        flip_acc_neg=0.98,
        flip_acc_neg_ci95=[0.95, 0.99],
        faithfulness_kl=0.2412,
        n_effective=140,
        n_components=960,
        n_cells=960,
        n_cells_effective=140,
    )


def test_sentences_are_computed_from_the_numbers(runs):
    from actscale.views.report import findings

    bundle = measured(runs)
    shows, cannot = findings(bundle)
    assert shows[0] == (
        "β = +1 does not move the rate beyond its interval here: the unmodified model prefers a+ on 0.86 of the 200 "
        "test prompts, and the steered rate 0.88 [0.83, 0.92] includes that; 1 prompt changed its preferred answer "
        "(1 to a+, 0 away from it), which the rate's interval does not separate from no change."
    )
    assert (
        shows[1]
        == "β = −1 moves the answer: the model prefers a− on 0.98 [0.95, 0.99] of the 200 test prompts, against "
        "0.14 unmodified."
    )
    assert (
        "Faithfulness: at β = ±1 the next-token distribution over every other token moves by KL = 0.241 nats on "
        "average over the 200 test prompts (0 = untouched; lower is more faithful)." in shows
    )
    assert (
        "Minimality: 140 of 960 components (15%) change their activation by more than τ = 0.05 of its size; the "
        "maps below show where. In the unit every method shares, 140 of 960 cells (site, layer, position[, head]; "
        "15%) are changed by more than τ." in shows
    )
    seed = bundle.config["seed"]
    assert cannot[0].endswith(
        f"which this run does not have yet (python -m actscale analyse --run {bundle.run_id} adds them)."
    )
    assert cannot[1] == (
        f"One training run (seed {seed}, data seed {bundle.config['data_seed']}): how much these numbers move from "
        "one seed to another is not shown."
    )
    assert cannot[2].startswith("The test prompts are new prompts from the same templates as training")
    assert len(cannot) == 3  # 200 prompts: narrow intervals, no sentence about them


def test_other_numbers_give_other_sentences(runs):
    """A direction that goes the wrong way, a large base, few prompts."""
    from actscale.views.report import findings

    other = with_test_metrics(
        measured(runs),
        n_prompts=8,
        acc_base=0.75,
        flip_acc_pos=0.95,
        flip_acc_pos_ci95=[0.80, 0.99],
        flip_acc_neg=0.05,
        flip_acc_neg_ci95=[0.01, 0.20],
    )
    shows, cannot = findings(other)
    assert shows[0] == (
        "β = +1 moves the answer: the model prefers a+ on 0.95 [0.80, 0.99] of the 8 test prompts (the unmodified "
        "model already did on 0.75, so the room to move was 0.25)."
    )
    assert shows[1] == (
        "β = −1 works against its purpose here: the model prefers a− on 0.05 [0.01, 0.20] of the 8 test prompts, "
        "fewer than the 0.25 of the unmodified model."
    )
    assert cannot[-1] == (
        "With the 8 test prompts the intervals are wide (up to 0.19 across): differences smaller than that are "
        "not measured."
    )


def test_a_base_rate_not_stored_is_said_not_guessed(runs):
    from actscale.views.report import findings

    bundle = measured(runs)
    splits = {s: dataclasses.replace(m, acc_base=None, acc_base_ci95=None) for s, m in bundle.record.splits.items()}
    shows, _ = findings(dataclasses.replace(bundle, record=dataclasses.replace(bundle.record, splits=splits)))
    assert shows[0].endswith(
        "the unmodified model's rate is not stored, so how much of that steering did cannot be said."
    )


def test_a_run_with_checks_is_reported_without_them(runs, tmp_path):
    """checks.json (issue 9, format not final) is not read here; a bundle that has one still reports."""
    import shutil

    from actscale.runs.store import RunStore
    from actscale.views.report import findings

    bundle = runs[1]["steervec"]
    store = RunStore(tmp_path / "runs")
    shutil.copytree(bundle.path, store.path(bundle.run_id))
    (store.path(bundle.run_id) / "checks.json").write_text("{not the final format")
    copy = store.load(bundle.run_id)
    page = render_report(copy)
    assert copy.run_id in page and "analyse --run" not in page
    assert findings(copy)[1][0].endswith("they do not show that the model needs those components for the behaviour.")


def test_heatmaps_carry_the_token_labels(runs):
    import json

    bundle = runs[1]["activscalar"]
    page = render_report(bundle)
    labels = bundle.info["position_labels"]
    specs = re.findall(r'Plotly\.newPlot\(\s*"figure-\d+",\s*(\[.*?\]),\s*(\{.*?\}),\s*\{"displaylogo"', page, re.S)
    heatmaps = [(json.loads(data), json.loads(layout)) for data, layout in specs if '"type":"heatmap"' in data]
    by_title = {layout["title"]["text"]: (data[0], layout) for data, layout in heatmaps}
    trace, layout = by_title["α per layer and position — attn_out"]
    assert trace["x"] == labels  # the token strings, as Explore shows them
    assert (layout["xaxis"]["tickmode"], layout["xaxis"]["dtick"]) == ("linear", 1)  # every one of them drawn
    assert (layout["yaxis"]["tickmode"], layout["yaxis"]["dtick"]) == ("linear", 1)


def test_comparison_report(runs):
    from actscale.views.analysis import floor_result
    from actscale.views.report import comparison_findings, human_size, render_comparison_report

    bundles = list(runs[1].values())
    page = render_comparison_report(bundles)
    js = get_plotlyjs()
    assert page.count(js[:2000]) == 1  # plotly.js once for the whole file
    assert not re.search(r"<script[^>]*\bsrc\s*=", page)
    n_figures = sum(len(panels.run_figures(b)) for b in bundles) + 2  # each run's, and the two comparison figures
    assert page.count('class="plotly-graph-div"') == n_figures
    assert len(set(re.findall(r'id="((?:run\d+-|compare-)figure-\d+)"', page))) == n_figures  # ids unique
    for b in bundles:
        assert f'<h2 id="run-{b.run_id}">Run {b.run_id}</h2>' in page
    assert "<h1>actscale: 3 runs compared</h1>" in page
    floor = floor_result(bundles[0])
    assert f"<li>The logit-bias floor adds ±{floor['bias']:.2f} to the two answer logits" in page  # beside the runs
    assert len(page) < len(render_report(bundles[0])) * 2  # not three copies of plotly.js
    with pytest.raises(ValueError):
        render_comparison_report([])
    assert (human_size(4_861_000), human_size(812_400), human_size(97)) == ("4.9 MB", "812 kB", "97 B")

    # The comparison sentences, on numbers set by hand.
    a, s = bundles[0], bundles[1]
    a = with_test_metrics(a, flip_acc_pos=0.98, flip_acc_pos_ci95=[0.95, 0.99], faithfulness_kl=0.24)
    s = with_test_metrics(s, flip_acc_pos=0.90, flip_acc_pos_ci95=[0.85, 0.94], faithfulness_kl=0.52)
    a = with_test_metrics(a, flip_acc_neg=0.96, flip_acc_neg_ci95=[0.93, 0.98])
    s = with_test_metrics(s, flip_acc_neg=0.97, flip_acc_neg_ci95=[0.94, 0.99])
    out = comparison_findings([a, s])
    assert out == [
        f"At β = +1 activscalar (run {a.run_id}) flips the most test prompts, 0.98 [0.95, 0.99], and its interval "
        "lies above every other run's: the difference is measurable (intervals by group where the prompts have "
        "groups).",
        f"At β = −1 steervec (run {s.run_id}) flips the most test prompts (0.97 [0.94, 0.99]), but not measurably "
        "more than activscalar 0.96 [0.93, 0.98]: their intervals overlap (by group where the prompts have groups).",
        f"Faithfulness: activscalar (run {a.run_id}) disturbs the other tokens least (KL = 0.24), steervec (run "
        f"{s.run_id}) most (KL = 0.52); no interval is computed for KL.",
    ]
    other_config = s.record.config.replace(seed=5, data_seed=5)
    other_seed = dataclasses.replace(s, record=dataclasses.replace(s.record, config=other_config))
    assert comparison_findings([a, other_seed])[0].startswith(
        "These runs were not all trained and tested on the same prompts"
    )


def test_report_has_the_map_checks_when_the_run_has_them(tiny_llama, tmp_path):
    from actscale.checks import CheckOptions, run_checks
    from actscale.engine.training import TrainConfig
    from actscale.runs.api import train_run
    from actscale.runs.store import RunStore
    from actscale.views.report import render_report

    bundle = train_run(
        TrainConfig(model=tiny_llama.name, method="dynscalar", steps=2, n_prompts=16, n_test=8),
        tiny_llama,
        store=RunStore(tmp_path),
    )
    before = render_report(bundle)
    assert "Does the map mean anything?" not in before
    assert f"python -m actscale analyse --run {bundle.run_id} adds them" in before
    out = run_checks(tiny_llama, bundle, CheckOptions(prompts=8, draws=5, precision="float32"))
    after = render_report(bundle)
    assert "Does the map mean anything?" in after
    assert out["map"]["k90"] is None  # two steps on the tiny model: no effect, said as such
    assert "No effect to localise: on all 3 validation prompts neither direction of the full run beats" in after
    assert "Side effects on neutral text" in after and "Random control" not in after  # none without a k90
    # the sufficiency figure, the AtP map of each site and the localisation curves (the random tiny
    # model's counterfactuals move Δ within its noise: no patching map, and the page says why)
    assert after.count('class="plotly-graph-div"') == before.count('class="plotly-graph-div"') + 1 + 2 + 1
    assert "Which ranking localises the answer</h3>" in after and "Next to the free maps</h3>" in after
    assert "Exact activation patching patched nothing: the counterfactual prompts move Δ by" in after
    assert after.count("plotly.js v") <= 1  # still one copy of plotly.js


def test_a_rate_within_its_interval_is_not_called_no_change_when_prompts_changed(runs):
    """Prompts that change their answer are a change even where the rate does not move: the
    sentence counts them from the stored per-prompt Δ (one to a+, one away), and says when none
    changed."""
    from actscale.views.report import findings

    bundle = runs[1]["activscalar"]
    rows = [i for i, r in enumerate(bundle.dataset) if r["split"] == "test"]
    base, pos = torch.full((len(bundle.dataset),), -1.0), torch.full((len(bundle.dataset),), -1.0)
    assert len(rows) == 200
    base[rows[:175]] = 1.0  # 175 of the 200 test prompts prefer a+ unmodified
    pos[rows[:174]] = 1.0  # steered: the 175th lost, the 176th gained
    pos[rows[175]] = 1.0
    edited = {**bundle.analysis, "delta.base": base, "delta.pos": pos, "delta.neg": base.clone()}
    bundle = with_test_metrics(
        dataclasses.replace(bundle, analysis=edited),
        n_prompts=200,
        acc_base=0.875,
        flip_acc_pos=0.875,
        flip_acc_pos_ci95=[0.82, 0.91],
        flip_acc_neg=0.125,
        flip_acc_neg_ci95=[0.09, 0.18],
    )
    shows, _ = findings(bundle)
    assert shows[0] == (
        "β = +1 does not move the rate beyond its interval here: the unmodified model prefers a+ on 0.88 of the 200 "
        "test prompts, and the steered rate 0.88 [0.82, 0.91] includes that; 2 prompts changed their preferred "
        "answer (1 to a+, 1 away from it), which the rate's interval does not separate from no change."
    )
    assert shows[1] == (
        "β = −1 does not move the rate beyond its interval here: the unmodified model prefers a− on 0.12 of the 200 "
        "test prompts, and the steered rate 0.12 [0.09, 0.18] includes that; no prompt changed its preferred answer."
    )
