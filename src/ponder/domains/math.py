"""The ``math`` domain (the default): the final answer is extracted from the text ("The answer
is: 22", ``\\boxed{}``...), answers are compared by equivalence and graded against the gold
answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from ponder.domains.answers import equivalent, extract_answer
from ponder.domains.base import pose
from ponder.sandbox import Sandbox
from ponder.types import Message, Problem


class MathDomain:
    name: ClassVar[str] = "math"
    default_verifier: ClassVar[str | None] = None  # the strategy's own default

    def messages(self, problem: Problem, system: str, default_system: str) -> list[Message]:
        return pose(problem, system)

    def extract(self, problem: Problem, text: str) -> str | None:
        return extract_answer(text)

    async def signatures(self, problem: Problem, answers: Sequence[str | None],
                         sandbox: Sandbox) -> list[str | None] | None:
        return None

    async def grade(self, problem: Problem, answers: Sequence[str | None],
                    sandbox: Sandbox) -> list[bool]:
        return [equivalent(a, problem.answer) for a in answers]
