"""Many minds: mixture-of-agents (proposers in layers, an aggregator) and debate (agents read
each other's answers and revise, then vote), pinned on scripted backends: who is asked what, in
which order, what wins, what the trace says and what each model spent."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from ponder import asolve
from ponder.backends.fake import ScriptedBackend, count_words
from ponder.errors import ConfigError
from ponder.strategies.base import DEFAULT_SYSTEM
from ponder.types import Completion

Q = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
     "in May. How many clips did Natalia sell altogether in April and May?")


def run(strategy: str, small: ScriptedBackend, strong: ScriptedBackend | None = None,
        **options):
    models = {"strong": strong} if strong is not None else None
    return asyncio.run(asolve(Q, strategy, backend=small, models=models, seed=1, **options))


def decisions(result) -> list[str]:
    return [n.label for n in result.trace.nodes if n.kind == "decision"]


def prompt_words(backend: ScriptedBackend) -> int:
    """What the backend was asked, counted as it counts: each request's words once."""
    return sum(count_words(m.content) for r in backend.history for m in r.messages)


# -- debate ------------------------------------------------------------------------------------

ROUND_0 = ["a1: 48 + 24 = 72. The answer is 72.", "a2: 48 * 3 = 144. The answer is 144.",
           "a3: 48 + 48 / 2 = 72. The answer is 72."]


def test_debate_agents_read_the_others_answers_and_change_their_minds():
    small = ScriptedBackend([*ROUND_0, "b1: still 72. The answer is 72.",
                             "b2: I see my mistake, 48 + 24. The answer is 72.",
                             "b3: The answer is 72."], model="small")
    result = run("debate", small, agents=3, rounds=2)
    assert result.answer == "72"
    # round 0: the three agents are asked the question alone, in agent order
    assert [r.messages[-1].content for r in small.history[:3]] == [Q] * 3
    # round 1: each agent sees its own reply as its own turn and the other two as others'
    for agent, request in enumerate(small.history[3:6]):
        *_, own, shown = request.messages
        assert own.role == "assistant" and own.content == ROUND_0[agent]
        others = [t for k, t in enumerate(ROUND_0) if k != agent]
        assert all(t in shown.content for t in others)
        assert ROUND_0[agent] not in shown.content  # never its own as another agent's
        assert shown.content.count("One agent's solution:") == 2
    # every agent agreed after round 1: round 2 is never asked
    assert len(small.history) == 6
    assert decisions(result) == ["round 0: first answers 72, 144, 72",
                                 "round 1: agent 2: 144 → 72",
                                 "all 3 agents answer 72 after round 1: stop early"]
    [changed] = [n for n in result.trace.nodes if n.data.get("changes")]
    assert changed.data["changes"] == [{"agent": 2, "role": "generator", "model": "small",
                                        "from": "144", "to": "72"}]
    assert changed.data["unanimous"] is True
    # the candidates: each reply, marked with its agent, round and model; only the last
    # round votes
    tags = [(c.metadata["agent"], c.metadata["round"], c.metadata["model"])
            for c in result.candidates]
    assert tags == [(1, 0, "small"), (2, 0, "small"), (3, 0, "small"),
                    (1, 1, "small"), (2, 1, "small"), (3, 1, "small")]
    assert [c.votes for c in result.candidates] == [0, 0, 0, 3, 3, 3]
    assert result.text == "b1: still 72. The answer is 72."


def test_debate_the_last_round_votes_not_the_whole_debate():
    # 144 has 5 replies over the debate, 72 has 4; in the last round 72 leads 2 to 1
    small = ScriptedBackend(["The answer is 144.", "The answer is 144.", "The answer is 72.",
                             "The answer is 144.", "The answer is 144.", "The answer is 72.",
                             "The answer is 72.", "The answer is 72.", "The answer is 144."])
    result = run("debate", small, agents=3, rounds=2)
    assert len(small.history) == 9 and result.answer == "72"
    assert decisions(result) == [
        "round 0: first answers 144, 144, 72",
        "round 1: no agent changed its answer",
        "round 2: agent 1: 144 → 72; agent 2: 144 → 72; agent 3: 72 → 144"]
    [voted] = [n for n in result.trace.nodes if n.kind == "vote"]
    assert voted.data["voters"] == [6, 7, 8]
    assert {g["answer"]: g["weight"] for g in voted.data["groups"]} == {"72": 2, "144": 1}


def test_debate_goes_on_when_told_not_to_stop_and_a_cut_reply_is_no_agreement():
    agree = ["The answer is 72."] * 6
    small = ScriptedBackend(agree)
    result = run("debate", small, agents=3, rounds=1, stop_when_unanimous=False)
    assert len(small.history) == 6  # unanimous at once, and still debated
    assert not any("stop early" in d for d in decisions(result))
    assert [n.data["unanimous"] for n in result.trace.nodes
            if n.kind == "decision"] == [True, True]
    # one agent cut off at the token limit: the others agree, but that is no unanimity
    cut = Completion(text="The answer is 72", finish_reason="length")
    small = ScriptedBackend(["The answer is 72.", cut, "The answer is 72."] + agree[:3])
    result = run("debate", small, agents=3, rounds=1)
    assert len(small.history) == 6 and result.answer == "72"


def test_a_two_model_debate_cycles_the_roles_and_charges_each_model():
    small = ScriptedBackend(["a1: The answer is 72.", "a3: The answer is 70.",
                             "b1: The answer is 72.", "b3: The answer is 72."],
                            model="small", parameters=500_000_000)
    strong = ScriptedBackend(["a2: 48 + 24. The answer is 72.", "b2: The answer is 72."],
                             model="strong", parameters=1_500_000_000)
    result = run("debate", small, strong, agents=3, rounds=3,
                 agent_roles=["generator", "strong"])
    assert result.answer == "72"
    # agents 1 and 3 are the generator, agent 2 the strong model; all agree after round 1
    assert [c.metadata["model"] for c in result.candidates] == ["small", "strong", "small"] * 2
    # agents 1 and 3 ask the generator, agent 2 the strong model, each round
    assert len(small.history) == 4 and len(strong.history) == 2
    shown = strong.history[1].messages[-1].content  # agent 2 in round 1: agents 1 and 3
    assert "a1: The answer is 72." in shown and "a3: The answer is 70." in shown
    assert "a2:" not in shown
    assert decisions(result)[1] == "round 1: agent 3: 70 → 72"
    s, b = result.models["small"], result.models["strong"]
    assert (s.usage.calls, s.usage.completion_tokens) == (4, 5 + 5 + 5 + 5)
    assert (b.usage.calls, b.usage.completion_tokens) == (2, 8 + 5)
    assert s.usage.prompt_tokens == prompt_words(small)
    assert b.usage.prompt_tokens == prompt_words(strong)
    assert s.flops == 2 * 500_000_000 * s.usage.total_tokens
    assert b.flops == 2 * 1_500_000_000 * b.usage.total_tokens
    assert result.flops == s.flops + b.flops
    assert result.usage.total_tokens == s.usage.total_tokens + b.usage.total_tokens


def test_a_budget_that_runs_out_mid_debate_votes_the_latest_answers():
    small = ScriptedBackend([*ROUND_0, *["The answer is 144."] * 3])
    first = 3 * (count_words(DEFAULT_SYSTEM) + count_words(Q)) + sum(map(count_words, ROUND_0))
    # round 0 fits; round 1's prompts, each with two other replies, do not
    result = run("debate", small, agents=3, rounds=2, max_tokens_total=first + 20)
    assert len(small.history) == 3
    assert result.answer == "72" and result.stop_reason == "budget"
    assert result.usage.total_tokens == first
    assert decisions(result)[-1] == "the budget ran out in round 1: each agent's latest " \
                                    "answer votes"


def test_a_debate_that_needs_a_missing_role_is_refused_before_it_runs():
    small = ScriptedBackend(["The answer is 72."] * 3)
    with pytest.raises(ConfigError, match=r"needs a strong model .*--model strong=PATH.gguf"):
        run("debate", small, agent_roles="generator,strong")
    assert small.history == []
    with pytest.raises(ConfigError, match="agent_roles names 3 roles for 2 agents"):
        run("debate", small, agents=2, agent_roles="generator,strong,judge")
    with pytest.raises(ConfigError, match="unknown option"):
        run("debate", small, n_agents=3)


# -- mixture-of-agents -------------------------------------------------------------------------

LAYER_1 = ["p1: 48 * 3 = 144. The answer is 144.", "p2: 48 + 24 = 72. The answer is 72.",
           "p3: 48 + 96 = 144. The answer is 144."]


def test_moa_the_aggregator_reads_every_response_and_its_answer_wins():
    small = ScriptedBackend(LAYER_1, model="small")
    strong = ScriptedBackend(["Half of 48 is 24, and 48 + 24 = 72. The answer is 72."],
                             model="strong")
    result = run("mixture-of-agents", small, strong, n_per_proposer=3, layers=1,
                 aggregator="strong")
    assert result.answer == "72"  # the majority said 144
    [proposed] = small.history
    assert proposed.n == 3 and proposed.messages[-1].content == Q
    [aggregate] = strong.history
    assert aggregate.params.temperature == 0.0
    prompt = aggregate.messages[-1].content
    assert prompt.startswith(Q) and "synthesize these responses" in prompt
    at = [prompt.index(f"{k}. ========") for k in (1, 2, 3)]
    assert at == sorted(at)  # numbered in the order they came
    assert all(prompt.index(text) > at[k] for k, text in enumerate(LAYER_1))
    assert decisions(result) == ["aggregator strong answers '72', against the majority's '144'"]
    [decision] = [n for n in result.trace.nodes if n.kind == "decision"]
    assert decision.data["agrees"] is False and decision.data["chosen"] == "aggregator"
    assert [(c.metadata["model"], c.metadata["layer"]) for c in result.candidates] == \
        [("small", 1)] * 3 + [("strong", 2)]
    assert result.candidates[-1].metadata["aggregator"] is True


def test_moa_later_layers_read_the_layer_before_and_each_model_is_charged():
    small = ScriptedBackend(["s1: The answer is 144.", "s2: The answer is 72.",
                             "t1: The answer is 72.", "t2: The answer is 72.",
                             "final: The answer is 72."], model="small", parameters=135_000_000)
    strong = ScriptedBackend(["g1: The answer is 72.", "g2: The answer is 70.",
                              "h1: The answer is 72.", "h2: The answer is 72."],
                             model="strong", parameters=1_500_000_000)
    result = run("mixture-of-agents", small, strong, proposers="generator,strong",
                 n_per_proposer=2, layers=2)
    assert result.answer == "72"
    layer_1 = ["s1: The answer is 144.", "s2: The answer is 72.", "g1: The answer is 72.",
               "g2: The answer is 70."]
    # layer 2: each proposer, once for both its samples, reads all four layer-1 responses
    for request in (small.history[1], strong.history[1]):
        assert request.n == 2
        assert all(text in request.messages[-1].content for text in layer_1)
    # the aggregator (the generator by default) reads layer 2's responses, not layer 1's
    final = small.history[2].messages[-1].content
    assert all(t in final for t in ("t1:", "t2:", "h1:", "h2:"))
    assert not any(t in final for t in ("s1:", "g2:"))
    layers = [n for n in result.trace.nodes if n.kind == "layer"]
    assert [n.label for n in layers] == ["layer 1", "layer 2"]
    assert layers[1].data["answers"] == ["72", "72", "72", "72"]
    assert [(c.metadata["model"], c.metadata["layer"]) for c in result.candidates] == [
        ("small", 1), ("small", 1), ("strong", 1), ("strong", 1),
        ("small", 2), ("small", 2), ("strong", 2), ("strong", 2), ("small", 3)]
    assert decisions(result) == ["aggregator small answers '72', as the majority does"]
    s, b = result.models["small"], result.models["strong"]
    assert (s.usage.calls, s.usage.completion_tokens) == (3, 4 * 5 + 5)
    assert (b.usage.calls, b.usage.completion_tokens) == (2, 4 * 5)
    assert s.usage.prompt_tokens == prompt_words(small)
    assert b.usage.prompt_tokens == prompt_words(strong)
    assert s.flops == 2 * 135_000_000 * s.usage.total_tokens
    assert result.flops == s.flops + b.flops


def test_moa_the_vote_answers_when_the_aggregator_does_not():
    small = ScriptedBackend([*LAYER_1, "I cannot decide between them."])
    result = run("mixture-of-agents", small, n_per_proposer=3, layers=1)
    assert len(small.history) == 2 and result.answer == "144"
    assert result.text == LAYER_1[0]
    assert decisions(result) == ["aggregator scripted gave no answer: the vote over layer 1 "
                                 "stands"]


def test_moa_a_cut_aggregator_gives_way_to_the_vote_unless_cut_replies_count():
    cut = Completion(text="48 + 24 is 70 and", finish_reason="length")
    small = ScriptedBackend([*LAYER_1, cut])
    result = run("mixture-of-agents", small, n_per_proposer=3, layers=1)
    assert result.answer == "144"
    assert "was cut off at the token limit" in decisions(result)[0]
    small = ScriptedBackend([*LAYER_1, cut])
    assert run("mixture-of-agents", small, n_per_proposer=3, layers=1,
               cut_weight=0.5).answer == "70"


def test_moa_a_budget_that_runs_out_before_the_aggregator_keeps_the_vote():
    small = ScriptedBackend([*LAYER_1, "The answer is 72."])
    first = count_words(DEFAULT_SYSTEM) + count_words(Q) + sum(map(count_words, LAYER_1))
    result = run("mixture-of-agents", small, n_per_proposer=3, layers=2,
                 max_tokens_total=first + 20)
    assert len(small.history) == 1  # layer 2's prompt holds three responses: over the budget
    assert result.answer == "144" and result.stop_reason == "budget"
    assert result.usage.total_tokens == first
    assert decisions(result) == ["the budget ran out in layer 2: each proposer's latest "
                                 "response votes"]


def test_moa_refuses_missing_roles_and_a_proposer_named_twice():
    small = ScriptedBackend(LAYER_1)
    with pytest.raises(ConfigError, match=r"needs a strong model .*--model strong=PATH.gguf"):
        run("mixture-of-agents", small, aggregator="strong")
    with pytest.raises(ConfigError, match=r"needs a judge and a strong model"):
        run("mixture-of-agents", small, proposers="generator,judge", aggregator="strong")
    assert small.history == []
    with pytest.raises(ConfigError, match="each proposer role once"):
        run("mixture-of-agents", small, proposers=["generator", "generator"])


# -- real models ---------------------------------------------------------------------------

def test_a_debate_of_two_real_models_on_the_command_line(model_path, kquant):
    """The bundled model and its Q4_K_M copy debate: each is asked once per round, charged its
    own tokens, and every reply says which model wrote it."""
    proc = subprocess.run(
        [sys.executable, "-m", "ponder", "ask", "What is 17 + 5?", "-s", "debate",
         "-m", str(model_path), "-m", f"strong={kquant}", "-o", "agent_roles=generator,strong",
         "-o", "agents=2", "-o", "rounds=1", "-o", "stop_when_unanimous=false",
         "--max-tokens", "24", "--seed", "3", "--json", "--no-progress"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    small, strong = data["models"][model_path.name], data["models"][kquant.name]
    assert small["calls"] == strong["calls"] == 2  # two rounds, one reply each
    assert 0 < small["completion_tokens"] <= 48 and 0 < strong["completion_tokens"] <= 48
    assert [c["metadata"]["model"] for c in data["candidates"]] == \
        [model_path.name, kquant.name] * 2
    assert [c["metadata"]["round"] for c in data["candidates"]] == [0, 0, 1, 1]
    rounds = [n for n in data["trace"]["nodes"] if n["kind"] == "decision"
              and n["label"].startswith("round ")]
    assert len(rounds) == 2
