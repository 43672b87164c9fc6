"""What every page shares: the resident model, the run store, background jobs, links between
pages, one-line errors and downloads."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode, urlsplit

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from actscale.engine.models import LoadedModel, load_model
from actscale.errors import ActscaleError, one_line
from actscale.runs.bundle import RunBundle, RunListing, check_run_id
from actscale.runs.jobs import JobManager
from actscale.runs.records import SplitMetrics
from actscale.runs.store import RunStore
from actscale.ui import deployment
from actscale.ui.keys import Keys
from actscale.views import report
from actscale.views.analysis import filled_metrics, rate_text

DEFAULT_MODEL = os.environ.get("ACTSCALE_MODEL", "bundled")


def store() -> RunStore:
    """The run store: ``$ACTSCALE_STORE`` or ``runs/``. The disk is the source of truth; a
    read-only deployment opens it read-only, so nothing can write to it."""
    return RunStore(os.environ.get("ACTSCALE_STORE") or "runs", readonly=deployment.readonly())


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
    """The one shared model (loaded on first use, with a spinner). Raises ActscaleError, also
    where this deployment loads no model."""
    deployment.check_model_allowed("Loading a model")
    name = name or st.session_state.get(Keys.MODEL, DEFAULT_MODEL)
    device = device or st.session_state.get(Keys.DEVICE, "auto")
    with st.spinner(f"Loading model {name} (the bundled model is converted once, about 40 s)…"):
        return _resident_model(name, device)


def loaded_model_or_none() -> LoadedModel | None:
    """The resident model if this server has loaded one, without loading anything."""
    return _RESIDENT.get("model")


@st.cache_resource(show_spinner=False)
def _jobs(launch: str) -> JobManager:
    return JobManager(launch=launch)


def jobs() -> JobManager:
    """The training jobs of this server, shared by all sessions. They run in background
    threads; ``ACTSCALE_JOBS=inline`` runs each inside ``submit`` (the page tests' seam)."""
    return _jobs(os.environ.get("ACTSCALE_JOBS") or "thread")


@st.cache_resource(max_entries=64, show_spinner=False)
def _bundle(root: str, run_id: str, stamp: float) -> RunBundle:  # noqa: ARG001 - stamp: a cache key
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


@st.cache_resource(max_entries=256, show_spinner=False)
def _run_plot(path: str, stamp: float, name: str, args: tuple, _func: Callable[..., Any], _bundle: RunBundle) -> Any:  # noqa: ARG001 - path, stamp, name: cache keys
    # Keyed by the function's module and qualified name (``name``), not by the function
    # object, and by the run folder: the bundle and the function are passed along unhashed.
    return _func(_bundle, *args)


def run_plot(bundle: RunBundle, func: Callable[..., Any], *args: Any) -> Any:
    """``func(bundle, *args)`` (a plot or table function, e.g. ``plots.plot_scalar_heatmap``),
    cached per run folder (rebuilt when the folder changes), so reruns of a page (a slider
    moved) redraw without rebuilding every figure. Callers must not modify what this returns:
    it is shared by every session."""
    try:
        stamp = bundle.path.stat().st_mtime
    except OSError:
        stamp = 0.0
    name = f"{func.__module__}.{func.__qualname__}"
    return _run_plot(str(bundle.path), stamp, name, tuple(args), func, bundle)


@st.cache_resource(max_entries=256, show_spinner=False)
def _completed(root: str, run_id: str, stamp: float) -> dict[str, SplitMetrics]:  # noqa: ARG001 - stamp: a cache key
    return filled_metrics(RunStore(root).load(run_id))


def completed_metrics(row: RunListing) -> Mapping[str, SplitMetrics]:
    """A run's metrics; for a run stored before baselines and comparable minimality existed,
    completed from its arrays (`analysis.filled_metrics`; reads its tensors once, cached)."""
    splits = row.record.splits if row.record is not None else {}
    if all(m.n_components is not None and m.acc_base is not None for m in splits.values()):
        return splits
    try:
        return _completed(str(row.path.parent), row.run_id, row.path.stat().st_mtime)
    except (ActscaleError, OSError):
        return splits


@st.cache_data(max_entries=8, show_spinner="Making the report…")
def _report(root: str, run_ids: tuple[str, ...], stamps: tuple[int, ...]) -> bytes:  # noqa: ARG001 - stamps: a cache key
    readable = RunStore(root, readonly=True)
    bundles = [readable.load(run_id) for run_id in run_ids]
    page = report.render_report(bundles[0]) if len(bundles) == 1 else report.render_comparison_report(bundles)
    return page.encode()


def report_bytes(run_ids: tuple[str, ...]) -> bytes:
    """The HTML report of one run, or of several compared (`report.render_comparison_report`),
    cached per run folders (made again when one changes), so its size can be shown next to its
    download button. Raises ActscaleError for a missing or broken run."""
    s = store()
    stamps = []
    for run_id in run_ids:
        path = s.path(check_run_id(run_id))
        if not path.is_dir():
            raise ActscaleError(f"no run {run_id} in the store {s.root}")
        stamps.append(path.stat().st_mtime_ns)
    return _report(str(s.root), tuple(run_ids), tuple(stamps))


def list_runs() -> list[RunListing]:
    return store().list()


def run_label(row: RunListing) -> str:
    if not row.ok or row.record is None:
        return f"{row.run_id} — broken: {row.reason}"
    c, test = row.record.config, row.record.split("test")  # a hand-edited value reads as absent
    pos, neg = rate_text(test, "flip_acc_pos"), rate_text(test, "flip_acc_neg")
    flips = f" · test β=+1 {pos.split(' [')[0]}, β=−1 {neg.split(' [')[0]}" if pos and neg else ""
    return f"{row.run_id} · {c.method} · {c.task} · {c.model}{flips}"


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
        st.info(
            "No runs in this store."
            if deployment.readonly()
            else "No runs in the store yet: train one on the **Train** page, or upload a bundle on **Runs**."
        )
        return None
    ids = [r.run_id for r in rows]
    wanted: str | None = query_run_id() or st.session_state.get(Keys.RUN)
    if wanted and wanted not in ids:
        st.warning(f"Run {wanted} is not in this store (or is broken); showing the newest run instead.")
        wanted = None
    index = ids.index(wanted) if wanted else 0
    labels = {r.run_id: run_label(r) for r in rows}
    run_id = str(st.selectbox(label, ids, index=index, format_func=lambda i: labels[i], key=key))
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


def show_figure(fig, name: str, key: str, *, selectable: bool = False) -> Any:
    """Draw a plotly figure with an interactive-HTML download (SVG/PNG from its camera button).

    The HTML (plotly.js inlined, about 4 MB) is made only when the button is clicked, so a page
    with many figures still draws fast. ``selectable=True`` reruns the page when a point is
    clicked and returns the selection state (see `selected_customdata`)."""
    kwargs: dict[str, Any] = {"on_select": "rerun", "selection_mode": "points"} if selectable else {}
    event = st.plotly_chart(fig, width="stretch", config=PLOTLY_CONFIG, key=f"fig-{key}", **kwargs)
    st.download_button(
        "Download figure (HTML)",
        lambda: fig.to_html(include_plotlyjs=True, full_html=True).encode(),
        file_name=f"{name}.html",
        mime="text/html",
        key=f"dl-{key}",
        on_click="ignore",
    )
    return event


def show_map(fig, name: str, key: str, *, interactive: bool) -> None:
    """A heatmap or a figure of lines as an SVG image with its SVG download (in the file a map's
    cell has its value as its tooltip, a line its name), or with ``interactive`` (and for any
    other figure) the plotly figure of `show_figure`. The browser draws the image without loading
    plotly.js (docs/measured.md, "Explore")."""
    from actscale.views.plots import figure_svg

    svg = None if interactive else figure_svg(fig)
    if svg is None:
        show_figure(fig, name, key)
        return
    st.image(svg, width="stretch")
    st.download_button(
        "Download figure (SVG)",
        svg.encode(),
        file_name=f"{name}.svg",
        mime="image/svg+xml",
        key=f"svg-{key}",
        on_click="ignore",
    )


def selected_customdata(event: Any) -> list[Any]:
    """The first customdata value of each point clicked in a ``selectable`` figure."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError, AttributeError):
        return []
    out = []
    for point in points or []:
        data = point.get("customdata") if isinstance(point, dict) else None
        if isinstance(data, (list, tuple)) and data:
            out.append(data[0])
        elif data is not None and not isinstance(data, (list, tuple)):
            out.append(data)
    return out


def show_table(df: pd.DataFrame, name: str, key: str, *, text: bool = False, **kwargs) -> None:
    """A table with a CSV download: a grid (``st.dataframe``, given ``kwargs``), or with ``text``
    Markdown text (no grid's code for the browser to load; nothing to sort)."""
    if text:
        st.markdown(markdown_table(df))
    else:
        kwargs.setdefault("width", "stretch")
        st.dataframe(df, **kwargs, key=f"tbl-{key}")
    st.download_button(
        "Download table (CSV)",
        lambda: df.to_csv(index=False).encode(),
        file_name=f"{name}.csv",
        mime="text/csv",
        key=f"dl-{key}",
        on_click="ignore",
    )


def markdown_table(df: pd.DataFrame) -> str:
    """``df``'s columns and rows (not its index) as a Markdown table, every cell shown as typed."""
    rows = [[plain(str(c)) for c in df.columns], ["---"] * len(df.columns)]
    rows += [[plain(str(v)) for v in row] for row in df.itertuples(index=False)]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def plain(text: str) -> str:
    """``text`` escaped for ``st.markdown``: a token or a prompt shows as typed, never as markup."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~<>$])", r"\\\1", text)


def page_header(title: str, caption: str) -> None:
    st.title(title)
    st.caption(caption)


@contextmanager
def guarded(what: str) -> Iterator[None]:
    """Like `user_errors`, and any other exception too becomes one red line (its traceback
    goes to the server log), so no input can put a traceback on the page."""
    try:
        yield
    except ActscaleError as exc:
        st.error(str(exc))
    except Exception as exc:  # noqa: BLE001 - shown as one line, logged in full
        logging.getLogger("actscale.ui").exception("%s failed", what)
        st.error(f"{what} failed: {one_line(exc)}")


def nav_link(
    page: str, label: str, icon: str | None = None, run_id: str | None = None, help: str | None = None
) -> None:
    """``st.page_link`` to a page of this app (a path of `navigation.PAGES`, such as
    ``navigation.EXPLORE.path``), optionally with ``?run=<run_id>``; a page that is not
    there (a page run on its own, as in tests) is named instead of breaking the page."""
    try:
        st.page_link(page, label=label, icon=icon, help=help, query_params={"run": run_id} if run_id else None)
    except StreamlitAPIException:
        st.caption(f"{label} (page {page} is not available)")


def share_link(run_id: str, page: str = "Explore", current_page: str = "") -> str:
    """The link that opens ``run_id`` on ``page`` for whoever has the same store: absolute when
    the browser's address is known (``st.context.url``), else the path ``/Explore?run=<id>``."""
    query = urlencode({"run": check_run_id(run_id)})
    url = getattr(st.context, "url", None)
    if not url:
        return f"/{page}?{query}"
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if current_page and path.endswith("/" + current_page):
        path = path[: -len(current_page) - 1]
    return f"{parts.scheme}://{parts.netloc}{path}/{page}?{query}"


def flash(kind: str, message: str, slot: str = "main") -> None:
    """Keep a message (``kind``: success, info, warning, error) for the next run of the page, at
    ``slot``: callbacks run before the page draws, so they cannot draw it themselves."""
    st.session_state.setdefault(Keys.FLASH, {})[slot] = (kind, message)


def show_flash(slot: str = "main") -> None:
    kind, message = st.session_state.get(Keys.FLASH, {}).pop(slot, (None, None))
    if kind and message:
        getattr(st, kind, st.info)(message)


def model_status_line(model: Any | None) -> str:
    """One line about the resident model for status displays (never loads one)."""
    if model is None:
        if not deployment.model_allowed():
            return "No model loaded: this read-only deployment shows stored runs, which need none."
        if deployment.readonly():
            return "No model loaded yet: stored runs open without one; the Playground loads one."
        return "No model loaded: stored runs open without one (viewer mode); the Train page loads one."
    return f"Loaded model: {model.describe()}"


def show_sidebar() -> Any:
    """The sidebar under the list of pages (drawn once, by app.py): what this deployment allows,
    the resident model's line (its place returned, for `show_model_line` to name a model the
    page loads) and the run store."""
    for problem in deployment.problems():
        st.sidebar.warning(problem)
    if deployment.readonly():
        st.sidebar.info(deployment.describe(), icon=":material/lock:")
    model_line = st.sidebar.empty()
    show_model_line(model_line)
    st.sidebar.caption(f"Runs in `{store().root}`")
    return model_line


def show_model_line(place: Any) -> None:
    """The resident model in the sidebar's ``place`` (never loading one), or that there is none."""
    model = loaded_model_or_none()
    place.caption(f"Model: {model.describe()}" if model else "No model loaded (viewer mode)")
