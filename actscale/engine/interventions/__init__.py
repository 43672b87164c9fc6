"""The interventions of docs/method.md §2, behind one small interface, and the registry of methods.

Each intervention is an `nn.Module` that holds only its parameters and constants (its sites and
the model's dimensions). Its hook functions are made per `steer` call, with the strength ``β``
and an optional recorder bound into their closures, so a shared intervention object never
changes state during a forward pass, and two `steer` blocks with different ``β`` never see each
other's strength.

A method is a subclass registered with `register_method`. Everything that differs between
methods lives on the class: its parameter shapes and edit, whether it is tied to one prompt
length, its default hyperparameters, what one "component" is and how large it is, and which
analysis arrays it records. Nothing outside this module branches on the method's name.

Steering strength ``β`` is per example (a ``[batch]`` tensor), so one forward pass can hold the
``β = +1`` and ``β = −1`` copies of a batch side by side. A batch's attention mask is bound the
same way: pad positions are never edited, by any method.

Positions (docs/method.md §2): a fixed-length method's parameter column ``n_pos − 1`` always meets a
prompt's last token. With absolute positions every prompt has ``n_pos`` tokens, so column ``i``
is token ``i``; with answer-aligned positions a batch ``w ≤ n_pos`` tokens wide (left-padded)
uses the last ``w`` columns, so column ``n_pos − k`` is the ``k``-th token from the end.

The interface (`base`), the registry (`registry`), the three methods (`methods`), and the one
door through which hooks reach a model (`steering`): `at_sites`, which reads or edits each
site's activation, and `steer`, which is `at_sites` with an intervention's edit. Training,
evaluation, the checks and the playground all attach their hooks through these two."""

from actscale.engine.interventions.base import (
    HookFn,
    Intervention,
    MethodDefaults,
    ModelDims,
    Recorder,
    expand_beta,
    positioned_axes,
)

# The registry lists methods in the order they register: the three trained ones first.
# isort: off
from actscale.engine.interventions.methods import ActivScalar, DynScalar, SteerVec
from actscale.engine.interventions.diffmean import DiffMean

# isort: on
from actscale.engine.interventions.registry import (
    REGISTRY,
    effective_counts,
    float32_under_auto,
    make_intervention,
    method_class,
    register_method,
    registered_methods,
    unregister_method,
)
from actscale.engine.interventions.steering import at_sites, hook_count, steer

__all__ = [
    "at_sites",
    "ActivScalar",
    "DiffMean",
    "DynScalar",
    "HookFn",
    "Intervention",
    "MethodDefaults",
    "ModelDims",
    "REGISTRY",
    "Recorder",
    "SteerVec",
    "effective_counts",
    "expand_beta",
    "float32_under_auto",
    "hook_count",
    "make_intervention",
    "method_class",
    "positioned_axes",
    "register_method",
    "registered_methods",
    "steer",
    "unregister_method",
]
