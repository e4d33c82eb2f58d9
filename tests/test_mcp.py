"""``ponder mcp`` through the official MCP SDK's own client: in-process on a scripted backend
(the checks, the hostile arguments, cancellation, the trace resources), then end to end on the
bundled model over stdio (``python -m ponder mcp``) and over streamable HTTP (``--transport
http`` with an API key, and a server in a thread whose model is watched for tokens after a
cancel).

Hostile arguments get one clear line as an MCP tool error, and nothing is loaded, contacted or
generated for them (the same recorder as tests/test_server_trust.py's).
"""

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time

import anyio
import httpx
import httpx2
import pytest
import uvicorn
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from test_server import Recording, SlowBackend, arithmetic
from test_server_trust import Listener, loads  # noqa: F401  (loads: a fixture)

from ponder import ScriptedBackend
from ponder.errors import BackendError, ConfigError
from ponder.mcp.checks import CallRules, McpLimits
from ponder.mcp.tools import PonderMCP
from ponder.sandbox import Sandbox, TestCase, jail
from ponder.server.settings import Caps

SHEEP = "A farmer has 17 sheep and buys 5 more. How many sheep does he have?"
ADD = "Write a Python function add(a, b) that returns the sum of a and b."
ADD_TESTS = ["assert add(2, 3) == 5", "assert add(-1, 1) == 0"]
needs_jail = pytest.mark.skipif(jail.unavailable() is not None,
                                reason=f"no jail on this host: {jail.unavailable()}")


def run(coro):
    return asyncio.run(coro)


class Progress:
    """A progress callback that keeps what it is told."""

    def __init__(self):
        self.seen = []

    async def __call__(self, progress, total, message):
        self.seen.append((progress, total, message))

    @property
    def values(self):
        return [p for p, _, _ in self.seen]

    @property
    def messages(self):
        return [m for _, _, m in self.seen]


def text_of(result):
    return result.content[0].text


async def status(client):
    return json.loads((await client.read_resource("ponder://status")).contents[0].text)


# -- in process, on a scripted backend ----------------------------------------------------------


def test_tools_take_no_model_file_or_url_and_say_what_they_return():
    async def go():
        async with Client(PonderMCP(ScriptedBackend(arithmetic)).server()) as client:
            return (await client.list_tools()).tools

    tools = {t.name: t for t in run(go())}
    assert sorted(tools) == ["solve_code", "think"]
    think, code = tools["think"].input_schema, tools["solve_code"].input_schema
    assert think["required"] == ["question"] and code["required"] == ["task", "tests"]
    assert set(think["properties"]) == {"question", "effort", "strategy", "n", "max_tokens",
                                        "budget_tokens", "verifier", "tests", "entry_point",
                                        "options", "seed"}
    for schema in (think, code):
        assert not {"model", "base_url", "api_key", "path", "file"} & set(schema["properties"])
    out = tools["think"].output_schema["properties"]
    assert {"answer", "candidates", "chosen", "usage", "trace", "page"} <= set(out)
    assert "program" in tools["solve_code"].output_schema["properties"]


def test_think_answers_with_an_account_progress_and_its_trace():
    backend = ScriptedBackend(lambda request, i: "17 + 5 = 22. The answer is 22." if i != 1
                              else "The answer is 21.")
    mcp = PonderMCP(backend)
    progress = Progress()

    async def go():
        async with Client(mcp.server()) as client:
            result = await client.call_tool("think", {"question": "17 + 5?", "n": 3, "seed": 1},
                                            progress_callback=progress)
            run_id = result.structured_content["run_id"]
            trace = json.loads((await client.read_resource(f"ponder://trace/{run_id}"))
                               .contents[0].text)
            page = (await client.read_resource(f"ponder://page/{run_id}")).contents[0]
            return result, trace, page, await status(client)

    result, trace, page, counts = run(go())
    assert not result.is_error
    lines = text_of(result).splitlines()
    assert lines[0] == "22"
    assert "[self-consistency: 3 candidate(s), 1 call(s), 22 completion tokens]" in lines
    assert "  1. answer 22 (votes 2, 9 tokens)" in lines
    assert "  2. answer 21 (votes 1, 4 tokens)" in lines
    assert "chosen: 22" in lines
    out = result.structured_content
    assert out["answer"] == "22" and out["chosen"] == 1 and out["stop_reason"] == "done"
    assert [c["votes"] for c in out["candidates"]] == [2, 1, 2]
    assert out["usage"]["completion_tokens"] == sum(c["tokens"] for c in out["candidates"]) == 22
    # progress: one call started, three samples finished, with the running vote
    assert progress.values == sorted(set(progress.values)) and len(progress.values) == 4
    assert progress.messages[0] == "[chain: 3 samples]"
    assert progress.messages[-1].endswith("answer: 22 · votes so far: 22 ×2, 21 ×1")
    # the resources the result links
    links = [c.uri for c in result.content[1:]]
    assert links == [out["trace"], out["page"]]
    assert trace["answer"] == "22" and trace["question"] == "17 + 5?"
    assert [c["answer"] for c in trace["candidates"]] == ["22", "21", "22"]
    assert trace["trace"]["nodes"][0]["label"] == "self-consistency"
    assert page.mime_type == "text/html" and page.text.startswith("<!doctype html>")
    assert "Content-Security-Policy" in page.text and "17 + 5?" in page.text
    assert counts["calls"] == {"running": 0, "waiting": 0, "done": 1, "failed": 0,
                               "refused": 0, "cancelled": 0}


HOSTILE = [
    ({"model": "/tmp/evil.gguf"}, "think: unknown argument 'model': the model, its URL and "
     "every file are chosen by this server's operator"),
    ({"base_url": "http://169.254.169.254/v1"}, "think: unknown argument 'base_url'"),
    ({"strategy": "/etc/passwd"}, "think: unknown strategy '/etc/passwd'; this server offers: "),
    ({"strategy": "cascade"}, "think: unknown strategy 'cascade'"),
    ({"verifier": "http://evil/judge"}, "think: unknown verifier 'http://evil/judge'; valid: "
     "judge, logprob, code-tests"),
    ({"n": 10**9}, "think: Invalid 'n': 1000000000 is above this server's limit of 64"),
    ({"max_tokens": 10**7}, "think: Invalid 'max_tokens': 10000000 is above this server's "
     "limit of 32768"),
    ({"budget_tokens": 10**12}, "think: 'budget_tokens' is 1,000,000,000,000, over this "
     "server's limit of 200,000 tokens per call"),
    ({"question": "x" * 40_000}, "think: 'question' is 40,000 characters, over this server's "
     "limit of 32,000"),
    ({"question": "   "}, "think: 'question' is empty"),
    ({"options": {"scorer_options": "http://evil"}}, "think: Unrecognized option "
     "'options.scorer_options'"),
    ({"strategy": "beam-search", "options": {"scorer": "prm-http"}}, "think: 'options.scorer' "
     "cannot be set by a client: only confidence, self-judge need no setup; other scorers are "
     "configured by the operator. Clients choose a strategy, an effort and numeric knobs; "
     "models, scorers, files and URLs are the server operator's (ponder mcp --config)"),
    ({"options": {"examples": "/etc/passwd"}}, "think: 'options.examples' cannot be set by a "
     "client: it is set by the server's operator only"),
    ({"options": {"base_url": "http://evil"}}, "think: Unrecognized option 'options.base_url'"),
    ({"tests": ["assert ("]}, "think: 'tests[0]' is not valid Python: '(' was never closed"),
    ({"tests": ["assert f()"] * 65}, "think: 'tests' holds 65 tests, over this server's limit "
     "of 64"),
    ({"entry_point": "os.system"}, "think: 'entry_point' must be a Python function name"),
    ({"effort": "maximal"}, "Error executing tool think: 1 validation error"),
    ({"n": "hf:evil/repo/model.gguf"}, "Error executing tool think: 1 validation error"),
    ({"seed": -1}, "Error executing tool think: 1 validation error"),
]


@pytest.mark.parametrize("arguments, message", HOSTILE)
def test_a_hostile_argument_is_a_clear_tool_error_and_nothing_loads(loads, arguments, message):  # noqa: F811
    backend = ScriptedBackend(arithmetic)
    with Listener() as listener:
        arguments = {k: v.replace("http://evil", listener.url) if isinstance(v, str) else v
                     for k, v in arguments.items()}
        message = message.replace("http://evil", listener.url)

        async def go():
            async with Client(PonderMCP(backend).server()) as client:
                result = await client.call_tool("think", {"question": "What is 2 + 3?",
                                                          **arguments})
                return result, await status(client)

        result, counts = run(go())
        time.sleep(0.1)
        assert listener.requests == []
    assert result.is_error and text_of(result).startswith(message), text_of(result)
    assert "Traceback" not in text_of(result)
    assert loads == [] and backend.history == []  # nothing loaded, nothing generated
    if not text_of(result).startswith("Error executing"):  # pydantic's: before the tool
        assert counts["calls"]["refused"] == 1


def test_solve_code_refuses_no_tests_and_foreign_arguments(loads):  # noqa: F811
    async def go():
        async with Client(PonderMCP(ScriptedBackend(arithmetic)).server()) as client:
            empty = await client.call_tool("solve_code", {"task": ADD, "tests": []})
            named = await client.call_tool("solve_code", {"task": ADD, "tests": ADD_TESTS,
                                                          "sandbox": "none"})
            return empty, named

    empty, named = run(go())
    assert text_of(empty).startswith("solve_code: 'tests' is empty: solve_code returns a "
                                     "program that passes the tests given")
    assert text_of(named).startswith("solve_code: unknown argument 'sandbox'")
    assert loads == []


def test_a_trace_keeps_the_operators_options_to_itself(tmp_path):
    """Where the operator keeps its exemplars is not the client's business (as ponder serve's
    traces leave it out)."""
    secret = tmp_path / "operator-secret-exemplars.jsonl"
    secret.write_text(json.dumps({"question": "What is 5 times 6?", "answer": "30"}) + "\n")
    rules = CallRules(operator={"self-consistency": {"examples": str(secret), "shots": 1}})
    backend = ScriptedBackend(arithmetic)
    mcp = PonderMCP(backend, rules)

    async def go():
        async with Client(mcp.server()) as client:
            result = await client.call_tool("think", {"question": "What is 2 + 3?", "n": 2})
            run_id = result.structured_content["run_id"]
            trace = (await client.read_resource(f"ponder://trace/{run_id}")).contents[0].text
            page = (await client.read_resource(f"ponder://page/{run_id}")).contents[0].text
            return result, trace, page

    result, trace, page = run(go())
    assert result.structured_content["answer"] == "5"
    assert "What is 5 times 6?" in backend.history[0].messages[1].content  # the shot was used
    for shown in (text_of(result), trace, page):
        assert "operator-secret" not in shown
    assert json.loads(trace)["config"]["shots"] == 1  # a knob: the client may read it


def test_runs_are_kept_by_unguessable_id_and_forgotten_oldest_first():
    mcp = PonderMCP(ScriptedBackend(arithmetic), CallRules(limits=McpLimits(max_runs=2)))

    async def go():
        async with Client(mcp.server()) as client:
            ids = [(await client.call_tool("think", {"question": f"What is {k} + 1?", "n": 1})
                    ).structured_content["run_id"] for k in range(3)]
            with pytest.raises(MCPError) as forgotten:
                await client.read_resource(f"ponder://trace/{ids[0]}")
            kept = json.loads((await client.read_resource(f"ponder://trace/{ids[2]}"))
                              .contents[0].text)
            return ids, forgotten.value, kept

    ids, forgotten, kept = run(go())
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids) and len(set(ids)) == 3
    assert "no run" in str(forgotten) and "keeps the last 2 runs" in str(forgotten)
    assert kept["answer"] == "3" and kept["question"] == "What is 2 + 1?"


def test_a_cancelled_call_stops_its_search_and_the_next_one_runs():
    backend = SlowBackend(words=40)  # 0.8 s a sample
    mcp = PonderMCP(backend, CallRules(limits=McpLimits(max_concurrent=1)))

    async def go():
        async with Client(mcp.server()) as client:
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.call_tool, "think", {"question": "Count.", "n": 8})
                while not backend.started.is_set():
                    await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
            cancelled = await anyio.to_thread.run_sync(backend.cancelled.wait, 5)
            produced = backend.produced
            backend.started.clear()
            started = time.monotonic()
            result = await client.call_tool("think", {"question": "Count.", "n": 1})
            return cancelled, produced, time.monotonic() - started, result, await status(client)

    cancelled, produced, seconds, result, counts = run(go())
    assert cancelled, "the backend kept generating after the cancel"
    assert produced < 8 * 40  # the eight samples never finished
    assert not result.is_error and result.structured_content["answer"] == "1"
    assert seconds < 10
    assert counts["calls"]["cancelled"] == 1 and counts["calls"]["done"] == 1
    assert counts["calls"]["running"] == 0 and counts["calls"]["waiting"] == 0


def test_beyond_the_queue_a_call_is_refused_as_busy():
    backend = SlowBackend(words=25)
    mcp = PonderMCP(backend, CallRules(limits=McpLimits(max_concurrent=1, max_queue=0)))

    async def go():
        async with Client(mcp.server()) as client:
            results = {}

            async def call(key, question):
                results[key] = await client.call_tool("think", {"question": question, "n": 1})

            async with anyio.create_task_group() as tg:
                tg.start_soon(call, "first", "Count.")
                while not backend.started.is_set():
                    await anyio.sleep(0.01)
                tg.start_soon(call, "second", "Count again.")
            return results

    results = run(go())
    assert not results["first"].is_error
    assert text_of(results["second"]).startswith("think: the server is busy (1 calls running "
                                                 "or waiting); try again shortly")


def test_caps_and_allowed_strategies_are_the_operators():
    rules = CallRules(limits=McpLimits(caps=Caps(n=4)), strategies=("cot", "self-consistency",
                                                                    "self-debug"))
    mcp = PonderMCP(ScriptedBackend(arithmetic), rules)

    async def go():
        async with Client(mcp.server()) as client:
            over = await client.call_tool("think", {"question": "What is 2 + 3?", "n": 5})
            other = await client.call_tool("think", {"question": "What is 2 + 3?",
                                                     "strategy": "best-of-n"})
            minimal = await client.call_tool("think", {"question": "What is 2 + 3?",
                                                       "effort": "minimal"})
            high = await client.call_tool("think", {"question": "What is 2 + 3?",
                                                    "effort": "high"})
            return over, other, minimal, high

    over, other, minimal, high = run(go())
    assert text_of(over) == "think: Invalid 'n': 5 is above this server's limit of 4"
    assert text_of(other) == ("think: unknown strategy 'best-of-n'; this server offers: cot, "
                              "self-consistency, self-debug")
    assert minimal.structured_content["strategy"] == "cot"
    # the high preset's 16 samples are lowered to the cap, not refused (as ponder serve does)
    assert len(high.structured_content["candidates"]) == 4


@needs_jail
def test_think_with_tests_is_a_coding_task_checked_in_the_jail():
    """The tests make the question a coding task: programs vote by behaviour, and the answer's
    program is run on the given tests in the server's jail."""
    half = "```python\ndef add(a, b):\n    return abs(a) + b\n```"  # passes add(2, 3) only
    good = "```python\ndef add(a, b):\n    return a + b\n```"
    mcp = PonderMCP(ScriptedBackend([half, half, good]))

    async def go():
        async with Client(mcp.server()) as client:
            return await client.call_tool("think", {"question": ADD, "tests": ADD_TESTS,
                                                    "n": 3, "entry_point": "add"})

    result = run(go())
    out = result.structured_content
    assert out["tests"] == {"passed": 1, "total": 2, "passing_candidate": 3}
    assert "Passes 1 of 2 given tests (run in the jail)" in text_of(result)
    assert mcp.sandbox.isolation == "jail"


@needs_jail
def test_solve_code_returns_the_candidate_that_passes_when_the_vote_chose_one_that_fails():
    half = "```python\ndef add(a, b):\n    return abs(a) + b\n```"
    good = "```python\ndef add(a, b):\n    return a + b\n```"
    mcp = PonderMCP(ScriptedBackend([half, half, good]))

    async def go():
        async with Client(mcp.server()) as client:
            return await client.call_tool("solve_code", {"task": ADD, "tests": ADD_TESTS,
                                                         "strategy": "self-consistency",
                                                         "n": 3})

    result = run(go())
    out = result.structured_content
    assert out["answer"] == "def add(a, b):\n    return abs(a) + b\n"  # what the vote chose
    assert out["program"] == "def add(a, b):\n    return a + b\n"
    assert (out["passed"], out["total"], out["chosen"]) == (2, 2, 3)
    assert text_of(result).startswith("A program that passes all 2 given tests (run in the "
                                      "jail):\n```python\ndef add(a, b):\n    return a + b\n```")


def test_a_failing_model_is_one_line_and_its_detail_stays_in_the_log(caplog):
    class Broken(ScriptedBackend):
        async def generate(self, requests, on_progress=None):
            raise BackendError("upstream said: secret-internal-host:9000 is down")

    mcp = PonderMCP(Broken())

    async def go():
        async with Client(mcp.server()) as client:
            result = await client.call_tool("think", {"question": "What is 2 + 3?"})
            return result, await status(client)

    result, counts = run(go())
    assert text_of(result) == "think: the model failed to answer (the server's log says why)"
    assert "secret-internal-host" in caplog.text
    assert counts["calls"]["failed"] == 1 and counts["calls"]["refused"] == 0


def test_the_operators_mistakes_stop_ponder_mcp_in_one_line_before_loading(monkeypatch,
                                                                              capsys):
    from ponder.backends import loading
    from ponder.cli.main import main

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(loading, "load_backend", refuse)
    for argv, message in [
        (["--transport", "http", "--host", "0.0.0.0"], "refusing to serve 0.0.0.0 without an "
         "API key"),
        (["--allow-strategy", "cascade"], "--allow-strategy: cascade (needs -m strong=MODEL) "
         "needs a model this server was not given"),
        (["--allow-strategy", "nope"], "--allow-strategy: unknown strategy nope"),
        (["--strategy", "mcts", "--allow-strategy", "cot"], "the default strategy 'mcts' is "
         "not among the allowed strategies (cot)"),
        (["--cap", "bogus=3"], "--cap: unknown option bogus"),
        (["--max-concurrent", "0"], "--max-concurrent must be positive, got 0"),
    ]:
        assert main(["mcp", *argv]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"ponder: error: {message}"), err


def test_a_strong_model_by_role_judges_the_small_ones_answers():
    """ponder mcp -m small -m strong=big: verify-by-strong is offered (and only with the role),
    and the strong model's verdict beats the vote: 6 and 5 tie 2-2, 6 seen first, the strong
    model says yes to 5 alone."""
    from ponder.mcp.checks import usable_strategies
    from ponder.verifiers.judge import JUDGE_SYSTEM

    small = ScriptedBackend(lambda request, i: f"The answer is: {(6, 5)[i % 2]}", model="small")

    def judge(request, i):
        assert request.messages[0].content == JUDGE_SYSTEM
        return "Yes" if "Proposed final answer: 5" in request.messages[-1].content else "No"

    strong = ScriptedBackend(judge, model="big")
    assert "verify-by-strong" not in usable_strategies()
    with pytest.raises(ConfigError, match="verify-by-strong \\(needs -m strong=MODEL\\)"):
        usable_strategies(["verify-by-strong"])
    rules = CallRules(strategies=usable_strategies(roles=["strong"]), roles=("strong",))
    mcp = PonderMCP(small, rules, models={"strong": strong})
    # the operator's options decide the roles: strong_role=big needs a "big" model
    assert "verify-by-strong" not in usable_strategies(
        roles=["strong"], operator={"verify-by-strong": {"strong_role": "big"}})

    async def go():
        async with Client(mcp.server()) as client:
            result = await client.call_tool("think", {
                "question": "What is 2 + 3?", "strategy": "verify-by-strong", "n": 4})
            other = await client.call_tool("think", {
                "question": "What is 2 + 3?", "strategy": "verify-by-strong",
                "options": {"strong_role": "judge"}})
            return result, other, await status(client)

    result, other, server = run(go())
    assert other.is_error and text_of(other).startswith(  # a role is the operator's to name
        "think: 'options.strong_role' cannot be set by a client")
    from ponder.mcp.checks import Refused, plan_call

    misnamed = CallRules(strategies=("self-consistency", "self-debug", "verify-by-strong"),
                         roles=("strong",), operator={"verify-by-strong": {"strong_role": "judge"}})
    with pytest.raises(Refused, match="needs a 'judge' model besides the generator"):
        plan_call(misnamed, question="What is 2 + 3?", strategy="verify-by-strong")
    assert not result.is_error, text_of(result)
    assert result.structured_content["answer"] == "5"
    assert len(strong.history) == 2  # one verdict per answer group
    assert server["models"] == {"strong": "big"} and "verify-by-strong" in server["strategies"]
    plain = PonderMCP(small)

    async def refused():
        async with Client(plain.server()) as client:
            return await client.call_tool("think", {"question": "What is 2 + 3?",
                                                    "strategy": "verify-by-strong"})

    assert "unknown strategy 'verify-by-strong'" in text_of(run(refused()))


# -- end to end on the bundled model: stdio ----------------------------------------------------


def stdio(*flags):
    return StdioServerParameters(command=sys.executable,
                                 args=["-m", "ponder", "mcp", "--max-request-seconds", "120",
                                       *flags])


@pytest.mark.model
def test_think_over_stdio_on_the_bundled_model():
    progress = Progress()

    async def go():
        async with Client(stdio()) as client:
            result = await client.call_tool(
                "think", {"question": SHEEP, "n": 2, "max_tokens": 48, "seed": 0},
                progress_callback=progress)
            run_id = result.structured_content["run_id"]
            trace = json.loads((await client.read_resource(f"ponder://trace/{run_id}"))
                               .contents[0].text)
            hostile = await client.call_tool("think", {"question": SHEEP,
                                                       "model": "hf:evil/repo/x.gguf"})
            return client.protocol_version, result, trace, hostile, await status(client)

    version, result, trace, hostile, counts = run(go())
    assert version == "2026-07-28"
    out = result.structured_content
    assert not result.is_error and out["model"] == "smollm2-135m-instruct"
    assert text_of(result).splitlines()[0] == str(out["answer"])
    assert f"[self-consistency: 2 candidate(s), 1 call(s), {out['usage']['completion_tokens']} " \
        "completion tokens]" in text_of(result)
    assert out["usage"]["calls"] == 1 and 0 < out["usage"]["completion_tokens"] <= 2 * 48
    assert out["usage"]["completion_tokens"] == sum(c["tokens"] for c in out["candidates"])
    assert progress.seen and progress.values == sorted(set(progress.values))
    assert progress.messages[0] == "[chain: 2 samples]"
    assert sum("✓ chain" in (m or "") for m in progress.messages) == 2
    assert trace["answer"] == out["answer"] and trace["usage"]["completion_tokens"] == \
        out["usage"]["completion_tokens"]
    assert text_of(hostile).startswith("think: unknown argument 'model'")
    assert counts["model"] == "smollm2-135m-instruct"
    assert counts["calls"]["done"] == 1 and counts["calls"]["refused"] == 1


@pytest.mark.model
@needs_jail
def test_solve_code_over_stdio_returns_a_program_that_passed_in_the_jail():
    """With an older client's handshake (mode legacy: initialize, as desktop agents still
    speak it)."""
    async def go():
        async with Client(stdio(), mode="legacy") as client:
            return client.protocol_version, await client.call_tool(
                "solve_code", {"task": ADD, "tests": ADD_TESTS, "seed": 0, "max_tokens": 160})

    version, result = run(go())
    assert version != "2026-07-28"  # the handshake era
    out = result.structured_content
    assert not result.is_error, text_of(result)
    assert out["strategy"] == "self-debug" and (out["passed"], out["total"]) == (2, 2)
    assert text_of(result).startswith("A program that passes all 2 given tests (run in the "
                                      "jail):\n```python\ndef add(a, b):")
    # checked again here, in a jail of the test's own
    check = Sandbox(isolation="jail").run_sync(
        out["program"], [TestCase(f"t{i}", t) for i, t in enumerate(ADD_TESTS)],
        expose=("add",))
    assert check.passed == 2


@pytest.mark.model
def test_a_cancelled_call_over_stdio_leaves_the_server_serving():
    progress = Progress()

    async def go():
        async with Client(stdio()) as client:
            with anyio.move_on_after(60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(lambda: client.call_tool(
                        "think", {"question": "Write a long story about a dragon.", "n": 4,
                                  "max_tokens": 4000, "seed": 1}, progress_callback=progress))
                    while not any(p >= 24 for p in progress.values):  # tokens are flowing
                        await anyio.sleep(0.05)
                    tg.cancel_scope.cancel()
            deadline = time.monotonic() + 10
            while (counts := await status(client))["calls"]["cancelled"] == 0:
                assert time.monotonic() < deadline, counts
                await anyio.sleep(0.1)
            started = time.monotonic()
            after = await client.call_tool("think", {"question": "What is 2 + 3?", "n": 1,
                                                     "max_tokens": 16, "seed": 0})
            return counts, time.monotonic() - started, after, await status(client)

    counts, seconds, after, final = run(go())
    assert counts["calls"]["cancelled"] == 1 and counts["calls"]["running"] == 0
    assert not after.is_error and after.structured_content["usage"]["completion_tokens"] <= 16
    assert seconds < 30
    assert final["calls"]["done"] == 1 and final["calls"]["cancelled"] == 1


# -- end to end on the bundled model: streamable HTTP -------------------------------------------


class HttpServer:
    """``ponder mcp --transport http`` in a subprocess, on a free port."""

    def __init__(self, log, *flags):
        self.log = log
        with open(log, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ponder", "mcp", "--transport", "http", "--port", "0",
                 *flags], stdout=subprocess.PIPE, stderr=err, text=True,
                env={**os.environ, "PONDER_API_KEY": ""})

    def __enter__(self):
        line = self.proc.stdout.readline()
        found = re.search(r"at (http://\S+/mcp) \(auth (on|off)\)", line)
        if not found:
            self.__exit__()
            raise AssertionError(f"no address: {line!r} {self.log.read_text()[-2000:]}")
        self.url, self.auth = found.groups()
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


@contextlib.asynccontextmanager
async def keyed(url, key):
    """The SDK's client for ``url``, sending ``Authorization: Bearer key``."""
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"},
                                  timeout=httpx2.Timeout(30, read=300)) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            yield client


@pytest.mark.model
def test_think_and_solve_code_over_http_with_an_api_key(tmp_path):
    progress = Progress()
    with HttpServer(tmp_path / "server.log", "--api-key", "s3cret",
                    "--max-request-seconds", "120") as server:
        assert server.auth == "on"

        async def refused():
            async with keyed(server.url, "wrong") as client:
                await client.list_tools()

        with pytest.raises(BaseException) as denied:  # the SDK's client cannot connect
            run(refused())
        assert "MCPError" in repr(denied.value)
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            reply = httpx.post(server.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                               headers=headers)
            assert reply.status_code == 401 and reply.headers["www-authenticate"] == "Bearer"
            assert reply.json() == {"error": "a bearer token is required (Authorization: "
                                    "Bearer KEY)"}

        async def go():
            async with keyed(server.url, "s3cret") as client:
                think = await client.call_tool(
                    "think", {"question": "What is 2 + 3?", "n": 2, "max_tokens": 32,
                              "seed": 0}, progress_callback=progress)
                hostile = await client.call_tool("solve_code", {"task": ADD, "tests": ADD_TESTS,
                                                                "base_url": "http://x/v1"})
                return client.protocol_version, think, hostile

        version, think, hostile = run(go())
    assert version == "2026-07-28"
    out = think.structured_content
    assert not think.is_error and len(out["candidates"]) == 2
    assert 0 < out["usage"]["completion_tokens"] <= 64
    assert progress.values and progress.values == sorted(set(progress.values))
    assert text_of(hostile).startswith("solve_code: unknown argument 'base_url'")


@pytest.mark.model
def test_a_keyless_http_server_answers_only_its_own_host_names_and_origins(tmp_path):
    """DNS rebinding and other sites' pages: a keyless loopback server answers localhost names,
    the hosts the operator allowed, and local origins only."""
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"}}}
    headers = {"Accept": "application/json, text/event-stream"}
    with HttpServer(tmp_path / "server.log", "--allow-host", "ponder.lan") as server:
        assert server.auth == "off"
        port = server.url.split(":")[2].split("/")[0]

        def post(**extra):
            return httpx.post(server.url, json=initialize, headers={**headers, **extra})

        assert post(Host=f"evil.example:{port}").status_code == 421
        assert post(Origin="http://evil.example").status_code == 403
        assert post(Host=f"ponder.lan:{port}").status_code == 200
        assert post(Host=f"localhost:{port}", Origin=f"http://localhost:{port}").status_code \
            == 200


@pytest.mark.model
def test_a_cancel_over_http_stops_the_models_tokens(llama):
    """The server in a thread, its model watched: after the client cancels, no more tokens."""
    backend = Recording(llama)
    mcp = PonderMCP(backend)
    app = mcp.server().streamable_http_app()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/mcp"
    progress = Progress()

    async def go():
        async with Client(url) as client:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: client.call_tool(
                    "think", {"question": "Write a long story about a dragon.", "n": 4,
                              "max_tokens": 4000}, progress_callback=progress))
                while len(backend.progress_at) < 10:
                    await anyio.sleep(0.05)
                tg.cancel_scope.cancel()
            await anyio.sleep(1.5)
            before = len(backend.progress_at)
            await anyio.sleep(1.5)
            quiet = len(backend.progress_at) == before
            after = await client.call_tool("think", {"question": "What is 2 + 3?", "n": 1,
                                                     "max_tokens": 16})
            return quiet, after, await status(client)

    try:
        quiet, after, counts = run(go())
    finally:
        server.should_exit = True
        thread.join(10)
    assert quiet, "the model kept generating after the cancel"
    assert not after.is_error
    assert counts["calls"]["cancelled"] == 1 and counts["calls"]["done"] == 1
