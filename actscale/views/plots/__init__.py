"""Figures of docs/method.md §6, as pure functions from a bundle or a tidy DataFrame to a plotly
figure. No model is needed for any of them (viewer mode). The numbers come from `analysis`;
this package only draws them: the run's maps (`maps`), its metrics and comparisons (`metrics`),
the map checks (`checks`), on one style (`style`)."""

from actscale.views.plots.checks import (
    plot_generalisation,
    plot_localisation,
    plot_stability_map,
    plot_sufficiency,
    plot_sufficiency_overlay,
)
from actscale.views.plots.maps import (
    layer_position_map,
    mark_component,
    plot_component_map,
    plot_dyn_prompt,
    plot_dyn_weight_norms,
    plot_free_map,
    plot_head_heatmap,
    plot_scalar_heatmap,
    plot_steer_cos,
    plot_steer_heatmaps,
    plot_steer_ratio,
    plot_trigger_map,
    steer_norm_ratio,
)
from actscale.views.plots.metrics import (
    COMPARISON_PANELS,
    METRIC_LABELS,
    plot_beta_curve,
    plot_history,
    plot_length_generalisation,
    plot_method_comparison,
    plot_param_counts,
    plot_reliability,
    plot_run_history,
    plot_tradeoff,
)
from actscale.views.plots.style import DIVERGING, LAYOUT, SEQUENTIAL, TEMPLATE, every_tick, heatmap, new_figure, styled
from actscale.views.plots.svg import heatmap_svg
from actscale.views.plots.svg_lines import figure_svg, lines_svg

__all__ = [
    "COMPARISON_PANELS",
    "DIVERGING",
    "LAYOUT",
    "METRIC_LABELS",
    "SEQUENTIAL",
    "TEMPLATE",
    "every_tick",
    "figure_svg",
    "heatmap",
    "heatmap_svg",
    "layer_position_map",
    "lines_svg",
    "mark_component",
    "new_figure",
    "plot_beta_curve",
    "plot_component_map",
    "plot_free_map",
    "plot_dyn_prompt",
    "plot_dyn_weight_norms",
    "plot_generalisation",
    "plot_localisation",
    "plot_head_heatmap",
    "plot_history",
    "plot_length_generalisation",
    "plot_method_comparison",
    "plot_param_counts",
    "plot_reliability",
    "plot_run_history",
    "plot_scalar_heatmap",
    "plot_stability_map",
    "plot_steer_cos",
    "plot_steer_heatmaps",
    "plot_steer_ratio",
    "plot_sufficiency",
    "plot_sufficiency_overlay",
    "plot_tradeoff",
    "plot_trigger_map",
    "steer_norm_ratio",
    "styled",
]
