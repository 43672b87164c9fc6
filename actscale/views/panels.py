"""Which figures show a run, per method: the registry of the Explore page's panels, also used
by the HTML report. A method without panels of its own gets the generic ones (a map of its
components' sizes per site, and the head site), so a newly registered method draws at once.

Panels are plain data: titles, captions and the plot functions (callables, never names) with
their arguments. The page decides how to lay them out and which widget sets a panel's pick.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import plotly.graph_objects as go

from actscale.runs.bundle import RunBundle
from actscale.views import analysis, plots
from actscale.views.analysis import run_method

Pick = Literal["prompt", "position"]


@dataclass(frozen=True)
class FigureSpec:
    """One figure: ``func(bundle, *args)``, with the panel's pick appended when ``takes_pick``."""

    func: Callable[..., go.Figure]
    args: tuple[Any, ...]
    key: str  # unique on the page; also the download's file name
    title: str  # the heading of the figure in a report

    takes_pick: bool = False
    site: str | None = None  # the one site it shows (None: several, or none in particular)
    # Rows are layers and columns the second of the method's component axes at ``site`` (or, with
    # one axis, a bar per layer): a chosen component can be marked on it (`plots.mark_component`).
    maps_components: bool = False
    wide: bool = False  # drawn across the page, not in a column beside another figure


@dataclass(frozen=True)
class Panel:
    """A section of figures about one thing. ``pick``: the panel's figures take a prompt index
    or a position, chosen with one widget; ``unavailable``: why the panel cannot be drawn for
    this bundle (then only that is shown)."""

    title: str
    caption: str
    figures: tuple[FigureSpec, ...]
    pick: Pick | None = None
    unavailable: str = ""
    what: str = ""  # how an error names the panel ("The per-prompt scalars failed: ..."); default: the title

    @property
    def name(self) -> str:
        return self.what or self.title

    def default_pick(self, bundle: RunBundle) -> int:
        """The pick a report uses: the first prompt, or the last position (where the answer is read)."""
        return bundle.record.provenance.n_pos - 1 if self.pick == "position" else 0


PanelBuilder = Callable[[RunBundle], list[Panel]]
_PANELS: dict[str, PanelBuilder] = {}


def register_panels(method: str, builder: PanelBuilder) -> None:
    """Draw runs of ``method`` with ``builder``'s panels (replacing the generic ones)."""
    _PANELS[method] = builder


def explore_panels(bundle: RunBundle) -> list[Panel]:
    """The panels that show what ``bundle``'s intervention learned, in page order."""
    return _PANELS.get(bundle.method, generic_panels)(bundle)


def run_figures(bundle: RunBundle) -> dict[str, go.Figure]:
    """Every figure of one run, by title (the HTML report): the training curves and each
    panel's figures at the panel's default pick."""
    figs = {"training": plots.plot_run_history(bundle)}
    for panel in explore_panels(bundle):
        if panel.unavailable:
            continue
        for spec in panel.figures:
            args = (*spec.args, panel.default_pick(bundle)) if spec.takes_pick else spec.args
            figs[spec.title] = spec.func(bundle, *args)
    return figs


def check_figures(bundle: RunBundle) -> dict[str, go.Figure]:
    """The figures of the run's map checks (docs/method.md §7), by title; {} until they are run."""
    found = bundle.checks()
    data = found[0] if found else {}
    figs: dict[str, go.Figure] = {}
    if "map" in data:
        figs["sufficiency and necessity, with the random control and the knock-outs"] = plots.plot_sufficiency(bundle)
    figs |= _free_figures(bundle, data)
    if "stability" in data:
        for site in bundle.sites:
            figs[f"consensus over seeds — {site}"] = plots.plot_stability_map(bundle, site)
    if "generalisation" in data:
        figs["generalisation across groups, β = −1"] = plots.plot_generalisation(bundle, "flip_acc_neg")
        figs["generalisation across groups, β = +1"] = plots.plot_generalisation(bundle, "flip_acc_pos")
    return figs


def _free_figures(bundle: RunBundle, data: dict) -> dict[str, go.Figure]:
    """The free maps, exact patching's maps (where it patched) and the localisation curves, by title."""
    figs: dict[str, go.Figure] = {}
    if analysis.free_part(data) is None:
        return figs
    patched = (analysis.patching_part(data) or {}).get("rankings")
    for site in bundle.sites:
        figs[f"gradient × activation (AtP) — {site}"] = plots.plot_free_map(bundle, "atp", site)
        if patched:
            figs[f"exact activation patching — {site}"] = plots.plot_free_map(bundle, "patch", site)
    if analysis.localisation_part(data) is not None:
        figs["which ranking localises the answer"] = plots.plot_localisation(bundle)
    return figs


# ---------------------------------------------------------------- shared panels
def head_panels(bundle: RunBundle) -> list[Panel]:
    """The head site as layer × head: at a chosen position and summed over positions, or as it
    is for methods whose components have no position."""
    if "head" not in bundle.sites:
        return []
    if "position" not in run_method(bundle).component_axes("head"):
        return [
            Panel(
                "Attention heads",
                "",
                (FigureSpec(plots.plot_head_heatmap, (None,), "head-dyn", "heads", site="head", maps_components=True),),
            )
        ]
    return [
        Panel(
            "Attention heads",
            "The head site at one position of the prompt (left); the right figure sums all positions.",
            (
                FigureSpec(
                    plots.plot_head_heatmap, (), "head-position", "heads at the last position", True, site="head"
                ),
                FigureSpec(plots.plot_head_heatmap, (None,), "head-sum", "heads summed over positions", site="head"),
            ),
            pick="position",
        )
    ]


def generic_panels(bundle: RunBundle) -> list[Panel]:
    """Any method: the size of its components per site, then the head site."""
    method = run_method(bundle)
    figures = tuple(
        FigureSpec(
            plots.plot_component_map,
            (site,),
            f"components-{site}",
            f"{method.magnitude_name} {site}",
            site=site,
            maps_components=True,
        )
        for site in bundle.sites
    )
    return [
        Panel("What was learned", f"The size of each component ({method.magnitude_label}) per site.", figures),
        *head_panels(bundle),
    ]


# ---------------------------------------------------------------- the built-in methods
def _activscalar_panels(bundle: RunBundle) -> list[Panel]:
    figures = tuple(
        FigureSpec(
            plots.plot_scalar_heatmap, (site,), f"alpha-{site}", f"alpha {site}", site=site, maps_components=True
        )
        for site in bundle.sites
    )
    return [
        Panel(
            "What was learned",
            "α per layer and position: the activation is multiplied by 1 + β·α (red: "
            "amplified, blue: weakened; the head site is summed over heads here).",
            figures,
        ),
        *head_panels(bundle),
    ]


def _steervec_panels(bundle: RunBundle) -> list[Panel]:
    figures: list[FigureSpec] = []
    for site in bundle.sites:
        figures += [
            FigureSpec(
                plots.plot_steer_ratio, (site,), f"ratio-{site}", f"norm ratio {site}", site=site, maps_components=True
            ),
            FigureSpec(plots.plot_steer_cos, (site,), f"cos-{site}", f"cos {site}", site=site, maps_components=True),
        ]
    return [
        Panel(
            "What was learned",
            "The added vector's size relative to the activation (‖v‖/‖h‖) and its "
            "direction (cos(v, h): +1 strengthens what is there, −1 opposes it). Head site: mean over heads.",
            tuple(figures),
        ),
        *head_panels(bundle),
    ]


def _dynscalar_panels(bundle: RunBundle) -> list[Panel]:
    learned = Panel(
        "What was learned",
        "DynScalar reads its scalar off the activation: α = wᵀĥ + b per (site, "
        "layer), shared by all positions. Below: the size of w per layer, and the scalars it produced on "
        "one prompt.",
        (FigureSpec(plots.plot_dyn_weight_norms, (), "dyn-norms", "weight norms"),),
    )
    stored = bundle.dynalpha(bundle.sites[0])
    per_prompt = Panel(
        "Scalars on one prompt",
        "",
        tuple(
            FigureSpec(
                plots.plot_dyn_prompt,
                (site,),
                f"dyn-prompt-{site}",
                f"scalars on prompt 0 {site}",
                takes_pick=True,
                site=site,
            )
            for site in bundle.sites
        ),
        pick="prompt",
        what="The per-prompt scalars",
        unavailable=""
        if stored is not None and len(stored) == len(bundle.dataset) and len(stored)
        else "This bundle holds no per-prompt scalars.",
    )
    lengths = Panel(
        "Across prompt lengths",
        "",
        # six bars (three splits, two directions) for each of the prompts' lengths
        (FigureSpec(plots.plot_length_generalisation, (), "dyn-lengths", "length generalisation", wide=True),),
    )
    return [learned, *head_panels(bundle), per_prompt, lengths]


register_panels("activscalar", _activscalar_panels)
register_panels("steervec", _steervec_panels)
register_panels("dynscalar", _dynscalar_panels)
