"""Selection rules over candidate answers, compared by equivalence rather than string identity.

The strategies and the evaluation harness (which replays them on subsets of stored samples) use
the same functions, so a subsampled budget is scored exactly as the strategy would choose."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ponder.types import Candidate
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


def cross_mode_factor(modes: Sequence[str], bonus: float) -> float:
    """An answer reached by more than one mode (chain and program) counts 1 + bonus times."""
    return 1.0 + bonus if len(set(modes)) > 1 else 1.0


def majority_vote(answers: Sequence[str | None], weights: Sequence[float] | None = None,
                  clusters: Sequence[int | None] | None = None,
                  modes: Sequence[str] | None = None, cross_mode_bonus: float = 0.0
                  ) -> tuple[AnswerGroup | None, list[AnswerGroup]]:
    """The winning group (largest total weight; ties go to the answer seen first) and all groups.
    With ``modes``, a group whose members come from several modes has its weight multiplied by
    ``1 + cross_mode_bonus``.

    >>> winner, groups = majority_vote(["22", "21", "22.0", None])
    >>> winner.answer, winner.members
    ('22', [0, 2])
    """
    groups = group_answers(answers, weights, clusters)
    if modes is not None:
        for group in groups:
            group.weight *= cross_mode_factor([modes[i] for i in group.members],
                                              cross_mode_bonus)
    if not groups:
        return None, groups
    best = max(groups, key=lambda g: g.weight)  # max keeps the first of equal weights
    return best, groups


def with_votes(candidates: Sequence[Candidate], groups: Sequence[AnswerGroup]
               ) -> list[Candidate]:
    """Each candidate with its group's vote weight (0 for candidates that did not vote)."""
    votes = {i: g.weight for g in groups for i in g.members}
    return [c.replace(votes=votes.get(i, 0.0)) for i, c in enumerate(candidates)]


def group_records(groups: Sequence[AnswerGroup], modes: Sequence[str] | None = None
                  ) -> list[dict[str, Any]]:
    """The groups of a vote as trace data."""
    return [{"answer": g.answer, "members": g.members, "weight": round(g.weight, 6),
             **({"modes": sorted({modes[i] for i in g.members})} if modes is not None else {})}
            for g in groups]


def cluster_ids(answers: Sequence[str | None]) -> list[int | None]:
    """Label each answer with its equivalence class (None for no answer)."""
    labels: list[int | None] = [None] * len(answers)
    for g, group in enumerate(group_answers(answers)):
        for i in group.members:
            labels[i] = g
    return labels


def vote_pick(clusters: Sequence[int | None], subset: Sequence[int],
              weights: Sequence[float] | None = None, modes: Sequence[str] | None = None,
              cross_mode_bonus: float = 0.0) -> int | None:
    """The sample whose answer wins a (weighted, mode-aware: see :func:`majority_vote`) vote
    within ``subset`` (ties: the earliest)."""
    totals: dict[int, float] = {}
    first: dict[int, int] = {}
    seen_modes: dict[int, list[str]] = {}
    for i in subset:
        c = clusters[i]
        if c is None:
            continue
        totals[c] = totals.get(c, 0.0) + (1.0 if weights is None else weights[i])
        first.setdefault(c, i)
        if modes is not None:
            seen_modes.setdefault(c, []).append(modes[i])
    if not totals:
        return None
    if modes is not None:
        totals = {c: w * cross_mode_factor(seen_modes[c], cross_mode_bonus)
                  for c, w in totals.items()}
    best = max(totals.values())
    return min(first[c] for c, w in totals.items() if w >= best - 1e-12)


def best_score_pick(scores: Sequence[float | None], clusters: Sequence[int | None],
                    subset: Sequence[int], **vote: Any) -> int | None:
    """The highest-scored sample with an answer in ``subset`` (ties: earliest); a vote
    (:func:`vote_pick` with ``vote``'s weights and modes) when no sample in it has a score."""
    scored = [i for i in subset if scores[i] is not None and clusters[i] is not None]
    if not scored:
        return vote_pick(clusters, subset, **vote)
    return max(scored, key=lambda i: (scores[i], -i))
