"""What this deployment allows, decided here once: every page, the sidebar and the helpers that
write ask these functions rather than reading the environment themselves.

Two settings, read from the environment of the server process:

- ``ACTSCALE_READONLY=1``: the store is served read-only. No Train page, no sweep launcher, no
  Delete, no Upload; the run store itself refuses every write (`RunStore(readonly=True)`), so no
  widget, callback, link or query parameter can write to it.
- ``ACTSCALE_READONLY_MODEL=1``: in a read-only deployment, a model may still be loaded, for
  the Playground and anything else that needs one (it computes and shows, it stores nothing).
  Without it a read-only deployment loads no model at all and has no Playground page.

Anything other than ``1``/``0`` (``true``/``false``, ``yes``/``no``, ``on``/``off``, or unset) is
read the safe way: an unreadable ``ACTSCALE_READONLY`` means read-only, an unreadable
``ACTSCALE_READONLY_MODEL`` means no model; `problems` names the value so the sidebar can say so.
No Streamlit here: the pages decide how to show what these functions say.
"""

from __future__ import annotations

import os

from actscale.errors import ActscaleError
from actscale.runs.store import RunStore
from actscale.ui import navigation
from actscale.ui.navigation import PageInfo

READONLY = "ACTSCALE_READONLY"
READONLY_MODEL = "ACTSCALE_READONLY_MODEL"
_YES = ("1", "true", "yes", "on")
_NO = ("", "0", "false", "no", "off")


def _flag(name: str, unreadable: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value in _YES:
        return True
    if value in _NO:
        return False
    return unreadable


def readonly() -> bool:
    """True when this deployment serves its store read-only (``ACTSCALE_READONLY=1``)."""
    return _flag(READONLY, unreadable=True)


def model_allowed() -> bool:
    """True when a model may be loaded: always in a normal deployment; in a read-only one only
    with ``ACTSCALE_READONLY_MODEL=1``."""
    return not readonly() or _flag(READONLY_MODEL, unreadable=False)


def pages() -> tuple[PageInfo, ...]:
    """The pages this deployment serves, in order. A page left out is not in ``st.navigation``,
    so its URL is not served either."""
    hidden = set()
    if readonly():
        hidden.add(navigation.TRAIN)
    if not model_allowed():
        hidden.add(navigation.PLAYGROUND)
    return tuple(p for p in navigation.PAGES if p not in hidden)


def check_writable(what: str) -> None:
    """Raise ActscaleError (one line naming ``what``) in a read-only deployment."""
    if readonly():
        raise ActscaleError(f"{what} is not possible here: this deployment serves its run store read-only")


def check_model_allowed(what: str) -> None:
    """Raise ActscaleError (one line naming ``what``) where this deployment loads no model."""
    if not model_allowed():
        raise ActscaleError(
            f"{what} is not possible here: this read-only deployment loads no model ({READONLY_MODEL}=1 allows one)"
        )


def describe() -> str:
    """One line for the sidebar; "" in a normal deployment."""
    if not readonly():
        return ""
    model = "the Playground loads a model" if model_allowed() else "no model is loaded"
    return f"Read-only deployment: runs can be viewed and downloaded, not trained, deleted or uploaded; {model}."


def problems() -> list[str]:
    """A line per setting whose value is not one of the known spellings, and how it was read;
    and, where runs may be trained, one where the run store cannot hold them (a file, or a
    folder that cannot be written: said before a run trains, not when it is saved)."""
    out = []
    for name, reading in ((READONLY, "read-only"), (READONLY_MODEL, "no model")):
        value = os.environ.get(name, "")
        if value.strip().lower() not in _YES + _NO:
            out.append(f"{name}={value[:20]!r} is not 1 or 0: read as {reading} (the safe reading).")
    if not readonly():
        try:
            RunStore().check_writable()
        except ActscaleError as exc:
            out.append(f"No run trained here can be saved ({exc}); set ACTSCALE_STORE to a folder.")
    return out
