"""adaptive-consistency: the stopping rule by hand, on the fake backend, and replayed in eval."""

import asyncio
import math

import pytest

from ponder import ScriptedBackend
from ponder.api import asolve
from ponder.eval.harness import Harness
from ponder.eval.store import Store
from ponder.strategies.adaptive_consistency import leader_stays_probability
from ponder.types import Problem


@pytest.mark.parametrize("a, b, expected", [
    (4, 0, 1 - 1 / 32),                       # Beta(5, 1): 1 - 0.5^5
    (3, 1, 1 - (1 + 5) / 32),                 # P(Bin(5) >= 4) = 6/32
    (2, 2, 0.5),
    (6, 2, 1 - (36 + 9 + 1) / 512),           # P(Bin(9) >= 7)
    (10, 2, 1 - (78 + 13 + 1) / 8192),        # P(Bin(13) >= 11)
    (0, 0, 0.5),
])
def test_leader_stays_probability_by_hand(a, b, expected):
    assert math.isclose(leader_stays_probability(a, b), expected)


def answers(*values):
    queue = [f"So the answer is: {v}" for v in values]
    return ScriptedBackend(lambda request, i: queue.pop(0))


def test_unanimous_first_wave_stops_after_it():
    fake = answers(5, 5, 5, 5, *[9] * 12)
    result = asyncio.run(asolve("q", "adaptive-consistency", backend=fake))
    assert result.answer == "5" and len(result.candidates) == 4 and len(fake.history) == 1


def test_split_votes_continue_until_the_rule_is_met():
    fake = answers(5, 5, 7, 7, 5, 5, 5, 5, 5, 5, 5, 5, *[7] * 4)
    result = asyncio.run(asolve("q", "adaptive-consistency", backend=fake))
    # wave 1: 2-2 -> 0.5; wave 2: 6-2 -> 0.910; wave 3: 10-2 -> 0.989 >= 0.95: stop at 12
    assert len(result.candidates) == 12 and result.answer == "5"
    decisions = [n.data["stop"] for n in result.trace.nodes if n.kind == "decision"]
    assert decisions == [False, False, True]


def test_the_cap_is_honoured():
    fake = answers(*[1, 2] * 10)
    result = asyncio.run(asolve("q", "adaptive-consistency", max_n=10, backend=fake))
    assert len(result.candidates) == 10
    assert [r.n for r in fake.history] == [4, 4, 2]


def test_replayed_in_eval_on_the_self_consistency_samples(tmp_path):
    easy = Problem("easy", answer="1", id="easy")
    hard = Problem("hard", answer="3", id="hard")

    def respond(request, index):
        if request.messages[-1].content == "easy":
            return "The answer is: 1 " + "word " * 10
        return f"The answer is: {[3, 4][index % 2]} " + "word " * 10

    fake = ScriptedBackend(respond)
    store = Store(tmp_path / "s.sqlite")
    harness = Harness(fake, store, [easy, hard], ["self-consistency", "adaptive-consistency"],
                      [16], greedy=False)
    asyncio.run(harness.run())
    assert len(fake.history) == 2  # one sample call per problem; the replay generated nothing
    curves = harness.curves()
    tokens = {p["strategy"]: p["tokens"] for p in curves["points"]}
    assert tokens["adaptive-consistency"] < 0.7 * tokens["self-consistency"]
    [spent] = curves["spent"]
    # easy: stops after 4 samples; hard (3/4 alternating): never settles, uses all 16
    assert spent["samples_mean"] == (4 + 16) / 2 and spent["stopped_early"] == 0.5
    store.close()


def test_a_strategy_can_have_its_own_budgets(tmp_path):
    fake = ScriptedBackend(lambda request, i: "The answer is: 1")
    harness = Harness(fake, Store(tmp_path / "s.sqlite"), [Problem("q", answer="1", id="q")],
                      ["self-consistency", "adaptive-consistency[budgets=4/8]"], [1, 2, 16],
                      greedy=False)
    assert [p.budgets for p in harness.plans] == [[1, 2, 16], [4, 8]]
