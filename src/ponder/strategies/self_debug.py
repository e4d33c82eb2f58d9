"""self-debug: write a solution, run the visible tests in the sandbox, show the model what
failed, revise; stop at the first version that passes (Chen et al., "Teaching Large Language
Models to Self-Debug", 2023)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from ponder.core.context import Context
from ponder.domains.code_problems import failure_report, task_names, visible_tests
from ponder.errors import BudgetExhausted
from ponder.sandbox import Execution
from ponder.strategies.base import (
    BaseStrategy,
    EvalMode,
    Outcome,
    StrategyConfig,
    problem_messages,
    to_candidate,
)
from ponder.types import Candidate, Message, Problem

FEEDBACK = """Running your code on the tests gave:
{report}

Find the bug, then reply with the whole corrected program in one ```python block."""
NO_CODE = "Your reply has no ```python code block. Reply with the whole program in one block."
FRESH = """{question}

A previous attempt failed these tests:
{report}
Write a correct solution."""


class SelfDebugConfig(StrategyConfig):
    temperature: float = Field(0.0, ge=0.0, le=5.0, description="the first attempt's")
    revision_temperature: float = Field(
        0.7, ge=0.0, le=5.0, description="revisions are sampled: a greedy model tends to "
        "repeat the code it was just told is wrong")
    rounds: int = Field(3, ge=0, le=10, description="most revisions after failing tests")
    shown_failures: int = Field(3, ge=1, le=20, description="failed tests shown per round")
    feedback_chars: int = Field(300, ge=40, description="characters kept of each error")
    feedback: Literal["fresh", "conversation"] = Field(
        "fresh", description="fresh: ask anew with the question and the failures; "
        "conversation: show the model its code and the failures (small models copy it back)")


class SelfDebug(BaseStrategy):
    name: ClassVar[str] = "self-debug"
    description: ClassVar[str] = "code: run the visible tests, feed failures back, revise"
    Config: ClassVar[type[StrategyConfig]] = SelfDebugConfig
    config: SelfDebugConfig
    effort_presets: ClassVar[dict[str, dict[str, Any]]] = {
        "low": {"rounds": 1},
        "medium": {"rounds": 3},
        "high": {"rounds": 6},
    }
    # Stopping at the first pass makes a run with R rounds contain every shorter one, so the
    # harness runs it once with its configured rounds.
    eval_mode: ClassVar[EvalMode] = "single"

    async def solve(self, problem: Problem, ctx: Context, root: int) -> Outcome:
        cfg = self.config
        tests = visible_tests(problem)
        messages = problem_messages(problem, cfg.system)
        versions: list[Candidate] = []
        rounds = cfg.rounds if tests else 0
        if not tests:
            ctx.trace.add("decision", "no visible tests: nothing to debug against", parent=root)
        for attempt in range(rounds + 1):
            try:
                params = cfg.sampling(**({"temperature": cfg.revision_temperature}
                                         if attempt else {}))
                [traced] = await ctx.sample(messages, params, parent=root,
                                            label="solution" if attempt == 0
                                            else f"revision {attempt}")
            except BudgetExhausted:
                break
            candidate = to_candidate(traced, problem)
            run = None
            if candidate.answer is not None and tests:
                run = await ctx.sandbox.run(candidate.answer, tests,
                                            expose=task_names(problem))
                ctx.trace.add("execute", f"visible tests of version {attempt + 1}",
                              parent=traced.node, status=run.status, passed=run.passed,
                              tests=len(run.tests), seconds=round(run.seconds, 4),
                              failures=failure_report(run.failures()))
            versions.append(candidate.replace(
                score=run.fraction if run else (0.0 if tests else None),
                metadata={**candidate.metadata, "round": attempt,
                          **({"exec_seconds": round(run.seconds, 4)} if run else {})}))
            if run is not None and run.ok or attempt == rounds:
                break
            if cfg.feedback == "fresh":
                question = problem_messages(problem, cfg.system)
                question[-1] = Message("user", FRESH.format(
                    question=question[-1].content, report=self._report(run)))
                messages = question
            else:
                messages = [*messages, Message("assistant", traced.completion.text),
                            Message("user", self._feedback(run))]
        if not versions:
            return Outcome()
        passing = [i for i, v in enumerate(versions) if v.score == 1.0]
        best = passing[0] if passing else max(
            range(len(versions)), key=lambda i: (versions[i].score or 0.0, i))
        ctx.trace.add("decision", "first version passing the visible tests" if passing
                      else "no version passed: the one passing most tests", parent=root,
                      chosen=best, scores=[v.score for v in versions])
        return Outcome.chosen(versions, best)

    def _report(self, run: Execution | None) -> str:
        if run is None:
            return "- the reply had no ```python code block"
        report = failure_report(run.failures(), self.config.shown_failures,
                                self.config.feedback_chars)
        if run.status != "ok" and not report:
            report = f"- the program failed: {run.status}: {run.message}"
        return report

    def _feedback(self, run: Execution | None) -> str:
        return NO_CODE if run is None else FEEDBACK.format(report=self._report(run))
