"""The same request gives the same strategy configuration through the CLI, the Python API and
the server: one place builds it (ponder.runner), with one precedence (explicit over effort)."""

import asyncio
import json

import pytest
from starlette.testclient import TestClient

from ponder import ScriptedBackend
from ponder.api import asolve
from ponder.backends import loading
from ponder.cli.main import main
from ponder.server.app import PonderServer
from ponder.server.policy import public_config

QUESTION = "What is 1 + 1?"


def answer(request, index):
    return "Yes" if "Proposed final answer" in request.messages[-1].content else \
        "1 plus 1 is 2. The answer is: 2"


# (strategy, effort, explicit n, explicit temperature, explicit max_tokens, other options)
CASES = [
    ("best-of-n", "low", 2, None, None, {}),  # the preset says n=4: the explicit n wins
    ("cot", "high", None, None, None, {}),  # the preset alone: max_tokens=1024
    ("self-consistency", "medium", None, 0.3, 64, {"weighting": "logprob"}),
    ("self-refine", None, None, None, 32, {"rounds": 1}),
]


def via_api(strategy, effort, n, temperature, max_tokens, options):
    result = asyncio.run(asolve(QUESTION, strategy, effort=effort, n=n, temperature=temperature,
                                max_tokens=max_tokens, backend=ScriptedBackend(answer),
                                **options))
    return result.config


def via_cli(monkeypatch, capsys, strategy, effort, n, temperature, max_tokens, options):
    monkeypatch.setattr(loading, "load_backend", lambda *a, **k: ScriptedBackend(answer))
    argv = ["ask", QUESTION, "-s", strategy, "--json", "--no-progress"]
    argv += ["--effort", effort] if effort else []
    argv += ["-n", str(n)] if n is not None else []
    argv += ["-t", str(temperature)] if temperature is not None else []
    argv += ["--max-tokens", str(max_tokens)] if max_tokens is not None else []
    for key, value in options.items():
        argv += ["-o", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)["config"]


def via_server(strategy, effort, n, temperature, max_tokens, options):
    body = {"model": f"ponder-{strategy}", "messages": [{"role": "user", "content": QUESTION}],
            "ponder": {"options": options, **({"n": n} if n is not None else {})}}
    if effort:
        body["reasoning_effort"] = effort
    if temperature is not None:
        body["temperature"] = temperature
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    with TestClient(PonderServer(ScriptedBackend(answer)).app()) as http:
        reply = http.post("/v1/chat/completions", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()["ponder"][0]["config"]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_cli_api_and_server_build_the_same_configuration(monkeypatch, capsys, case):
    api = via_api(*case)
    assert via_cli(monkeypatch, capsys, *case) == api
    assert via_server(*case) == public_config(case[0], api)  # less the operator's options


def test_the_precedence_is_explicit_over_effort():
    assert via_api(*CASES[0])["n"] == 2
    assert via_api(*CASES[1])["max_tokens"] == 1024
    config = via_api(*CASES[2])
    assert (config["n"], config["temperature"], config["max_tokens"], config["weighting"]) == (
        8, 0.3, 64, "logprob")
