"""The Domain protocol: what kind of answer a problem wants, and how answers are read, compared
and graded. Strategies never special-case a kind of problem: they ask the problem's domain."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Protocol

from ponder.sandbox import Sandbox
from ponder.types import Message, Problem


class Domain(Protocol):
    name: ClassVar[str]
    default_verifier: ClassVar[str | None]

    def messages(self, problem: Problem, system: str, default_system: str) -> list[Message]: ...

    def extract(self, problem: Problem, text: str) -> str | None: ...

    async def signatures(self, problem: Problem, answers: Sequence[str | None],
                         sandbox: Sandbox) -> list[str | None] | None:
        """Keys whose equality means "same answer"; None: compare answers by equivalence."""
        ...

    async def grade(self, problem: Problem, answers: Sequence[str | None],
                    sandbox: Sandbox) -> list[bool]: ...


def pose(problem: Problem, system: str) -> list[Message]:
    """The system message (the problem's own, else ``system``) and the question."""
    messages = []
    if problem.system or system:
        messages.append(Message("system", problem.system or system))
    messages.append(Message("user", problem.question))
    return messages
