"""The Train page's parts: the model picker, the dataset picker with its validation preview, the
hyperparameter form and the live panel of a background job.

Each part returns plain data (a model, a dict of TrainConfig fields, a list of TrainConfigs);
the page wires them: widgets → configs → the engine (jobs) → bundles.

One module per part: `model`, `dataset` (with the split and positions fields), `preview`,
`hyperparameters` and `job`."""

from actscale.ui.train_form.dataset import (
    POSITION_LABELS,
    UPLOAD_DIR,
    dataset_picker,
    fixed_length_names,
    positions_picker,
    save_upload,
    split_fields,
)
from actscale.ui.train_form.hyperparameters import (
    auto_precision_label,
    hyperparameter_form,
    make_configs,
    stored_run_ids,
)
from actscale.ui.train_form.job import job_panel, show_run_links, training_status
from actscale.ui.train_form.model import (
    DATASET_FIELDS,
    DEVICES,
    FORM_FIELDS,
    MODEL_FIELDS,
    MODEL_HINTS,
    MODEL_SOURCES,
    TASK_LABELS,
    method_label,
    model_picker,
)
from actscale.ui.train_form.preview import (
    Preview,
    alignment_counts,
    model_key,
    prepared,
    previewed_tasks,
    prompt_set,
    show_preview,
)

__all__ = [
    "DATASET_FIELDS",
    "DEVICES",
    "FORM_FIELDS",
    "MODEL_FIELDS",
    "MODEL_HINTS",
    "MODEL_SOURCES",
    "POSITION_LABELS",
    "Preview",
    "TASK_LABELS",
    "UPLOAD_DIR",
    "alignment_counts",
    "auto_precision_label",
    "dataset_picker",
    "fixed_length_names",
    "hyperparameter_form",
    "job_panel",
    "make_configs",
    "method_label",
    "model_key",
    "model_picker",
    "positions_picker",
    "prepared",
    "previewed_tasks",
    "prompt_set",
    "save_upload",
    "show_preview",
    "show_run_links",
    "split_fields",
    "stored_run_ids",
    "training_status",
]
