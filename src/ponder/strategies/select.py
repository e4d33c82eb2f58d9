"""How the sampling strategies choose among their candidates: scores from the run's verifier, and
a vote over equivalent answers (the one rule in :mod:`ponder.domains.vote`), traced."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from ponder.core.context import Context
from ponder.domains import cluster_answers
from ponder.domains.selector import Signal, get_selector
from ponder.domains.vote import (
    all_cut,
    group_records,
    is_cut,
    leader,
    majority_vote,
    scored_groups,
    with_votes,
)
from ponder.errors import BudgetExhausted
from ponder.strategies.base import Outcome
from ponder.types import Candidate, Problem


async def score_candidates(problem: Problem, candidates: Sequence[Candidate], ctx: Context,
                           parent: int | None) -> list[Candidate]:
    """The candidates with the verifier's scores (None where it abstains, and for all of them
    when the budget runs out while scoring)."""
    if ctx.verifier is None or not candidates:
        return list(candidates)
    try:
        scores = await ctx.verifier.score(problem, candidates, ctx, parent)
    except BudgetExhausted:
        scores = [None] * len(candidates)
    return [c.replace(score=s) for c, s in zip(candidates, scores, strict=True)]


def modes_of(candidates: Sequence[Candidate]) -> list[str]:
    """Each candidate's sampling mode (chain or program)."""
    return [c.metadata.get("mode", "chain") for c in candidates]


def cut_flags(candidates: Sequence[Candidate]) -> list[bool]:
    """Which candidates were cut off at the token limit."""
    return [is_cut(c.finish_reason) for c in candidates]


async def vote(problem: Problem, candidates: Sequence[Candidate], ctx: Context, parent: int, *,
               weights: Sequence[float] | None = None, modes: Sequence[str] | None = None,
               cross_mode_bonus: float = 0.0, voters: Collection[int] | None = None,
               clusters: Sequence[int | None] | None = None, label: str = "majority vote",
               cut_weight: float = 0.0, **trace: Any) -> Outcome:
    """Vote over the candidates' answers as the problem's domain compares them (``voters``: only
    these vote; ``clusters``: labels already computed), record the vote under ``parent``, and
    answer with the winning group's first candidate. Every candidate carries its group's votes.
    A candidate cut off at the token limit votes with ``cut_weight`` times its weight (0: not at
    all), unless every answered candidate was cut; the trace lists the cut ones (``cut``) and
    says when they all were (``all_cut``)."""
    answers = [c.answer if voters is None or i in voters else None
               for i, c in enumerate(candidates)]
    if clusters is None:
        clusters = await cluster_answers(problem, answers, ctx.sandbox)
    cut = cut_flags(candidates)
    winner, groups = majority_vote(answers, weights, clusters, modes, cross_mode_bonus,
                                   cut, cut_weight)
    voted = with_votes(candidates, groups)
    if voters is not None:
        trace["voters"] = sorted(voters)
    if any(cut):
        labels = [None if a is None else k for a, k in zip(answers, clusters, strict=True)]
        trace.update(cut=[i for i, flag in enumerate(cut) if flag], cut_weight=cut_weight,
                     all_cut=all_cut(labels, None, cut))
    ctx.trace.add("vote", label, parent=parent, groups=group_records(groups, modes),
                  winner=winner.answer if winner else None,
                  nodes=[c.metadata.get("node") for c in candidates], **trace)
    if winner is None:
        return Outcome(candidates=voted)
    return Outcome(winner.answer, voted[winner.members[0]].text, voted)


def signals_of(candidates: Sequence[Candidate]) -> list[Signal]:
    """Each candidate's signals for a selection rule (mode, tokens, confidence, clean run)."""
    return [Signal.of(c.metadata.get("mode", "chain"), c.usage.completion_tokens,
                      c.mean_logprob, c.finish_reason, dict(c.metadata)) for c in candidates]


async def selector_vote(problem: Problem, candidates: Sequence[Candidate], ctx: Context,
                        parent: int, selector: str) -> Outcome:
    """Pick by a selection rule (a built-in weighted vote or a fitted selector file) over the
    same answer groups a vote forms; each candidate carries its group's score."""
    rule = get_selector(selector)
    answers = [c.answer for c in candidates]
    clusters = await cluster_answers(problem, answers, ctx.sandbox)
    labels = [None if a is None else k for a, k in zip(answers, clusters, strict=True)]
    groups = scored_groups(labels, None, signals_of(candidates), answers, rule)
    winner = leader(groups)
    voted = with_votes(candidates, groups)
    ctx.trace.add("vote", f"selector {rule.name}", parent=parent,
                  groups=group_records(groups, modes_of(candidates)),
                  winner=winner.answer if winner else None,
                  nodes=[c.metadata.get("node") for c in candidates], selector=rule.name)
    if winner is None:
        return Outcome(candidates=voted)
    return Outcome(answers[winner.members[0]], voted[winner.members[0]].text, voted)
