"""--max-tokens-total holds: no strategy spends past its token budget, on the bundled model
in-process (its tokenizer counts prompts exactly) and through an OpenAI-compatible server (no
tokenizer: prompts are bounded from above), and the result says the budget stopped it."""

import asyncio

import pytest

from ponder import registry
from ponder.api import asolve
from ponder.backends.openai_http import OpenAIBackend

pytestmark = pytest.mark.model

QUESTION = "A farmer has 17 sheep and buys 5 more. How many sheep does he have?"
ADD = ("def add(a, b):\n    '''Add two numbers.\n    >>> add(2, 3)\n    5\n    '''\n")
SMALL = {"max_tokens": 48, "step_tokens": 16, "max_steps": 3}


def options(name):
    cls = registry.strategies.get(name)
    fields = cls.Config.model_fields
    chosen = {k: v for k, v in SMALL.items() if k in fields}
    for knob, value in (("n", 2), ("m", 2), ("simulations", 2), ("max_n", 4), ("rounds", 2),
                        ("probe_n", 2), ("warmup", 2), ("wave", 2)):
        if knob in fields:
            chosen[knob] = value
    if "max_thinking_tokens" in fields:
        chosen.update(min_thinking_tokens=16, max_thinking_tokens=48)
    return chosen


def question_for(name):
    if name == "self-debug":
        from ponder.types import Problem

        return Problem(ADD, metadata={"entry_point": "add"})
    return QUESTION


@pytest.mark.parametrize("budget", [60, 200])
@pytest.mark.parametrize("name", sorted(registry.strategies.names()))
def test_no_strategy_spends_past_its_budget_in_process(llama, kquant, name, budget):
    # a many-model strategy gets its other models too (a second file: its own backend), and
    # the budget holds over all of them
    roles = registry.strategies.get(name)().required_roles()
    result = asyncio.run(asolve(question_for(name), name, backend=llama, seed=1,
                                models={role: str(kquant) for role in roles} or None,
                                max_tokens_total=budget, **options(name)))
    assert result.usage.total_tokens <= budget
    if budget == 60:  # about the prompt alone: every strategy needs more, the budget stops it
        assert result.stop_reason == "budget"
    else:
        assert result.stop_reason in ("budget", "done")


# the strategies whose models read each other's answers (or, particle-filtering, the strong
# model judges the generator's steps), each model in a role of its own
SEVERAL_MODELS = {
    "mixture-of-agents": {"proposers": "generator,strong", "aggregator": "strong",
                          "n_per_proposer": 2, "layers": 2},
    "debate": {"agents": 2, "agent_roles": "generator,strong", "rounds": 2,
               "stop_when_unanimous": False},
    # one particle: its first step and the strong model's verdict (a prompt of some 170 tokens)
    # fit in 400; two particles' verdicts, asked in one call, would not
    "particle-filtering": {"scorer_role": "strong", "n": 1},
}


@pytest.mark.parametrize("budget", [60, 400])
@pytest.mark.parametrize("name", sorted(SEVERAL_MODELS))
def test_the_budget_holds_over_models_that_read_each_other(llama, kquant, name, budget):
    chosen = {**options(name), **SEVERAL_MODELS[name]}
    result = asyncio.run(asolve(QUESTION, name, backend=llama, seed=1,
                                models={"strong": str(kquant)}, max_tokens_total=budget,
                                **chosen))
    assert result.usage.total_tokens <= budget
    assert result.stop_reason == "budget"  # two layers or three rounds of two models: more
    spent = {name: cost.usage.total_tokens for name, cost in result.models.items()}
    assert sum(spent.values()) == result.usage.total_tokens
    if budget == 400:  # the models are asked in turn, each capped by what is left: both spent
        assert set(spent) == {llama.model, kquant.name} and all(spent.values())


@pytest.mark.parametrize("name", ["cot", "self-consistency", "best-of-n", "beam-search",
                                  "deepconf"])
def test_no_strategy_spends_past_its_budget_through_a_server(llama_server, name):
    async def go():
        backend = OpenAIBackend("smol", llama_server)
        try:
            return await asolve(QUESTION, name, backend=backend, seed=1, max_tokens_total=600,
                                **options(name))
        finally:
            await backend.aclose()

    result = asyncio.run(go())
    # the prompts are bounded by their bytes (about 300 tokens here for about 60 real ones), so
    # the samples get less than they could, never more
    assert 0 < result.usage.total_tokens <= 600
    assert result.stop_reason in ("budget", "done")
