"""Selection rules over candidate answers, compared by equivalence rather than string identity.

The strategies and the evaluation harness (which replays them on subsets of stored samples) use
the same functions, so a subsampled budget is scored exactly as the strategy would choose."""

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


def group_answers(answers: Sequence[str | None], weights: Sequence[float] | None = None,
                  clusters: Sequence[int | None] | None = None) -> list[AnswerGroup]:
    """Group equivalent answers in order of first appearance; None answers do not vote.
    ``clusters`` (labels from the problem's domain, e.g. execution signatures of programs)
    replaces the pairwise equivalence test."""
    groups: list[AnswerGroup] = []
    by_label: dict[int, AnswerGroup] = {}
    for i, answer in enumerate(answers):
        if answer is None or (clusters is not None and clusters[i] is None):
            continue
        weight = 1.0 if weights is None else weights[i]
        if clusters is not None:
            group = by_label.get(clusters[i])  # type: ignore[arg-type]
        else:
            group = next((g for g in groups if equivalent(g.answer, answer)), None)
        if group is None:
            group = AnswerGroup(answer)
            groups.append(group)
            if clusters is not None:
                by_label[clusters[i]] = group  # type: ignore[index]
        group.members.append(i)
        group.weight += weight
    return groups


def majority_vote(answers: Sequence[str | None], weights: Sequence[float] | None = None,
                  clusters: Sequence[int | None] | None = None
                  ) -> tuple[AnswerGroup | None, list[AnswerGroup]]:
    """The winning group (largest total weight; ties go to the answer seen first) and all groups.

    >>> winner, groups = majority_vote(["22", "21", "22.0", None])
    >>> winner.answer, winner.members
    ('22', [0, 2])
    """
    groups = group_answers(answers, weights, clusters)
    if not groups:
        return None, groups
    best = max(groups, key=lambda g: g.weight)  # max keeps the first of equal weights
    return best, groups


def cluster_ids(answers: Sequence[str | None]) -> list[int | None]:
    """Label each answer with its equivalence class (None for no answer)."""
    labels: list[int | None] = [None] * len(answers)
    for g, group in enumerate(group_answers(answers)):
        for i in group.members:
            labels[i] = g
    return labels


def vote_pick(clusters: Sequence[int | None], subset: Sequence[int]) -> int | None:
    """The sample whose answer wins a majority vote within ``subset`` (ties: earliest)."""
    counts: dict[int, int] = {}
    first: dict[int, int] = {}
    for i in subset:
        c = clusters[i]
        if c is None:
            continue
        counts[c] = counts.get(c, 0) + 1
        first.setdefault(c, i)
    if not counts:
        return None
    best = max(counts.values())
    return min(first[c] for c, n in counts.items() if n == best)


def best_score_pick(scores: Sequence[float | None], clusters: Sequence[int | None],
                    subset: Sequence[int]) -> int | None:
    """The highest-scored sample with an answer in ``subset`` (ties: earliest); a vote when no
    sample in it has a score."""
    scored = [i for i in subset if scores[i] is not None and clusters[i] is not None]
    if not scored:
        return vote_pick(clusters, subset)
    return max(scored, key=lambda i: (scores[i], -i))
