"""Explore one stored run: what the intervention learned, where, and how training went.

Viewer mode: this page never loads a model; everything comes from the bundle (docs/method.md §6.1,
§6.2, §6.6). Figures are cached per run folder, so moving a slider redraws at once.
"""

from collections.abc import Callable

import pandas as pd
import streamlit as st

from actscale.runs.records import SplitMetrics
from actscale.ui import common, explore_tabs, links
from actscale.ui.keys import Keys
from actscale.views import analysis, panels, plots

common.page_header(
    "Explore a run",
    "What the intervention learned, per site, layer and position. Colours are centred on "
    "“no change” (white); no model is loaded on this page.",
)

bundle = common.pick_run(key="explore_run")
if bundle is None:
    st.stop()


def figure(func: Callable, *args, key: str, mark: tuple[int, ...] | None = None) -> None:
    """A cached figure of this run (a heatmap as SVG, drawn at once, unless the maps are
    interactive); ``mark``: a component to outline on it (a copy: the cached figure is shared)."""
    fig = common.run_plot(bundle, func, *args)
    marked = fig if mark is None else plots.mark_component(fig, mark)
    common.show_map(marked, f"{bundle.run_id}-{key}", key, interactive=interactive)


def grid(items: list[tuple[Callable, tuple, str, tuple[int, ...] | None]], n_cols: int = 2) -> None:
    """(plot function, arguments, key, component to mark) drawn side by side, ``n_cols`` to a row
    (one: each across the page)."""
    if n_cols == 1:
        for func, args, key, mark in items:
            figure(func, *args, key=key, mark=mark)
        return
    for start in range(0, len(items), n_cols):
        for col, (func, args, key, mark) in zip(st.columns(n_cols), items[start : start + n_cols]):
            with col:
                figure(func, *args, key=key, mark=mark)


def _steps_text(info: dict, steps: int) -> str:
    """ "18 steps", or "54 steps (3 cycles of 18)" for a run that needed more than one cycle."""
    target = info.get("target") if isinstance(info.get("target"), dict) else {}
    cycles = target.get("cycles_run", 1)
    return f"{info.get('steps_run', steps)} steps" + (f" ({cycles} cycles of {steps})" if cycles > 1 else "")


cfg, method = bundle.record.config, bundle.method
info = bundle.summary  # analysis.json is optional and unchecked
with common.guarded("The run's summary"):
    st.caption(
        f"**{method}** on **{cfg.task}** · model `{cfg.model}` · "
        f"sites {', '.join(map(str, bundle.sites))} · "
        f"{_steps_text(info, cfg.steps)} · {info.get('summary', f'{len(bundle.dataset)} prompts')}"
    )
    if (unmet := analysis.target_text(info, cfg)) is not None:
        st.warning(unmet, icon=":material/warning:")

# ---- What the link points at: a site (or all), one of its components and how the maps are drawn
# (?site=, ?component=, ?interactive=).
ALL_SITES = ""
site_options = [ALL_SITES, *map(str, bundle.sites)]
site, component, interactive = ALL_SITES, None, False

with common.guarded("Choosing a site and a component"):
    links.keep_valid(Keys.EXPLORE_SITE, lambda v: v in site_options, ALL_SITES)
    links.from_link(Keys.EXPLORE_SITE, "site", lambda raw: links.parse_choice(raw, site_options[1:], "site"), ALL_SITES)
    left, right = st.columns([1, 3])
    site = str(
        left.selectbox(
            "Site",
            site_options,
            key=Keys.EXPLORE_SITE,
            format_func=lambda v: v or "all sites",
            help="Show one site's figures only, and pick one of its components.",
        )
    )
    links.to_link("site", site or None)
    links.from_link(Keys.EXPLORE_INTERACTIVE, "interactive", lambda raw: links.parse_flag(raw, "interactive"), False)
    interactive = bool(
        left.toggle(
            "Interactive figures",
            key=Keys.EXPLORE_INTERACTIVE,
            help="Off: each map, and the training curves, an SVG image the browser draws at once, with an SVG "
            "download (in the file, a cell's value is its tooltip), and the metrics as a text table. On: plotly "
            "figures (zoom, pan, hover, an HTML download) drawn once plotly.js is loaded, and a sortable table.",
        )
    )
    links.to_link("interactive", "1" if interactive else None)
    NONE = ""
    if site:
        axes = analysis.run_method(bundle).component_axes(site)
        ranked = common.run_plot(bundle, analysis.components, site)
        values = {links.format_indices(index): value for index, value in ranked}
        shape = analysis.component_values(bundle, site).shape
        links.keep_valid(Keys.EXPLORE_COMPONENT, lambda v: v == NONE or v in values, NONE)
        links.from_link(
            Keys.EXPLORE_COMPONENT,
            "component",
            lambda raw: links.format_indices(links.parse_indices(raw, shape, axes)),
            NONE,
        )
        magnitude = analysis.run_method(bundle).magnitude_label

        def component_option(v: str, site: str = site, magnitude: str = magnitude) -> str:
            if v == NONE:
                return "none"
            index = tuple(map(int, v.split(",")))
            return f"{analysis.component_label(bundle, site, index)} · {magnitude} = {values[v]:+.4g}"

        chosen = str(
            right.selectbox(
                f"Component ({', '.join(axes)}; largest {magnitude} first)",
                [NONE, *values],
                key=Keys.EXPLORE_COMPONENT,
                format_func=component_option,
            )
        )
        component = tuple(map(int, chosen.split(","))) if chosen else None
        links.to_link("component", chosen or None)
        if component is not None:
            st.markdown(common.plain(analysis.describe_component(bundle, site, component)))
    else:
        links.to_link("component", None)

# Each section fails on its own, as one line: a damaged tensor hides one figure, not the page.
st.subheader("Metrics")
with common.guarded("The metrics"):
    metrics = analysis.filled_metrics(bundle)
    split = "test" if "test" in metrics else "train"
    shown = metrics.get(split) or SplitMetrics()
    cols = st.columns(4)
    # Each flip rate is read against the unmodified model's rate: the tile says what moved.
    for col, (name, label) in zip(cols, (("flip_acc_pos", "flip rate β = +1"), ("flip_acc_neg", "flip rate β = −1"))):
        rate, base = shown.rate(name), shown.base_rate(name)
        delta, arrow = (None, {}) if rate is None or base is None else analysis.change_delta(rate - base, 2)
        col.metric(
            f"{label} ({split}, n = {shown.n_prompts if shown.n_prompts is not None else '?'})",
            "–" if rate is None else f"{rate:.2f}",
            None if delta is None else f"{delta} vs unmodified {base:.2f}",
            help=analysis.rate_text(shown, name) + " — unmodified → steered [95% Wilson interval]",
            **arrow,
        )
    kl = shown.faithfulness_kl
    cols[2].metric(f"faithfulness KL ({split})", "–" if kl is None else f"{kl:.3g}", help="lower is better")
    n_eff, n_comp, frac = shown.n_effective, shown.n_components, shown.effective_frac
    # The cells' share only where it says something else (a component that is a cell has the same share).
    share, cell_share = (None if f is None else f"{100 * f:.1f}%" for f in (frac, shown.cells_effective_frac))
    cells = "" if cell_share is None or cell_share == share else f"; {cell_share} of cells"
    # The count alone as the value ("140 of 960" was cut to "140 of …" in a laptop's quarter
    # page), the whole under it, without an arrow: a share is not a change.
    cols[3].metric(
        "effective components",
        "n/a" if n_eff is None else f"{n_eff:,}",
        None if n_eff is None or share is None else f"of {n_comp:,} ({share}){cells}",
        delta_color="off",
        delta_arrow="off",
        help="components whose relative change of the activation exceeds τ (docs/method.md §4); cells: the unit "
        "every method shares, (site, layer, position[, head]) — the share of them changed by more than τ, which "
        "compares methods whose components differ (a DynScalar component is a whole layer); n/a for a run stored "
        "without the arrays to recompute it",
    )
    # The tiles give each rate with its base and n; the sentence adds its interval, as quoted.
    if shown.rate("flip_acc_pos") is not None and shown.rate("flip_acc_neg") is not None:
        flips = analysis.flips_text(split, shown)
        st.caption(f"{flips[0].upper()}{flips[1:]} (unmodified → steered [95% Wilson interval]).")

PICK_PARAMS = {"prompt": "prompt_index", "position": "position"}  # a panel's pick → its query parameter


def pick_widget(panel: panels.Panel) -> int:
    """The one widget that sets a panel's pick: a prompt of the run's dataset, or a position;
    kept in the link (?prompt_index=, ?position=)."""
    if panel.pick == "prompt":
        rows = bundle.dataset
        links.keep_valid(Keys.EXPLORE_PROMPT, lambda v: 0 <= v < len(rows), 0)
        links.from_link(Keys.EXPLORE_PROMPT, "prompt_index", lambda raw: links.parse_index(raw, len(rows), "prompt"), 0)
        value = int(
            st.selectbox(
                "Prompt",
                list(range(len(rows))),
                key=Keys.EXPLORE_PROMPT,
                format_func=lambda i: f"{i} · {rows[i].get('split', '')} · {str(rows[i].get('prompt', ''))[:90]}",
            )
        )
        links.to_link("prompt_index", str(value))
        return value
    labels = analysis.position_labels(bundle)
    last = len(labels) - 1  # where the answer is read
    links.keep_valid(Keys.EXPLORE_POSITION, lambda v: 0 <= v <= last, last)
    links.from_link(
        Keys.EXPLORE_POSITION, "position", lambda raw: links.parse_index(raw, len(labels), "position"), last
    )
    value = int(
        st.select_slider(
            "Position", options=list(range(len(labels))), format_func=lambda i: labels[i], key=Keys.EXPLORE_POSITION
        )
    )
    links.to_link("position", str(value))
    return value


with common.guarded("The positions' coverage"):
    # Answer-aligned runs reach their early positions through long prompts only: say which
    # parameters rest on few prompts before the figures show them.
    rare = analysis.rare_positions(bundle)
    if rare and "position" in analysis.run_method(bundle).component_axes(bundle.sites[0]):
        st.caption(
            f"⚠ Positions reached by fewer than half of the training prompts (their parameters are learned "
            f"from few prompts; the share is in each label): {', '.join(r.split(':')[0] for r in rare)}"
        )

checks_data = analysis.run_checks_data(bundle)
with common.guarded("The map checks' summary"):
    # The map is a claim: its check stands next to it (the figures are further down).
    if checks_data and "map" in checks_data:
        st.info("**Map check.** " + analysis.k90_text(checks_data) + " Details under “Does the map mean anything?”.")
    else:
        st.caption(
            "No map checks for this run yet: whether these components carry the behaviour is untested "
            "(see “Does the map mean anything?” below)."
        )

# The method's own panels (actscale/views/panels.py), each failing on its own as one line; with one site chosen,
# only its figures (and those of no site in particular), its component outlined on its maps.
picked: set[str] = set()
for panel in panels.explore_panels(bundle):
    specs = [spec for spec in panel.figures if not site or spec.site in (None, site)]
    if not specs:
        continue
    st.subheader(panel.title)
    with common.guarded(panel.name):
        if panel.unavailable:
            st.info(panel.unavailable)
            continue
        if panel.caption:
            st.caption(panel.caption)
        pick = pick_widget(panel) if panel.pick else None
        if panel.pick:
            picked.add(PICK_PARAMS[panel.pick])
        items = [
            (
                spec.func,
                (*spec.args, pick) if spec.takes_pick else spec.args,
                spec.key,
                component if component is not None and spec.maps_components and spec.site == site else None,
            )
            for spec in specs
        ]
        grid([item for item, spec in zip(items, specs) if not spec.wide])
        grid([item for item, spec in zip(items, specs) if spec.wide], n_cols=1)
for name in set(PICK_PARAMS.values()) - picked:  # a pick not shown is not part of the view
    links.to_link(name, None)

# Below the maps: tabs that draw only when opened (the metrics table and curves, the checks'
# figures, the per-prompt reliability, the top components), so the maps are drawn first.
explore_tabs.show(bundle, checks_data, figure, interactive=interactive)

dropped = info.get("dropped") or []
if isinstance(dropped, list) and dropped:
    with st.expander(f"{len(dropped)} prompts were dropped from the dataset, and why"):
        with common.guarded("The dropped prompts"):
            # text unless the figures are interactive, as the first tab's tables: no grid to load
            frame = pd.DataFrame(dropped)
            common.show_table(frame, f"{bundle.run_id}-dropped", "dropped", text=not interactive)
