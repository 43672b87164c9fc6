"""Explore one stored run: what the intervention learned, where, and how training went.

Viewer mode: this page never loads a model; everything comes from the bundle (method.md §6.1,
§6.2, §6.6). Figures are cached per run folder, so moving a slider redraws at once.
"""
from typing import Callable

import streamlit as st

from actscale import plots
from actscale.ui import common

common.page_header(
    "Explore a run",
    "What the intervention learned, per site, layer and position. Colours are centred on "
    "“no change” (white); no model is loaded on this page.",
)

bundle = common.pick_run(key="explore_run")
if bundle is None:
    st.stop()


def figure(func: Callable, *args, key: str) -> None:
    """A cached figure of this run, drawn with its HTML download."""
    common.show_figure(common.run_plot(bundle, func, *args), f"{bundle.run_id}-{key}", key)


def grid(items: list[tuple[Callable, tuple, str]], n_cols: int = 2) -> None:
    """(plot function, arguments, key) drawn side by side, ``n_cols`` to a row."""
    for start in range(0, len(items), n_cols):
        for col, (func, args, key) in zip(st.columns(n_cols), items[start:start + n_cols]):
            with col:
                figure(func, *args, key=key)


cfg, method = bundle.config, bundle.method
info = bundle.info if isinstance(bundle.info, dict) else {}  # analysis.json is optional and unchecked
with common.guarded("The run's summary"):
    st.caption(
        f"**{method}** on **{cfg.get('task')}** · model `{cfg.get('model')}` · sites {', '.join(map(str, bundle.sites))} · "
        f"{info.get('steps_run', cfg.get('steps'))} steps · {info.get('summary', f'{len(bundle.dataset)} prompts')}"
    )

# Each section fails on its own, as one line: a damaged tensor hides one figure, not the page.
st.subheader("Metrics and training")
with common.guarded("The metrics"):
    split = "test" if "test" in bundle.metrics else "train"
    shown = bundle.metrics.get(split) or {}
    names = (("flip_acc_pos", "flip accuracy β=+1"), ("flip_acc_neg", "flip accuracy β=−1"),
             ("faithfulness_kl", "faithfulness KL"), ("n_effective", "effective components"))
    for col, (name, label) in zip(st.columns(4), names):
        value = shown.get(name)
        col.metric(f"{label} ({split})",
                   "–" if value is None else (f"{value:.3g}" if isinstance(value, float) else f"{value:,}"))
    table = plots.metrics_table(bundle)
    left, right = st.columns([2, 3])
    with left:
        common.show_table(table, f"{bundle.run_id}-metrics", "metrics", hide_index=True,
                          height=35 * (len(table) + 1) + 3)  # every row, no inner scrolling
    with right:
        figure(plots.plot_run_history, key="history")

st.subheader("What was learned")
with common.guarded("The parameter figures"):
    if method == "activscalar":
        st.caption("α per layer and position: the activation is multiplied by 1 + β·α (red: amplified, "
                   "blue: weakened; the head site is summed over heads here).")
        grid([(plots.plot_scalar_heatmap, (site,), f"alpha-{site}") for site in bundle.sites])
    elif method == "steervec":
        st.caption("The added vector's size relative to the activation (‖v‖/‖h‖) and its direction "
                   "(cos(v, h): +1 strengthens what is there, −1 opposes it). Head site: mean over heads.")
        for site in bundle.sites:
            ratio, cos = common.run_plot(bundle, plots.plot_steer_heatmaps, site)
            left, right = st.columns(2)
            with left:
                common.show_figure(ratio, f"{bundle.run_id}-ratio-{site}", f"ratio-{site}")
            with right:
                common.show_figure(cos, f"{bundle.run_id}-cos-{site}", f"cos-{site}")
    else:
        st.caption("DynScalar reads its scalar off the activation: α = wᵀĥ + b per (site, layer), shared by "
                   "all positions. Below: the size of w per layer, and the scalars it produced on one prompt.")
        figure(plots.plot_dyn_weight_norms, key="dyn-norms")

if "head" in bundle.sites:
    st.subheader("Attention heads")
    with common.guarded("The head figures"):
        if method == "dynscalar":
            figure(plots.plot_head_heatmap, None, key="head-dyn")
        else:
            labels = plots.position_labels(bundle)
            position = st.select_slider(
                "Position", options=list(range(len(labels))), value=len(labels) - 1,
                format_func=lambda i: labels[i], key="explore_head_position",
                help="The head site at one position of the prompt (left); the right figure sums all positions.",
            )
            grid([(plots.plot_head_heatmap, (int(position),), "head-position"), (plots.plot_head_heatmap, (None,), "head-sum")])

if method == "dynscalar":
    st.subheader("Scalars on one prompt")
    with common.guarded("The per-prompt scalars"):
        n_alpha = len(bundle.analysis.get(f"dynalpha.{bundle.sites[0]}", []))
        if n_alpha and n_alpha == len(bundle.dataset):
            rows = bundle.dataset
            index = st.selectbox(
                "Prompt", list(range(n_alpha)), key="explore_dyn_prompt",
                format_func=lambda i: f"{i} · {rows[i].get('split', '')} · {str(rows[i].get('prompt', ''))[:90]}",
            )
            grid([(plots.plot_dyn_prompt, (site, int(index)), f"dyn-prompt-{site}") for site in bundle.sites])
        else:
            st.info("This bundle holds no per-prompt scalars.")
    st.subheader("Across prompt lengths")
    with common.guarded("The length figure"):
        figure(plots.plot_length_generalisation, key="dyn-lengths")

st.subheader("Top components")
with common.guarded("The top components"):
    k = st.number_input("How many", min_value=5, max_value=500, value=20, step=5, key="explore_top_k")
    metric = {"activscalar": "|α|", "steervec": "‖v‖/‖h‖", "dynscalar": "‖w‖"}.get(method, "size")
    st.caption(f"The components with the largest {metric}.")
    common.show_table(common.run_plot(bundle, plots.top_components, int(k)), f"{bundle.run_id}-top-components",
                      "top", hide_index=True)

dropped = info.get("dropped") or []
if isinstance(dropped, list) and dropped:
    with st.expander(f"{len(dropped)} prompts were dropped from the dataset, and why"):
        with common.guarded("The dropped prompts"):
            st.dataframe(dropped, width="stretch")
