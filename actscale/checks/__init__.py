"""Does the map mean anything? The checks of docs/method.md §7, from a stored run and the model.

A trained run's map is a claim that *these* components carry the behaviour. Each check tests
it with forward passes only: k90 is chosen on validation prompts, and every figure is reported
on test prompts drawn with the checks' seed, the same for every variant (paired):

- **sufficiency**: keep the top-k components (by the relative magnitude that defines
  ``n_effective``), zero the rest, for k on a log grid; ``k90`` is the smallest k that keeps 90%
  of the full run's effect above the unmodified model in each direction it moves;
- **necessity**: the full run without its top-k (k = 1, 4, 16, … and k90);
- **random controls**: the top-k90's parameters moved onto other components, stratified
  (anywhere in the site; another layer; another position), ``draws`` times each;
- **ablation**: zero- and mean-ablation (mean over the training prompts) of the same top-k
  components, without any scaling: what a classical knock-out says;
- **stability** over seeds, the **generalisation** matrix over groups and **side effects** on
  neutral text (a run of any length), when asked for.

Variants (a parameter set, or an ablation) are stacked along the batch dimension: one forward
pass carries several of them, each on its own slice of rows (`passes`). Results go into the bundle as
``checks.json`` (+ ``checks.safetensors`` for per-component arrays), written atomically, so
every page draws them without a model. No Streamlit here.

One module per check: `sufficiency` (sufficiency, necessity, the random control and the
knock-outs), `over_seeds` (stability), `over_groups` (generalisation), `off_task` (side effects);
`components` and `passes` are what they share, `run` the orchestration.
"""

from actscale.checks.components import (
    Components,
    k_grid,
    keep_params,
    necessity_grid,
    stratified_draws,
    transplant_params,
)
from actscale.checks.off_task import all_position_logits, neutral_sentences, side_effects
from actscale.checks.options import MAX_GENERALISATION_GROUPS, PRECISIONS, VARY, CheckOptions, Progress
from actscale.checks.over_groups import generalisation, generalisation_configs, run_groups
from actscale.checks.over_seeds import Trainer, spearman, stability, stability_configs, sweep_trainer
from actscale.checks.run import check_asked, reload, run_checks
from actscale.checks.sufficiency import map_checks

__all__ = [
    "MAX_GENERALISATION_GROUPS",
    "PRECISIONS",
    "VARY",
    "CheckOptions",
    "Components",
    "Progress",
    "Trainer",
    "all_position_logits",
    "check_asked",
    "sweep_trainer",
    "generalisation",
    "generalisation_configs",
    "k_grid",
    "keep_params",
    "map_checks",
    "necessity_grid",
    "neutral_sentences",
    "stratified_draws",
    "reload",
    "run_checks",
    "run_groups",
    "side_effects",
    "spearman",
    "stability",
    "stability_configs",
    "transplant_params",
]
