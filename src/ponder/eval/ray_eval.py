"""``ponder eval --ray``: the problems shared out over Ray actors, each owning a backend.

The driver keeps the store: it hands each problem, with the rows already stored for it, to a
worker (``ray_worker.EvalWorker``) and commits the rows that come back as each problem's batch
arrives, so an interrupted sweep resumes exactly as a single-process one. A worker that dies
(``RayActorError``) has its in-flight problems handed to the others; its unfinished work never
reached the store, so nothing is lost or stored twice. Ray is imported only here, lazily.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ponder.backends.base import Backend
from ponder.errors import BackendError, ConfigError, MissingDependency
from ponder.eval.harness import Harness
from ponder.eval.plans import GREEDY, Plan
from ponder.eval.ray_worker import EvalWorker, insert_rows, problem_rows


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise MissingDependency("ray", "ray") from exc
    return ray


def start_ray(address: str | None, workers: int) -> Any:
    """Connect to the cluster at ``address``, or start a local one with ``workers`` CPUs."""
    ray = import_ray()
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    return ray


def check_ray_plans(plans: Sequence[Plan]) -> None:
    """Refuse what Ray cannot run yet: a strategy that routes compute across all the problems
    at once."""
    batch = [p.label for p in plans if p.mode == "batch"]
    if batch:
        raise ConfigError(f"--ray cannot run {', '.join(batch)} yet: it routes compute "
                          "across all the problems at once; run it without --ray")


class RayEval:
    """Runs a driver-side :class:`Harness`'s plans on Ray workers (``workers`` actors, each
    with ``per_worker`` problems in flight) built by ``factory``."""

    def __init__(self, harness: Harness, factory: Callable[[], Backend], *,
                 address: str | None = None, workers: int = 2, per_worker: int = 1) -> None:
        check_ray_plans(harness.plans)
        if workers < 1 or per_worker < 1:
            raise ConfigError("--ray-workers and --concurrency must be positive")
        self.harness = harness
        self.ray = start_ray(address, workers)
        remote = self.ray.remote(num_cpus=1, max_restarts=0)(EvalWorker)
        labels = [plan.label for plan in harness.plans]
        args = {"strategies": [label for label in labels if label != GREEDY],
                "budgets": harness.budgets, "options": harness.options,
                "verifier": harness.verifier, "seed": harness.seed, "greedy": GREEDY in labels,
                "traces": harness.traces}  # the sandbox: each worker's own default jail
        self.actors = [remote.remote(factory, args) for _ in range(workers)]
        self.per_worker = per_worker
        self.dead: set[int] = set()

    def identity(self) -> dict[str, Any]:
        """The backend as the first worker sees it (for the store's claim)."""
        return self.ray.get(self.actors[0].identity.remote())

    def pids(self) -> list[int]:
        return self.ray.get([a.pid.remote() for a in self.actors])

    def run(self) -> None:
        ray, harness = self.ray, self.harness
        pending = deque(harness.problems)
        inflight: dict[Any, tuple[int, Any]] = {}
        load = [0] * len(self.actors)
        while pending or inflight:
            for i, actor in enumerate(self.actors):
                while i not in self.dead and pending and load[i] < self.per_worker:
                    problem = pending.popleft()
                    stored = problem_rows(harness.store, problem.id)
                    inflight[actor.solve.remote(problem, stored)] = (i, problem)
                    load[i] += 1
            if not inflight:
                raise BackendError("every Ray worker died; what finished is stored: rerun "
                                   "the same command to resume")
            [ref], _ = ray.wait(list(inflight), num_returns=1)
            i, problem = inflight.pop(ref)
            load[i] -= 1
            try:
                out = ray.get(ref)
            except ray.exceptions.RayActorError:
                self.dead.add(i)
                pending.appendleft(problem)  # again, on a live worker
                continue
            insert_rows(harness.store, out["rows"])
            status = harness.status
            status.samples += out["samples"]
            status.tokens += out["tokens"]
            status.correct += out["correct"]
            status.scored += out["scored"]
            status.problems_done += 1
            harness._update()

    def close(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:  # noqa: BLE001 - one already gone
                pass
