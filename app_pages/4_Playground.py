"""Playground: steer one prompt with a trained run at any strength β (docs/method.md §6.5).

A prompt and its two answers (typed, or picked from the run's dataset) → the engine
(`actscale.engine.playground`) on the resident model → Δ, p(a+), p(a−), the top-10 next tokens before
and after, and the β curve. The per-example table comes from the bundle and needs no model.
"""

import streamlit as st

from actscale.engine import playground
from actscale.ui import actions, common, links
from actscale.ui.keys import Keys
from actscale.views import analysis, plots

common.page_header(
    "Playground",
    "Steer a prompt with a trained run at any strength: β = +1 pushes towards a+, β = −1 towards a−, "
    "β = 0 is the unmodified model, and values in between strengthen, weaken or reverse.",
)

bundle = common.pick_run(key="playground_run")
if bundle is None:
    st.stop()
if bundle.record.config.autocast == "bf16":
    st.caption(
        "This run was trained under bfloat16 autocast, and its stored results (the per-example table) were "
        "computed in it; this page steers in float32, so a prompt's Δ here can differ from its stored Δ by "
        "bfloat16's rounding (docs/checks.md: up to 0.45 on the default run)."
    )


@st.cache_data(max_entries=64, show_spinner=False)
def cached_curve(run_path: str, weights_hash: str, prompt: str, correct: str, wrong: str, _model, _iv):  # noqa: ARG001 - run_path, weights_hash: cache keys
    """The β curve of one prompt (21 forwards in one batch); it does not depend on the slider."""
    return playground.beta_curve(_model, _iv, prompt, correct, wrong)


prompts = playground.dataset_prompts(bundle)
DATASET, TYPED = "From the run's dataset", "Type my own"
first = prompts[0] if prompts else {"prompt": "", "correct": "", "wrong": ""}

# A link carries either a dataset prompt (?example=<index>) or a typed one (?prompt=, ?correct=,
# ?wrong=), and β (?beta=); each value is checked, a bad one is ignored with one warning.
links.keep_valid(Keys.PG_PICK, lambda v: 0 <= v < len(prompts), 0)
example_link = links.from_link(Keys.PG_PICK, "example", lambda raw: links.parse_index(raw, len(prompts), "example"), 0)
typed_link = links.from_link(Keys.PG_PROMPT, "prompt", lambda raw: links.parse_text(raw, "prompt"), first["prompt"])
for key, name in ((Keys.PG_CORRECT, "correct"), (Keys.PG_WRONG, "wrong")):
    typed_link |= links.from_link(
        key, name, lambda raw, name=name: links.parse_text(raw, name, links.MAX_ANSWER), first[name]
    )
links.from_link(Keys.PG_BETA, "beta", links.parse_beta, 1.0)
if typed_link or not prompts:
    st.session_state[Keys.PG_SOURCE] = TYPED
elif example_link or Keys.PG_SOURCE not in st.session_state:
    st.session_state[Keys.PG_SOURCE] = DATASET

source = st.radio("Prompt", [DATASET, TYPED], horizontal=True, key=Keys.PG_SOURCE, disabled=not prompts)
if source == DATASET and prompts:
    index = st.selectbox(
        "Dataset prompt",
        list(range(len(prompts))),
        key=Keys.PG_PICK,
        format_func=lambda i: f"{i} · {prompts[i]['split']} · {prompts[i]['prompt'][:100]}",
    )
    row = prompts[int(index)]
    prompt, correct, wrong = row["prompt"], row["correct"], row["wrong"]
    st.caption(f"a+ = `{correct!r}` · a− = `{wrong!r}`")
    link = {"example": str(int(index)), "prompt": None, "correct": None, "wrong": None}
else:
    prompt = st.text_area("Your prompt", key=Keys.PG_PROMPT, height=80)
    c1, c2 = st.columns(2)
    correct = c1.text_input(
        "a+ (the answer β = +1 favours)",
        key=Keys.PG_CORRECT,
        help="Exactly one token for this model; real tokenizers usually want a leading space.",
    )
    wrong = c2.text_input("a− (the answer β = −1 favours)", key=Keys.PG_WRONG)
    link = {"example": None, "prompt": prompt or None, "correct": correct or None, "wrong": wrong or None}
    if analysis.run_method(bundle).fixed_length and bundle.record.config.positions == "answer":
        st.caption(
            f"This {bundle.method} run learned one parameter per position counted back from the answer, so it "
            f"takes prompts of up to {bundle.record.provenance.n_pos} tokens (with BOS)."
        )
    elif analysis.run_method(bundle).fixed_length:
        st.caption(
            f"This {bundle.method} run learned one parameter per position, so it takes prompts of exactly "
            f"{bundle.record.provenance.n_pos} tokens (with BOS); DynScalar runs take any length."
        )

beta = st.slider("β (steering strength)", min_value=-1.0, max_value=1.0, step=0.05, key=Keys.PG_BETA)
link["beta"] = links.format_beta(beta)
for name, value in link.items():  # the address reproduces this prompt and β
    links.to_link(name, value)

with common.guarded("Steering this prompt"):
    model = common.resident_model(bundle.record.config.model)
    iv = actions.run_intervention(bundle, model)
    out = playground.steer_prompt(model, iv, prompt, correct, wrong, beta)
    c1, c2, c3 = st.columns(3)
    delta, arrow = analysis.change_delta(out.delta - out.delta_base, 3, " vs β = 0")
    c1.metric(
        "Δ = logit(a+) − logit(a−)", f"{out.delta:+.3f}", delta, help=f"unmodified: {out.delta_base:+.3f}", **arrow
    )
    delta, arrow = analysis.change_delta(out.p_correct - out.p_correct_base, 4)
    c2.metric("p(a+)", f"{out.p_correct:.4f}", delta, **arrow)
    delta, arrow = analysis.change_delta(out.p_wrong - out.p_wrong_base, 4)
    c3.metric("p(a−)", f"{out.p_wrong:.4f}", delta, **{"delta_color": "inverse", **arrow})
    winner = "a+" if out.delta > 0 else ("a−" if out.delta < 0 else "neither")
    st.markdown(
        f"At β = {beta:+.2f} the model prefers **{winner}** (Δ = {out.delta:+.3f}; "
        f"unmodified Δ = {out.delta_base:+.3f})."
    )

    st.subheader("Top-10 next tokens")
    st.caption(
        "Rank 1 is the most likely token; rank change = rank before − rank after (positive: steering raised it)."
    )
    left, right = st.columns(2)
    with left:
        st.markdown("**Before** (β = 0, the unmodified model)")
        common.show_table(
            out.top_before,
            "top10-before",
            "top-before",
            hide_index=True,
            column_order=("rank_before", "token", "p_before", "rank_after", "rank_change"),
        )
    with right:
        st.markdown(f"**After** (β = {beta:+.2f})")
        common.show_table(
            out.top_after,
            "top10-after",
            "top-after",
            hide_index=True,
            column_order=("rank_after", "token", "p_after", "rank_before", "rank_change"),
        )

    st.subheader("Δ and probabilities as β runs from −1 to +1")
    curve = cached_curve(str(bundle.path), model.weights_hash, prompt, correct, wrong, model, iv)
    common.show_figure(plots.plot_beta_curve(curve, beta), f"{bundle.run_id}-beta-curve", "beta-curve")

st.subheader("Greedy continuation, before and after")
with common.guarded("The continuation"):
    method = analysis.run_method(bundle)
    st.caption(
        "The unmodified model and the model steered at the β above, each continuing the prompt greedily. "
        + (
            "This run is applied at every position, the generated tokens included."
            if not method.fixed_length
            else "This run is tied to its prompts' positions: it steers the prompt, not the tokens generated after it."
        )
    )
    n_new = st.slider("Tokens to generate", 5, 60, 20, step=5, key="pg_n_new")
    if st.button("Generate both", key="pg_generate"):
        model = common.resident_model(bundle.record.config.model)
        iv = actions.run_intervention(bundle, model)
        with st.spinner("Generating…"):
            before, after = playground.greedy_continuation(model, iv, prompt, beta, int(n_new))
        left, right = st.columns(2)
        left.markdown("**Before** (β = 0)")
        left.code(prompt + before, language=None, wrap_lines=True)
        right.markdown(f"**After** (β = {beta:+.2f})")
        right.code(prompt + after, language=None, wrap_lines=True)

if not analysis.run_method(bundle).fixed_length:
    st.subheader("Trigger map")
    with common.guarded("The trigger map"):
        st.caption(
            "Paste any text: for the run's ten strongest units (largest mean |α| on its training prompts), the "
            "scalar α(h) each computes at every token, on the unmodified model. Where it is far from 0 the unit "
            "would scale that token's activation."
        )
        text = st.text_area("Text", prompt, key="pg_trigger_text", height=80)
        if st.button("Draw the trigger map", key="pg_trigger"):
            model = common.resident_model(bundle.record.config.model)
            iv = actions.run_intervention(bundle, model)
            mags = {s: bundle.analysis[f"magnitude.{s}"] for s in bundle.sites if f"magnitude.{s}" in bundle.analysis}
            if not mags:
                mags = {s: bundle.params[f"w.{s}"].norm(dim=-1) for s in bundle.sites}
            values, units, tokens = playground.trigger_map(model, iv, mags, text)
            common.show_figure(plots.plot_trigger_map(values, units, tokens), f"{bundle.run_id}-trigger-map", "trigger")

st.subheader("Every prompt of the run's dataset")
with common.guarded("The per-example table"):
    examples = analysis.examples_frame(bundle)
    if "flipped_pos" in examples:
        st.caption(
            "Δ before (β = 0) and after (β = ±1), stored with the run (no model needed). "
            f"{analysis.examples_flips_text(examples)} Click a column header to sort."
        )
    common.show_table(examples, f"{bundle.run_id}-examples", "examples", hide_index=True)
