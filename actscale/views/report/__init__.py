"""Runs summarised for people: the table of a store's runs (`runs_table`), sentences computed
from the numbers on what the figures show and cannot show (`sentences`), and self-contained HTML
reports of one run or of several compared (`html_report`), to send to collaborators.

A report is one file that opens with no network and no server: the sentences, the metrics with
base rates and intervals, every figure of `panels.run_figures` (interactive) and the
configuration, with plotly.js inlined once per file. No Streamlit here; every string that goes
into HTML is escaped."""

from actscale.views.report.html_report import (
    STYLE,
    comparison_frame,
    fmt,
    html_sentences,
    html_table,
    metrics_rows,
    render_comparison_report,
    render_report,
)
from actscale.views.report.runs_table import RUN_COLUMNS, headline_frame, human_size, run_row, runs_frame, short_date
from actscale.views.report.sentences import (
    check_findings,
    comparison_findings,
    direction_sentence,
    findings,
    interval_of,
    n_text,
    shown_split,
)

__all__ = [
    "RUN_COLUMNS",
    "STYLE",
    "check_findings",
    "comparison_findings",
    "comparison_frame",
    "direction_sentence",
    "findings",
    "fmt",
    "headline_frame",
    "html_sentences",
    "html_table",
    "human_size",
    "interval_of",
    "metrics_rows",
    "n_text",
    "render_comparison_report",
    "render_report",
    "run_row",
    "runs_frame",
    "short_date",
    "shown_split",
]
