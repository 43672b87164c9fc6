"""Links that reproduce a view: a page's state kept in ``st.query_params`` beside ``?run=``.

A page calls `from_link` before drawing a widget, so a link opened in a fresh browser (or a
``page_link`` carrying new parameters) sets the widget, and `to_link` after it, so the address
bar always says what is shown. Every value from a link is parsed and checked first; a bad one
is ignored with a one-line warning, as an unknown ``?run=`` is.

Parameters (the page that reads them): ``run`` (Explore, Playground, Runs), ``site``,
``component``, ``position``, ``prompt_index`` (Explore), ``runs`` (Compare), ``example``,
``prompt``, ``correct``, ``wrong``, ``beta`` (Playground).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import streamlit as st

from actscale.errors import ActscaleError
from actscale.ui.keys import Keys

MAX_TEXT = 2000  # characters of a prompt in a link; answers are shorter still
MAX_ANSWER = 100


def _seen(name: str) -> set[str | None]:
    """The values of parameter ``name`` this session has read from or written to the address."""
    seen: dict[str, set[str | None]] = st.session_state.setdefault(Keys.LINKS, {})
    return seen.setdefault(name, set())


def from_link(key: str, name: str, parse: Callable[[str], Any], default: Any) -> bool:
    """Before widget ``key`` is drawn: its value from ``?name=`` when the address carries one this
    session has never seen (parsed by ``parse``, which raises ActscaleError or ValueError for a
    bad value: then a one-line warning, and the value is ignored); else the session's own value;
    else ``default``. Returns True when the link set the value.

    Never seen, not merely other than the last: every rerun takes the address from the browser,
    and a rerun asked for before the browser has applied the last run's change (a quick second
    click) brings back a value this session wrote itself; taken as a link, it would undo the
    user's choice. Within a session the address changes only through `to_link` (in-app links
    carry ``?run=`` alone), so a value seen before is never a new link.

    The widget must then be drawn with ``key`` and no default of its own (the value is already
    in the session state), so Streamlit never sees two values for it."""
    raw = st.query_params.get(name)
    seen = _seen(name)
    taken = False
    if raw is not None and raw not in seen:
        seen.add(raw)
        try:
            st.session_state[key] = parse(raw)
            taken = True
        except (ActscaleError, ValueError) as exc:
            st.warning(f"Ignored ?{name}={raw[:40]!r} from the link: {str(exc) or type(exc).__name__}")
    if key not in st.session_state:
        st.session_state[key] = default
    return taken


def to_link(name: str, value: str | None) -> None:
    """Put ``value`` into the address as ``?name=`` (None removes it); written only when it changed."""
    _seen(name).add(value)
    if value is None:
        if name in st.query_params:
            del st.query_params[name]
    elif st.query_params.get(name) != value:
        st.query_params[name] = value


def keep_valid(key: str, valid: Callable[[Any], bool], default: Any) -> None:
    """Reset widget ``key``'s stored value to ``default`` when it no longer fits (another run
    has other sites, positions or prompts). Call before the widget is drawn."""
    if key in st.session_state and not valid(st.session_state[key]):
        st.session_state[key] = default


# ---------------------------------------------------------------- parsers of link values
def parse_index(raw: str, n: int, what: str) -> int:
    """A whole number in ``[0, n)``: a prompt or a position of this run."""
    try:
        value = int(raw)
    except ValueError:
        raise ActscaleError(f"{what} must be a whole number") from None
    if not 0 <= value < n:
        raise ActscaleError(f"{what} {value} is out of range (this run has {n})")
    return value


def parse_choice(raw: str, options: list[str], what: str) -> str:
    if raw not in options:
        raise ActscaleError(f"{what} must be one of {', '.join(options)}")
    return raw


def parse_flag(raw: str, what: str) -> bool:
    """On or off from a link: ``1`` or ``0``."""
    if raw not in ("0", "1"):
        raise ActscaleError(f"{what} must be 1 (on) or 0 (off)")
    return raw == "1"


def parse_beta(raw: str) -> float:
    """β from a link: a number in [−1, +1] on the slider's 0.05 grid."""
    try:
        value = float(raw)
    except ValueError:
        raise ActscaleError("β must be a number") from None
    if not math.isfinite(value) or not -1.0 <= value <= 1.0:
        raise ActscaleError("β must lie between −1 and +1")
    steps = round(value / 0.05)
    if abs(steps * 0.05 - value) > 1e-9:
        raise ActscaleError("β must be a multiple of 0.05 (the slider's step)")
    return round(steps * 0.05, 2)


def format_beta(beta: float) -> str:
    return f"{beta:g}"


def parse_text(raw: str, what: str, limit: int = MAX_TEXT) -> str:
    if not raw.strip():
        raise ActscaleError(f"{what} is empty")
    if len(raw) > limit:
        raise ActscaleError(f"{what} is longer than {limit} characters")
    return raw


def parse_indices(raw: str, shape: tuple[int, ...], axes: tuple[str, ...]) -> tuple[int, ...]:
    """A component as its indices along the method's axes, comma-separated (``"12,3"``: layer 12,
    position 3), each in range."""
    parts = raw.split(",")
    if len(parts) != len(shape):
        raise ActscaleError(f"a component here is {len(shape)} numbers ({', '.join(axes)})")
    out = []
    for part, n, axis in zip(parts, shape, axes):
        out.append(parse_index(part.strip(), n, axis))
    return tuple(out)


def format_indices(index: tuple[int, ...]) -> str:
    return ",".join(str(i) for i in index)
