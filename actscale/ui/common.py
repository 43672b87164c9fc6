"""What every page shares: the resident model, the run store, background jobs, session keys,
one-line errors and downloads. The only module besides the pages that imports Streamlit."""
from __future__ import annotations

import io
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pandas as pd
import streamlit as st

from actscale.errors import ActscaleError
from actscale.jobs import JobManager
from actscale.models import LoadedModel, load_model
from actscale.store import RunBundle, RunListing, RunStore, check_run_id


class Keys:
    """Session-state keys, defined once. Values are small plain data (ids, names, dicts)."""

    MODEL = "model_name"          # the model this session works with
    DEVICE = "device"
    RUN = "run_id"                # the run open on Explore / Playground
    JOB = "job_id"                # this session's training job
    SWEEP_JOB = "sweep_job_id"
    COMPARE = "compare_run_ids"


DEFAULT_MODEL = os.environ.get("ACTSCALE_MODEL", "bundled")


def store() -> RunStore:
    """The run store: ``$ACTSCALE_STORE`` or ``runs/``. The disk is the source of truth."""
    return RunStore(os.environ.get("ACTSCALE_STORE") or "runs")


# The model currently resident in this server process, for status lines that must not load one.
_RESIDENT: dict[str, LoadedModel] = {}


@st.cache_resource(max_entries=1, show_spinner=False)
def _resident_model(name: str, device: str) -> LoadedModel:
    # max_entries=1: switching models drops the previous one, so at most one is resident.
    _RESIDENT.clear()
    model = load_model(name, device)
    _RESIDENT["model"] = model
    return model


def resident_model(name: str | None = None, device: str | None = None) -> LoadedModel:
    """The one shared model (loaded on first use, with a spinner). Raises ActscaleError."""
    name = name or st.session_state.get(Keys.MODEL, DEFAULT_MODEL)
    device = device or st.session_state.get(Keys.DEVICE, "auto")
    with st.spinner(f"Loading model {name} (the bundled model is converted once, about 40 s)…"):
        return _resident_model(name, device)


def loaded_model_or_none() -> LoadedModel | None:
    """The resident model if this server has loaded one, without loading anything."""
    return _RESIDENT.get("model")


@st.cache_resource(show_spinner=False)
def jobs() -> JobManager:
    """Background training jobs of this server, shared by all sessions."""
    return JobManager()


@st.cache_resource(max_entries=64, show_spinner=False)
def _bundle(root: str, run_id: str, stamp: float) -> RunBundle:
    # Keyed by the folder's mtime so a replaced run is read again; cache_resource (not
    # cache_data) because bundles hold tensors and must never go through pickle.
    return RunStore(root).load(run_id)


def load_bundle(run_id: str) -> RunBundle:
    """A stored run, cached. Raises ActscaleError for a bad id or a broken bundle."""
    s = store()
    path = s.path(check_run_id(run_id))
    if not path.is_dir():
        raise ActscaleError(f"no run {run_id} in the store {s.root}")
    return _bundle(str(s.root), run_id, path.stat().st_mtime)


def list_runs() -> list[RunListing]:
    return store().list()


def run_label(row: RunListing) -> str:
    c = row.config
    if not row.ok:
        return f"{row.run_id} — broken: {row.reason}"
    test = row.metrics.get("test", {})
    flips = f" · test flips +{test.get('flip_acc_pos', 0):.2f}/−{test.get('flip_acc_neg', 0):.2f}" if test else ""
    return f"{row.run_id} · {c.get('method')} · {c.get('task')} · {c.get('model')}{flips}"


def query_run_id() -> str | None:
    """``?run=<run_id>`` from the link, validated; None if absent, an error line if invalid."""
    value = st.query_params.get("run")
    if not value:
        return None
    try:
        return check_run_id(value)
    except ActscaleError as exc:
        st.error(str(exc))
        return None


def pick_run(label: str = "Run", key: str = "run_picker") -> RunBundle | None:
    """A select box of the readable runs, preselecting ``?run=`` or this session's run.

    Keeps ``?run=`` in the address bar in step, so the link can be shared."""
    rows = [r for r in list_runs() if r.ok]
    if not rows:
        st.info("No runs in the store yet: train one on the **Train** page, or upload a bundle on **Runs**.")
        return None
    ids = [r.run_id for r in rows]
    wanted = query_run_id() or st.session_state.get(Keys.RUN)
    if wanted and wanted not in ids:
        st.warning(f"Run {wanted} is not in this store (or is broken); showing the newest run instead.")
        wanted = None
    index = ids.index(wanted) if wanted else 0
    labels = {r.run_id: run_label(r) for r in rows}
    run_id = st.selectbox(label, ids, index=index, format_func=labels.get, key=key)
    st.session_state[Keys.RUN] = run_id
    if st.query_params.get("run") != run_id:
        st.query_params["run"] = run_id
    try:
        return load_bundle(run_id)
    except ActscaleError as exc:
        st.error(str(exc))
        return None


@contextmanager
def user_errors() -> Iterator[None]:
    """Show an ActscaleError (bad input) as one red line instead of a traceback."""
    try:
        yield
    except ActscaleError as exc:
        st.error(str(exc))


PLOTLY_CONFIG = {
    "displaylogo": False,
    # The camera button exports in the browser, with no network and no server-side renderer.
    "toImageButtonOptions": {"format": "svg", "scale": 2},
}


def show_figure(fig, name: str, key: str) -> None:
    """Draw a plotly figure with an interactive-HTML download (SVG/PNG from its camera button)."""
    st.plotly_chart(fig, use_container_width=True, config=PLOTLY_CONFIG, key=f"fig-{key}")
    st.download_button(
        "Download figure (HTML)", fig.to_html(include_plotlyjs=True, full_html=True).encode(),
        file_name=f"{name}.html", mime="text/html", key=f"dl-{key}",
    )


def show_table(df: pd.DataFrame, name: str, key: str, **kwargs) -> None:
    """A table with a CSV download."""
    st.dataframe(df, use_container_width=True, **kwargs, key=f"tbl-{key}")
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    st.download_button("Download table (CSV)", buf.getvalue().encode(), file_name=f"{name}.csv",
                       mime="text/csv", key=f"dl-{key}")


def page_header(title: str, caption: str) -> None:
    st.title(title)
    st.caption(caption)
