"""How a sweep's runs go to the Ray actors (`ray_executor.run_on_ray`): free actors take the
next run, progress is relayed from the sink, a run whose actor dies starts again on a new actor
(`MAX_RETRIES` times at most; then it is lost and named, the finished runs kept), Cancel stops
every run still out, and the bundles come back in the configs' order."""

from __future__ import annotations

from typing import Any

from actscale.engine.tasks import Example
from actscale.engine.training import StepInfo, TrainConfig
from actscale.errors import ActscaleError, TrainingCancelled, one_line
from actscale.runs.bundle import RunBundle
from actscale.runs.progress import RunProgress, RunState, SweepObserver
from actscale.runs.store import RunStore

POLL_S = 0.2  # how often this process drains progress and checks Cancel while runs are out
MAX_RETRIES = 2  # a run whose worker is lost starts again on a new one at most this many times


class Sweep:
    """One sweep's runs on the actors: hands runs to free actors, relays progress, restarts a run
    whose actor died (`MAX_RETRIES` times at most, on a new actor), gathers bundles in the
    configs' order."""

    def __init__(
        self,
        ray: Any,
        configs: list[TrainConfig],
        examples: list[list[Example] | None],
        known: frozenset[str],
        store: RunStore,
        actors: list[Any],
        sink: Any,
        observer: SweepObserver,
        new_actor: Any,
        replace: bool = False,
        checked: bool = False,
    ) -> None:
        self.ray, self.configs, self.examples, self.known, self.store = ray, configs, examples, known, store
        self.replace = replace  # trained again on purpose (no reuse): each run replaces a stored one
        self.checked = checked  # a user's runs: refused where the held-out prompts leave no test split
        self.actors, self.sink, self.observer, self.new_actor = actors, sink, observer, new_actor
        self.bundles: list[RunBundle | None] = [None] * len(configs)
        self.retries = [0] * len(configs)
        self.lost: list[int] = []
        self.last_step: dict[int, int] = {}

    def dispatch(self) -> list[RunBundle]:
        ray, queue, free = self.ray, list(range(len(self.configs))), list(self.actors)
        out: dict[Any, tuple[int, Any]] = {}  # result ref -> (config index, actor)
        while queue or out:
            while queue and free:
                index, actor = queue.pop(0), free.pop()
                args = (index, self.configs[index], self.examples[index], self.known, self.sink, self.checked)
                out[actor.run.remote(*args)] = (index, actor)
            if not queue and free:
                _release(ray, free, self.actors)
            ready, _ = ray.wait(list(out), num_returns=1, timeout=POLL_S)
            self._relay()
            if self.observer.cancelled():
                _cancel_all(ray, out)
                raise TrainingCancelled(
                    f"cancelled; {self._finished()} of {len(self.configs)} runs had finished and are kept"
                )
            for ref in ready:
                index, actor = out.pop(ref)
                result = self._result(ref, index)
                if result is None:  # its actor died: a new actor takes the run again, or it is lost
                    if self.retries[index] <= MAX_RETRIES:
                        queue.insert(0, index)
                    else:
                        self.lost.append(index)
                    free.append(self._replace(actor))
                    continue
                free.append(actor)
                if result["status"] != "ok":
                    _cancel_all(ray, out)
                    _raise_for(result, index)
                self.bundles[index] = self._land(result, index)
        self._raise_for_lost()
        return [b for b in self.bundles if b is not None]

    def _land(self, result: dict[str, Any], index: int) -> RunBundle:
        """A finished run into the store (a stored one is opened), reported as done or reused."""
        state: RunState = "reused" if result["bundle"] is None else "done"
        said = ""
        if result["bundle"] is None:
            run_id = result["run_id"]
        else:
            had_checks = self.store.replacing(result["run_id"]) if self.replace else None
            run_id = self.store.import_zip(result["bundle"], replace=self.replace).run_id
            said = self.store.replaced(run_id, had_checks)
        bundle = self.store.load(run_id)
        steps = self.configs[index].steps
        self.observer.progress(RunProgress(index, state, steps, steps, bundle.run_id, message=said))
        return bundle

    def _finished(self) -> int:
        """How many runs are stored so far."""
        return sum(b is not None for b in self.bundles)

    def _relay(self) -> None:
        for e in self.ray.get(self.sink.drain.remote()):
            self.last_step[e["index"]] = e["step"]
            info = StepInfo(**e["info"])
            event = RunProgress(e["index"], "running", e["step"], e["n_steps"], info=info, worker_pid=e.get("pid", 0))
            self.observer.progress(event)

    def _result(self, ref: Any, index: int) -> dict[str, Any] | None:
        """The run's result; None where its actor died (counted, and said as a ``retrying``
        event). A cluster that no longer answers is one line (finished runs are in the store)."""
        from ray.exceptions import RayActorError, RaySystemError

        try:
            return dict(self.ray.get(ref))
        except RayActorError:
            self.retries[index] += 1
            step = self.last_step.pop(index, 0)
            again = self.retries[index] <= MAX_RETRIES
            what = f"retry {self.retries[index]} of {MAX_RETRIES}" if again else "no retry left"
            message = f"its Ray worker was lost at step {step}; {what}"
            self.observer.progress(RunProgress(index, "retrying", message=message))
            return None
        except RaySystemError as exc:
            raise ActscaleError(
                f"lost the Ray cluster ({one_line(exc, 120)}); {self._finished()} of {len(self.configs)} runs had "
                "finished and are kept"
            ) from None

    def _replace(self, dead: Any) -> Any:
        """A new actor in place of one that died."""
        self.actors.remove(dead)
        actor = self.new_actor()
        self.actors.append(actor)
        return actor

    def _raise_for_lost(self) -> None:
        if not self.lost:
            return
        done = self._finished()
        runs = ", ".join(str(i + 1) for i in sorted(self.lost))
        several = len(self.lost) > 1
        raise ActscaleError(
            f"run{'s' if several else ''} {runs} lost: {'their' if several else 'its'} Ray worker died "
            f"{MAX_RETRIES + 1} times; the {done} finished runs of {len(self.configs)} are kept in the store"
        )


def _raise_for(result: dict[str, Any], index: int) -> None:
    """A worker's failed run as the exception this process raises."""
    if result["status"] == "cancelled":
        raise TrainingCancelled(result["message"])
    if result["status"] == "error":
        raise ActscaleError(result["message"])
    raise RuntimeError(f"run {index + 1} failed on a Ray worker: {result['message']}")


def _release(ray: Any, idle: list[Any], actors: list[Any]) -> None:
    """End the actors that have nothing left to run, so their CPUs (or GPUs) go back to the
    cluster at once. Runs are handed out before their actors have started: when two sweeps
    share a cluster, each can hold one started actor and wait on one that cannot start until
    a CPU is free, and an idle actor kept to the end of its sweep would never free one."""
    for actor in idle:
        ray.kill(actor)
        actors.remove(actor)
    idle.clear()


def _cancel_all(ray: Any, out: dict[Any, tuple[int, Any]]) -> None:
    """Cancel every run still out and wait until each has stopped (a running one stops at its
    next step), so nothing is left working after the sweep has returned."""
    for ref in out:
        ray.cancel(ref)
    for ref in list(out):
        try:
            ray.get(ref)
        except Exception:  # noqa: BLE001, S110 - TaskCancelledError: what was asked for
            pass
    out.clear()
