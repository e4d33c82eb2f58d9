"""The ``code-tests`` verifier: the fraction of a code problem's visible tests a candidate's
program passes in the sandbox."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import ClassVar

from ponder.core.context import Context
from ponder.domains.code_problems import failure_report, task_names, visible_tests
from ponder.sandbox import Sandbox
from ponder.types import Candidate, Problem


class CodeTestsVerifier:
    """Score = fraction of the problem's visible tests the candidate's program passes (None when
    the problem has no tests or the candidate no code)."""

    name: ClassVar[str] = "code-tests"
    description: ClassVar[str] = "fraction of the visible tests passed in the sandbox"

    def __init__(self, sandbox: Sandbox | None = None) -> None:
        self.sandbox = sandbox

    async def score(self, problem: Problem, candidates: Sequence[Candidate], ctx: Context,
                    parent: int | None) -> list[float | None]:
        tests = visible_tests(problem)
        if not tests:
            return [None] * len(candidates)
        sandbox = self.sandbox or ctx.sandbox
        programs = [c.answer for c in candidates]
        expose = task_names(problem)
        runs = await asyncio.gather(*(sandbox.run(p, tests, expose=expose)
                                      for p in programs if p is not None))
        scores: list[float | None] = []
        it = iter(runs)
        for i, program in enumerate(programs):
            if program is None:
                scores.append(0.0)
                continue
            run = next(it)
            scores.append(run.fraction)
            ctx.trace.add("execute", f"tests of candidate {i + 1}", parent=parent,
                          status=run.status, passed=run.passed, tests=len(run.tests),
                          seconds=round(run.seconds, 4), failures=failure_report(run.failures()))
        return scores
