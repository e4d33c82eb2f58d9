"""One vote rule: what a strategy answers and what the evaluation replay picks from the same
samples agree, on random candidate sets (hypothesis)."""

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from ponder import ScriptedBackend
from ponder.api import asolve
from ponder.domains.answers import extract_answer
from ponder.domains.vote import all_cut, cluster_ids, majority_vote, vote_pick
from ponder.eval.plans import graded
from ponder.eval.pools import pick
from ponder.eval.store import SampleRow
from ponder.runner import build_strategy
from ponder.strategies.adaptive_consistency import AdaptiveConsistency
from ponder.types import Completion, Problem

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


# -- chains cut off at the token limit (issue 33, item 3) -------------------------------------

def cut_text(answer):
    """A chain cut off at the token limit: its "answer" is the last number it wrote."""
    return Completion(text=f"Adding up step by step, we get {answer}", finish_reason="length")


def test_cut_chains_do_not_vote_unless_weighted_by_hand():
    # two whole chains say 22, three cut chains stopped on 7
    answers = ["22", "22", "7", "7", "7"]
    cut = [False, False, True, True, True]
    winner, groups = majority_vote(answers, cut=cut)
    assert (winner.answer, winner.weight, len(groups)) == ("22", 2.0, 1)
    winner, groups = majority_vote(answers, cut=cut, cut_weight=0.5)  # 7: 3 x 0.5 = 1.5 < 2
    assert (winner.answer, [g.weight for g in groups]) == ("22", [2.0, 1.5])
    winner, _ = majority_vote(answers, cut=cut, cut_weight=1.0)  # counted in full: 3 > 2
    assert (winner.answer, winner.weight) == ("7", 3.0)
    assert vote_pick(cluster_ids(answers), range(5), cut=cut) == 0
    assert vote_pick(cluster_ids(answers), [2, 3, 4, 0], cut=cut) == 0


def test_when_every_answered_chain_was_cut_they_vote_in_full():
    answers = ["7", "9", "7", None]
    cut = [True, True, True, False]  # the whole chain gave no answer
    assert all_cut(cluster_ids(answers), None, cut)
    winner, groups = majority_vote(answers, cut=cut)
    assert (winner.answer, winner.members, [g.weight for g in groups]) == ("7", [0, 2],
                                                                          [2.0, 1.0])
    assert vote_pick(cluster_ids(answers), [1, 3], cut=cut) == 1  # 9 alone: it answers


def test_self_consistency_leaves_cut_chains_out_and_says_so():
    script = ["17 + 5 = 22. The answer is 22.", cut_text(7), cut_text(7),
              "The answer is: The farmer has a total of 22 sheep."]
    result = asyncio.run(asolve("q", "self-consistency", n=4, backend=ScriptedBackend(script)))
    assert result.answer == "22"
    assert [c.finish_reason for c in result.candidates] == ["stop", "length", "length", "stop"]
    assert [c.votes for c in result.candidates] == [2.0, 0.0, 0.0, 2.0]
    [vote] = [n for n in result.trace.nodes if n.kind == "vote"]
    assert (vote.data["cut"], vote.data["cut_weight"], vote.data["all_cut"]) == ([1, 2], 0.0,
                                                                                 False)
    # cut_weight=1 counts them as whole chains: 7 has two votes, 22 two, 22 came first
    result = asyncio.run(asolve("q", "self-consistency", n=3, cut_weight=1.0,
                                backend=ScriptedBackend([cut_text(7), cut_text(7), "22"])))
    assert (result.answer, [c.votes for c in result.candidates]) == ("7", [2.0, 2.0, 1.0])


def test_self_consistency_answers_from_cut_chains_when_all_were_cut():
    script = [cut_text(7), cut_text(9), cut_text(7)]
    result = asyncio.run(asolve("q", "self-consistency", n=3, backend=ScriptedBackend(script)))
    assert result.answer == "7"
    [vote] = [n for n in result.trace.nodes if n.kind == "vote"]
    assert vote.data["all_cut"] is True and vote.data["cut"] == [0, 1, 2]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(ANSWERS), st.booleans(), st.booleans()), min_size=1,
                max_size=9), st.sampled_from([0.0, 0.5, 1.0]))
def test_the_replay_picks_what_self_consistency_answers_with_cut_chains(drawn, cut_weight):
    """As above, with some chains cut off at the token limit: live and replay treat them alike
    (left out, weighted, or all voting when every answered one was cut)."""
    texts = [cut_text(a) if cut and a is not None else text_of(a) for a, cut, _ in drawn]
    subset = [i for i, (*_, keep) in enumerate(drawn) if keep] or [0]
    result = asyncio.run(asolve("q", "self-consistency", n=len(subset), cut_weight=cut_weight,
                                backend=ScriptedBackend([texts[i] for i in subset])))
    rows = [SampleRow(i, getattr(t, "text", t), extract_answer(getattr(t, "text", t)), False,
                      0, 0, 0.0, 0.0, getattr(t, "finish_reason", "stop"), None,
                      {"mode": "chain"}) for i, t in enumerate(texts)]
    config = build_strategy("self-consistency", cut_weight=cut_weight).config
    chosen = pick("vote", config, rows, [None] * len(rows), subset)
    assert result.answer == (rows[chosen].answer if chosen is not None else None)


def test_adaptive_consistency_does_not_stop_on_cut_chains():
    # the first wave: four cut chains on 5 would stop it (0.969); they do not count (nor does
    # the vote's all-cut fallback make them count: they are no reason to stop), so it samples
    # a second wave, whose four whole chains say 9 (four votes to none: 0.969, stop)
    script = [cut_text(5)] * 4 + ["The answer is 9."] * 4 + ["The answer is 5."] * 8
    result = asyncio.run(asolve("q", "adaptive-consistency", backend=ScriptedBackend(script)))
    assert (result.answer, len(result.candidates)) == ("9", 8)
    stops = [(n.data["leader"], n.data["stop"]) for n in result.trace.nodes
             if n.kind == "decision"]
    assert stops == [(0.0, False), (4.0, True)]
    config = build_strategy("adaptive-consistency").config
    clusters = cluster_ids([c.answer for c in result.candidates])
    cut = [c.finish_reason == "length" for c in result.candidates]
    assert AdaptiveConsistency.samples_used(config, clusters, 16, cut) == 8
    assert AdaptiveConsistency.samples_used(config, clusters, 16) == 4  # counted, it stops


def test_best_of_n_falls_back_to_a_vote_without_cut_chains():
    rows = [SampleRow(i, "", a, a == "22", 0, 0, 0.0, 0.0, finish, None, {"mode": "chain"})
            for i, (a, finish) in enumerate([("7", "length"), ("7", "length"), ("22", "stop")])]
    config = build_strategy("best-of-n").config
    assert pick("best-score", config, rows, [None] * 3, [0, 1, 2]) == 2
    assert pick("best-score", config, rows, [0.1, 0.9, 0.2], [0, 1, 2]) == 1  # scores rule


def test_the_replay_grades_stored_math_answers_by_todays_rule():
    """A store keeps the grade its samples got when drawn: a sentence answer graded wrong then
    is graded right now, so the vote that joins it with "22" is scored as it answers."""
    problem = Problem("A farmer has 17 sheep and buys 5 more. How many?", answer="22", id="0")
    rows = [SampleRow(0, "", "The farmer has a total of 22 sheep", False, 0, 0, 0.0, 0.0),
            SampleRow(1, "", "22", True, 0, 0, 0.0, 0.0),
            SampleRow(2, "", "21", False, 0, 0, 0.0, 0.0)]
    assert [r.correct for r in graded(rows, problem)] == [True, True, False]
    code = Problem("Write f.", id="c", metadata={"entry_point": "f", "tests": ["assert f()"]})
    assert [r.correct for r in graded(rows, code)] == [False, True, False]  # tests' verdicts
