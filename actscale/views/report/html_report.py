"""Self-contained HTML reports of one run, or of several compared: escaped text, tables and
interactive figures, plotly.js inlined once."""

from __future__ import annotations

import html
import json
from typing import Any

import pandas as pd

from actscale.runs.bundle import RunBundle
from actscale.runs.records import SplitMetrics
from actscale.views import panels, plots
from actscale.views.analysis import (
    ablation_table,
    filled_metrics,
    floor_frame,
    floor_text,
    free_part,
    free_table,
    generalisation_table,
    localisation_table,
    metrics_frame,
    metrics_table,
    patching_table,
    random_table,
    rate_text,
    side_effects_table,
)
from actscale.views.report.sentences import check_findings, comparison_findings, findings, shown_split

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #1f2328; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .25rem .6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.caption { color: #57606a; } section.figure { margin: 1.5rem 0; }
"""


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)


def html_table(rows: list[list[Any]], header: list[str], numbers_right: bool = True) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            number = isinstance(v, (int, float)) and not isinstance(v, bool)
            cls = ' class="num"' if numbers_right and i and number else ""
            cells.append(f"<td{cls}>{html.escape(fmt(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def metrics_rows(bundle: RunBundle) -> tuple[list[str], list[list[Any]]]:
    """(splits, rows): one row per metric, one column per split (`analysis.metrics_table`: each
    flip rate first as "unmodified → steered [95% interval]")."""
    table = metrics_table(bundle)
    splits = [c for c in table.columns if c != "metric"]
    return splits, table.values.tolist()


def html_sentences(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in items) + "</ul>"


def _check_sections(bundle: RunBundle, heading: str, prefix: str) -> list[str]:
    found = bundle.checks()
    if not found:
        return []
    data = found[0]
    sub = "h3" if heading == "h2" else "h4"
    out = [f"<{heading}>Does the map mean anything?</{heading}>", html_sentences(check_findings(bundle))]
    for title, frame in (
        ("Random control", random_table(data)),
        ("Knock-outs of the same components", ablation_table(data)),
        ("Next to the free maps", free_table(data) if free_part(data) else pd.DataFrame()),
        ("Exact activation patching of each ranking's top cells", patching_table(data)),
        ("Which ranking localises the answer", localisation_table(data)),
        ("Generalisation", generalisation_table(data)),
        ("Side effects on neutral text", side_effects_table(data)),
    ):
        if not frame.empty:
            out += [f"<{sub}>{title}</{sub}>", html_table(frame.astype(object).values.tolist(), list(frame.columns))]
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
    cfg = bundle.config  # config.json as stored, shown whole
    shows, cannot = findings(bundle)
    splits, metric_rows = metrics_rows(bundle)
    summary = bundle.info.get("summary")
    sub = "h3" if heading == "h2" else "h4"
    return [
        f'<p class="caption">Dataset: {html.escape(str(summary))}</p>' if summary else "",
        f"<{heading}>What the figures show</{heading}>",
        html_sentences(shows),
        f"<{heading}>What they cannot show</{heading}>",
        html_sentences(cannot),
        f"<{heading}>Metrics</{heading}>",
        '<p class="caption">Each flip rate is given after the unmodified model\'s rate (β = 0), with its 95% '
        "Wilson interval and the number of prompts; with the interval by group where they come from 5 groups or "
        "more, else with the count of groups (the Wilson interval reads the prompts as independent).</p>",
        html_table(metric_rows, ["metric", *splits]),
        f"<{heading}>Figures</{heading}>",
        *[x.replace("<h3>", f"<{sub}>").replace("</h3>", f"</{sub}>") for x in _figure_sections(bundle, prefix)],
        *_check_sections(bundle, heading, prefix),
        "<details><summary>Configuration</summary>"
        + html_table([[k, cfg[k]] for k in sorted(cfg)], ["key", "value"], numbers_right=False)
        + "</details>",
    ]


def _page(title: str, subtitle: str, body: list[str]) -> str:
    from plotly.offline import get_plotlyjs

    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{STYLE}</style>",
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


def _subtitle(bundle: RunBundle) -> str:
    cfg = bundle.record.config
    return f"{cfg.method} · {cfg.task} · {cfg.model} · created {bundle.record.provenance.created or '?'}"


def render_report(bundle: RunBundle) -> str:
    """One self-contained HTML page of ``bundle``: what its figures show and cannot show (computed
    from its numbers), its metrics with base rates and intervals, every figure of
    `panels.run_figures` (interactive, token labels on the position axes) and its configuration;
    plotly.js inlined once, so it opens with no network."""
    return _page(f"actscale run {bundle.run_id}", _subtitle(bundle), _run_sections(bundle, "h2"))


def comparison_frame(bundles: list[RunBundle]) -> pd.DataFrame:
    """One row per run: its method, data and headline figures on the split it is judged by."""
    rows = []
    for b in bundles:
        metrics = filled_metrics(b)
        split = shown_split(metrics) or ""
        m = metrics.get(split) or SplitMetrics()
        n_eff, n_comp = m.n_effective, m.n_components
        cfg = b.record.config
        rows.append(
            {
                "run": b.run_id,
                "method": b.method,
                "task": cfg.task,
                "model": cfg.model,
                "seed": cfg.seed,
                "split": split,
                "β = +1 (unmodified → steered [95% CI])": rate_text(m, "flip_acc_pos"),
                "β = −1 (unmodified → steered [95% CI])": rate_text(m, "flip_acc_neg"),
                "faithfulness KL": m.faithfulness_kl,
                "effective / components": f"{n_eff} / {n_comp}" if n_eff is not None and n_comp else "n/a",
                "parameters": m.n_params,
            }
        )
    return pd.DataFrame(rows)


def render_comparison_report(bundles: list[RunBundle]) -> str:
    """One self-contained HTML page comparing ``bundles`` (Compare's selection): a table of their
    headline figures, the comparison figures, sentences on what differs measurably, then each
    run's own section; plotly.js inlined once for the whole file. Raises ValueError for none."""
    if not bundles:
        raise ValueError("a comparison report needs at least one run")
    table = comparison_frame(bundles)
    # the logit-bias floor beside the runs on each dataset among them, as on the Compare page
    df = pd.concat([metrics_frame(bundles, metrics_of=filled_metrics), floor_frame(bundles)], ignore_index=True)
    figures = []
    for i, fig in enumerate((plots.plot_method_comparison(df), plots.plot_param_counts(df))):
        figures.append(
            fig.to_html(
                full_html=False, include_plotlyjs=False, div_id=f"compare-figure-{i}", config={"displaylogo": False}
            )
        )
    body = [
        "<h2>The runs</h2>",
        html_table(table.values.tolist(), list(table.columns)),
        "<h2>What the comparison shows</h2>",
        html_sentences(
            [*(comparison_findings(bundles) or ["One run: nothing to compare."]), floor_text(bundles).replace("**", "")]
        ),
        *[f'<section class="figure">{f}</section>' for f in figures],
    ]
    for i, b in enumerate(bundles):
        body += [
            f'<h2 id="run-{html.escape(b.run_id)}">Run {html.escape(b.run_id)}</h2>',
            f'<p class="caption">{html.escape(_subtitle(b))}</p>',
        ]
        body += _run_sections(b, "h3", prefix=f"run{i}-")
    methods = ", ".join(dict.fromkeys(b.method for b in bundles))
    return _page(f"actscale: {len(bundles)} runs compared", methods, body)
