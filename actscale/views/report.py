"""Runs summarised for people: the table of a store's runs, and self-contained HTML reports, of
one run or of several compared, to send to collaborators.

A report is one file that opens with no network and no server: sentences computed from the
numbers on what the figures show and cannot show, the metrics with base rates and intervals,
every figure of `panels.run_figures` (interactive) and the configuration, with plotly.js inlined
once per file. No Streamlit here; every string that goes into HTML is escaped.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pandas as pd

from actscale.runs.store import RunBundle, RunListing
from actscale.views import panels
from actscale.views.analysis import (
    ablation_table,
    base_rate,
    filled_metrics,
    generalisation_table,
    k90_text,
    metrics_frame,
    metrics_table,
    random_table,
    rare_positions,
    rate_text,
    same_split,
    side_effects_table,
)

# Columns of the runs table, in order. Headline metrics are the test split's (docs/method.md §4).
RUN_COLUMNS = (
    "run_id", "status", "created", "model", "task", "method", "sites", "steps",
    "test_acc_base", "test_flip_acc_pos", "test_flip_acc_neg", "test β = +1", "test β = −1", "test_n",
    "test_faithfulness_kl", "n_effective", "n_components", "effective_frac", "n_params", "reason",
)  # fmt: skip


def short_date(created: Any) -> str:
    """``2026-11-24T05:12:01+00:00`` -> ``2026-11-24 05:12`` (UTC, as stored); '' if unreadable."""
    try:
        return datetime.fromisoformat(str(created)).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return ""


def run_row(listing: RunListing) -> dict[str, Any]:
    """One row of the runs table; a broken run keeps its id and the reason, nothing else."""
    if not listing.ok:
        return {"run_id": listing.run_id, "status": "broken", "reason": listing.reason}
    c, m = listing.config, listing.metrics
    test = m.get("test") or {}
    any_split = test or next(iter(m.values()), {})
    sites = c.get("sites")
    return {
        "run_id": listing.run_id,
        "status": "ok",
        "created": short_date(c.get("created")),
        "model": str(c.get("model", "")),
        "task": str(c.get("task", "")),
        "method": str(c.get("method", "")),
        "sites": ",".join(map(str, sites)) if isinstance(sites, list) else str(sites or ""),
        "steps": c.get("steps"),
        "test_acc_base": test.get("acc_base"),
        "test_flip_acc_pos": test.get("flip_acc_pos"),
        "test_flip_acc_neg": test.get("flip_acc_neg"),
        # Each flip rate after the unmodified model's rate, with its interval (docs/method.md §4).
        "test β = +1": rate_text(test, "flip_acc_pos"),
        "test β = −1": rate_text(test, "flip_acc_neg"),
        "test_n": test.get("n_prompts"),
        "test_faithfulness_kl": test.get("faithfulness_kl"),
        # Runs stored before components were counted: their n_effective used other units (n/a).
        "n_effective": any_split.get("n_effective") if "n_components" in any_split else None,
        "n_components": any_split.get("n_components"),
        "effective_frac": any_split.get("effective_frac"),
        "n_params": any_split.get("n_params"),
        "reason": "",
    }


def runs_frame(listings: Iterable[RunListing]) -> pd.DataFrame:
    """The runs table (newest first, as `RunStore.list` orders them), broken runs included."""
    return pd.DataFrame([run_row(r) for r in listings], columns=list(RUN_COLUMNS))


def headline_frame(listings: Iterable[RunListing]) -> pd.DataFrame:
    """The Home page's short table: readable runs with their headline metrics, formatted."""
    df = runs_frame(r for r in listings if r.ok)

    def effective(row: pd.Series) -> str:
        ok = pd.notna(row["n_effective"]) and pd.notna(row["n_components"])
        return f"{int(row['n_effective'])} / {int(row['n_components'])}" if ok else "n/a"

    return pd.DataFrame(
        {
            "run": df["run_id"],
            "created": df["created"],
            "model": df["model"],
            "task": df["task"],
            "method": df["method"],
            "test flip β=+1 (unmodified → steered)": df["test β = +1"],
            "test flip β=−1 (unmodified → steered)": df["test β = −1"],
            "faithfulness KL": df["test_faithfulness_kl"].map(lambda v: f"{v:.3g}" if pd.notna(v) else ""),
            "effective / components": df.apply(effective, axis=1) if len(df) else pd.Series(dtype=str),
        }
    )


# ---------------------------------------------------------------- the HTML report
_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #1f2328; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .25rem .6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.caption { color: #57606a; } section.figure { margin: 1.5rem 0; }
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)


def _table(rows: list[list[Any]], header: list[str], numbers_right: bool = True) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            number = isinstance(v, (int, float)) and not isinstance(v, bool)
            cls = ' class="num"' if numbers_right and i and number else ""
            cells.append(f"<td{cls}>{html.escape(_fmt(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def metrics_rows(bundle: RunBundle) -> tuple[list[str], list[list[Any]]]:
    """(splits, rows): one row per metric, one column per split (`analysis.metrics_table`: each
    flip rate first as "unmodified → steered [95% interval]")."""
    table = metrics_table(bundle)
    splits = [c for c in table.columns if c != "metric"]
    return splits, table.values.tolist()


# ---------------------------------------------------------------- sentences from the numbers
# (metric, the answer it counts, β's sign)
_DIRECTIONS = (("flip_acc_pos", "a+", "+"), ("flip_acc_neg", "a−", "−"))


def _shown_split(metrics: dict[str, dict[str, Any]]) -> str | None:
    """The split a reader should judge a run by: test, else validation, else train."""
    return next((s for s in ("test", "val", "train") if metrics.get(s)), None)


def _interval(m: dict[str, Any], name: str) -> tuple[float, float, float] | None:
    """(rate, lo, hi) where the rate and its 95% interval are stored as numbers."""
    rate, ci = m.get(name), m.get(f"{name}_ci95")
    if not isinstance(rate, (int, float)) or not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return None
    lo, hi = ci
    if not isinstance(lo, (int, float)) or not isinstance(hi, (int, float)):
        return None
    return float(rate), float(lo), float(hi)


def _n_text(m: dict[str, Any], split: str) -> str:
    n = m.get("n_prompts")
    return f"the {n} {split} prompts" if isinstance(n, int) else f"the {split} prompts"


def direction_sentence(m: dict[str, Any], split: str, name: str, answer: str, sign: str) -> str:
    """What β = ±1 did on ``split``, read against the unmodified model's rate and the interval."""
    found = _interval(m, name)
    base = base_rate(m, name)
    if found is None:
        rate = m.get(name)
        if not isinstance(rate, (int, float)):
            return f"β = {sign}1: no flip rate is stored for the {split} split."
        found = (float(rate), float("nan"), float("nan"))
    rate, lo, hi = found
    prompts = _n_text(m, split)
    steered = f"{rate:.2f}" + ("" if lo != lo else f" [{lo:.2f}, {hi:.2f}]")
    if base is None:
        return (
            f"β = {sign}1: the model prefers {answer} on {steered} of {prompts} when steered; the unmodified "
            "model's rate is not stored, so how much of that steering did cannot be said."
        )
    if lo != lo:
        return f"β = {sign}1: {answer} preferred on {steered} of {prompts} when steered, against {base:.2f} unmodified."
    if lo <= base <= hi:
        return (
            f"β = {sign}1 changes nothing measurable here: the unmodified model already prefers {answer} on "
            f"{base:.2f} of {prompts}, and the steered rate {steered} includes that."
        )
    if lo > base:
        room = f" (the unmodified model already did on {base:.2f}, so the room to move was {1 - base:.2f})"
        return (
            f"β = {sign}1 moves the answer: the model prefers {answer} on {steered} of {prompts}"
            + (room if base >= 0.5 else f", against {base:.2f} unmodified")
            + "."
        )
    return (
        f"β = {sign}1 works against its purpose here: the model prefers {answer} on {steered} of {prompts}, "
        f"fewer than the {base:.2f} of the unmodified model."
    )


def _held_out_text(cfg: dict[str, Any]) -> str:
    held = [*(cfg.get("test_templates") or []), *(cfg.get("test_groups") or [])]
    if held:
        return (
            f"The test prompts come from groups held out of training ({', '.join(map(str, held))}): the test "
            "figures speak to prompts of a structure the intervention never saw."
        )
    if cfg.get("task") == "custom":
        return (
            "The test prompts are a share of the same file as the training prompts: the test figures speak to "
            "new prompts like those, not to other kinds of prompt."
        )
    return (
        "The test prompts are new prompts from the same templates as training (new names or countries, the "
        "same sentence structures): the test figures do not show that it works on other structures."
    )


def findings(bundle: RunBundle) -> tuple[list[str], list[str]]:
    """(what the figures show, what they cannot show): sentences computed from the run's numbers
    (`analysis.filled_metrics`) and configuration, for a report's reader."""
    metrics = filled_metrics(bundle)
    cfg = bundle.config
    split = _shown_split(metrics)
    shows: list[str] = []
    if split is None:
        return ["This run stores no metrics."], []
    m = metrics[split]
    for name, answer, sign in _DIRECTIONS:
        shows.append(direction_sentence(m, split, name, answer, sign))
    train = metrics.get("train") or {}
    for name, _, sign in _DIRECTIONS:
        # Read against each split's own unmodified rate: the splits' prompts differ in difficulty.
        held, fitted = _interval(m, name), train.get(name)
        held_base, fitted_base = base_rate(m, name), base_rate(train, name)
        if split == "train" or held is None or not isinstance(fitted, (int, float)):
            continue
        if held_base is None or fitted_base is None:
            continue
        gap = (fitted - fitted_base) - (held[0] - held_base)
        if gap > (held[2] - held[1]) / 2:
            shows.append(
                f"At β = {sign}1 it moves the {split} prompts less than the training prompts ({held_base:.2f} → "
                f"{held[0]:.2f} on {split} against {fitted_base:.2f} → {fitted:.2f} on train): it fits its training "
                "prompts better than it generalises."
            )
    kl = m.get("faithfulness_kl")
    if isinstance(kl, (int, float)):
        shows.append(
            f"Faithfulness: at β = ±1 the next-token distribution over every other token moves by KL = {kl:.3g} nats "
            f"on average over {_n_text(m, split)} (0 = untouched; lower is more faithful)."
        )
    n_eff, n_comp = m.get("n_effective"), m.get("n_components")
    if isinstance(n_eff, int) and isinstance(n_comp, int) and n_comp:
        shows.append(
            f"Minimality: {n_eff:,} of {n_comp:,} components ({n_eff / n_comp:.0%}) change their activation by more "
            f"than τ = {float(cfg.get('tau', 0.05)):g} of its size; the maps below show where."
        )
    cannot = [
        "The maps show where the learned parameters are large, that is which components training used; they do "
        "not show that the model needs those components for the behaviour"
        + (
            "."
            if (bundle.path / "checks.json").is_file()
            else f" — that is what the checks test (sufficiency, necessity, a random control), which this run does "
            f"not have yet (python -m actscale analyse --run {bundle.run_id} adds them)."
        ),
        f"One training run (seed {cfg.get('seed')}, data seed {cfg.get('data_seed', cfg.get('seed'))}): how much "
        "these numbers move from one seed to another is not shown.",
        _held_out_text(cfg),
    ]
    held = _interval(m, "flip_acc_pos")
    if held and held[2] - held[1] > 0.15:
        cannot.append(
            f"With {_n_text(m, split)} the intervals are wide (up to {held[2] - held[1]:.2f} across): differences "
            "smaller than that are not measured."
        )
    rare = rare_positions(bundle)
    if rare:
        cannot.append(
            f"Positions {', '.join(r.split(':')[0] for r in rare)} are reached by fewer than half of the training "
            "prompts: their parameters rest on few prompts."
        )
    return shows, cannot


def comparison_findings(bundles: list[RunBundle]) -> list[str]:
    """Sentences comparing runs, from their numbers: per direction, the best run on the shown split
    and whether its interval separates it from the others; and whether the runs share their prompts."""
    if len(bundles) < 2:
        return []
    out = []
    configs = [b.config for b in bundles]
    if not all(same_split(configs[0], c) for c in configs[1:]) or len({c.get("task") for c in configs}) > 1:
        out.append(
            "These runs were not all trained and tested on the same prompts (task, data seed, sizes or held-out "
            "groups differ): differences between them mix the methods with the data."
        )
    all_test = all(filled_metrics(b).get("test") for b in bundles)
    rows: list[tuple[RunBundle, str, dict[str, Any]]] = []
    for b in bundles:
        metrics = filled_metrics(b)
        split = "test" if all_test else (_shown_split(metrics) or "")
        rows.append((b, split, metrics.get(split) or {}))
    for name, _, sign in _DIRECTIONS:
        scored: list[tuple[RunBundle, str, tuple[float, float, float]]] = []
        for b, split, m in rows:
            found = _interval(m, name)
            if found is not None:
                scored.append((b, split, found))
        if len(scored) < 2:
            continue
        scored.sort(key=lambda x: -x[2][0])
        (best, split, (rate, lo, hi)), rest = scored[0], scored[1:]
        who = f"{best.method} (run {best.run_id})"
        tied = [f"{b.method} {r:.2f} [{r_lo:.2f}, {r_hi:.2f}]" for b, _, (r, r_lo, r_hi) in rest if r_hi >= lo]
        if not tied:
            out.append(
                f"At β = {sign}1 {who} flips the most {split} prompts, {rate:.2f} [{lo:.2f}, {hi:.2f}], and its "
                "interval lies above every other run's: the difference is measurable."
            )
        else:
            out.append(
                f"At β = {sign}1 {who} flips the most {split} prompts ({rate:.2f} [{lo:.2f}, {hi:.2f}]), but not "
                f"measurably more than {', '.join(tied)}: their intervals overlap."
            )
    kls = [(b, float(m["faithfulness_kl"])) for b, _, m in rows if isinstance(m.get("faithfulness_kl"), (int, float))]
    if len(kls) >= 2:
        kls.sort(key=lambda x: x[1])
        (low, low_kl), (high, high_kl) = kls[0], kls[-1]
        out.append(
            f"Faithfulness: {low.method} (run {low.run_id}) disturbs the other tokens least (KL = {low_kl:.3g}), "
            f"{high.method} (run {high.run_id}) most (KL = {high_kl:.3g}); no interval is computed for KL."
        )
    return out


# ---------------------------------------------------------------- the HTML page
def _sentences(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in items) + "</ul>"


def check_findings(bundle: RunBundle) -> list[str]:
    """Sentences on the run's map checks, from their numbers; [] until they are run."""
    found = bundle.checks()
    data = found[0] if found else {}
    out = []
    if "map" in data:
        out.append(k90_text(data))
        m = data["map"]
        nec = [r for r in m.get("necessity", []) if r["k"] == m["k90"]]
        if nec:
            out.append(
                f"Removing the top {m['k90']} from the full run leaves a mean flip rate of {nec[0]['mean_flip']:.2f} "
                f"(full run {m['full']['mean_flip']:.2f}): "
                + (
                    "the rest of the map cannot stand in for them."
                    if nec[0]["mean_flip"] < 0.9 * m["full"]["mean_flip"]
                    else "the rest of the map largely makes up for them (redundant components)."
                )
            )
        agree = m.get("precision_agreement") or {}
        if agree.get("agree") is not None:
            out.append(
                f"The checks ran in {m['precision']}: the sign of Δ agrees with the run's own evaluation on "
                f"{agree['agree']} of {agree['n']} prompt-directions."
            )
    if "stability" in data:
        st = data["stability"]
        out.append(
            f"Over {len(st['runs'])} seeds ({st['vary']} varied), {st['n_selected_all']} components are selected in "
            f"every seed and {st['n_selected_any']} in at least one; mean rank correlation of the magnitudes "
            f"{st['mean_spearman']:.2f}."
        )
    if "side_effects" in data:
        rows = {r["beta"]: r for r in data["side_effects"]["rows"]}
        out.append(
            "On neutral text the run applied everywhere changes perplexity from "
            f"{rows[1.0]['perplexity_base']:.1f} to {rows[1.0]['perplexity_steered']:.1f} (β = +1) and "
            f"{rows[-1.0]['perplexity_steered']:.1f} (β = −1); per-token KL {rows[1.0]['kl_per_token_mean']:.3f} and "
            f"{rows[-1.0]['kl_per_token_mean']:.3f}."
        )
    return [x for x in out if x]


def _check_sections(bundle: RunBundle, heading: str, prefix: str) -> list[str]:
    found = bundle.checks()
    if not found:
        return []
    data = found[0]
    sub = "h3" if heading == "h2" else "h4"
    out = [f"<{heading}>Does the map mean anything?</{heading}>", _sentences(check_findings(bundle))]
    for title, frame in (
        ("Random control", random_table(data)),
        ("Knock-outs of the same components", ablation_table(data)),
        ("Generalisation", generalisation_table(data)),
        ("Side effects on neutral text", side_effects_table(data)),
    ):
        if not frame.empty:
            out += [f"<{sub}>{title}</{sub}>", _table(frame.astype(object).values.tolist(), list(frame.columns))]
    for i, (name, fig) in enumerate(panels.check_figures(bundle).items()):
        div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"{prefix}check-{i}")
        out.append(f'<section class="figure"><{sub}>{html.escape(name)}</{sub}>{div}</section>')
    return out


def _figure_sections(bundle: RunBundle, prefix: str) -> list[str]:
    out = []
    for i, (name, fig) in enumerate(panels.run_figures(bundle).items()):
        div = fig.to_html(
            full_html=False,
            include_plotlyjs=False,  # once per file, in the page's head
            div_id=f"{prefix}figure-{i}",
            config={"displaylogo": False, "toImageButtonOptions": {"format": "svg"}},
        )
        out.append(f'<section class="figure"><h3>{html.escape(name)}</h3>{div}</section>')
    return out


def _run_sections(bundle: RunBundle, heading: str, prefix: str = "") -> list[str]:
    """A run's findings, metrics, figures and configuration, under headings of level ``heading``."""
    cfg = bundle.config
    shows, cannot = findings(bundle)
    splits, metric_rows = metrics_rows(bundle)
    summary = bundle.info.get("summary")
    sub = "h3" if heading == "h2" else "h4"
    return [
        f'<p class="caption">Dataset: {html.escape(str(summary))}</p>' if summary else "",
        f"<{heading}>What the figures show</{heading}>",
        _sentences(shows),
        f"<{heading}>What they cannot show</{heading}>",
        _sentences(cannot),
        f"<{heading}>Metrics</{heading}>",
        '<p class="caption">Each flip rate is given after the unmodified model\'s rate (β = 0), with its 95% '
        "Wilson interval and the number of prompts.</p>",
        _table(metric_rows, ["metric", *splits]),
        f"<{heading}>Figures</{heading}>",
        *[x.replace("<h3>", f"<{sub}>").replace("</h3>", f"</{sub}>") for x in _figure_sections(bundle, prefix)],
        *_check_sections(bundle, heading, prefix),
        "<details><summary>Configuration</summary>"
        + _table([[k, cfg[k]] for k in sorted(cfg)], ["key", "value"], numbers_right=False)
        + "</details>",
    ]


def _page(title: str, subtitle: str, body: list[str]) -> str:
    from plotly.offline import get_plotlyjs

    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{_STYLE}</style>",
            # plotly.js once per file, inline: no network is needed to open it.
            f'<script type="text/javascript">{get_plotlyjs()}</script>',
            "</head><body>",
            f"<h1>{html.escape(title)}</h1>",
            f'<p class="caption">{html.escape(subtitle)}</p>',
            *body,
            '<p class="caption">Made with actscale; the run bundles (config.json, params.safetensors, …) '
            "reproduce every number here.</p>",
            "</body></html>",
        ]
    )


def _subtitle(cfg: dict[str, Any]) -> str:
    what = " · ".join(str(cfg.get(k, "")) for k in ("method", "task", "model"))
    return f"{what} · created {cfg.get('created', '?')}"


def render_report(bundle: RunBundle) -> str:
    """One self-contained HTML page of ``bundle``: what its figures show and cannot show (computed
    from its numbers), its metrics with base rates and intervals, every figure of
    `panels.run_figures` (interactive, token labels on the position axes) and its configuration;
    plotly.js inlined once, so it opens with no network."""
    return _page(f"actscale run {bundle.run_id}", _subtitle(bundle.config), _run_sections(bundle, "h2"))


def comparison_frame(bundles: list[RunBundle]) -> pd.DataFrame:
    """One row per run: its method, data and headline figures on the split it is judged by."""
    rows = []
    for b in bundles:
        metrics = filled_metrics(b)
        split = _shown_split(metrics) or ""
        m = metrics.get(split, {})
        n_eff, n_comp = m.get("n_effective"), m.get("n_components")
        rows.append(
            {
                "run": b.run_id,
                "method": b.method,
                "task": b.config.get("task"),
                "model": b.config.get("model"),
                "seed": b.config.get("seed"),
                "split": split,
                "β = +1 (unmodified → steered [95% CI])": rate_text(m, "flip_acc_pos"),
                "β = −1 (unmodified → steered [95% CI])": rate_text(m, "flip_acc_neg"),
                "faithfulness KL": m.get("faithfulness_kl"),
                "effective / components": f"{n_eff} / {n_comp}" if n_eff is not None and n_comp else "n/a",
                "parameters": m.get("n_params"),
            }
        )
    return pd.DataFrame(rows)


def render_comparison_report(bundles: list[RunBundle]) -> str:
    """One self-contained HTML page comparing ``bundles`` (Compare's selection): a table of their
    headline figures, the comparison figures, sentences on what differs measurably, then each
    run's own section; plotly.js inlined once for the whole file. Raises ValueError for none."""
    from actscale.views import plots

    if not bundles:
        raise ValueError("a comparison report needs at least one run")
    table = comparison_frame(bundles)
    df = metrics_frame(bundles, metrics_of=filled_metrics)
    figures = []
    for i, fig in enumerate((plots.plot_method_comparison(df), plots.plot_param_counts(df))):
        figures.append(
            fig.to_html(
                full_html=False, include_plotlyjs=False, div_id=f"compare-figure-{i}", config={"displaylogo": False}
            )
        )
    body = [
        "<h2>The runs</h2>",
        _table(table.values.tolist(), list(table.columns)),
        "<h2>What the comparison shows</h2>",
        _sentences(comparison_findings(bundles) or ["One run: nothing to compare."]),
        *[f'<section class="figure">{f}</section>' for f in figures],
    ]
    for i, b in enumerate(bundles):
        body += [
            f'<h2 id="run-{html.escape(b.run_id)}">Run {html.escape(b.run_id)}</h2>',
            f'<p class="caption">{html.escape(_subtitle(b.config))}</p>',
        ]
        body += _run_sections(b, "h3", prefix=f"run{i}-")
    methods = ", ".join(dict.fromkeys(b.method for b in bundles))
    return _page(f"actscale: {len(bundles)} runs compared", methods, body)


def human_size(n_bytes: int) -> str:
    """``4.9 MB``, ``812 kB``, ``97 B`` (decimal units, as browsers show downloads)."""
    if n_bytes >= 1_000_000:
        return f"{n_bytes / 1_000_000:.1f} MB"
    if n_bytes >= 1_000:
        return f"{n_bytes / 1_000:.0f} kB"
    return f"{n_bytes} B"
