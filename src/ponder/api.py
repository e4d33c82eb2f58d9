"""The Python API: ``solve`` and ``asolve``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ponder.backends.base import Backend
from ponder.backends.endpoints import EndpointSpec
from ponder.backends.loading import load_backend, opened_backend, opened_models
from ponder.budget import Budget
from ponder.core.context import DEFAULT_SANDBOX, EventSink, Verifier
from ponder.domains.code_problems import task_names, visible_tests
from ponder.errors import ConfigError
from ponder.runner import build_strategy, run_strategy
from ponder.sandbox import Sandbox
from ponder.types import Problem, Result

__all__ = ["GivenTests", "asolve", "check_given_tests", "load_backend", "solve"]


async def asolve(
    question: str | Problem,
    strategy: str = "self-consistency",
    *,
    n: int | None = None,
    effort: str | None = None,
    model: str | None = None,
    base_url: str | Sequence[str] | None = None,
    api_key: str | None = None,
    endpoints: str | Path | Sequence[EndpointSpec] | None = None,
    backend: Backend | None = None,
    models: Mapping[str, str | Backend] | None = None,
    backend_options: dict[str, Any] | None = None,
    verifier: str | Verifier | None = None,
    max_tokens_total: int | None = None,
    seed: int | None = None,
    events: EventSink | None = None,
    **options: Any,
) -> Result:
    """Solve one question with a strategy; returns a :class:`~ponder.types.Result`.

    ``models`` names the run's other models by role (``{"strong": "qwen-1.5b.gguf"}``, or a
    served one ``"http://host:8000/v1#NAME"``, or a backend), for the strategies that use
    several (``cascade``, ``verify-by-strong``, ``mixture-of-agents``, ``debate``);
    ``result.models`` says what each spent.

    >>> from ponder.backends.fake import ScriptedBackend
    >>> fake = ScriptedBackend(["The answer is 22.", "The answer is 22.", "The answer is 21."])
    >>> asyncio.run(asolve("17 + 5?", "self-consistency", n=3, backend=fake)).answer
    '22'
    """
    problem = question if isinstance(question, Problem) else Problem(question)
    if not problem.question or not problem.question.strip():
        raise ConfigError("the question is empty")
    chosen = build_strategy(strategy, effort, n=n, **options)
    budget = Budget(max_tokens=max_tokens_total)
    async with opened_backend(backend, model=model, base_url=base_url, api_key=api_key,
                              options=backend_options, endpoints=endpoints) as ready, \
            opened_models(models, api_key=api_key, options=backend_options) as others:
        return await run_strategy(chosen, problem, ready, verifier=verifier, budget=budget,
                                  seed=seed, events=events, models=others)


def solve(question: str | Problem, strategy: str = "self-consistency", **kwargs: Any) -> Result:
    """Synchronous :func:`asolve`.

    >>> import ponder
    >>> result = ponder.solve("17 sheep and 5 more: how many?", n=4)  # doctest: +SKIP
    """
    return asyncio.run(asolve(question, strategy, **kwargs))


@dataclass(frozen=True)
class GivenTests:
    """How the answer fares on the tests given with ``--test`` / ``--tests-file``."""

    passed: int
    total: int
    passing_candidate: int | None = None  # (1-based) a candidate passing them all, if any

    @property
    def ok(self) -> bool:
        return self.passed == self.total

    def line(self) -> str:
        return f"Passes {self.passed} of {self.total} given test{'s' if self.total != 1 else ''}"

    def failure(self) -> str:
        """The one line on stderr when the answer does not pass them all."""
        head = f"ponder: the answer passes {self.passed} of {self.total} given tests"
        if self.passing_candidate is not None:
            return head + f"; candidate {self.passing_candidate} passes them all"
        return head + "; no candidate passes them all"

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "total": self.total,
                "passing_candidate": self.passing_candidate}


async def check_given_tests(problem: Problem, result: Result,
                            sandbox: Sandbox = DEFAULT_SANDBOX) -> GivenTests | None:
    """The answer's program run on the tests given with the question (None: none given); when
    it fails one, the first candidate whose program passes them all, if any."""
    if not problem.metadata.get("tests"):
        return None
    tests = visible_tests(problem)

    async def passed(program: str | None) -> int:
        if program is None:
            return 0
        return (await sandbox.run(program, tests, expose=task_names(problem))).passed

    score = await passed(result.answer)
    found = None
    if score < len(tests):
        tried = {result.answer}
        for i, candidate in enumerate(result.candidates, 1):
            if candidate.answer in tried:
                continue
            tried.add(candidate.answer)
            if await passed(candidate.answer) == len(tests):
                found = i
                break
    return GivenTests(score, len(tests), found)
