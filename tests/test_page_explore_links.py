"""The Explore page's links that reproduce the view (docs/usage.md): the site, component, position
and prompt a link names open as named, and a bad value is one warning, through Streamlit's
AppTest on tiny-model runs."""

from __future__ import annotations

import pytest
from conftest import param
from explore_page_helpers import chart, chart_keys, open_link

pytestmark = pytest.mark.usefixtures("explore_env")


def plain_text(markdown: str) -> str:
    return markdown.replace("\\", "")


def test_describe_component_from_the_numbers(explore_runs):
    from actscale.views.analysis import components, describe_component, position_labels

    bundle = explore_runs[1]["activscalar"]
    alpha = bundle.params["alpha.attn_out"].numpy()
    layer, pos = 1, 2
    value = float(alpha[layer, pos])
    rank = int((abs(alpha) > abs(value)).sum()) + 1
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(rank % 10 if not 10 <= rank % 100 <= 20 else 0, "th")
    label = position_labels(bundle)[pos]
    tau = bundle.config["tau"]
    verdict = "effective" if abs(value) > tau else "not effective"
    assert describe_component(bundle, "attn_out", (layer, pos)) == (
        f"α at attn_out, layer {layer} · position {label} = {value:+.4g}: the {'' if rank == 1 else f'{rank}{suffix} '}"
        "largest in size of the "
        f"{alpha.size:,} components at this site; it changes its activation by {abs(value):.3g} of its size "
        f"({verdict} at τ = {tau:g})."
    )
    ranked = components(bundle, "attn_out")
    assert len(ranked) == alpha.size
    assert [abs(v) for _, v in ranked] == sorted((abs(v) for _, v in ranked), reverse=True)
    assert ranked[0][1] == float(alpha.flat[abs(alpha).argmax()])


def test_a_link_opens_the_site_and_component(explore_runs):
    bundle = explore_runs[1]["activscalar"]
    at = open_link(run=bundle.run_id, site="attn_out", component="1,2", interactive="1")
    assert not at.exception and not at.error and not at.warning
    assert at.selectbox(key="explore_site").value == "attn_out"
    assert at.selectbox(key="explore_component").value == "1,2"
    from actscale.views.analysis import describe_component

    assert describe_component(bundle, "attn_out", (1, 2)) in [plain_text(m.value) for m in at.markdown]
    # only that site's figures; the component outlined on its map
    keys = chart_keys(at)
    assert "alpha-attn_out" in keys and "alpha-mlp_out" not in keys and "head-sum" not in keys
    shapes = chart(at, "alpha-attn_out")["layout"]["shapes"]
    assert [(s["x0"], s["x1"], s["y0"], s["y1"]) for s in shapes] == [(1.5, 2.5, 0.5, 1.5)]
    assert (param(at, "run"), param(at, "site"), param(at, "component")) == (bundle.run_id, "attn_out", "1,2")

    # changing the site changes the link, and the component (of another site) is dropped
    at.selectbox(key="explore_site").set_value("head").run()
    assert not at.exception and not at.error
    assert (param(at, "site"), param(at, "component")) == ("head", None)
    assert "head-sum" in chart_keys(at) and "alpha-attn_out" not in chart_keys(at)
    assert param(at, "position") == str(bundle.config["n_pos"] - 1)
    # all sites: no site, no component in the link
    at.selectbox(key="explore_site").set_value("").run()
    assert (param(at, "site"), param(at, "component")) == (None, None)
    assert {"alpha-attn_out", "alpha-head"} <= set(chart_keys(at))


def test_a_link_opens_the_position_and_the_prompt(explore_runs):
    bundle = explore_runs[1]["steervec"]
    at = open_link(run=bundle.run_id, position="1", interactive="1")
    assert not at.exception and not at.error and not at.warning
    assert at.select_slider(key="explore_head_position").value == 1
    assert bundle.info["position_labels"][1] in chart(at, "head-position")["layout"]["title"]["text"]
    dyn = explore_runs[1]["dynscalar"]
    at = open_link(run=dyn.run_id, prompt_index="3", site="head", component="0,1", interactive="1")
    assert not at.exception and not at.error and not at.warning
    assert at.selectbox(key="explore_dyn_prompt").value == 3
    assert chart(at, "dyn-prompt-head")["layout"]["title"]["text"].startswith("scalars α on prompt 3")
    shapes = chart(at, "head-dyn")["layout"]["shapes"]  # DynScalar's head map is layer × head
    assert [(s["x0"], s["x1"], s["y0"], s["y1"]) for s in shapes] == [(0.5, 1.5, -0.5, 0.5)]
    assert param(at, "prompt_index") == "3" and param(at, "position") is None


@pytest.mark.parametrize(
    ("params", "warning"),
    [
        ({"site": "resid"}, "Ignored ?site='resid' from the link: site must be one of attn_out, mlp_out, head"),
        (
            {"site": "attn_out", "component": "1"},
            "Ignored ?component='1' from the link: a component here is 2 numbers (layer, position)",
        ),
        (
            {"site": "attn_out", "component": "99,0"},
            "Ignored ?component='99,0' from the link: layer 99 is out of range",
        ),
        (
            {"site": "head", "component": "0,x,1"},
            "Ignored ?component='0,x,1' from the link: position must be a whole number",
        ),
        ({"position": "-1"}, "Ignored ?position='-1' from the link: position -1 is out of range"),
    ],
)
def test_bad_link_values_are_one_warning_and_ignored(explore_runs, params, warning):
    bundle = explore_runs[1]["activscalar"]
    at = open_link(run=bundle.run_id, **params)
    assert not at.exception and not at.error
    assert len(at.warning) == 1 and at.warning[0].value.startswith(warning), at.warning[0].value
    assert at.selectbox(key="explore_run").value == bundle.run_id
    if "component" in params:
        assert at.selectbox(key="explore_component").value == ""
        assert param(at, "component") is None
    if params.get("site") == "resid":
        assert at.selectbox(key="explore_site").value == "" and param(at, "site") is None
