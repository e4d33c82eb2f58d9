import asyncio
import math

import pytest
from helpers import judge_aware

from ponder import ConfigError, Problem, ScriptedBackend, asolve
from ponder.strategies.self_refine import critique_accepts
from ponder.types import Completion, TokenLogprob


def run(*args, **kwargs):
    return asyncio.run(asolve(*args, **kwargs))


def test_self_consistency_votes_by_equivalence():
    fake = ScriptedBackend(["The answer is 21.", "So $22.", "The answer is 22.0", "\\boxed{22}",
                            "no idea"])
    result = run("17 + 5?", "self-consistency", n=5, backend=fake)
    assert result.answer == "22"
    assert [c.votes for c in result.candidates] == [1, 3, 3, 3, 0]
    assert result.candidates[4].answer is None
    assert fake.history[0].n == 5  # one batched request, not five
    vote = [n for n in result.trace.nodes if n.kind == "vote"][0]
    assert vote.data["winner"] == "22"


def test_self_consistency_tie_goes_to_first_seen():
    fake = ScriptedBackend(["The answer is 3.", "The answer is 4.", "The answer is 4.",
                            "The answer is 3."])
    assert run("q", "self-consistency", n=4, backend=fake).answer == "3"


def test_self_consistency_logprob_weighting():
    confident = tuple(TokenLogprob("x", math.log(0.9)) for _ in range(3))
    unsure = tuple(TokenLogprob("x", math.log(0.2)) for _ in range(3))
    fake = ScriptedBackend([
        Completion("The answer is 5", logprobs=confident),
        Completion("The answer is 7", logprobs=unsure),
        Completion("The answer is 7", logprobs=unsure),
    ])
    result = run("q", "self-consistency", n=3, backend=fake, weighting="logprob")
    # 0.9 for "5" against 0.2 + 0.2 for "7": confidence beats the raw count.
    assert result.answer == "5"
    assert result.candidates[0].votes == pytest.approx(0.9)
    assert result.candidates[1].votes == pytest.approx(0.4)
    assert fake.history[0].params.logprobs == 0


def test_self_consistency_verifier_weighting():
    fake = ScriptedBackend(judge_aware(["The answer is 5", "The answer is 7", "The answer is 7"],
                                       {"5": 0.95, "7": 0.3}))
    result = run("q", "self-consistency", n=3, backend=fake, weighting="verifier",
                 verifier="judge")
    assert result.answer == "5"
    assert [c.score for c in result.candidates] == pytest.approx([0.95, 0.3, 0.3])


def test_best_of_n_picks_highest_judge_score():
    fake = ScriptedBackend(judge_aware(["The answer is 21", "The answer is 22", "The answer is 23"],
                                       {"21": 0.2, "22": 0.9, "23": 0.4}))
    result = run("17 + 5?", "best-of-n", n=3, backend=fake)
    assert result.answer == "22"
    assert [c.score for c in result.candidates] == pytest.approx([0.2, 0.9, 0.4])
    assert [c.votes for c in result.candidates] == [0, 1, 0]
    judge_calls = [r for r in fake.history if r.params.logprobs == 20]
    assert len(judge_calls) == 3 and all(r.params.max_tokens == 1 for r in judge_calls)


def test_best_of_n_without_logprobs_parses_the_verdict():
    from ponder.backends.base import Capabilities

    def respond(request, index):
        if "Proposed final answer: 8" in request.messages[-1].content:
            return "Yes, it is correct."
        if "Proposed final answer" in request.messages[-1].content:
            return "No."
        return ["The answer is 9", "The answer is 8"][index]

    fake = ScriptedBackend(respond, capabilities=Capabilities(parallel_n=True))
    result = run("q", "best-of-n", n=2, backend=fake)
    assert result.answer == "8"
    assert [c.score for c in result.candidates] == [0.0, 1.0]


def test_cot_is_greedy_and_traced():
    fake = ScriptedBackend(["17 + 5 = 22. The answer is 22."])
    result = run("q", "cot", backend=fake)
    assert result.answer == "22"
    assert fake.history[0].params.temperature == 0.0
    assert result.usage.calls == 1
    assert result.usage.completion_tokens == 9
    assert result.trace.usage.completion_tokens == result.usage.completion_tokens


def test_self_refine_stops_when_critique_finds_no_error():
    fake = ScriptedBackend(["The answer is 21.", "Step 2 is wrong: 17 + 5 is 22.",
                            "17 + 5 = 22. The answer is 22.", "NO ERRORS"])
    result = run("17 + 5?", "self-refine", backend=fake, rounds=3)
    assert result.answer == "22"
    assert len(fake.history) == 4  # draft, critique, revision, critique: then it stopped
    assert [c.answer for c in result.candidates] == ["21", "22"]
    assert "Step 2 is wrong" in fake.history[2].messages[-1].content


def test_self_refine_honours_round_limit():
    fake = ScriptedBackend(["The answer is 1."] + ["It is wrong.", "The answer is 2."] * 2)
    result = run("q", "self-refine", backend=fake, rounds=2)
    assert len(fake.history) == 5
    assert result.answer == "2"
    assert fake.remaining == 0


@pytest.mark.parametrize("text,ok", [("NO ERRORS", True), ("No errors found.", True),
                                     ("The solution is correct.", True),
                                     ("There are errors: step 1.", False)])
def test_critique_accepts(text, ok):
    assert critique_accepts(text) is ok


def test_budget_forcing_suppresses_early_end_and_counts_tokens():
    fake = ScriptedBackend([
        "17 plus 5 is 22. The answer is: 22",      # stop string cuts it: 5 thinking tokens
        "let me check: 22 minus 5 is 17, yes.",   # after "Wait,": 9 more, still below 16
        "so it is 22 sheep in total. The answer is: 22",  # 7 more: 20 >= 16, stop thinking
        "22 sheep",
    ])
    result = run("17 sheep + 5?", "budget-forcing", backend=fake, min_thinking_tokens=16,
                 max_thinking_tokens=100)
    meta = result.candidates[0].metadata
    assert meta["thinking_tokens"] == 5 + 9 + 7
    assert meta["waits"] == 2
    assert not meta["capped"]
    assert result.answer == "22 sheep"  # the forced answer, read after the marker
    assert fake.history[1].prefill.endswith("Wait, ")
    assert fake.history[3].prefill.endswith("The answer is: ")
    assert result.usage.completion_tokens == 5 + 9 + 7 + 2
    assert result.usage.calls == 4


def test_budget_forcing_caps_thinking():
    fake = ScriptedBackend(["one two three four five six seven eight nine ten", "7"])
    result = run("q", "budget-forcing", backend=fake, min_thinking_tokens=2,
                 max_thinking_tokens=6)
    assert result.candidates[0].metadata["capped"] is True
    assert result.candidates[0].metadata["thinking_tokens"] == 6
    assert result.answer == "7"


def test_token_budget_cuts_a_strategy_short():
    fake = ScriptedBackend(["The answer is 1."] + ["It is wrong. " * 20, "The answer is 2."] * 5)
    result = run("q", "self-refine", backend=fake, rounds=5, max_tokens_total=120)
    assert result.stop_reason == "budget"
    # the draft (26 + 4 tokens), then a critique whose prompt (35) is counted exactly and whose
    # completion is cut at what is left (55): the budget is spent to its last token, not past it
    assert [n.label for n in result.trace.nodes] == [
        "self-refine", "draft", "critique 1", "budget exhausted: keep the latest version"]
    assert (result.usage.calls, result.usage.prompt_tokens, result.usage.completion_tokens) == (
        2, 61, 59)
    assert result.usage.total_tokens == 120
    assert result.answer == "1" and len(result.candidates) == 1


def test_budget_too_small_for_any_sample():
    fake = ScriptedBackend(["The answer is 1."])
    result = run("q " * 50, "self-consistency", n=4, backend=fake, max_tokens_total=10)
    assert result.stop_reason == "budget"
    assert result.answer is None
    assert fake.history == []


@pytest.mark.parametrize("kwargs,message", [
    ({"strategy": "nope"},
     "unknown strategy 'nope'; valid: adaptive-consistency, beam-search, best-of-n"),
    ({"n": 0}, "n: Input should be greater than or equal to 1"),
    ({"strategy": "cot", "n": 3}, "takes no n"),
    ({"max_tokens_total": -5}, "must be positive"),
    ({"effort": "extreme"}, "unknown effort"),
    ({"bogus_option": 1}, "bogus_option: unknown option"),
    ({"strategy": "budget-forcing", "min_thinking_tokens": 50, "max_thinking_tokens": 10},
     "must not exceed"),
])
def test_bad_input_is_a_config_error(kwargs, message):
    kwargs = {"strategy": "self-consistency", **kwargs}
    strategy = kwargs.pop("strategy")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        run("q", strategy, backend=ScriptedBackend(), **kwargs)


def test_empty_question():
    with pytest.raises(ConfigError, match="empty"):
        run("  ", backend=ScriptedBackend())


def test_effort_sets_n_and_explicit_n_wins():
    fake = ScriptedBackend(lambda request, i: "The answer is 1")
    run("q", "self-consistency", effort="high", backend=fake)
    run("q", "self-consistency", effort="high", n=2, backend=fake)
    assert [r.n for r in fake.history] == [16, 2]


def test_problem_system_prompt_and_seed_reach_the_backend():
    fake = ScriptedBackend(lambda request, i: "The answer is 1")
    run(Problem("q", system="Be brief."), "cot", backend=fake, seed=7)
    assert fake.history[0].messages[0].content == "Be brief."
    assert fake.history[0].params.seed == 7001  # the run's seed x 1000 + the call's number


@pytest.mark.parametrize("strategy,options,missing", [
    ("deepconf", {"mode": "offline"}, "needs logprobs"),
    ("deepconf", {}, "needs logprobs and early stop"),
    ("self-consistency", {"weighting": "logprob"}, "needs logprobs"),
    ("beam-search", {}, "needs prefill"),
    ("mcts", {"scorer": "confidence"}, "needs prefill and logprobs"),
    ("budget-forcing", {}, "needs prefill"),
])
def test_a_missing_capability_is_refused_before_any_call(strategy, options, missing):
    from ponder.backends.base import Capabilities

    fake = ScriptedBackend(["The answer is 1."], capabilities=Capabilities(parallel_n=True))
    with pytest.raises(ConfigError, match=f"^strategy '{strategy}' {missing}, which the fake "
                                          "backend \\(model 'scripted'\\) does not offer$"):
        run("q", strategy, backend=fake, **options)
    assert fake.history == []


def test_a_budget_check_that_stops_a_strategy_says_budget():
    """A budget spent between calls (here: its calls) ends the run as "budget", not "done"."""
    from ponder import Budget
    from ponder.runner import build_strategy, run_strategy

    fake = ScriptedBackend(["The answer is 1.", "Looks wrong.", "The answer is 2."])
    result = asyncio.run(run_strategy(build_strategy("self-refine"), Problem("q"), fake,
                                      budget=Budget(max_calls=2)))
    assert (result.stop_reason, result.answer, fake.remaining) == ("budget", "1", 1)
