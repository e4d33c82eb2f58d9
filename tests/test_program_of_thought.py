"""program-of-thought and mixed voting on the fake backend (programs really run, sandboxed)."""

import asyncio

import pytest

from ponder import ScriptedBackend
from ponder.api import asolve
from ponder.domains.vote import majority_vote, vote_pick
from ponder.eval.harness import Harness
from ponder.eval.store import Store
from ponder.strategies.samplers import PROGRAM_SYSTEM, printed_answer, split
from ponder.strategies.self_consistency import SelfConsistencyConfig
from ponder.types import Problem

Q = Problem("Tom has 3 boxes of 4 apples and eats 5. How many are left?", answer="7", id="q")


def program(body: str, fence: str = "```python") -> str:
    close = "~~~" if fence.startswith("~") else "```"
    return f"Let me compute it.\n{fence}\n{body}\n{close}\n"


@pytest.mark.parametrize("text", [
    program("print(3 * 4 - 5)"),
    program("print(3 * 4 - 5)", "```py"),
    program("print(3 * 4 - 5)", "~~~python"),
    program("print(3 * 4 - 5)", "```"),
    "print(3 * 4 - 5)",  # no fence at all: the reply is the program
    program("left = 3 * 4 - 5\nprint(f'The answer is {left}')"),
])
def test_program_answers_from_every_fence_style(text):
    result = asyncio.run(asolve(Q, "program-of-thought", n=1, backend=ScriptedBackend([text])))
    assert result.answer == "7"
    [candidate] = result.candidates
    assert candidate.metadata["mode"] == "program" and candidate.metadata["repairs"] == 0


def test_programs_are_prompted_as_programs():
    fake = ScriptedBackend([program("print(7)")])
    asyncio.run(asolve(Q, "program-of-thought", n=1, backend=fake))
    assert fake.history[0].messages[0].content == PROGRAM_SYSTEM


def test_a_failing_program_is_repaired_and_repair_tokens_are_counted():
    fake = ScriptedBackend([program("print(apples)"), program("print(3 * 4 - 5)")])
    result = asyncio.run(asolve(Q, "program-of-thought", n=1, repairs=1, backend=fake))
    assert result.answer == "7"
    assert "NameError" in fake.history[1].messages[-1].content
    [candidate] = result.candidates
    assert candidate.metadata["repairs"] == 1
    assert candidate.usage.completion_tokens == sum(
        len(t.split()) for t in (program("print(apples)"), program("print(3 * 4 - 5)")))
    assert result.usage.completion_tokens == candidate.usage.completion_tokens


def test_the_repair_loop_stops_after_the_configured_rounds():
    fake = ScriptedBackend(lambda request, i: program("raise ValueError('still broken')"))
    result = asyncio.run(asolve(Q, "program-of-thought", n=2, repairs=2, backend=fake))
    assert len(fake.history) == 1 + 2 * 2  # one batched call, then two repairs per sample
    assert result.answer is None
    assert all(c.metadata["repairs"] == 2 and "ValueError" in c.metadata["error"]
               for c in result.candidates)


@pytest.mark.parametrize("body, error", [
    ("while True:\n    pass", "timeout"),
    ("x = bytearray(10 * 1024 ** 3)\nprint(1)", "memory"),
    ("import os\nos.fork()\nprint(1)", "not allowed"),
    ("import os\nprint(os.environ.get('HOME'))\nprint(open('/proc/1/environ').read())",
     "not allowed"),
    ("import socket\nsocket.create_connection(('1.1.1.1', 80))\nprint(1)", "not allowed"),
    ("x = 7", "printed nothing"),
])
def test_hostile_or_broken_programs_are_failed_samples(body, error):
    fake = ScriptedBackend([program(body)])
    result = asyncio.run(asolve(Q, "program-of-thought", n=1, repairs=0, backend=fake))
    [candidate] = result.candidates
    assert candidate.answer is None and error in candidate.metadata["error"]


def test_printed_answer():
    assert printed_answer("working...\n42\n") == "42"
    assert printed_answer("The answer is: 18 dollars") == "18"
    assert printed_answer("\n \n") is None


def test_mixed_split():
    cfg = SelfConsistencyConfig(mode="mixed", program_share=0.5)
    assert split(8, cfg) == (4, 4) and split(1, cfg) == (1, 0)
    assert split(3, SelfConsistencyConfig(mode="mixed", program_share=0.9)) == (1, 2)
    assert split(5, SelfConsistencyConfig(mode="program")) == (0, 5)


def test_mixed_vote_arithmetic_by_hand():
    # chains say 5, 5, 7; a program says 7. Weights: chain 1, program 1.5, bonus 0.5.
    answers = ["5", "5", "7", "7"]
    modes = ["chain", "chain", "chain", "program"]
    weights = [1.0, 1.0, 1.0, 1.5]
    winner, groups = majority_vote(answers, weights, None, modes, 0.5)
    assert {g.answer: g.weight for g in groups} == {"5": 2.0, "7": (1.0 + 1.5) * 1.5}
    assert winner.answer == "7"
    # Without the cross-mode bonus 7 still wins on the program's weight: 2.5 > 2.0 ...
    assert majority_vote(answers, weights, None, modes, 0.0)[0].answer == "7"
    # ... and with equal weights and no bonus it is a 2-2 tie, which the first answer wins.
    assert majority_vote(answers, None, None, modes, 0.0)[0].answer == "5"
    # The harness's replay of the same rule agrees.
    clusters = [0, 0, 1, 1]
    assert vote_pick(clusters, range(4), weights, modes, 0.5) == 2
    assert vote_pick(clusters, range(4), None, modes, 0.0) == 0


def test_mixed_mode_inside_self_consistency():
    def respond(request, index):
        if request.messages[0].content == PROGRAM_SYSTEM:
            return program("print(12 - 5)")
        return ["3 boxes of 4 is 12, minus 5. The answer is 7.",
                "The answer is 12.", "The answer is 12."][index]

    result = asyncio.run(asolve(Q, "self-consistency", n=4, mode="mixed", program_share=0.25,
                                backend=ScriptedBackend(
        respond), chain_weight=1.0, program_weight=1.0, cross_mode_bonus=0.5))
    # 7: one chain + one program -> (1 + 1) x 1.5 = 3 beats 12: two chains -> 2.
    assert result.answer == "7"
    vote = next(n for n in result.trace.nodes if n.kind == "vote")
    assert {g["answer"]: g["weight"] for g in vote.data["groups"]} == {"7": 3.0, "12": 2.0}


def test_mixed_mode_in_best_of_n_falls_back_to_the_mixed_vote():
    from ponder.verifiers.logprob import MeanLogprobVerifier

    def respond(request, index):
        if request.messages[0].content == PROGRAM_SYSTEM:
            return program("print(7)")
        return "The answer is 12."

    result = asyncio.run(asolve(Q, "best-of-n", n=3, mode="mixed", program_share=0.34,
                                verifier=MeanLogprobVerifier(), program_weight=3.0,
                                backend=ScriptedBackend(respond)))
    assert result.answer == "7"  # no logprobs: abstains; the weighted vote picks the program


def test_harness_stores_program_samples_with_their_mode(tmp_path):
    fake = ScriptedBackend(lambda request, i: program("print(7)") if i % 2 == 0
                           else program("print(8)"))
    store = Store(tmp_path / "s.sqlite")
    harness = Harness(fake, store, [Q], ["program-of-thought"], [1, 2, 4], greedy=False)
    asyncio.run(harness.run())
    plan = harness.plans[0]
    rows = store.samples(plan.pools[0].key, Q.id)
    assert [r.answer for r in rows] == ["7", "8", "7", "8"]
    assert all(r.mode == "program" and r.meta["program"] for r in rows)
    points = {p["budget"]: p["accuracy"] for p in harness.curves()["points"]}
    assert points[1] == 0.5 and points[4] == 1.0  # 2-2 ties go to the earliest sample: 7
    store.close()


def test_mixed_voting_in_eval_reuses_the_chain_and_program_pools(tmp_path):
    def respond(request, index):
        if request.messages[0].content == PROGRAM_SYSTEM:
            return program("print(7)")
        return "The answer is 12."

    fake = ScriptedBackend(respond)
    store = Store(tmp_path / "s.sqlite")
    harness = Harness(fake, store, [Q], [
        "self-consistency", "program-of-thought",
        "self-consistency[mode=mixed,program_weight=1.5]"], [1, 2, 4], greedy=False)
    asyncio.run(harness.run())
    assert len(fake.history) == 2  # 4 chains in one call, 4 programs in one: mixed adds none
    sc, pot, mixed = harness.plans
    assert mixed.pools == sc.pools + pot.pools
    acc = {(p["strategy"], p["budget"]): p["accuracy"] for p in harness.curves()["points"]}
    assert acc[("self-consistency", 4)] == 0.0 and acc[("program-of-thought", 4)] == 1.0
    # budget 2 = one chain (12) + one program (7, weight 1.5): the program wins
    assert acc[("self-consistency[mode=mixed,program_weight=1.5]", 2)] == 1.0
    store.close()


class Overlapping(ScriptedBackend):
    """Records how many generate calls are in flight at once (each waits a moment first)."""

    def __init__(self, respond) -> None:
        super().__init__(respond)
        self.inflight = self.most = 0

    async def generate(self, requests, on_progress=None):
        self.inflight += 1
        self.most = max(self.most, self.inflight)
        try:
            await asyncio.sleep(0.05)
            return await super().generate(requests, on_progress)
        finally:
            self.inflight -= 1


def test_one_problems_plans_run_together_and_a_shared_pool_is_drawn_once(tmp_path):
    def respond(request, index):
        if request.messages[0].content == PROGRAM_SYSTEM:
            return program("print(7)")
        return "The answer is 12."

    fake = Overlapping(respond)
    store = Store(tmp_path / "s.sqlite")
    # mixed (listed first) needs 2 chains at budget 4, self-consistency 8: the chain pool is
    # drawn once with 8, whichever plan gets to it first, so the samples do not depend on the
    # plans' order
    harness = Harness(fake, store, [Q], ["self-consistency[mode=mixed]", "self-consistency",
                                         "program-of-thought"], [1, 4], greedy=True,
                      concurrency=1)
    harness.plans[2].budgets = [1, 8]  # self-consistency: up to 8
    asyncio.run(harness.run())
    # greedy, the chain pool and the program pool decode together, not one after another
    assert fake.most == 3
    sampling = sorted((r.n, r.messages[0].content == PROGRAM_SYSTEM) for r in fake.history
                      if r.params.temperature)
    assert sampling == [(4, True), (8, False)]  # one draw per pool, the largest need
    greedy, mixed, sc, pot = harness.plans
    assert store.sample_count(sc.pools[0].key, Q.id) == 8
    assert store.sample_count(pot.pools[0].key, Q.id) == 4
    assert store.result(greedy.key, Q.id, 1).answer == "12"
    store.close()


def test_plans_sharing_a_key_or_a_judged_pool_run_and_score_once(tmp_path):
    """Plans that run together and share stored rows do the work once: greedy and
    cot[temperature=0] are one strategy key (one run), best-of-n and best-of-n[mode=mixed]
    share the chain pool and the judge (each sample judged once)."""
    from ponder.types import Completion, TokenLogprob
    from ponder.verifiers.judge import JUDGE_SYSTEM

    def respond(request, index):
        if request.messages[0].content == JUDGE_SYSTEM:
            return Completion("Yes", logprobs=(TokenLogprob("Yes", 0.0, (("Yes", -0.1),)),))
        if request.messages[0].content == PROGRAM_SYSTEM:
            return program("print(7)")
        return "The answer is 7."

    fake = Overlapping(respond)
    store = Store(tmp_path / "s.sqlite")
    harness = Harness(fake, store, [Q], ["cot[temperature=0]", "best-of-n",
                                         "best-of-n[mode=mixed]"], [1, 2], greedy=True)
    asyncio.run(harness.run())
    greedy, cot, bon, mixed = harness.plans
    assert greedy.key == cot.key
    judged = [r for r in fake.history if r.messages[0].content == JUDGE_SYSTEM]
    chains = store.samples(bon.pools[0].key, Q.id)
    programs = store.samples(mixed.pools[1].key, Q.id)
    assert (len(chains), len(programs)) == (2, 1)
    assert len(judged) == 3  # 2 chains + 1 program, once each
    greedy_calls = [r for r in fake.history if not r.params.temperature and r not in judged]
    assert len(greedy_calls) == 1  # greedy and cot[temperature=0]: one run
    assert store.result(greedy.key, Q.id, 1).answer == "7"
    store.close()


def test_a_shared_pools_samples_do_not_depend_on_the_plans_order(tmp_path):
    def respond(request, index):
        if request.messages[0].content == PROGRAM_SYSTEM:
            return program(f"print({request.params.seed % 97 + index})")
        return f"The answer is {request.params.seed % 89 + index}."

    stored = []
    for name, order in (("a", ["self-consistency[mode=mixed]", "self-consistency"]),
                        ("b", ["self-consistency", "self-consistency[mode=mixed]"])):
        store = Store(tmp_path / f"{name}.sqlite")
        harness = Harness(Overlapping(respond), store, [Q], order, [1, 2, 4], greedy=False)
        asyncio.run(harness.run())
        stored.append(sorted((r.mode, r.idx, r.text) for p in harness.plans for pool in p.pools
                             for r in store.samples(pool.key, Q.id)))
        store.close()
    assert stored[0] == stored[1] and len({t for _, _, t in stored[0]}) > 4


def test_bad_strategy_specs_are_clear_errors(tmp_path):
    from ponder import ConfigError
    from ponder.eval.pools import parse_strategy_spec, split_specs

    assert split_specs("a,b[x=1,y=2],c") == ["a", "b[x=1,y=2]", "c"]
    assert parse_strategy_spec("b[x=1,y=two]") == ("b", {"x": 1, "y": "two"})
    assert parse_strategy_spec('mixture-of-agents[proposers=["generator","strong"],layers=1]') \
        == ("mixture-of-agents", {"proposers": ["generator", "strong"], "layers": 1})
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_strategy_spec("self-consistency[mode]")
    with pytest.raises(ConfigError, match="listed twice"):
        Harness(ScriptedBackend(), Store(tmp_path / "s.sqlite"), [Q],
                ["self-consistency", "self-consistency"], [1])


@pytest.mark.model
def test_program_of_thought_on_the_bundled_model(llama):
    """End to end: SmolLM2 writes programs, the sandbox runs them, a printed value becomes the
    answer, and the usage is the sum over the trace."""
    result = asyncio.run(asolve("What is 6 times 7?", "program-of-thought", n=4, repairs=1,
                                max_tokens=120, seed=1, backend=llama))
    assert result.answer is not None
    winners = [c for c in result.candidates if c.answer == result.answer]
    assert winners and all(c.metadata["mode"] == "program" for c in result.candidates)
    for c in winners:  # the answer is what the sandboxed program printed
        assert printed_answer(c.metadata["output"]) == result.answer
        assert c.metadata["error"] is None and "print" in c.metadata["program"]
    executed = [n for n in result.trace.nodes if n.kind == "execute"]
    assert len(executed) >= 4
    assert result.usage.completion_tokens == sum(c.usage.completion_tokens
                                                 for c in result.candidates)
