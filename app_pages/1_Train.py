"""Train: a model, a dataset (checked in a preview), one or several methods and the
hyperparameters → background training with live curves, or the stored run if it exists."""

import streamlit as st

from actscale.errors import ActscaleError
from actscale.ui import common, deployment
from actscale.ui import train_form as tf
from actscale.ui.keys import Keys

common.page_header(
    "Train",
    "Pick a model and a dataset, check the prompts, choose the method(s) and train. "
    "Training runs in the background; other sessions stay responsive.",
)
# A read-only deployment does not serve this page (app.py); run on its own, it still refuses.
try:
    deployment.check_writable("Training")
except ActscaleError as exc:
    st.error(str(exc))
    st.stop()

st.subheader("1 · Model")
model = tf.model_picker()
if model is None:
    st.stop()

st.subheader("2 · Dataset and method(s)")
choice = tf.dataset_picker()
if choice is None:
    st.stop()
fields, methods = choice
if not tf.show_preview(model, fields, methods):
    st.stop()

st.subheader("3 · Hyperparameters")
job = common.jobs().get(st.session_state.get(Keys.JOB))
running = job is not None and not job.done
hyper = tf.hyperparameter_form(model, job_running=running)
if hyper is not None:
    with common.guarded("Starting the training"):
        configs = tf.make_configs(model, st.session_state.get(Keys.DEVICE, "auto"), fields, methods, hyper)
        # The prompts the preview tokenised: the stored-run check reads the run ids from them, and
        # the job trains on them.
        task_for = tf.previewed_tasks(model, configs)
        stored = tf.stored_run_ids(model, configs, common.store(), task_for)
        if all(stored):
            st.success("Every configuration was already trained: here are the stored runs.")
            st.session_state.pop(Keys.JOB, None)
            tf.show_run_links([r for r in stored if r])
            st.stop()
        if running:
            raise ActscaleError("a training is already running in this session: cancel it or wait for it")
        st.session_state[Keys.JOB] = common.jobs().submit(configs, model, common.store(), task_for).id

tf.job_panel(st.session_state.get(Keys.JOB))
