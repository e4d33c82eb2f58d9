"""Domains: what a problem's answers are and how they compare.

- ``math`` (the default): answers extracted from the text, compared by equivalence
  (``answers``), graded against the gold answer.
- ``code`` (a problem with ``entry_point`` / ``tests`` metadata): the answer is the program,
  programs are compared by what they do on probe inputs, graded by hidden tests in the sandbox
  (``code``, with the problem helpers in ``code_problems``).
- ``chat`` (a problem with a ``conversation`` in its metadata): the whole conversation, tools
  the model may call and a JSON format; the answer is the action (calls or text), compared by
  JSON equality (``chat``).

``vote`` holds the one vote rule that strategies and the evaluation replay share.
"""

from __future__ import annotations

from collections.abc import Sequence

from ponder.domains.base import Domain
from ponder.domains.chat import CHAT, is_chat_problem
from ponder.domains.code import CodeDomain
from ponder.domains.code_problems import is_code_problem
from ponder.domains.math import MathDomain
from ponder.domains.vote import cluster_ids, labels
from ponder.sandbox import Sandbox
from ponder.types import Problem

MATH = MathDomain()
CODE = CodeDomain()

__all__ = ["CHAT", "CODE", "MATH", "Domain", "cluster_answers", "domain_for"]


def domain_for(problem: Problem) -> Domain:
    if is_chat_problem(problem):
        return CHAT
    return CODE if is_code_problem(problem) else MATH


async def cluster_answers(problem: Problem, answers: Sequence[str | None],
                          sandbox: Sandbox) -> list[int | None]:
    """Equivalence-class label per answer (None: no answer), as the problem's domain sees it."""
    keys = await domain_for(problem).signatures(problem, answers, sandbox)
    return cluster_ids(answers) if keys is None else labels(keys)
