"""Code correctness: the fraction of a problem's hidden tests a completion's program passes,
run in ponder's sandbox (the bubblewrap jail unless ``PONDER_SANDBOX=none`` says otherwise).

A row's tests come from the dataset's columns, read as ponder's code domain reads a problem's
metadata (``domains.code_problems``): ``tests`` (a list of Python statements, usually
``assert f(1) == 2``; each one test), or HumanEval's ``test`` (a source defining
``check(candidate)``) with ``entry_point`` (one test), else the examples in the prompt's
docstring. The program is the completion's fenced Python block (the one defining
``entry_point`` where there is one), after the prompt's signature when it is only a body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ponder.domains.code_problems import hidden_tests, program_of, task_names
from ponder.rewards.base import (
    Reward,
    RewardValue,
    column,
    completion_text,
    log_metric,
    prompt_text,
)
from ponder.sandbox import Limits, Sandbox
from ponder.types import Problem

# A training batch should not wait 10 s on one looping program: each test (and the program's
# top level) gets 2 s, the whole run 6 s.
REWARD_LIMITS = Limits(wall_seconds=6.0, test_seconds=2.0, cpu_seconds=6)


class CodeReward(Reward):
    """Fraction of the row's tests passed (0.0 when no program is found or it does not load);
    None for a row with no tests. Every program runs in the sandbox, at most ``workers`` at
    once (default: the CPU count).

    Cost: one sandboxed process pair per completion — about 0.1 s of CPU for a quick program
    (see ``bench/results/reward_throughput-2026-11-29.md``), up to the wall limit (6 s) for one
    that loops. The run time of each batch goes to TRL's log as ``code_correctness/seconds``
    and ``code_correctness/completions_per_second``.
    """

    name = "code_correctness"

    def __init__(self, limits: Limits | None = None, workers: int | None = None,
                 isolation: str | None = None) -> None:
        super().__init__()
        self.limits = limits or REWARD_LIMITS
        self.workers = workers
        self.isolation = isolation
        self._sandbox: Sandbox | None = None

    @property
    def sandbox(self) -> Sandbox:
        """This process's sandbox (made on first use: a pickled reward makes its own)."""
        if self._sandbox is None:
            self._sandbox = Sandbox(self.limits, workers=self.workers,
                                    isolation=self.isolation)  # type: ignore[arg-type]
        return self._sandbox

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_sandbox": None}

    def problem(self, prompt: Any, row: Mapping[str, Any]) -> Problem:
        meta = {k: row[k] for k in ("entry_point", "tests", "test") if row.get(k)}
        if isinstance(meta.get("tests"), str):
            meta["tests"] = [meta["tests"]]
        return Problem(prompt_text(prompt), metadata=meta)

    async def fraction(self, problem: Problem, text: str) -> RewardValue:
        setup, tests = hidden_tests(problem)
        if not tests:
            return None
        program = program_of(problem, text)
        if program is None:
            return 0.0
        run = await self.sandbox.run(program, tests, setup=setup, expose=task_names(problem))
        return sum(t.passed for t in run.tests) / len(tests)

    async def ascore(self, prompts: Sequence[Any], completions: Sequence[Any],
                     completion_ids: Sequence[Sequence[int]] | None, columns: Mapping[str, Any]
                     ) -> list[RewardValue]:
        n = len(completions)
        cols = {k: column(columns, (k,), n, required=False) for k in ("entry_point", "tests",
                                                                       "test")}
        started = time.monotonic()
        values = await asyncio.gather(*(
            self.fraction(self.problem(prompts[i], {k: v[i] for k, v in cols.items()}),
                          completion_text(completions[i]))
            for i in range(n)))
        seconds = time.monotonic() - started
        log_metric(columns, f"{self.name}/seconds", seconds)
        if seconds > 0:
            log_metric(columns, f"{self.name}/completions_per_second", n / seconds)
        return list(values)
