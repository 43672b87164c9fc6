"""Runs summarised for people: the table of a store's runs, and a self-contained HTML report of
one run to send to collaborators.

The report is one file that opens with no network and no server: its configuration, its
metrics and every figure of `views.run_figures`, interactive, with plotly.js inlined once.
No Streamlit here; every string that goes into HTML is escaped.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pandas as pd

from actscale import views
from actscale.analysis import metrics_table, rate_text
from actscale.store import RunBundle, RunListing

# Columns of the runs table, in order. Headline metrics are the test split's (method.md §4).
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
        # Each flip rate after the unmodified model's rate, with its interval (method.md §4).
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


def render_report(bundle: RunBundle) -> str:
    """One self-contained HTML page of ``bundle``: configuration, metrics and every figure of
    `views.run_figures`, interactive, with plotly.js inlined once (opens with no network)."""
    from plotly.offline import get_plotlyjs

    cfg = bundle.config
    title = f"actscale run {bundle.run_id}"
    subtitle = (
        " · ".join(str(cfg.get(k, "")) for k in ("method", "task", "model")) + f" · created {cfg.get('created', '?')}"
    )
    config_rows = [[k, cfg[k]] for k in sorted(cfg)]
    splits, metric_rows = metrics_rows(bundle)
    summary = bundle.info.get("summary")
    figures = []
    for i, (name, fig) in enumerate(views.run_figures(bundle).items()):
        div = fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=f"figure-{i}",
            config={"displaylogo": False, "toImageButtonOptions": {"format": "svg"}},
        )
        figures.append(f'<section class="figure"><h3>{html.escape(name)}</h3>{div}</section>')
    dataset_line = f'<p class="caption">Dataset: {html.escape(str(summary))}</p>' if summary else ""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{_STYLE}</style>",
            # plotly.js once, inline: no network is needed to open the file.
            f'<script type="text/javascript">{get_plotlyjs()}</script>',
            "</head><body>",
            f"<h1>{html.escape(title)}</h1>",
            f'<p class="caption">{html.escape(subtitle)}</p>',
            dataset_line,
            "<h2>Metrics</h2>",
            _table(metric_rows, ["metric", *splits]),
            "<h2>Figures</h2>",
            *figures,
            "<h2>Configuration</h2>",
            _table(config_rows, ["key", "value"], numbers_right=False),
            '<p class="caption">Made with actscale; the run bundle (config.json, params.safetensors, …) '
            "reproduces every number here.</p>",
            "</body></html>",
        ]
    )
