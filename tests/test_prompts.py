"""How sampling strategies pose a problem: templates, few-shot exemplars, sampling settings, and
what of them goes into a sample pool's key."""

import asyncio
import json

import pytest

from ponder import registry
from ponder.api import asolve
from ponder.backends.fake import ScriptedBackend
from ponder.errors import ConfigError
from ponder.eval.harness import Harness
from ponder.eval.pools import pools_for
from ponder.eval.store import Store
from ponder.runner import build_strategy
from ponder.strategies.prompts import (
    PROGRAM_SYSTEM,
    Template,
    check_disjoint,
    get_template,
    load_examples,
    register_template,
    shots_for,
)
from ponder.strategies.samplers import program_messages
from ponder.types import Problem

ASKED = "Tom has 3 apples and buys 4 more. How many apples does he have?"
EXAMPLES = [
    {"question": ASKED, "answer": "3 + 4 = <<3+4=7>>7\n#### 7"},
    {"question": "Ann has 2 pens and loses 1. How many pens?",
     "answer": "2 - 1 = <<2-1=1>>1\n#### 1", "program": "print(2 - 1)"},
    {"question": "What is 5 times 6?", "answer": "30"},
    {"question": "What is 9 minus 4?", "answer": "#### 5", "program": "print(9 - 4)"},
]


@pytest.fixture
def examples(tmp_path):
    path = tmp_path / "dev.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in EXAMPLES))
    return str(path)


def test_gsm8k_answers_give_the_solution_and_the_final_answer(examples):
    rows, digest = load_examples(examples)
    assert (rows[0].answer, rows[0].solution) == ("7", "3 + 4 = 7")
    assert rows[0].chain_reply() == "3 + 4 = 7\nThe answer is: 7"
    assert rows[2].chain_reply() == "The answer is: 30"
    assert rows[3].program_reply() == "```python\nprint(9 - 4)\n```"
    assert len(digest) == 12


def test_few_shot_never_shows_the_problem_being_solved(examples):
    rows, _ = load_examples(examples)
    problem = Problem("  tom has 3 apples and BUYS 4 more. How many apples does he have?")
    assert [e.answer for e in shots_for(problem, rows, 2, program=False)] == ["1", "30"]
    assert [e.answer for e in shots_for(problem, rows, 5, program=True)] == ["1", "5"]


def test_few_shot_turns_reach_the_model_before_the_question(examples):
    fake = ScriptedBackend(["The answer is: 7"] * 2)
    result = asyncio.run(asolve(ASKED, "self-consistency", n=2, shots=2, examples=examples,
                                backend=fake))
    assert result.answer == "7"
    messages = fake.history[0].messages
    assert [m.role for m in messages] == ["system", "user", "assistant", "user", "assistant",
                                          "user"]
    assert [m.content for m in messages[1::2]] == [EXAMPLES[1]["question"],
                                                   EXAMPLES[2]["question"], ASKED]
    assert messages[2].content == "2 - 1 = 1\nThe answer is: 1"


def test_programs_get_program_exemplars(examples):
    cfg = build_strategy("program-of-thought", shots=2, examples=examples).config
    messages = program_messages(Problem(ASKED), cfg)
    assert messages[0].content == PROGRAM_SYSTEM
    assert [m.content for m in messages[2::2]] == ["```python\nprint(2 - 1)\n```",
                                                   "```python\nprint(9 - 4)\n```"]


def test_the_harness_refuses_examples_that_hold_an_evaluated_problem(examples, tmp_path):
    problems = [Problem(ASKED, "7", id="0"), Problem("What is 1 + 1?", "2", id="1")]
    with pytest.raises(ConfigError, match="holds 1 of the problems being evaluated"):
        check_disjoint(examples, problems)
    store = Store(tmp_path / "s.sqlite")
    with pytest.raises(ConfigError, match="few-shot exemplars must come from other problems"):
        Harness(ScriptedBackend(), store, problems, ["self-consistency[shots=2]"], [1],
                options={"examples": examples})
    Harness(ScriptedBackend(), store, problems[1:], ["self-consistency[shots=2]"], [1],
            options={"examples": examples})  # no overlap: accepted
    store.close()


def test_shots_without_examples_is_one_clear_error():
    with pytest.raises(ConfigError, match="shots needs examples=FILE"):
        build_strategy("self-consistency", shots=2)


def test_templates_by_name_version_and_file(tmp_path, monkeypatch):
    registry.templates.names()  # loaded before the copy the test registers into
    monkeypatch.setattr(registry.templates, "_items", dict(registry.templates._items))
    assert get_template("concise").id == "concise@1"
    register_template(Template("concise", 2, system="Short. 'The answer is: <answer>'."))
    assert get_template("concise").id == "concise@2"
    assert get_template("concise@1").system.startswith("Solve the problem. Be brief")
    with pytest.raises(ConfigError, match="has no version '7'"):
        get_template("concise@7")
    with pytest.raises(ConfigError, match="already registered"):
        register_template(Template("concise", 2, system="Something else."))
    with pytest.raises(ConfigError, match="unknown template 'nope'"):
        build_strategy("self-consistency", template="nope")
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"version": 3, "system": "Be exact.", "user": "Q: {question}"}))
    fake = ScriptedBackend(["The answer is: 7"])
    asyncio.run(asolve(ASKED, "self-consistency", n=1, template=str(path), backend=fake))
    messages = fake.history[0].messages
    assert (messages[0].content, messages[1].content) == ("Be exact.", f"Q: {ASKED}")
    path.write_text(json.dumps({"user": "no placeholder"}))
    with pytest.raises(ConfigError, match="has no {question}"):
        get_template(str(path))


def test_sampling_settings_reach_the_backend():
    fake = ScriptedBackend(["The answer is: 7"] * 2)
    asyncio.run(asolve(ASKED, "self-consistency", n=2, temperature=0.4, top_p=0.9, min_p=0.05,
                       backend=fake))
    params = fake.history[0].params
    assert (params.temperature, params.top_p, params.min_p) == (0.4, 0.9, 0.05)


def test_prompt_options_join_the_pool_key_only_when_set(examples, tmp_path):
    def key(**options):
        return pools_for(build_strategy("self-consistency", **options).config.model_dump())[0].key

    plain = key()
    assert key(shots=0) == plain and key(selector="confidence") == plain  # picking: same pool
    assert len({plain, key(template="concise@1"), key(template="tutor"),
                key(shots=2, examples=examples), key(shots=3, examples=examples),
                key(temperature=0.3), key(min_p=0.1)}) == 7
    changed = tmp_path / "other.jsonl"
    changed.write_text(json.dumps(EXAMPLES[2]) + "\n" + json.dumps(EXAMPLES[1]) + "\n")
    assert key(shots=2, examples=str(changed)) != key(shots=2, examples=examples)
