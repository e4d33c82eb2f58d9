"""deepconf: confidence arithmetic by hand, offline filtering, online early stops (fake and the
real bundled model)."""

import asyncio
import math

import pytest

from ponder import ScriptedBackend
from ponder.api import asolve
from ponder.strategies.deepconf import (
    group_confidences,
    keep_threshold,
    token_confidence,
    trace_confidence,
)
from ponder.types import Completion, TokenLogprob

SURE = (-0.01, -5.0, -6.0)     # confidence (0.01 + 5 + 6) / 3 = 3.67
UNSURE = (-0.7, -0.8, -0.9)    # confidence 0.8


def trace(answer, top, words=6):
    text = " ".join(["step"] * (words - 1) + [f"{answer}"])
    tokens = tuple(TokenLogprob(w, top[0], tuple((f"t{j}", lp) for j, lp in enumerate(top)))
                   for w in text.split())
    return Completion(text.replace(f" {answer}", f" The answer is {answer}"), logprobs=tokens)


def test_confidence_arithmetic_by_hand():
    token = TokenLogprob("x", -0.1, (("x", -0.1), ("y", -2.3), ("z", -3.0)))
    assert math.isclose(token_confidence(token, 3), (0.1 + 2.3 + 3.0) / 3)
    assert math.isclose(token_confidence(token, 1), 0.1)
    assert math.isclose(token_confidence(TokenLogprob("x", -0.5), 5), 0.5)  # no alternatives
    assert group_confidences([1, 2, 3, 4], 2) == [1.5, 2.5, 3.5]
    assert group_confidences([1, 2], 5) == [1.5]
    assert trace_confidence([1, 2, 3, 4], "lowest-group", 2, 2) == 1.5
    assert trace_confidence([1, 2, 3, 4], "tail", 2, 2) == 3.5
    assert trace_confidence([1, 2, 3, 4], "mean", 2, 2) == 2.5
    assert keep_threshold([3, 1, 2, 5], 0.5) == 3  # the 2 most confident of 4: lowest is 3
    assert keep_threshold([3, 1, 2, 5], 1.0) == 1
    assert keep_threshold([None], 0.5) is None


def test_offline_keeps_the_confident_traces_and_weights_by_confidence():
    script = [trace(7, UNSURE), trace(5, SURE), trace(7, UNSURE), trace(5, SURE),
              trace(7, UNSURE)]
    plain = asyncio.run(asolve("q", "self-consistency", n=5, backend=ScriptedBackend(
        list(script))))
    assert plain.answer == "7"
    result = asyncio.run(asolve("q", "deepconf", mode="offline", max_n=5, keep=0.5,
                                backend=ScriptedBackend(list(script))))
    assert result.answer == "5"
    vote = next(n for n in result.trace.nodes if n.kind == "vote")
    # keep ceil(0.5 x 5) = 3: the two sure ones, then the first of the equally unsure
    assert vote.data["voters"] == [0, 1, 3]
    groups = {g["answer"]: g["weight"] for g in vote.data["groups"]}
    assert math.isclose(groups["5"], 2 * (0.01 + 5 + 6) / 3)


def test_online_stops_unconfident_traces_mid_generation_and_ends_when_settled():
    script = [trace(5, SURE), trace(7, SURE),                           # warm-up: split
              trace(5, SURE), trace(9, UNSURE, words=40), trace(5, SURE), trace(5, SURE),
              *[trace(9, UNSURE)] * 8]                                  # never reached
    fake = ScriptedBackend(list(script))
    result = asyncio.run(asolve("q", "deepconf", mode="online", warmup=2, wave=4, max_n=16,
                                group_size=3, consensus=0.75, backend=fake))
    assert result.answer == "5"
    stopped = [c for c in result.candidates if c.metadata["stopped"]]
    assert len(stopped) == 1
    [s] = stopped
    assert s.finish_reason == "cancelled" and s.usage.completion_tokens == 3  # after one group
    # after one wave 5 holds 4 of the 5 voters' weight (0.8 >= 0.75): settled
    assert len(result.candidates) == 6 and len(fake.history) == 2
    threshold = next(n.data["threshold"] for n in result.trace.nodes if n.kind == "decision")
    assert math.isclose(threshold, (0.01 + 5 + 6) / 3)


@pytest.mark.model
def test_online_stops_the_right_sequences_on_the_bundled_model(llama):
    for seed in range(7, 19):  # sampling differs across CPUs and KV layouts: seek a stop
        result = asyncio.run(asolve(
            "What is 12 times 12?", "deepconf", mode="online", warmup=3, wave=4, max_n=7,
            keep=0.34, group_size=8, max_tokens=64, seed=seed, backend=llama))
        if any(c.metadata["stopped"] for c in result.candidates):
            break
    threshold = next(n.data["threshold"] for n in result.trace.nodes if n.kind == "decision")
    nodes = {n.id: n for n in result.trace.nodes}
    later = [c for c in result.candidates if nodes[c.metadata["node"]].label.startswith("trace")]
    assert later, "no trace after the warm-up"
    for c in later:
        completion_node = nodes[c.metadata["node"]]
        assert completion_node.usage.completion_tokens == c.usage.completion_tokens
    stopped = [c for c in later if c.metadata["stopped"]]
    assert stopped, f"no trace was stopped (threshold {threshold:.3f})"
    for c in later:
        # a trace is stopped exactly when, and at the token where, its latest group of tokens
        # first fell under the threshold; the tokens it reports are the tokens generated
        dip = c.metadata["first_dip"]
        if c.metadata["stopped"]:
            assert c.finish_reason == "cancelled" and dip == c.usage.completion_tokens
        else:
            assert dip is None and c.finish_reason != "cancelled"
    assert result.usage.completion_tokens == sum(c.usage.completion_tokens
                                                 for c in result.candidates)


def test_a_trace_cut_at_the_token_limit_does_not_vote():
    # two confident traces cut off on 7 outweigh one unsure whole trace on 5, unless left out
    cut = [Completion(t.text, finish_reason="length", logprobs=t.logprobs)
           for t in (trace(7, SURE), trace(7, SURE))]
    script = [*cut, trace(5, UNSURE)]
    result = asyncio.run(asolve("q", "deepconf", mode="offline", max_n=3, keep=1.0,
                                backend=ScriptedBackend(list(script))))
    vote = next(n for n in result.trace.nodes if n.kind == "vote")
    assert (result.answer, vote.data["cut"], vote.data["all_cut"]) == ("5", [0, 1], False)
    weighted = asyncio.run(asolve("q", "deepconf", mode="offline", max_n=3, keep=1.0,
                                  cut_weight=1.0, backend=ScriptedBackend(list(script))))
    assert weighted.answer == "7"
