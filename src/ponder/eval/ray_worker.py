"""A Ray actor that evaluates problems on its own backend and sends the new rows back.

The driver alone writes the run's store (``ray_eval.py``). For each problem a worker gets the
rows the driver has stored for it, runs the harness's plans on a private scratch store primed
with them (so exactly the missing samples, scores and results are made, with the seeds a
single-process run uses) and returns only the new rows. A worker that dies returns nothing:
its problems are run again elsewhere and nothing half-done reaches the store.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ponder.backends.base import Backend
from ponder.eval.harness import Harness
from ponder.eval.store import Store
from ponder.runner import check_backend
from ponder.types import Problem

TABLES = ("samples", "scores", "results")

Rows = dict[str, list[tuple]]


def problem_rows(store: Store, problem_id: str) -> Rows:
    """Every stored row of one problem, by table."""
    return {t: store.db.execute(f"SELECT * FROM {t} WHERE problem_id = ?",  # noqa: S608
                                (problem_id,)).fetchall() for t in TABLES}


def insert_rows(store: Store, rows: Rows) -> None:
    """Add rows (plain INSERT: a row stored twice is an error, never a silent duplicate)."""
    results = rows.get("results") or []
    if results and len(results[0]) > store.result_columns:  # rows with their cost per model
        store.with_models_column()
    if results and len(results[0]) < store.result_columns:  # rows from before it existed
        rows = {**rows, "results": [(*r, None) for r in results]}
    with store.db:
        for table, values in rows.items():
            if values:
                marks = ", ".join("?" * len(values[0]))
                store.db.executemany(f"INSERT INTO {table} VALUES ({marks})", values)


class EvalWorker:
    """Owns one backend (``factory()``: an in-process model or an endpoint pool)."""

    def __init__(self, factory: Callable[[], Backend], harness_args: dict[str, Any]) -> None:
        self.backend = factory()
        self.harness_args = dict(harness_args)
        self.scratch = Path(tempfile.mkdtemp(prefix="ponder-ray-")) / "scratch.sqlite"
        self._store: Store | None = None  # opened in the thread that runs the methods

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.scratch)
        return self._store

    def pid(self) -> int:
        return os.getpid()

    async def identity(self) -> dict[str, Any]:
        await self.backend.probe()
        return self.backend.identity()

    async def solve(self, problem: Problem, stored: Rows) -> dict[str, Any]:
        """Run every plan on ``problem`` given what is ``stored``; the new rows and counts."""
        with self.store.db:
            for table in TABLES:
                self.store.db.execute(f"DELETE FROM {table} WHERE problem_id = ?",  # noqa: S608
                                      (problem.id,))
        insert_rows(self.store, stored)
        await self.backend.probe()
        harness = Harness(self.backend, self.store, [problem], **self.harness_args)
        for plan in harness.plans:
            check_backend(plan.build(), self.backend)  # one clear error, as in one process
        await harness.run_problem(problem)
        after = problem_rows(self.store, problem.id)
        known = {t: set(stored.get(t, ())) for t in TABLES}
        new = {t: [r for r in after[t] if r not in known[t]] for t in TABLES}
        s = harness.status
        return {"rows": new, "samples": s.samples, "tokens": s.tokens, "correct": s.correct,
                "scored": s.scored}
