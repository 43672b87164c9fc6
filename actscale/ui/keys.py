"""Session-state keys, defined once for every page and UI module.

Values kept under them are small plain data (ids, names, lists of ids, tuples of strings).
Widget keys appear here when the code also reads or writes the widget's state through
``st.session_state``; a widget whose key only names it keeps that key where it is drawn.
"""

from __future__ import annotations


class Keys:
    # ---- the session's state
    MODEL = "model_name"  # the model this session works with
    DEVICE = "device"
    RUN = "run_id"  # the run open on Explore / Playground
    JOB = "job_id"  # this session's training job
    SWEEP_JOB = "sweep_job_id"
    CHECKS_JOB = "checks_job_id"  # this session's map-checks job (Explore)
    COMPARE = "compare_run_ids"  # the runs on Compare (survives visits to other pages)
    MODEL_ERROR = "model_error"  # (name, device, message) of the last failed load: not retried
    FLASH = "flash"  # {slot: (kind, message)} shown once after a callback
    SWEEP_SEEN = "compare_sweep_seen"  # the sweep job whose runs were already added to Compare
    TRADEOFF_GEN = "compare_tradeoff_gen"  # bumped after a click is used, so the old selection is dropped
    COMPARE_REPORT = "compare_report"  # the run ids of the report made on Compare (a tuple)
    LINKS = "links_seen"  # {query parameter: the values read from or written to the address} (links.py)

    # ---- widgets whose state the code also sets or reads
    COMPARE_PICK = "compare_pick"  # Compare's multiselect of runs
    TRAIN_MODEL_SOURCE = "train_model_source"
    TRAIN_MODEL_NAME = "train_model_name"
    TRAIN_DEVICE = "train_device"
    RUNS_PICK = "runs_pick"  # the run chosen on Runs
    RUNS_UPLOAD = "runs_upload"  # Runs' bundle uploader
    # Explore and Playground widgets that a link sets (links.py)
    EXPLORE_SITE = "explore_site"
    EXPLORE_COMPONENT = "explore_component"
    EXPLORE_POSITION = "explore_head_position"
    EXPLORE_PROMPT = "explore_dyn_prompt"
    EXPLORE_INTERACTIVE = "explore_interactive"  # the maps drawn by plotly instead of as SVG
    EXPLORE_TAB = "explore_tab"  # the open tab below the maps (ui/explore_tabs.py)
    PG_SOURCE = "pg_source"
    PG_PICK = "pg_pick"
    PG_PROMPT = "pg_prompt"
    PG_CORRECT = "pg_correct"
    PG_WRONG = "pg_wrong"
    PG_BETA = "pg_beta"

    @staticmethod
    def confirm_delete(run_id: str) -> str:
        """The Runs page's "yes, delete" checkbox of one run (one per run, so it never carries over)."""
        return f"runs_confirm_delete_{run_id}"
