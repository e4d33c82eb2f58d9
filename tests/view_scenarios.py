"""Scripted runs of the strategies, for the view's tests and screenshots: every tree, round and
vote is known in advance (the fake backend answers from these scripts)."""

from __future__ import annotations

import asyncio
import math
import re
from typing import Any

from ponder import ScriptedBackend
from ponder.api import asolve
from ponder.types import Completion, Problem, Result, TokenLogprob
from ponder.verifiers.judge import JUDGE_SYSTEM
from ponder.verifiers.steps import STEP_JUDGE_SYSTEM

QUESTION = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many "
            "clips in May. How many clips did Natalia sell altogether in April and May?")

# beam search: step texts by the path so far; each step's judge score by its text
STEPS: dict[str, list[str]] = {
    "": [
        "In April Natalia sold 48 clips.\n\n",
        "Half of 48 is 24, so in May she sold 24 clips.\n\n",
        "She sold 48 clips and then half as many, which is 48 * 2 = 96 clips in May.\n\n",
        "Let x be the clips in May.\n\n",
    ],
    "In April Natalia sold 48 clips.\n\n": [
        "In May she sold half as many: 48 / 2 = 24 clips.\n\n",
        "In May she sold 48 - 2 = 46 clips.\n\n",
    ],
    "Half of 48 is 24, so in May she sold 24 clips.\n\n": [
        "Altogether: 48 + 24 = 72. The answer is: 72",
        "So she sold 24 clips in all. The answer is: 24",
    ],
    "In April Natalia sold 48 clips.\n\nIn May she sold half as many: 48 / 2 = 24 clips.\n\n": [
        "In total 48 + 24 = 72 clips. The answer is: 72",
        "In total 48 + 24 = 74 clips. The answer is: 74",
    ],
}
STEP_SCORES = {
    "In April Natalia sold 48 clips.": 0.93,
    "Half of 48 is 24, so in May she sold 24 clips.": 0.88,
    "She sold 48 clips and then half as many, which is 48 * 2 = 96 clips in May.": 0.12,
    "Let x be the clips in May.": 0.55,
    "In May she sold half as many: 48 / 2 = 24 clips.": 0.91,
    "In May she sold 48 - 2 = 46 clips.": 0.08,
    "Altogether: 48 + 24 = 72. The answer is: 72": 0.95,
    "So she sold 24 clips in all. The answer is: 24": 0.21,
    "In total 48 + 24 = 72 clips. The answer is: 72": 0.9,
    "In total 48 + 24 = 74 clips. The answer is: 74": 0.15,
}


def _yes(p: float) -> Completion:
    top = (("Yes", math.log(p)), ("No", math.log(1 - p)))
    verdict = "Yes" if p >= 0.5 else "No"
    return Completion(verdict, logprobs=(TokenLogprob(verdict, 0.0, top),))


def _step_judge(request: Any) -> Completion:
    prompt = request.messages[1].content
    steps = re.findall(r"^Step \d+: (.*)$", prompt, re.MULTILINE)
    return _yes(STEP_SCORES.get(steps[-1].strip() if steps else "", 0.5))


def _steps(request: Any, index: int) -> str | Completion:
    if request.messages[0].content == STEP_JUDGE_SYSTEM:
        return _step_judge(request)
    options = STEPS.get(request.prefill)
    if options is None:  # a path the script does not continue: finish it
        return "So the total is 48 + 24 = 72. The answer is: 72"
    return options[index % len(options)]


def run(strategy: str, backend: ScriptedBackend, problem: Problem | str = QUESTION,
        **options: Any) -> Result:
    return asyncio.run(asolve(problem, strategy, backend=backend, seed=7, **options))


def beam_search() -> Result:
    """2 beams, 2 steps each: four first steps (two pruned), then answers."""
    return run("beam-search", ScriptedBackend(_steps), n=2, m=2, max_steps=3)


def dvts() -> Result:
    return run("dvts", ScriptedBackend(_steps), n=4, m=2, max_steps=3)


def mcts() -> Result:
    return run("mcts", ScriptedBackend(_steps), simulations=6, m=2, parallel=2, max_steps=3)


CHAINS = [
    "April: 48 clips. May: half of 48 = 24. Total 48 + 24 = 72.\nThe answer is: 72",
    "She sold 48 and then 48 / 2 = 24. So 48 + 24 = 72 clips.\nThe answer is: 72",
    "Half as many as 48 is 96? No: 48 * 2 = 96, total 144.\nThe answer is: 144",
    "48 in April, 24 in May, that makes 72 in all.\nThe answer is: 72",
    "May: 48 - 24 = 24; April + May = 48 + 24 = 72.\nThe answer is: 72",
    "48 / 2 = 24 in May. 24 + 24 = 48.\nThe answer is: 48",
]


def self_consistency() -> Result:
    return run("self-consistency", ScriptedBackend(list(CHAINS)), n=len(CHAINS))


def best_of_n() -> Result:
    scores = {"72": 0.9, "144": 0.2, "48": 0.4}

    def respond(request: Any, index: int) -> str | Completion:
        if request.messages[0].content == JUDGE_SYSTEM:
            proposed = request.messages[1].content.split("Proposed final answer: ")[1]
            return _yes(scores.get(proposed.split("\n")[0].strip(), 0.5))
        return CHAINS[index % len(CHAINS)]

    return run("best-of-n", ScriptedBackend(respond), n=4)


CODE_QUESTION = Problem(
    "Write a function add(a, b) that returns the sum of a and b.",
    metadata={"domain": "code", "entry_point": "add",
              "tests": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0",
                        "assert add(2, 2) == 4"]})


def self_debug() -> Result:
    """A wrong first version (fails two visible tests), then a fix that passes."""
    script = [
        "```python\ndef add(a, b):\n    return a - b\n```",
        "```python\ndef add(a, b):\n    return a + b\n```",
    ]
    return run("self-debug", ScriptedBackend(script), CODE_QUESTION, rounds=2)


def self_refine() -> Result:
    script = [
        "In May she sold 48 * 2 = 96 clips, so 48 + 96 = 144.\nThe answer is: 144",
        "The May figure is wrong: half as many as 48 is 24, not 96.",
        "In May she sold 48 / 2 = 24 clips, so 48 + 24 = 72.\nThe answer is: 72",
        "NO ERRORS",
    ]
    return run("self-refine", ScriptedBackend(script), rounds=3)


def program_of_thought() -> Result:
    script = [
        "```python\napril = 48\nmay = april / 2\nprint(april + may)\n```",
        "```python\napril = 48\nprint(april + mai)\n```",
        "```python\napril = 48\nmay = april // 2\nprint(april + may)\n```",
    ]
    return run("program-of-thought", ScriptedBackend(script), n=2, repairs=1)


def _confident(text: str, sure: float, dip_at: int | None = None) -> Completion:
    """A trace whose tokens have top-5 alternatives: a confident token puts its mass on one
    alternative (wavering a little from token to token); from ``dip_at`` on the model grows
    unsure."""
    tokens = []
    for i, word in enumerate(text.split()):
        p = sure * (0.9 + 0.1 * math.sin(i * 0.7 + sure * 10))
        if dip_at is not None and i >= dip_at:
            p = max(0.25, p - 0.06 * (i - dip_at + 1))
        rest = (1 - p) / 4
        top = tuple((f"t{j}", math.log(p if j == 0 else rest)) for j in range(5))
        tokens.append(TokenLogprob(word, math.log(p), top))
    return Completion(text, logprobs=tuple(tokens))


def deepconf() -> Result:
    long = ("In April Natalia sold 48 clips . In May she sold half as many , and half of 48 is "
            "24 , so in May she sold 24 clips . Together that is 48 plus 24 , which makes 72 "
            "clips in April and May . The answer is: 72")
    script = [_confident(long, 0.97), _confident(long.replace("72", "96"), 0.95),
              _confident(long, 0.9), _confident(long, 0.6),
              _confident(long, 0.96), _confident(long.replace("72", "48"), 0.97, dip_at=14),
              _confident(long, 0.94), _confident(long, 0.97)]
    return run("deepconf", ScriptedBackend(script), max_n=8, warmup=4, wave=4, keep=0.75,
               group_size=8, consensus=0.99)


def adaptive_consistency() -> Result:
    script = [CHAINS[0], CHAINS[2], CHAINS[1], CHAINS[5], CHAINS[3], CHAINS[4], CHAINS[0],
              CHAINS[1]]
    return run("adaptive-consistency", ScriptedBackend(script), wave=2, max_n=8,
               threshold=0.9)


def router() -> Result:
    script = [CHAINS[0], CHAINS[2], CHAINS[1], CHAINS[5]] + [CHAINS[3], CHAINS[4]] * 6
    return run("router", ScriptedBackend(script), probe_n=4, max_n=8)


def budget_forcing() -> Result:
    script = ["April is 48 clips. May is half: 24.",
              "let me check: 48 / 2 = 24, and 48 + 24 = 72.", "72"]
    return run("budget-forcing", ScriptedBackend(script), min_thinking_tokens=12,
               max_thinking_tokens=64, max_waits=2)


def chain_of_thought() -> Result:
    return run("cot", ScriptedBackend([CHAINS[0]]))


# -- several models: a small generator and a strong model by role --------------------------------

SMALL, STRONG = "qwen-0.5b", "qwen-1.5b"
SMALL_PARAMETERS, STRONG_PARAMETERS = 494_032_768, 1_543_714_304
TWICE = "In May she sold twice as many: 48 * 2 = 96, so 48 + 96 = 144.\nThe answer is: 144"
RIGHT = ("Half as many as 48 is 48 / 2 = 24 clips in May, so altogether 48 + 24 = 72 clips."
         "\nThe answer is: 72")


def two_models(small: Any, strong: Any) -> tuple[ScriptedBackend, ScriptedBackend]:
    """The small generator and the strong model, each with its size (so each has FLOPs)."""
    return (ScriptedBackend(small, model=SMALL, parameters=SMALL_PARAMETERS),
            ScriptedBackend(strong, model=STRONG, parameters=STRONG_PARAMETERS))


def run_two(strategy: str, small: Any, strong: Any, **options: Any) -> Result:
    generator, strong_model = two_models(small, strong)
    return asyncio.run(asolve(QUESTION, strategy, backend=generator,
                              models={"strong": strong_model}, seed=7, **options))


def cascade() -> Result:
    """The small model splits 2/1/1 (agreement 0.50 < 0.75): escalated; the strong model's one
    greedy answer (72) overrules the small vote (144)."""
    return run_two("cascade", [CHAINS[2], TWICE, CHAINS[0], CHAINS[5]], [RIGHT], n=4,
                   threshold=0.75, hints=True)


def cascade_kept() -> Result:
    """Three of four small samples agree (0.75 is not below 0.75): the strong model is not
    asked."""
    return run_two("cascade", [CHAINS[0], CHAINS[1], CHAINS[3], CHAINS[2]], [RIGHT], n=4,
                   threshold=0.75)


# the small model's six samples: 144 leads (3), 72 (2), 48 (1)
SPLIT = [CHAINS[2], CHAINS[0], TWICE, CHAINS[5], CHAINS[1],
         "48 + 2 * 48 = 144 clips in April and May.\nThe answer is: 144"]


def verify_by_strong() -> Result:
    """Pointwise: the strong model's P(yes) per answer group; it trusts 72, not the small
    model's majority (144)."""
    trust = {"72": 0.92, "144": 0.07, "48": 0.31}

    def judge(request: Any, index: int) -> Completion:
        proposed = request.messages[1].content.split("Proposed final answer: ")[1]
        return _yes(trust.get(proposed.split("\n")[0].strip(), 0.5))

    return run_two("verify-by-strong", list(SPLIT), judge, n=6)


def verify_by_strong_tournament() -> Result:
    """A tournament: 144 (3 votes) meets 72, both orders choose 72; 72 meets 48, and the
    swapped order says A (position bias): a split verdict keeps the champion."""
    def compare(request: Any, index: int) -> str:
        prompt = request.messages[-1].content
        a = re.search(r"^Final answer A: (.*)$", prompt, re.MULTILINE).group(1)
        b = re.search(r"^Final answer B: (.*)$", prompt, re.MULTILINE).group(1)
        if a == "48":
            return "A"
        return "A" if a == "72" else "B" if b == "72" else "A"

    return run_two("verify-by-strong", list(SPLIT), compare, n=6, method="tournament")


def debate() -> Result:
    """Three agents (1 and 3 the small model, 2 the strong one): agent 1 comes round to 72 in
    round 1, agent 3 in round 2; unanimous after round 2, so round 3 never runs."""
    small = [TWICE, CHAINS[5],  # round 0: agents 1 and 3
             "Agent 2 is right: half of 48 is 24, so 48 + 24 = 72.\nThe answer is: 72",
             "I still think May was 24 and April 24 more: 24 + 24 = 48.\nThe answer is: 48",
             CHAINS[3], "I was wrong: April is 48, May is 24, 48 + 24 = 72.\nThe answer is: 72"]
    strong = [RIGHT, CHAINS[1], CHAINS[4]]
    return run_two("debate", small, strong, agents=3, rounds=3,
                   agent_roles=["generator", "strong"])


def mixture_of_agents() -> Result:
    """Two proposers (the small model and the strong one, two responses each) in two layers;
    the strong model aggregates layer 2 and agrees with its majority (72)."""
    small = [TWICE, CHAINS[5], CHAINS[0], TWICE]
    strong = [RIGHT, CHAINS[2], CHAINS[1], CHAINS[3],
              "Three of the four responses find 24 clips in May: 48 + 24 = 72.\n"
              "The answer is: 72"]
    return run_two("mixture-of-agents", small, strong, proposers="generator,strong",
                   n_per_proposer=2, layers=2, aggregator="strong")


def particle_filtering() -> Result:
    """Four particles; the small model writes the steps, the strong model judges them (by
    role). Step 1 resamples to three copies of "In April ... 48" and one of "Half of 48 is 24"
    (the other two first steps dropped); step 2 drops the finished "72" and "48 - 2 = 46" and
    keeps the two "48 / 2 = 24" particles, the first once and the second three times; at step 3
    every particle has answered (72, 74, 72, 74): no resampling, and the best-scored answer (72,
    particle 1's) is picked."""
    return run_two("particle-filtering", _steps, lambda request, index: _step_judge(request),
                   n=4, max_steps=3, scorer_role="strong")


SCENARIOS = {
    "beam-search": beam_search, "dvts": dvts, "mcts": mcts,
    "self-consistency": self_consistency, "best-of-n": best_of_n, "self-debug": self_debug,
    "self-refine": self_refine, "program-of-thought": program_of_thought,
    "deepconf": deepconf, "adaptive-consistency": adaptive_consistency, "router": router,
    "budget-forcing": budget_forcing, "cot": chain_of_thought,
    "cascade": cascade, "cascade-kept": cascade_kept, "verify-by-strong": verify_by_strong,
    "verify-by-strong-tournament": verify_by_strong_tournament, "debate": debate,
    "mixture-of-agents": mixture_of_agents, "particle-filtering": particle_filtering,
}
