"""One vote rule: what a strategy answers and what the evaluation replay picks from the same
samples agree, on random candidate sets (hypothesis)."""

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from ponder import ScriptedBackend
from ponder.api import asolve
from ponder.domains.answers import extract_answer
from ponder.domains.vote import cluster_ids, majority_vote, vote_pick
from ponder.eval.pools import pick
from ponder.eval.store import SampleRow
from ponder.runner import build_strategy

# Spellings of a few answers; "1,000" = "1000", "$22" = "22" = "22.0", "21" stands alone.
ANSWERS = ["22", "22.0", "$22", "21", "1,000", "1000", "7", None]
CANDIDATES = st.lists(st.tuples(st.sampled_from(ANSWERS), st.booleans()), min_size=1,
                      max_size=9)


def text_of(answer):
    return "I cannot tell." if answer is None else f"Adding up, we get it. The answer is {answer}."


def row(i, text, mode="chain"):
    return SampleRow(i, text, extract_answer(text), False, 0, 0, 0.0, 0.0,
                     meta={"mode": mode})


@settings(max_examples=120, deadline=None)
@given(CANDIDATES)
def test_self_consistency_answers_what_the_replay_picks(drawn):
    """The replay scores a budget on a subset of the stored samples (``keep``); the strategy
    run on exactly those samples must answer the same."""
    texts = [text_of(answer) for answer, _ in drawn]
    subset = [i for i, (_, keep) in enumerate(drawn) if keep] or [0]
    result = asyncio.run(asolve("q", "self-consistency", n=len(subset),
                                backend=ScriptedBackend([texts[i] for i in subset])))
    rows = [row(i, t) for i, t in enumerate(texts)]
    config = build_strategy("self-consistency").config
    chosen = pick("vote", config, rows, [None] * len(rows), subset)
    assert result.answer == (rows[chosen].answer if chosen is not None else None)
    if chosen is not None:
        assert result.text == texts[chosen]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(ANSWERS), st.sampled_from(["chain", "program"]),
                          st.floats(0.0, 3.0), st.booleans()), min_size=1, max_size=10),
       st.floats(0.0, 2.0))
def test_weighted_mixed_votes_agree_on_every_subset(drawn, bonus):
    answers = [a for a, *_ in drawn]
    modes = [m for _, m, *_ in drawn]
    weights = [w for *_, w, _ in drawn]
    subset = [i for i, (*_, keep) in enumerate(drawn) if keep]
    winner, _ = majority_vote([answers[i] for i in subset], [weights[i] for i in subset],
                              modes=[modes[i] for i in subset], cross_mode_bonus=bonus)
    chosen = vote_pick(cluster_ids(answers), subset, weights, modes, bonus)
    if winner is None:
        assert chosen is None
    else:
        assert chosen == subset[winner.members[0]]


def test_ties_go_to_the_answer_seen_first_and_cross_mode_answers_gain():
    winner, groups = majority_vote(["7", "8", "8", "7"])
    assert (winner.answer, [g.weight for g in groups]) == ("7", [2.0, 2.0])
    winner, _ = majority_vote(["7", "8", "8", "7"], modes=["chain", "chain", "chain", "program"],
                              cross_mode_bonus=0.5)
    assert (winner.answer, winner.weight) == ("7", 3.0)
    assert vote_pick([0, 1, 1, 0], [1, 2, 3], modes=["chain"] * 3 + ["program"],
                     cross_mode_bonus=0.5) == 1
