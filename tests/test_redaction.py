"""An endpoint URL's secrets (userinfo, query) reach its server and nothing else: not /metrics,
``ask --json``, an eval report or its store, ``ponder models``, a log line or an error (issue 28,
item 6). The servers are simulated replicas (bench/sim_replica.py) on localhost: no model."""

import asyncio
import base64
import functools
import json
import logging
import sqlite3

import httpx
import openai
import pytest
from conftest import free_port
from helpers import scraped
from starlette.testclient import TestClient
from test_pool import PROBLEMS, Replica

from ponder.backends.endpoints import (
    EndpointSpec,
    parse_endpoints,
    redact_url,
    redact_urls,
    shown_urls,
)
from ponder.backends.openai_http import OpenAIBackend
from ponder.backends.pool import EndpointPool
from ponder.cli.main import main
from ponder.errors import ConfigError
from ponder.server.app import PonderServer
from ponder.types import GenerationRequest, Message, SamplingParams

SECRETS = ("secret", "tok123")


def secret_url(port: int) -> str:
    return f"http://user:secret@127.0.0.1:{port}/v1?token=tok123"


def shown(port: int) -> str:
    return f"http://***@127.0.0.1:{port}/v1?…"


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} shown in: {text[:2000]}"


@pytest.fixture
def replica(tmp_path):
    started = Replica(tmp_path, "a")
    yield started
    started.kill()


@pytest.mark.parametrize("url, expected", [
    ("http://user:secret@127.0.0.1:8000/v1?token=tok123", "http://***@127.0.0.1:8000/v1?…"),
    ("https://key@gpu1:8443/v1#frag", "https://***@gpu1:8443/v1#…"),
    ("http://[::1]:8000/v1?a=1#b", "http://[::1]:8000/v1?…#…"),
    ("http://gpu1:8000/v1", "http://gpu1:8000/v1"),  # nothing secret: unchanged
    ("http://u:se/cret@host:9/v1", "http://***@host:9/v1"),  # an unescaped "/": malformed
    ("http://u:se?cret@host/v1", "http://***@host/v1"),
    ("user:secret@host/v1", "***@host/v1"),  # no scheme
])
def test_redact_url_keeps_scheme_host_port_and_path(url, expected):
    assert redact_url(url) == expected
    assert redact_url(expected) == expected  # shown again: the same


def test_redact_urls_in_text_and_names_kept_apart():
    text = f"cannot reach {secret_url(1)}, nor 'https://a:b@c/d'."
    assert redact_urls(text) == f"cannot reach {shown(1)}, nor 'https://***@c/d'."
    names = shown_urls(["http://h/v1?key=1", "http://h/v1?key=2", "http://g/v1"])
    assert names == ["http://h/v1?… (1)", "http://h/v1?… (2)", "http://g/v1"]
    assert shown_urls(names) == names


def test_the_requests_still_carry_the_userinfo_and_the_query(monkeypatch):
    """The URL as written is what the server gets: the query on every request (the openai
    client alone would glue the path onto it) and the userinfo as Basic auth."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": [{"id": "m"}]})
        return httpx.Response(200, json={
            "id": "c", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "4"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})

    monkeypatch.setattr(openai, "AsyncOpenAI", functools.partial(
        openai.AsyncOpenAI, http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler))))

    async def go():
        backend = OpenAIBackend("m", secret_url(9), probe=False, max_retries=0)
        try:
            request = GenerationRequest((Message("user", "2 + 2?"),), SamplingParams(max_tokens=4))
            return await backend.generate([request])
        finally:
            await backend.aclose()

    [[completion]] = asyncio.run(go())
    assert completion.text == "4"
    assert [r.url.path for r in seen] == ["/v1/models", "/v1/chat/completions"]
    for request in seen:
        assert request.url.params["token"] == "tok123"
        assert request.headers["authorization"] == \
            "Basic " + base64.b64encode(b"user:secret").decode()


def test_metrics_name_each_endpoint_by_host_port_and_path_only():
    pool = EndpointPool("sim", [EndpointSpec(secret_url(8001)),
                                EndpointSpec("http://127.0.0.1:8002/v1")])
    try:
        with TestClient(PonderServer(pool).app()) as http:
            text = http.get("/metrics").text
    finally:
        asyncio.run(pool.aclose())
    assert_clean(text)
    values = scraped(text)
    assert values[("ponder_endpoint_requests_total", (("endpoint", shown(8001)),))] == 0
    assert values[("ponder_endpoint_up", (("endpoint", "http://127.0.0.1:8002/v1"),))] == 1
    assert values[("ponder_endpoint_tokens_total",
                   (("endpoint", shown(8001)), ("kind", "prompt")))] == 0


def test_ask_json_and_the_logs_of_a_run_over_a_secret_url(replica, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    url = secret_url(replica.port)
    other = Replica(replica.log.parent, "b")
    try:
        code = main(["ask", "What is 2 + 3?", "-m", "sim", "--base-url", url, "--base-url",
                     other.url, "-n", "4", "--json", "--no-progress", "--seed", "1"])
    finally:
        other.kill()
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert_clean(captured.out + captured.err)
    endpoints = json.loads(captured.out)["usage"]["endpoints"]
    assert {e["url"] for e in endpoints} == {shown(replica.port), other.url}
    assert sum(e["samples"] for e in endpoints) == 4
    # httpx logs every request with its URL: the line is kept, the secrets are not
    requests = [r.getMessage() for r in caplog.records if r.name.startswith("httpx")]
    assert any(f"POST {shown(replica.port).removesuffix('?…')}/chat/completions?…" in line
               for line in requests), requests
    assert_clean(caplog.text)


def test_errors_name_the_server_without_its_secrets(capsys, tmp_path):
    down = secret_url(free_port())
    for argv in (["ask", "Hi", "-m", "sim", "--base-url", down],  # one server
                 ["ask", "Hi", "-m", "sim", "--base-url", down, "--base-url",
                  f"http://127.0.0.1:{free_port()}/v1"],  # a pool, every endpoint down
                 ["models", "--base-url", down]):
        code = main([*argv, "--no-progress"] if argv[0] == "ask" else argv)
        captured = capsys.readouterr()
        assert_clean(captured.out + captured.err)
        assert "127.0.0.1" in captured.out + captured.err
        assert code == (0 if argv[0] == "models" else 1)
    with pytest.raises(ConfigError) as bad:
        parse_endpoints([{"url": "ftp://user:secret@host/v1?token=tok123"}])
    assert_clean(str(bad.value))
    assert "ftp://***@host/v1?…" in str(bad.value)
    assert_clean(repr(EndpointSpec(secret_url(1), api_key="secret")))


def test_the_server_logs_an_upstream_failure_without_the_secrets(caplog):
    caplog.set_level(logging.DEBUG)
    backend = OpenAIBackend("m", secret_url(free_port()), max_retries=0, probe=False)
    with TestClient(PonderServer(backend).app()) as http:
        response = http.post("/v1/chat/completions", json={
            "model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 502
    assert_clean(response.text + caplog.text)
    assert "upstream failure" in caplog.text and "cannot reach the server at" in caplog.text


def test_an_eval_report_and_its_store_keep_no_secret(replica, tmp_path):
    data = tmp_path / "sums.jsonl"
    data.write_text("\n".join(json.dumps(p) for p in PROBLEMS[:3]) + "\n")
    out = tmp_path / "run"
    code = main(["eval", "--dataset", str(data), "-m", "sim", "--base-url",
                 secret_url(replica.port), "--base-url", f"http://127.0.0.1:{free_port()}/v1",
                 "--strategies", "self-consistency", "--budgets", "1,2", "--out", str(out),
                 "--no-greedy", "--concurrency", "3"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["model_id"].startswith(shown(replica.port) + ",")
    assert shown(replica.port) in {e["url"] for e in report["config"]["endpoints"]}
    assert shown(replica.port) in (out / "report.md").read_text()
    db = sqlite3.connect(out / "samples.sqlite")
    meta = db.execute("SELECT * FROM meta").fetchall()
    db.close()
    assert_clean(repr(meta))
    for path in out.rglob("*"):
        if path.is_file():
            assert_clean(path.read_bytes().decode("utf-8", "replace"))


def test_distill_keys_its_store_by_the_redacted_url(replica, tmp_path):
    data = tmp_path / "sums.jsonl"
    data.write_text("\n".join(json.dumps(p) for p in PROBLEMS[:2]) + "\n")
    out = tmp_path / "distilled"
    code = main(["distill", "--dataset", str(data), "-m", "sim", "--base-url",
                 secret_url(replica.port), "-n", "2", "--out", str(out)])
    assert code == 0
    for path in out.rglob("*"):
        if path.is_file():
            assert_clean(path.read_bytes().decode("utf-8", "replace"))
    stores = list(out.rglob("samples.sqlite"))
    assert stores
    db = sqlite3.connect(stores[0])
    meta = dict(db.execute("SELECT * FROM meta").fetchall())
    db.close()
    # a served model is claimed by what its server reports (as ponder eval and tune claim it),
    # never by its URL: nothing secret is kept
    assert meta["model_sha256"] == "n/a (server)"
    assert json.loads(meta["served_model"])["model"] == "sim"
    assert_clean(json.dumps(meta))
