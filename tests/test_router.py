"""router: probes, difficulty, and the allocation of a batch's budget (fake backend)."""

import asyncio

from ponder import ScriptedBackend
from ponder.api import asolve
from ponder.core.context import Context
from ponder.eval.harness import Harness
from ponder.eval.store import Store
from ponder.runner import build_strategy
from ponder.types import Problem


def reply(answer):
    return f"w w w w w so. The answer is: {answer}"  # 10 words = 10 tokens on the fake




def respond(request, index):
    """easy: always 1. medium: 2 three times in four. hard: a different answer every time."""
    question = request.messages[-1].content
    if question.startswith("easy"):
        return reply(1)
    if question.startswith("medium"):
        return reply(2 if index % 4 else 3)
    respond.counter = getattr(respond, "counter", 0) + 1
    return reply(100 + respond.counter)


def test_router_spends_less_on_easy_questions_than_on_hard_ones():
    easy = asyncio.run(asolve("easy one", "router", backend=ScriptedBackend(respond)))
    hard = asyncio.run(asolve("hard one", "router", backend=ScriptedBackend(respond)))
    assert len(easy.candidates) == 4 and easy.answer == "1"
    assert len(hard.candidates) == 16  # agreement 1/4: escalates to max_n
    assert easy.usage.completion_tokens * 3 < hard.usage.completion_tokens
    routes = [n.data["route"] for n in easy.trace.nodes if n.data.get("route")]
    assert routes == ["probe vote"]


def test_batch_budget_goes_to_disagreement_and_is_not_exceeded():
    router = build_strategy("router", probe_n=4, max_n=16, mean_tokens=70)
    problems = [Problem("easy a", id="a"), Problem("medium b", id="b"),
                Problem("hard c", id="c"), Problem("easy d", id="d")]
    fake = ScriptedBackend(respond)
    results = asyncio.run(router.run_batch(problems, lambda p: Context(backend=fake)))
    used = [len(r.candidates) for r in results]
    assert used[0] == used[3] == 4  # easy: the probe only
    assert used[2] > used[1] > 4  # more disagreement, more samples
    total = sum(r.usage.completion_tokens for r in results)
    assert 70 * len(problems) - 10 < total <= 70 * len(problems)
    for r in results:
        decision = next(n for n in r.trace.nodes if n.data.get("route"))
        assert "extra_samples" in decision.data and "agreement" in decision.data


def test_router_in_eval_runs_once_over_the_batch(tmp_path):
    problems = [Problem("easy a", answer="1", id="a"), Problem("medium b", answer="2", id="b"),
                Problem("hard c", answer="7", id="c")]
    store = Store(tmp_path / "s.sqlite")
    harness = Harness(ScriptedBackend(respond), store, problems,
                      ["self-consistency", "router[mean_tokens=80]"], [4], greedy=False)
    asyncio.run(harness.run())
    points = {p["strategy"]: p for p in harness.curves()["points"]}
    router = points["router[mean_tokens=80]"]
    assert router["problems"] == 3 and router["tokens"] <= 80
    assert abs(router["accuracy"] - 2 / 3) < 1e-9  # easy and medium right, hard hopeless
    store.close()
