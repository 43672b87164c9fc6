"""Explore's sections below the run's maps, as tabs that draw only when opened.

A browser spends most of a page's time drawing figures, so Explore draws the metric tiles and
the run's maps first and puts the rest here: the metrics table and training curves, the map
checks, the per-prompt reliability and the top components. Only the open tab's content runs
(``st.tabs`` with ``on_change="rerun"``); the open tab is kept in the link (``?tab=``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from actscale.runs.bundle import RunBundle
from actscale.ui import checks_panel, common, links
from actscale.ui.keys import Keys
from actscale.views import analysis, plots

Figure = Callable[..., None]  # the page's `figure(func, *args, key=...)`

# ?tab= value → the tab's label, in the order they are shown; the first opens by default.
TABS: dict[str, str] = {
    "training": "Metrics and training",
    "checks": "Does the map mean anything?",
    "reliability": "Reliability per example",
    "top": "Top components",
}
WORST_SHOWN = 10  # the prompts furthest from flipping: a table's rows, and the figure's lines


def show(bundle: RunBundle, checks_data: dict[str, Any] | None, figure: Figure, *, interactive: bool) -> None:
    """The tabs, with only the open one drawn (each failing on its own, as one line);
    ``interactive``: the page's figures are plotly's, and so is the first tab's table."""
    slugs, labels = list(TABS), list(TABS.values())
    links.keep_valid(Keys.EXPLORE_TAB, lambda v: v in labels, labels[0])
    links.from_link(Keys.EXPLORE_TAB, "tab", lambda raw: TABS[links.parse_choice(raw, slugs, "tab")], labels[0])
    tabs = st.tabs(labels, key=Keys.EXPLORE_TAB, on_change="rerun")
    sections: dict[str, Callable[[], None]] = {
        "training": lambda: _training(bundle, figure, interactive),
        "checks": lambda: checks_panel.show(bundle, checks_data, figure),
        "reliability": lambda: _reliability(bundle, figure),
        "top": lambda: _top_components(bundle),
    }
    for slug, tab in zip(slugs, tabs):
        if tab.open:
            links.to_link("tab", None if slug == slugs[0] else slug)
            with tab, common.guarded(TABS[slug]):
                sections[slug]()


def _training(bundle: RunBundle, figure: Figure, interactive: bool) -> None:
    """Every metric of every split, the training curves, and the metrics per group. The tab opens
    with the page: unless the figures are interactive its table is text, as its curves are an
    image, so that the page loads neither plotly.js nor the table grid's code before the maps are
    drawn (docs/measured.md, "Explore")."""
    table = analysis.metrics_table(bundle)
    if interactive:  # the grid beside the curves (it scrolls sideways)
        left, right = st.columns([2, 3])
        with left:
            common.show_table(
                table, f"{bundle.run_id}-metrics", "metrics", hide_index=True, height=35 * (len(table) + 1) + 3
            )  # every row, no inner scrolling
        with right:
            figure(plots.plot_run_history, key="history")
    else:  # the curves, then the text table across the page (in a column its cells would wrap)
        with st.columns([3, 2])[0]:
            figure(plots.plot_run_history, key="history")
        common.show_table(table, f"{bundle.run_id}-metrics", "metrics", text=True)
    groups = bundle.summary.get("group_metrics")
    if isinstance(groups, list) and groups:
        st.markdown("**Per group** (template family, country or the dataset's groups)")
        table = analysis.group_table(groups)
        common.show_table(table, f"{bundle.run_id}-groups", "groups", text=not interactive, hide_index=True)


def _reliability(bundle: RunBundle, figure: Figure) -> None:
    """How far each prompt moved: a summary, the figure (bands, the worst prompts as lines), the
    worst prompts as a table and every prompt as a CSV."""
    split = "test" if any(r.get("split") == "test" for r in bundle.dataset) else "train"
    frame, summary = analysis.reliability(bundle, split)
    if frame.empty:
        st.info("This bundle holds no per-prompt results.")
        return
    st.caption(
        f"{int(summary['n'])} {split} prompts. Never flipped: {100 * summary['never_flipped_pos']:.0f}% at "
        f"β = +1, {100 * summary['never_flipped_neg']:.0f}% at β = −1. Pushed the wrong way: "
        f"{100 * summary['wrong_way_pos']:.0f}% at β = +1, {100 * summary['wrong_way_neg']:.0f}% at β = −1. "
        f"The figure draws the spread of all of them as bands and the {WORST_SHOWN} furthest from flipping as "
        "lines: a single prompt inside a band is not shown (it is in the CSV)."
    )
    figure(plots.plot_reliability, split, WORST_SHOWN, key="reliability")
    st.markdown(f"**The {WORST_SHOWN} prompts furthest from flipping** (shortfall > 0: not flipped in one direction)")
    common.show_table(frame.head(WORST_SHOWN), f"{bundle.run_id}-worst", "worst", hide_index=True)
    st.download_button(
        "Download every prompt (CSV)",
        lambda: frame.to_csv(index=False).encode(),
        file_name=f"{bundle.run_id}-reliability.csv",
        mime="text/csv",
        key="dl-reliability-all",
        on_click="ignore",
    )


def _top_components(bundle: RunBundle) -> None:
    k = st.number_input("How many", min_value=5, max_value=500, value=20, step=5, key="explore_top_k")
    st.caption(f"The components with the largest {analysis.run_method(bundle).magnitude_label} (in absolute value).")
    common.show_table(
        common.run_plot(bundle, analysis.top_components, int(k)),
        f"{bundle.run_id}-top-components",
        "top",
        hide_index=True,
    )
