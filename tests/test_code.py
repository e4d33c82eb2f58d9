"""Code problems on the fake backend: extraction, visible tests, the code-tests verifier,
execution-based voting, self-debug, and HumanEval through the evaluation harness."""

import asyncio
import json

import pytest

from ponder import ScriptedBackend
from ponder.api import asolve
from ponder.domains import CODE, cluster_answers, domain_for
from ponder.domains.code import generate_inputs
from ponder.domains.code_problems import (
    example_cases,
    extract_code,
    program_of,
    visible_tests,
)
from ponder.eval.datasets import load_humaneval
from ponder.eval.harness import Harness
from ponder.eval.store import Store
from ponder.sandbox import Sandbox
from ponder.types import Problem

ADD = Problem(
    'def add(a, b):\n    """Add two numbers.\n    >>> add(2, 3)\n    5\n    >>> add(-1, 1)\n'
    '    0\n    """\n',
    id="add", metadata={"entry_point": "add", "test": "def check(candidate):\n"
                        "    assert candidate(10, 5) == 15\n    assert candidate(0, 0) == 0\n"},
)
GOOD = "```python\ndef add(a, b):\n    return a + b\n```"
ALSO_GOOD = "Sure:\n```py\ndef add(a, b):\n    # sum\n    total = b + a\n    return total\n```"
BAD = "```python\ndef add(a, b):\n    return a - b\n```"
WORSE = "```python\ndef add(a, b):\n    return a * b\n```"


@pytest.mark.parametrize("text, expected", [
    ("```python\nx = 1\n```", "x = 1\n"),
    ("```Python\nx = 1\n```", "x = 1\n"),
    ("~~~py\nx = 1\n~~~", "x = 1\n"),
    ("```\nx = 1\n```", "x = 1\n"),
    ("```python\nx = 1\n", "x = 1\n"),  # truncated: runs to the end
    ("x = 1", "x = 1"),  # no fence, but Python
    ("Just words, no code here.", None),
    ("```bash\nls\n```", None),
    ("```python\na = 1\n```\nthen\n```python\nb = 2\n```", "b = 2\n"),  # the last block
])
def test_extract_code(text, expected):
    assert extract_code(text) == expected


def test_extract_prefers_the_block_defining_the_entry_point():
    text = "```python\ndef add(a, b):\n    return a + b\n```\nUse:\n```python\nadd(1, 2)\n```"
    assert "def add" in extract_code(text, "add")


def test_program_of_a_body_only_answer_gets_the_signature():
    program = program_of(ADD, "```python\n    return a + b\n```")
    assert program.startswith("def add(a, b):") and program.rstrip().endswith("return a + b")


def test_visible_tests_from_doctests_and_example_lines():
    assert example_cases(ADD) == [("add(2, 3)", "5"), ("add(-1, 1)", "0")]
    p = Problem("def inc(x):\n    '''For example:\n    inc(1) ➞ 2\n    inc(a) ➞ 3\n    "
                "inc(5) == 6\n    '''\n", metadata={"entry_point": "inc"})
    assert example_cases(p) == [("inc(1)", "2"), ("inc(5)", "6")]  # inc(a) is no literal input
    given = Problem("write f", metadata={"tests": ["assert f(1) == 2"]})
    assert [t.source for t in visible_tests(given)] == ["assert f(1) == 2"]


def test_domains():
    assert domain_for(ADD) is CODE
    assert domain_for(Problem("2 + 2?")).name == "math"
    messages = CODE.messages(ADD, "You are careful.", "You are careful.")
    assert "```python" in messages[-1].content and "Python programmer" in messages[0].content


def test_execution_clusters_group_programs_by_behaviour():
    sandbox = Sandbox()
    programs = [program_of(ADD, t) for t in (GOOD, BAD, ALSO_GOOD, WORSE)] + [None]
    labels = asyncio.run(cluster_answers(ADD, programs, sandbox))
    assert labels == [0, 1, 0, 2, None]


def test_generated_inputs_are_new_calls_with_literal_arguments():
    import random

    calls = generate_inputs(["add(2, 3)", "add(-1, 1)"], 6, random.Random(0))
    assert len(calls) == 6 and len(set(calls)) == 6
    assert all(c.startswith("add(") and c not in ("add(2, 3)", "add(-1, 1)") for c in calls)


def test_self_consistency_votes_on_execution_and_picks_the_majority_behaviour():
    fake = ScriptedBackend([BAD, GOOD, ALSO_GOOD, WORSE])
    result = asyncio.run(asolve(ADD, "self-consistency", n=4, backend=fake))
    assert "a + b" in result.answer or "b + a" in result.answer
    assert sorted(c.votes for c in result.candidates) == [1.0, 1.0, 2.0, 2.0]


def test_best_of_n_defaults_to_the_visible_tests_on_code():
    fake = ScriptedBackend([BAD, WORSE, GOOD])
    result = asyncio.run(asolve(ADD, "best-of-n", n=3, backend=fake))
    assert [c.score for c in result.candidates] == [0.0, 0.0, 1.0]
    assert "a + b" in result.answer
    kinds = [n.kind for n in result.trace.nodes]
    assert kinds.count("execute") == 3


@pytest.mark.parametrize("feedback", ["fresh", "conversation"])
def test_self_debug_feeds_failures_back_and_stops_at_the_first_pass(feedback):
    fake = ScriptedBackend([BAD, "I fixed it, no code though.", GOOD, GOOD])
    result = asyncio.run(asolve(ADD, "self-debug", rounds=5, feedback=feedback, backend=fake))
    assert "a + b" in result.answer
    assert [c.score for c in result.candidates] == [0.0, 0.0, 1.0]
    assert len(fake.history) == 3  # the fourth scripted answer was never asked for
    second = fake.history[1].messages[-1].content
    assert "add(2, 3) returned -1, expected 5" in second
    assert "no ```python code block" in fake.history[2].messages[-1].content
    conversation = len(fake.history[1].messages) > 2
    assert conversation == (feedback == "conversation")  # fresh: only the failures, no old code


def test_self_debug_honours_the_round_limit():
    half = "```python\ndef add(a, b):\n    return abs(a) + b\n```"  # passes add(2, 3) only
    fake = ScriptedBackend([half, WORSE, BAD])
    result = asyncio.run(asolve(ADD, "self-debug", rounds=1, backend=fake))
    assert len(fake.history) == 2 and fake.remaining == 1
    assert [c.score for c in result.candidates] == [0.5, 0.0]
    # none passes: the version passing the most tests wins, not the latest
    assert result.answer == "def add(a, b):\n    return abs(a) + b\n"
    assert [c.votes for c in result.candidates] == [1.0, 0.0]


def test_humaneval_through_the_harness(tmp_path):
    problems = load_humaneval(2)
    solutions = {p.id: f"```python\n{p.question}{p.answer}```" for p in problems}
    wrong = "```python\ndef nope():\n    pass\n```"

    def respond(request, index):
        prompt = request.messages[-1].content
        first = problems[0].question.strip() in prompt
        return solutions[problems[0].id] if first and index % 2 == 0 else wrong

    store = Store(tmp_path / "s.sqlite")
    harness = Harness(ScriptedBackend(respond), store, problems,
                      ["self-consistency", "best-of-n"], [1, 2, 4])
    asyncio.run(harness.run())
    curves = harness.curves()
    points = {(p["strategy"], p["budget"]): p["accuracy"] for p in curves["points"]}
    assert points[("greedy", 1)] == 0.5  # problem 0 solved, problem 1 not
    assert points[("best-of-n", 4)] == 0.5  # visible tests pick the right program
    assert points[("self-consistency", 1)] == 0.25  # half the samples of problem 0 pass
    coverage = {p["budget"]: p["accuracy"] for p in curves["coverage"]}
    assert coverage[1] == 0.25 and coverage[4] == 0.5  # unbiased pass@k
    store.close()


def test_self_debug_fresh_feedback_asks_anew_without_the_old_code():
    fake = ScriptedBackend([BAD, GOOD])
    result = asyncio.run(asolve(ADD, "self-debug", feedback="fresh", backend=fake))
    assert "a + b" in result.answer
    second = fake.history[1].messages
    assert len(second) == 2 and "A previous attempt failed" in second[-1].content
    assert "return a - b" not in second[-1].content


ADD_TESTS = ["--test", "assert add(2, 3) == 5", "--test", "assert add(-1, 1) == 0"]
HALF = "```python\ndef add(a, b):\n    return abs(a) + b\n```"  # passes add(2, 3) only


def ask_code(monkeypatch, capsys, script, *argv):
    from ponder.backends import loading
    from ponder.cli.main import main

    monkeypatch.setattr(loading, "load_backend", lambda *a, **k: ScriptedBackend(script))
    code = main(["ask", "Write add(a, b) that returns the sum.", *ADD_TESTS, "--no-progress",
                 *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_ask_says_how_many_given_tests_the_answer_passes_and_fails_when_not_all(monkeypatch,
                                                                                capsys):
    """self-debug ends (one round) on a program passing 1 of the 2 given tests: the answer is
    shown with its count, one line on stderr says no candidate passes them all, exit 1."""
    code, out, err = ask_code(monkeypatch, capsys, [HALF, WORSE], "-s", "self-debug",
                              "-o", "rounds=1")
    assert code == 1
    assert "Answer: \ndef add(a, b):\n    return abs(a) + b" in out
    assert "Passes 1 of 2 given tests" in out
    assert err.strip() == "ponder: the answer passes 1 of 2 given tests; no candidate passes " \
        "them all"
    # --json: the count in the result, the same line and status
    code, out, err = ask_code(monkeypatch, capsys, [HALF, WORSE], "-s", "self-debug",
                              "-o", "rounds=1", "--json")
    assert code == 1 and json.loads(out)["given_tests"] == {
        "passed": 1, "total": 2, "passing_candidate": None}
    assert err.strip().endswith("no candidate passes them all")


def test_ask_passes_when_the_answer_passes_every_given_test(monkeypatch, capsys):
    code, out, err = ask_code(monkeypatch, capsys, [BAD, GOOD], "-s", "self-debug")
    assert code == 0 and "Passes 2 of 2 given tests" in out and err == ""


def test_ask_names_a_candidate_that_passes_when_the_answer_does_not(monkeypatch, capsys):
    """Voting picks the program two samples agree on; the third, right one, is named."""
    code, out, err = ask_code(monkeypatch, capsys, [BAD, BAD, GOOD], "-s", "self-consistency",
                              "-n", "3")
    assert code == 1 and "Passes 0 of 2 given tests" in out
    assert err.strip() == "ponder: the answer passes 0 of 2 given tests; candidate 3 passes " \
        "them all"
