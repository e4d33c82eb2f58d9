"""The one vote rule, over candidate answers compared by equivalence rather than string identity.

Strategies vote with :func:`majority_vote`; the evaluation harness replays the same vote on
subsets of stored samples with :func:`vote_pick`. Both count through :func:`tally` and pick with
:func:`leader`, so a subsampled budget is scored exactly as the strategy would choose. A selection
rule (:mod:`ponder.domains.selector`) weighs the same groups by their signals instead of their
counts (:func:`scored_groups`, :func:`selector_pick`), live and in the replay alike.

A sample cut off at the token limit (``finish_reason == "length"``) votes with ``cut_weight``
times its weight, 0 by default: its "answer" is whatever number the unfinished text ended on.
When every sample with an answer was cut, they vote at their full weight instead (an answer
from cut chains beats none), and the trace says so (:func:`all_cut`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ponder.domains.answers import equivalent
from ponder.domains.selector import Selector, Signal, group_features
from ponder.types import Candidate

TIE = 1e-12  # totals this close are a tie (summation order must not decide a vote)


@dataclass
class AnswerGroup:
    """Candidates whose answers are equivalent (one cluster label): the members in order, their
    total vote weight, and ``answer``, the first member's."""

    label: int
    answer: str = ""
    members: list[int] = field(default_factory=list)
    weight: float = 0.0


def cross_mode_factor(modes: Sequence[str], bonus: float) -> float:
    """An answer reached by more than one mode (chain and program) counts 1 + bonus times."""
    return 1.0 + bonus if len(set(modes)) > 1 else 1.0


def is_cut(finish_reason: str | None) -> bool:
    """Whether a sample was cut off at the token limit."""
    return finish_reason == "length"


def all_cut(clusters: Sequence[int | None], subset: Sequence[int] | None,
            cut: Sequence[bool] | None) -> bool:
    """Whether every sample with an answer among ``subset`` (default: all) was cut: then the
    cut samples vote at their full weight (the fallback), not at ``cut_weight``."""
    answered = [i for i in (range(len(clusters)) if subset is None else subset)
                if clusters[i] is not None]
    return cut is not None and bool(answered) and all(cut[i] for i in answered)


def tally(clusters: Sequence[int | None], subset: Sequence[int] | None = None,
          weights: Sequence[float] | None = None, modes: Sequence[str] | None = None,
          cross_mode_bonus: float = 0.0, cut: Sequence[bool] | None = None,
          cut_weight: float = 0.0) -> list[AnswerGroup]:
    """The vote's groups, in order of first appearance among ``subset`` (default: all): each
    cluster label's members and total weight (1 per member without ``weights``). Members with no
    label do not vote. With ``cut`` (which samples were cut off at the token limit), a cut
    sample's weight is multiplied by ``cut_weight`` and at 0 it does not vote at all, unless
    every sample with an answer was cut (:func:`all_cut`). With ``modes``, a group whose members
    come from several modes has its weight multiplied by ``1 + cross_mode_bonus``."""
    groups: dict[int, AnswerGroup] = {}
    discount = cut is not None and not all_cut(clusters, subset, cut)
    for i in range(len(clusters)) if subset is None else subset:
        label = clusters[i]
        if label is None:
            continue
        weight = 1.0 if weights is None else weights[i]
        if discount and cut[i]:  # type: ignore[index]
            if cut_weight <= 0.0:
                continue  # a cut sample does not vote
            weight *= cut_weight
        group = groups.setdefault(label, AnswerGroup(label))
        group.members.append(i)
        group.weight += weight
    if modes is not None:
        for group in groups.values():
            group.weight *= cross_mode_factor([modes[i] for i in group.members],
                                              cross_mode_bonus)
    return list(groups.values())


def leader(groups: Sequence[AnswerGroup]) -> AnswerGroup | None:
    """The group with the largest weight; ties go to the group that appeared first."""
    if not groups:
        return None
    best = max(g.weight for g in groups)
    return next(g for g in groups if g.weight >= best - TIE)


def cluster_ids(answers: Sequence[str | None]) -> list[int | None]:
    """Label each answer with its equivalence class, numbered in order of first appearance (None
    for no answer). An answer joins the first class whose first answer it is equivalent to."""
    firsts: list[str] = []
    out: list[int | None] = []
    for answer in answers:
        if answer is None:
            out.append(None)
            continue
        label = next((k for k, first in enumerate(firsts) if equivalent(first, answer)), None)
        if label is None:
            label = len(firsts)
            firsts.append(answer)
        out.append(label)
    return out


def labels(keys: Sequence[str | None]) -> list[int | None]:
    """Equal keys share a label, numbered in order of first appearance."""
    seen: dict[str, int] = {}
    return [None if k is None else seen.setdefault(k, len(seen)) for k in keys]


def majority_vote(answers: Sequence[str | None], weights: Sequence[float] | None = None,
                  clusters: Sequence[int | None] | None = None,
                  modes: Sequence[str] | None = None, cross_mode_bonus: float = 0.0,
                  cut: Sequence[bool] | None = None, cut_weight: float = 0.0
                  ) -> tuple[AnswerGroup | None, list[AnswerGroup]]:
    """The winning group and all groups of a vote over ``answers`` (None answers do not vote).
    ``clusters`` (labels from the problem's domain, e.g. execution signatures of programs)
    replaces the equivalence test; ``cut`` and ``cut_weight``: see :func:`tally`.

    >>> winner, groups = majority_vote(["22", "21", "22.0", None])
    >>> winner.answer, winner.members
    ('22', [0, 2])
    """
    if clusters is None:
        clusters = cluster_ids(answers)
    voting = [None if a is None else c for a, c in zip(answers, clusters, strict=True)]
    groups = tally(voting, None, weights, modes, cross_mode_bonus, cut, cut_weight)
    for group in groups:
        group.answer = answers[group.members[0]]  # type: ignore[assignment]
    return leader(groups), groups


def vote_pick(clusters: Sequence[int | None], subset: Sequence[int],
              weights: Sequence[float] | None = None, modes: Sequence[str] | None = None,
              cross_mode_bonus: float = 0.0, cut: Sequence[bool] | None = None,
              cut_weight: float = 0.0) -> int | None:
    """The sample :func:`majority_vote` would answer with, among ``subset`` only: the first
    member of the winning group."""
    winner = leader(tally(clusters, subset, weights, modes, cross_mode_bonus, cut, cut_weight))
    return winner.members[0] if winner else None


def scored_groups(clusters: Sequence[int | None], subset: Sequence[int] | None,
                  signals: Sequence[Signal], answers: Sequence[str | None],
                  selector: Selector) -> list[AnswerGroup]:
    """The vote's groups among ``subset`` (default: all), each weighted by ``selector``'s score
    of its features (relative to every sample of the subset, answered or not)."""
    voting = list(range(len(clusters)) if subset is None else subset)
    groups = tally(clusters, voting)
    for group in groups:
        group.answer = answers[group.members[0]] or ""
        group.weight = selector.score(group_features(group.members, signals, group.answer,
                                                     voting))
    return groups


def selector_pick(clusters: Sequence[int | None], subset: Sequence[int],
                  signals: Sequence[Signal], answers: Sequence[str | None],
                  selector: Selector) -> int | None:
    """The sample a selection rule answers with among ``subset``: the first member of the
    highest-scored group (ties: the group seen first)."""
    winner = leader(scored_groups(clusters, subset, signals, answers, selector))
    return winner.members[0] if winner else None


def best_score_pick(scores: Sequence[float | None], clusters: Sequence[int | None],
                    subset: Sequence[int], **vote: Any) -> int | None:
    """The highest-scored sample with an answer in ``subset`` (ties: earliest); a vote
    (:func:`vote_pick` with ``vote``'s weights, modes and cut samples) when no sample in it has
    a score. A verifier's score is the verifier's word on a cut sample too: it is not
    discounted."""
    scored = [i for i in subset if scores[i] is not None and clusters[i] is not None]
    if not scored:
        return vote_pick(clusters, subset, **vote)
    return max(scored, key=lambda i: (scores[i], -i))


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
