"""Runs: every bundle in the store, broken ones with the reason; open, delete, download, share,
report and upload. Needs no model."""

import streamlit as st

from actscale.errors import ActscaleError
from actscale.ui import common, deployment, navigation
from actscale.ui.keys import Keys
from actscale.views import report

common.page_header("Runs", "Every run in the store. Nothing here loads a model.")
common.show_flash()


def delete_run(run_id: str) -> None:
    """Callback of the Delete button: runs before the page draws, so the table is fresh."""
    try:
        common.store().delete(run_id)
    except ActscaleError as exc:
        common.flash("error", str(exc))
        return
    common.flash("success", f"Deleted run {run_id}.")
    st.session_state.pop(Keys.confirm_delete(run_id), None)
    if st.session_state.get(Keys.RUN) == run_id:
        st.session_state.pop(Keys.RUN)
    if st.query_params.get("run") == run_id:
        del st.query_params["run"]


def import_upload() -> None:
    """Callback of the uploader: each new file is validated and imported once."""
    upload = st.session_state.get(Keys.RUNS_UPLOAD)
    if upload is None:
        return
    try:
        imported = common.store().import_zip(upload.getvalue())
    except ActscaleError as exc:
        common.flash("error", f"{upload.name}: {exc}", slot="upload")
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        common.flash("error", f"{upload.name}: could not import it ({type(exc).__name__})", slot="upload")
    else:
        kind = {"kept": "info", "checks differ": "warning"}.get(imported.outcome, "success")
        common.flash(kind, imported.text(), slot="upload")
        st.session_state[Keys.RUN] = st.session_state[Keys.RUNS_PICK] = imported.run_id


listings = []
with common.guarded("Reading the run store"):
    listings = common.list_runs()
table = report.runs_frame(listings)
if listings:
    common.show_table(table, "actscale-runs", key="runs", hide_index=True)
    for row in listings:
        if not row.ok:
            st.warning(f"Broken bundle {row.run_id}: {row.reason}")
else:
    st.info(
        "No runs in this store."
        if deployment.readonly()
        else "No runs in the store yet: train one on **Train**, or upload a bundle below."
    )

if listings:
    st.subheader("One run")
    ids = [r.run_id for r in listings]
    by_id = {r.run_id: r for r in listings}
    wanted = common.query_run_id() or st.session_state.get(Keys.RUN)
    if st.session_state.get(Keys.RUNS_PICK) not in ids:  # first visit, or the run is gone
        st.session_state[Keys.RUNS_PICK] = wanted if wanted in ids else ids[0]
    run_id = st.selectbox("Run", ids, format_func=lambda i: common.run_label(by_id[i]), key=Keys.RUNS_PICK)
    row = by_id[run_id]
    if row.ok:
        st.session_state[Keys.RUN] = run_id
        common.nav_link(
            navigation.EXPLORE.path, f"Open run {run_id} on Explore", icon=":material/search:", run_id=run_id
        )
        st.caption("Shareable link (opens this run on Explore for whoever has the same store):")
        st.code(common.share_link(run_id, current_page="Runs"), language=None)
        left, right = st.columns(2)
        with left, common.guarded("Packing the bundle"):
            bundle_zip = common.store().export_zip(run_id)
            st.download_button(
                "Download the bundle (.zip)",
                bundle_zip,
                file_name=f"actscale-run-{run_id}.zip",
                mime="application/zip",
                key="dl-bundle",
            )
            st.caption(f"{report.human_size(len(bundle_zip))}: every file of the run, for another actscale store")
        with right, common.guarded("Making the report"):
            page = common.report_bytes((run_id,))
            st.download_button(
                "Download the HTML report",
                page,
                file_name=f"actscale-report-{run_id}.html",
                mime="text/html",
                key="dl-report",
                help="One file: what the figures show and cannot show, the metrics with base rates and intervals, "
                "every figure and the configuration; opens with no network.",
            )
            st.caption(f"{report.human_size(len(page))}: one HTML file, plotly.js included once")
    else:
        st.error(
            f"This bundle is broken: {row.reason}." + ("" if deployment.readonly() else " It can only be deleted.")
        )
    if not deployment.readonly():
        confirm = st.checkbox(f"Yes, delete run {run_id} from the store", key=Keys.confirm_delete(run_id))
        st.button("Delete", key="runs_delete", disabled=not confirm, on_click=delete_run, args=(run_id,))

if deployment.readonly():
    st.caption("This deployment serves its store read-only: runs cannot be deleted or uploaded here.")
else:
    st.subheader("Upload a bundle")
    st.file_uploader(
        "A run bundle (.zip, as downloaded above); it is validated and read with JSON and safetensors only",
        type=["zip"],
        key=Keys.RUNS_UPLOAD,
        on_change=import_upload,
    )
    common.show_flash("upload")
