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
from ponder.types import Constraint, Message, Problem

MATH = MathDomain()
CODE = CodeDomain()



def domain_for(problem: Problem) -> Domain:
    if is_chat_problem(problem):
        return CHAT
    return CODE if is_code_problem(problem) else MATH


def constraint_for(problem: Problem) -> tuple[Constraint, tuple[Message, ...]] | None:
    """The grammar the problem's replies decode under (where a backend can), with the turns a
    request must carry to be a reply to the problem; None for problems without one."""
    domain = domain_for(problem)
    constraint = getattr(domain, "constraint", None)
    found = constraint(problem) if constraint is not None else None
    if found is None:
        return None
    return found, domain.posed(problem)  # type: ignore[attr-defined]


async def cluster_answers(problem: Problem, answers: Sequence[str | None],
                          sandbox: Sandbox) -> list[int | None]:
    """Equivalence-class label per answer (None: no answer), as the problem's domain sees it."""
    keys = await domain_for(problem).signatures(problem, answers, sandbox)
    return cluster_ids(answers) if keys is None else labels(keys)


# -- public face (generated from what other packages import) --
# Other packages import these names (the architecture test checks that they import
# nothing else from this package); those not above are loaded on first use.

_LAZY = {
    "AnswerGroup": "ponder.domains.vote",
    "CHECK_SECONDS": "ponder.domains.schemas",
    "FEATURES": "ponder.domains.selector",
    "RULES": "ponder.domains.selector",
    "SchemaRefused": "ponder.domains.schemas",
    "Selector": "ponder.domains.selector",
    "Signal": "ponder.domains.selector",
    "all_cut": "ponder.domains.vote",
    "best_score_pick": "ponder.domains.vote",
    "chat_problem": "ponder.domains.chat",
    "check_budget": "ponder.domains.schemas",
    "check_schema": "ponder.domains.schemas",
    "decode_calls": "ponder.domains.chat",
    "equivalent": "ponder.domains.answers",
    "extract_answer": "ponder.domains.answers",
    "extract_code": "ponder.domains.code_problems",
    "failure_report": "ponder.domains.code_problems",
    "get_selector": "ponder.domains.selector",
    "group_features": "ponder.domains.selector",
    "group_records": "ponder.domains.vote",
    "hidden_tests": "ponder.domains.code_problems",
    "is_cut": "ponder.domains.vote",
    "last_boxed": "ponder.domains.answers",
    "leader": "ponder.domains.vote",
    "majority_vote": "ponder.domains.vote",
    "program_of": "ponder.domains.code_problems",
    "read_reply": "ponder.domains.chat",
    "request_budget": "ponder.domains.schemas",
    "scored_groups": "ponder.domains.vote",
    "selector_pick": "ponder.domains.vote",
    "states_answer": "ponder.domains.answers",
    "strip_latex": "ponder.domains.answers",
    "tally": "ponder.domains.vote",
    "task_names": "ponder.domains.code_problems",
    "to_number": "ponder.domains.answers",
    "visible_tests": "ponder.domains.code_problems",
    "vote_pick": "ponder.domains.vote",
    "with_votes": "ponder.domains.vote",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AnswerGroup",
    "CHAT",
    "CHECK_SECONDS",
    "CODE",
    "Domain",
    "FEATURES",
    "MATH",
    "RULES",
    "SchemaRefused",
    "Selector",
    "Signal",
    "all_cut",
    "best_score_pick",
    "chat_problem",
    "check_budget",
    "check_schema",
    "cluster_answers",
    "cluster_ids",
    "constraint_for",
    "decode_calls",
    "domain_for",
    "equivalent",
    "extract_answer",
    "extract_code",
    "failure_report",
    "get_selector",
    "group_features",
    "group_records",
    "hidden_tests",
    "is_chat_problem",
    "is_cut",
    "labels",
    "last_boxed",
    "leader",
    "majority_vote",
    "program_of",
    "read_reply",
    "request_budget",
    "scored_groups",
    "selector_pick",
    "states_answer",
    "strip_latex",
    "tally",
    "task_names",
    "to_number",
    "visible_tests",
    "vote_pick",
    "with_votes",
]
