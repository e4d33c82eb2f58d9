"""Vote over candidate answers, compared by equivalence rather than string identity."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ponder.verifiers.answers import equivalent


@dataclass
class AnswerGroup:
    """Candidates whose answers are equivalent; ``answer`` is the first one seen."""

    answer: str
    members: list[int] = field(default_factory=list)
    weight: float = 0.0


def group_answers(answers: Sequence[str | None], weights: Sequence[float] | None = None
                  ) -> list[AnswerGroup]:
    """Group equivalent answers in order of first appearance; None answers do not vote."""
    groups: list[AnswerGroup] = []
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        weight = 1.0 if weights is None else weights[i]
        for group in groups:
            if equivalent(group.answer, answer):
                break
        else:
            group = AnswerGroup(answer)
            groups.append(group)
        group.members.append(i)
        group.weight += weight
    return groups


def majority_vote(answers: Sequence[str | None], weights: Sequence[float] | None = None
                  ) -> tuple[AnswerGroup | None, list[AnswerGroup]]:
    """The winning group (largest total weight; ties go to the answer seen first) and all groups.

    >>> winner, groups = majority_vote(["22", "21", "22.0", None])
    >>> winner.answer, winner.members
    ('22', [0, 2])
    """
    groups = group_answers(answers, weights)
    if not groups:
        return None, groups
    best = max(groups, key=lambda g: g.weight)  # max keeps the first of equal weights
    return best, groups
