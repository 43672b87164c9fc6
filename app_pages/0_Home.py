"""Home: what actscale does, the loaded model, the latest runs and where to go next.

The app's default page (``streamlit run app.py``).
"""

import streamlit as st

from actscale.ui import common, deployment, navigation
from actscale.views import report
from actscale.views.words import counted

common.page_header("actscale", "Activation scaling for steering and interpreting language models")

st.markdown(
    "actscale learns very small interventions on a frozen language model (one scalar per "
    "activation, a steering vector, or a scalar computed from the activation) that move its answer "
    "between a correct and a wrong token with one strength knob β, following Stoehr et al., "
    "*Activation Scaling for Steering and Interpreting Language Models* (EMNLP Findings 2024). "
    "Training balances effectiveness (the answer flips), faithfulness (every other token keeps its "
    "probability) and minimality (few, small parameters), so the learned scalars show where in the "
    "model the behaviour lives. "
    "Every run is saved as a bundle that opens, compares, shares and downloads without loading a model."
)

model = common.loaded_model_or_none()
st.info(common.model_status_line(model), icon=":material/memory:")

st.subheader("Recent runs")
with common.guarded("Reading the run store"):
    listings = common.list_runs()
    ok = [r for r in listings if r.ok]
    broken = len(listings) - len(ok)
    if ok:
        st.dataframe(report.headline_frame(ok[:8]), hide_index=True, width="stretch")
        st.caption(
            f"{counted(len(ok), 'run')} in {common.store().root}"
            + (
                f"; {counted(broken, 'broken bundle')} {'is' if broken == 1 else 'are'} listed on **Runs**"
                if broken
                else ""
            )
            + "."
        )
        labels = {r.run_id: common.run_label(r) for r in ok}
        chosen = st.selectbox("Open a run", list(labels), format_func=labels.get, key="home_run")
        common.nav_link(
            navigation.EXPLORE.path, f"Open run {chosen} on Explore", icon=":material/search:", run_id=chosen
        )
    else:
        st.write("No runs yet" + (f" ({counted(broken, 'broken bundle')}, see **Runs**)" if broken else "") + ".")

st.subheader("Pages")
for info in deployment.pages():
    if info is navigation.HOME:
        continue
    left, right = st.columns([1, 4])
    with left:
        common.nav_link(info.path, info.title, icon=info.icon)
    right.caption(info.what)

st.subheader("Where to go next")
if deployment.readonly():
    st.markdown(
        "This deployment shows a store of runs read-only. Look at a run on **Explore**, the methods side "
        "by side on **Compare**"
        + (", steer a prompt of your own on **Playground**" if deployment.model_allowed() else "")
        + "; download a bundle or an HTML report from **Runs**. Every page's address reproduces what it shows."
    )
elif not listings:
    st.markdown("Start on **Train**: the defaults train ActivScalar on IOI prompts in under a minute.")
else:
    st.markdown(
        "Look at the newest run on **Explore**, put several runs side by side on **Compare**, or "
        "steer a prompt of your own on **Playground**. Send a run to a collaborator from **Runs** "
        "(a bundle, a link, or an HTML report that opens anywhere)."
    )
