"""``ponder serve --base-url URL --model NAME`` answers its first request (issue 28, item 7).

The CLI probes the upstream at startup on a loop of its own (``asyncio.run``), then serves on
uvicorn's loop; a client (its kept-alive connection) made on the first loop failed the first
request on the second with "Event loop is closed" (a 500; the second request worked). Each test
starts ``ponder serve`` as an operator does, a process, and sends it one request.
"""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from test_pool import Replica

ASK = [{"role": "user", "content": "What is 2 + 3?"}]


def start_serve(*flags: str) -> tuple[subprocess.Popen, str]:
    """``ponder serve`` on a free port; returns the process and its /v1 URL once it listens."""
    proc = subprocess.Popen([sys.executable, "-m", "ponder", "serve", "--port", "0", *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    for line in proc.stdout:  # the line "ponder serving MODEL at http://HOST:PORT/v1 (...)"
        if line.startswith("ponder serving "):
            url = line.split(" at ", 1)[1].split()[0]
            return proc, url
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise RuntimeError(f"ponder serve did not start: {proc.stdout.read()}")


def stop(proc: subprocess.Popen) -> str:
    """Stop the server; what it wrote (its log)."""
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


def chat(url: str, model: str) -> tuple[int, dict]:
    body = json.dumps({"model": model, "messages": ASK, "max_tokens": 8,
                       "temperature": 0}).encode()
    request = urllib.request.Request(f"{url}/chat/completions", body,
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def first_two_requests(flags: list[str], model: str) -> tuple[list[int], dict, str]:
    proc, url = start_serve(*flags)
    try:
        first, reply = chat(url, model)
        second, _ = chat(url, model)
    finally:
        log = stop(proc)
    return [first, second], reply, log


@pytest.mark.model
def test_the_first_request_after_start_succeeds_on_a_llama_cpp_server(llama_server):
    statuses, reply, log = first_two_requests(["--base-url", llama_server, "--model", "smol"],
                                              "smol")
    assert statuses == [200, 200], log
    assert reply["choices"][0]["message"]["content"]
    assert "Event loop is closed" not in log


def test_the_first_request_after_start_succeeds_on_an_endpoint_pool(tmp_path):
    """Two replicas make a pool: each endpoint's backend is probed at startup the same way."""
    a, b = Replica(tmp_path, "a"), Replica(tmp_path, "b")
    try:
        statuses, reply, log = first_two_requests(
            ["--base-url", a.url, "--base-url", b.url, "--model", "sim"], "sim")
    finally:
        a.kill()
        b.kill()
    assert statuses == [200, 200], log
    assert "The answer is" in reply["choices"][0]["message"]["content"]
    assert "Event loop is closed" not in log
