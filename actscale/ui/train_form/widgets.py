"""The Train form's widget for a config field, made from the field's description
(`engine.config_fields`): its label, help, range and choices are the ones the command line and
the config's own checks use."""

from __future__ import annotations

from typing import Any

from actscale.engine.config import METHOD_DEFAULT_FIELDS
from actscale.engine.config_fields import CONFIG_FIELDS, FieldSpec
from actscale.engine.interventions import method_class, registered_methods
from actscale.ui.train_form.model import FIELD_DEFAULTS

# Browsers hold numbers as doubles: an integer input cannot go past 2^53 - 1.
JS_MAX_INT = 2**53 - 1
# The smallest step a number input takes past an open bound (the learning rate's 0).
OPEN_GAP = {"int": 1, "float": 1e-6}


def number_range(spec: FieldSpec) -> tuple[float, float]:
    """The [min, max] a number input offers for ``spec``: its range, an open end moved in by
    the input's step."""
    if spec.low is None or spec.high is None:
        raise ValueError(f"{spec.name} is not a number with a range")
    gap = spec.step or OPEN_GAP[spec.kind]
    low = spec.low + gap if spec.low_open else spec.low
    high = spec.high - gap if spec.high_open else spec.high
    if spec.kind == "int":
        return int(low), min(int(high), JS_MAX_INT)
    return float(low), float(high)


def _method_default_help(name: str) -> str:
    per_method = ", ".join(f"{m} {method_class(m).defaults.as_dict()[name]:g}" for m in registered_methods())
    return f"Empty: each method's default ({per_method})."


def field_input(column: Any, name: str, key: str | None = None) -> Any:
    """The widget of number field ``name`` in ``column``, returning an int or float, or None
    where the field is optional and left empty (the method's default, or the data seed's)."""
    spec = CONFIG_FIELDS[name]
    low, high = number_range(spec)
    cast = int if spec.kind == "int" else float
    optional = spec.optional
    value = None if optional else cast(FIELD_DEFAULTS[name])
    help_text = _method_default_help(name) if name in METHOD_DEFAULT_FIELDS else _sentence(spec.help)
    got = column.number_input(
        spec.label,
        cast(low),
        cast(high),
        value=value,
        step=cast(spec.step) if spec.step else None,
        format="%g" if spec.kind == "float" else None,
        placeholder=("method default" if name in METHOD_DEFAULT_FIELDS else spec.empty) if optional else None,
        key=key,
        help=help_text,
    )
    return None if got is None else cast(got)


def choice_input(
    column: Any, name: str, key: str | None = None, labels: dict[str, str] | None = None, radio: bool = False
) -> Any:
    """The select box (or a row of radio buttons) of choice field ``name``; returns the config's
    value for the choice. ``labels`` replace the description's labels where the page knows more
    (what "auto" means on the loaded model)."""
    spec = CONFIG_FIELDS[name]
    shown = {c: spec.label_of(c) for c in spec.choices} | (labels or {})
    options: dict[str, Any] = {"horizontal": True} if radio else {}
    choice = (column.radio if radio else column.selectbox)(
        spec.label,
        spec.choices,
        index=spec.choices.index(spec.choice_of(FIELD_DEFAULTS[name])),
        format_func=shown.get,
        key=key,
        help=_sentence(spec.help),
        **options,
    )
    return spec.value_of(choice)


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")
