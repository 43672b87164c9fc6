"""A sweep's progress sink on Ray: a small actor that holds the workers' step events until the
driver drains them (`ray_executor.run_on_ray`).

It lives in a module of its own that imports nothing beyond the standard library: Ray's worker
for an actor imports the actor's module, and `ray_executor`'s imports reach torch and the
engine, which the sink never uses (0.9 s of a core at every sweep's start, while the workers
load their models; docs/measured.md, "The suite's processes beside its workers")."""

from __future__ import annotations

from typing import Any


class ProgressSink:
    """A Ray actor that holds step events until the driver drains them."""

    def __init__(self) -> None:
        self._events: list[dict[str, Any]] = []

    def push(self, event: dict[str, Any]) -> None:
        self._events.append(event)

    def drain(self) -> list[dict[str, Any]]:
        events, self._events = self._events, []
        return events
