"""ponder serve against the holes of issue 28 (items 3-5), each on a live server:

- a client's JSON schema (its size, its ``$ref``s, its ``pattern``s) cannot stall the server:
  schemas are checked off the event loop with bounded work, patterns run on RE2 (linear time);
- a web page cannot drive a keyless server: non-JSON bodies are 415, foreign ``Origin``s and
  ``Host``s (DNS rebinding) are 403 unless the operator allows them;
- one client cannot lock the others out: connections are capped per client address, and an
  admission ticket is taken only once the body has arrived.
"""

import json
import socket
import subprocess
import sys
import time

import httpx
import pytest
from starlette.testclient import TestClient
from test_server import Live, arithmetic

from ponder import ScriptedBackend
from ponder.cli import serve as serve_cli
from ponder.cli.main import main
from ponder.domains.chat import CHAT, MAX_CALLS, chat_problem, schema_errors
from ponder.domains.schemas import REQUEST_SPENT, request_budget
from ponder.server.app import PonderServer
from ponder.server.settings import Limits

openai = pytest.importorskip("openai")

QUESTION = [{"role": "user", "content": "What is 2 + 3?"}]


POLLER = """
import sys, threading, time, httpx
url, every, done = sys.argv[1], float(sys.argv[2]), threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
while not done.is_set():
    started = time.monotonic()
    try:
        status = httpx.get(url + "/health", timeout=60).status_code
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    print(status, time.monotonic() - started, flush=True)
    time.sleep(every)
"""


class HealthWatch:
    """Another client, in its own process, polling ``/health`` in a loop: the slowest answer it
    saw and any that was not a 200. (A thread of the test's process would stop with the server
    whenever the server holds the GIL, and miss the stall it should measure.)"""

    def __init__(self, url: str, every: float = 0.05) -> None:
        self.url, self.every = url, every
        self.slowest, self.failures, self.polls = 0.0, [], 0

    def __enter__(self) -> "HealthWatch":
        self._process = subprocess.Popen(
            [sys.executable, "-c", POLLER, self.url, str(self.every)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        first = self._process.stdout.readline()  # it polls from now on
        assert first.startswith("200 "), first
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.2)
        out, _ = self._process.communicate("", timeout=120)
        for line in out.splitlines():
            status, took = line.split()
            self.polls += 1
            self.slowest = max(self.slowest, float(took))
            if status != "200":
                self.failures.append(status)


def _ref_bomb(levels: int) -> dict:
    """A small schema whose every level refers to the next twice: 2**levels checks."""
    defs = {}
    for i in range(levels):
        if i + 1 == levels:
            defs[f"l{i}"] = {"type": "object"}
        else:
            nxt = {"$ref": f"#/$defs/l{i + 1}"}
            defs[f"l{i}"] = {"allOf": [nxt, nxt]}
    return {"$defs": defs, "$ref": "#/$defs/l0"}


def _json_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}


# -- item 3: a client's schema is bounded work, off the event loop -----------------------------


def test_a_ref_bomb_schema_is_refused_while_health_stays_fast():
    schema = _ref_bomb(15)
    assert len(json.dumps(schema)) < 1300
    with Live(ScriptedBackend(arithmetic)) as server, HealthWatch(server.url) as watch:
        started = time.monotonic()
        reply = httpx.post(server.url + "/v1/chat/completions", timeout=120, json={
            "model": "ponder-cot", "messages": QUESTION, "response_format": _json_format(schema)})
        took = time.monotonic() - started
    assert watch.slowest < 1.0, f"/health took {watch.slowest:.2f} s during the request"
    assert took < 5, f"the refusal took {took:.1f} s"
    assert watch.failures == [] and watch.polls > 2
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["code"] == "invalid_schema"
    assert error["param"] == "response_format.json_schema.schema"
    assert "$ref" in error["message"] and "expanded" in error["message"]


def test_a_catastrophic_pattern_checks_the_models_output_in_linear_time():
    schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}},
              "required": ["s"]}
    hostile = '```json\n{"s": "' + "a" * 27 + '!"}\n```'
    with Live(ScriptedBackend([hostile, '```json\n{"s": "aaaa"}\n```'])) as server, \
            HealthWatch(server.url) as watch:
        url = server.url + "/v1/chat/completions"
        body = {"model": "ponder-cot", "messages": QUESTION,
                "response_format": _json_format(schema)}
        started = time.monotonic()
        refused = httpx.post(url, json=body, timeout=120)
        took = time.monotonic() - started
        valid = httpx.post(url, json=body, timeout=30)
    assert watch.slowest < 1.0, f"/health took {watch.slowest:.2f} s during the request"
    assert took < 5, f"the request took {took:.1f} s"
    assert watch.failures == []
    assert refused.status_code == 200, refused.text
    [candidate] = refused.json()["ponder"][0]["candidates"]
    assert candidate["answer"] is None  # the output does not validate: it drops out
    assert json.loads(valid.json()["choices"][0]["message"]["content"]) == {"s": "aaaa"}


@pytest.mark.parametrize("pattern, why", [
    (r"^(a)\1$", "backreference"),
    (r"^(?=a)a+$", "lookaround"),
    (r"^(?<!b)a$", "lookaround"),
])
@pytest.mark.parametrize("where", ["pattern", "patternProperties"])
def test_a_pattern_re2_cannot_run_is_refused_saying_why(pattern, why, where):
    if where == "pattern":
        schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": pattern}}}
    else:
        schema = {"type": "object", "patternProperties": {pattern: {"type": "string"}}}
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    server = PonderServer(ScriptedBackend(arithmetic))
    with TestClient(server.app()) as http:
        replies = [
            http.post("/v1/chat/completions", json={"model": "ponder-cot", "messages": QUESTION,
                                                    "response_format": _json_format(schema)}),
            http.post("/v1/chat/completions", json={"model": "ponder-cot", "messages": QUESTION,
                                                    "tools": [tool]})]
    for reply, param in zip(replies, ("response_format.json_schema.schema",
                                      "tools.0.function.parameters"), strict=True):
        assert reply.status_code == 400, reply.text
        error = reply.json()["error"]
        assert (error["code"], error["param"]) == ("invalid_schema", param)
        assert "RE2" in error["message"] and why in error["message"], error["message"]


def _nested_id_bomb(levels: int = 18) -> dict:
    inner: dict = {"$id": "http://x.example/s", "$defs": {f"d{levels}": {"type": "integer"}}}
    for i in range(levels):
        inner["$defs"][f"d{i}"] = {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}] * 2}
    return {"type": "object", "$defs": {f"d{i}": {} for i in range(levels + 1)},
            "properties": {"x": inner, "y": {"$ref": "#/properties/x"}}}


NESTED_ID_BOMB = _nested_id_bomb()


@pytest.mark.parametrize("schema, words", [
    ({"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(20_000)}},
     "nodes"),
    ({"type": "array", "items": {"$dynamicRef": "#meta"}}, "$dynamicRef"),
    # a nested $id re-bases '#/...': a doubling chain under it was counted as 137 nodes
    (NESTED_ID_BOMB, "$id below the schema's root"),
])
def test_a_schema_too_large_or_beyond_what_is_checked_is_refused(schema, words):
    server = PonderServer(ScriptedBackend(arithmetic), limits=Limits(max_body_bytes=4 << 20))
    with TestClient(server.app()) as http:
        reply = http.post("/v1/chat/completions", json={
            "model": "ponder-cot", "messages": QUESTION, "response_format": _json_format(schema)})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"] == "invalid_schema"
    assert words in reply.json()["error"]["message"]


def test_legitimate_schemas_still_check_and_validate():
    tree = {"type": "object", "properties": {
        "name": {"type": "string", "pattern": r"^\p{L}+$"},
        "children": {"type": "array", "items": {"$ref": "#"}, "uniqueItems": True}},
        "required": ["name"]}
    fmt = {"type": "json_schema", "schema": tree}
    problem = chat_problem(QUESTION, response_format=fmt)
    value = {"name": "root", "children": [{"name": "a", "children": []}, {"name": "b"}]}
    assert schema_errors(value, tree) is None
    assert schema_errors({"name": "r2"}, tree) is not None  # \p{L} only
    assert schema_errors({"name": "r", "children": [{"name": "a"}, {"name": "a"}]},
                         tree) is not None  # not unique
    assert problem.metadata["response_format"]["schema"] is tree


def _wide_tool() -> dict:
    """A legal tool whose arguments' schema costs thousands of steps per value (2,400 branches
    of anyOf), cheap enough to pass one budget a call."""
    branches = [{"required": [f"k{i}"]} for i in range(2400)]
    return {"name": "f", "parameters": {"type": "object", "anyOf": branches}}


def test_a_candidates_many_calls_share_one_budget():
    tool = _wide_tool()
    problem = chat_problem(QUESTION, tools=[tool])
    one = '<tool_call>{"name": "f", "arguments": {"k2399": 1}}</tool_call>'
    assert CHAT.extract(problem, one) is not None  # one call is fine
    for calls in (MAX_CALLS, 300):
        problem = chat_problem(QUESTION, tools=[_wide_tool()])
        started = time.monotonic()
        answer = CHAT.extract(problem, one * calls)
        took = time.monotonic() - started
        assert answer is None, calls  # too many to check (300), or too costly together (64)
        assert took < 1.0, f"{calls} calls took {took:.1f} s"


def test_a_requests_candidates_share_one_budget_and_then_cost_nothing():
    problem = chat_problem(QUESTION, tools=[_wide_tool()])
    one = '<tool_call>{"name": "f", "arguments": {"k2399": 1}}</tool_call>'
    with request_budget(steps=20_000):
        answers = [CHAT.extract(problem, one) for _ in range(64)]
        started = time.monotonic()
        assert schema_errors({"k0": 1}, problem.metadata["tools"][0]["parameters"]) \
            == REQUEST_SPENT
        assert time.monotonic() - started < 0.01
    assert answers[0] is not None and answers[-1] is None  # the first ones fit, the rest not
    # the schema itself is not blamed: outside the request it still validates
    assert CHAT.extract(problem, one) is not None


def test_a_requests_validation_time_is_time_spent_validating_not_time_since_it_began():
    """A slow model writes its candidates for minutes; the request's seconds of validation
    count only checking. (They counted wall time from the request's start: after 5 s of
    generation every candidate's call was refused, and votes over actions lost their calls.)"""
    problem = chat_problem(QUESTION, tools=[{"name": "f", "parameters": {
        "type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}}])
    call = '<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>'
    with request_budget(seconds=0.2):
        first = CHAT.extract(problem, call)
        time.sleep(0.3)  # the model generating the next candidate
        later = CHAT.extract(problem, call)
    assert first is not None and later == first


def test_a_schema_that_doubles_per_level_of_the_output_is_cut_off():
    """A recursive schema (accepted: recursion is legitimate) whose every level checks the next
    level twice: 2**depth checks on an output nested ``depth`` deep; bounded, it drops out."""
    schema = {"type": "object", "properties": {"x": {"allOf": [{"$ref": "#"}, {"$ref": "#"}]}}}
    value: dict = {}
    for _ in range(22):
        value = {"x": value}
    started = time.monotonic()
    why = schema_errors(value, schema)
    took = time.monotonic() - started
    assert why is not None and "too costly" in why
    assert took < 1.5, f"validation took {took:.1f} s"


def test_many_candidates_against_a_multiplying_schema_cost_one_budget():
    """n candidates share the request's schema: once it runs out of its budget on one value,
    the others are refused without work, so the event loop is not held n times as long."""
    schema = {"type": "object", "properties": {"x": {"allOf": [{"$ref": "#"}, {"$ref": "#"}]}}}
    deep = "{}"
    for _ in range(22):
        deep = '{"x": ' + deep + "}"
    backend = ScriptedBackend(lambda request, index: f"```json\n{deep}\n```")
    with Live(backend) as server, HealthWatch(server.url) as watch:
        started = time.monotonic()
        reply = httpx.post(server.url + "/v1/chat/completions", timeout=300, json={
            "model": "ponder-self-consistency", "messages": QUESTION, "ponder": {"n": 32},
            "response_format": _json_format(schema)})
        took = time.monotonic() - started
    assert watch.slowest < 1.0, f"/health took {watch.slowest:.2f} s during the request"
    assert took < 5, f"the request took {took:.1f} s"
    assert reply.status_code == 200, reply.text
    assert all(c["answer"] is None for c in reply.json()["ponder"][0]["candidates"])


def test_unique_items_is_not_quadratic():
    items = [{"k": i} for i in range(20_000)]
    started = time.monotonic()
    assert schema_errors(items, {"type": "array", "uniqueItems": True}) is None
    assert schema_errors([*items, {"k": 7}], {"uniqueItems": True}) is not None
    assert schema_errors([1, True], {"uniqueItems": True}) is None  # true is not 1
    assert schema_errors([1, 1.0], {"uniqueItems": True}) is not None
    assert time.monotonic() - started < 1.5


# -- item 4: a web page cannot drive a keyless server ------------------------------------------


def _chat(url: str, headers: dict, content: bytes | None = None, **kwargs) -> httpx.Response:
    body = content if content is not None else json.dumps(
        {"model": "ponder-cot", "messages": QUESTION}).encode()
    return httpx.post(url + "/v1/chat/completions", content=body, headers=headers, timeout=30,
                      **kwargs)


@pytest.mark.parametrize("content_type", [
    "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", "", "application/jsonp", "application/json-patch+json"])
def test_a_post_that_is_not_json_is_415(content_type):
    headers = {"content-type": content_type}
    with Live(ScriptedBackend(arithmetic)) as server:
        reply = _chat(server.url, headers)
        responses = httpx.post(server.url + "/v1/responses", headers=headers, timeout=30,
                               content=json.dumps({"model": "ponder-cot", "input": "hi"}))
        assert server.server.metrics.queued == 0
    for r in (reply, responses):
        assert r.status_code == 415, r.text
        error = r.json()["error"]
        assert error["code"] == "unsupported_media_type"
        assert "application/json" in error["message"]


@pytest.mark.parametrize("content_type", [
    "application/json", "application/json; charset=utf-8", "Application/JSON ;charset=UTF-8",
    None])
def test_json_with_or_without_parameters_or_no_type_is_accepted(content_type):
    """No type at all is read as JSON (``requests.post(data=...)``): a browser never sends a
    typeless POST without an ``Origin``, which is checked."""
    headers = {} if content_type is None else {"content-type": content_type}
    with Live(ScriptedBackend(arithmetic)) as server:
        reply = _chat(server.url, headers)
        typeless_page = _chat(server.url, {"origin": "https://evil.example"})
    assert reply.status_code == 200, reply.text
    assert typeless_page.status_code == 403


def test_a_cross_origin_simple_request_is_403_and_says_how_to_allow_it():
    with Live(ScriptedBackend(arithmetic)) as server:
        port = server.url.rsplit(":", 1)[1]
        replies = {origin: _chat(server.url, {"content-type": "text/plain", "origin": origin})
                   for origin in ("https://evil.example", "null", f"http://127.0.0.1:{int(port)+1}",
                                  f"https://127.0.0.1:{port}")}
        json_too = _chat(server.url, {"content-type": "application/json",
                                      "origin": "https://evil.example"})
        read = httpx.get(server.url + "/v1/models", headers={"origin": "https://evil.example"})
        backend_calls = server.server.backend.calls
    for origin, reply in [*replies.items(), ("https://evil.example", json_too)]:
        assert reply.status_code == 403, (origin, reply.text)
        error = reply.json()["error"]
        assert error["code"] == "origin_not_allowed"
        assert "--allow-origin" in error["message"] and origin in error["message"]
    assert read.status_code == 403
    assert backend_calls == 0


def test_the_servers_own_origin_and_no_origin_are_served():
    with Live(ScriptedBackend(arithmetic)) as server:
        port = server.url.rsplit(":", 1)[1]
        json_type = {"content-type": "application/json"}
        own = _chat(server.url, {**json_type, "origin": server.url})
        by_name = _chat(server.url, {**json_type, "origin": f"http://localhost:{port}",
                                     "host": f"localhost:{port}"})
        sdk = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        answer = sdk.chat.completions.create(model="ponder-cot", messages=QUESTION)
        models = [m.id for m in sdk.models.list()]
    assert own.status_code == 200, own.text
    assert by_name.status_code == 200, by_name.text
    assert answer.choices[0].message.content == "5"
    assert "ponder-cot" in models


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1:1",
                                  "localhost.evil.example:{port}", "0.0.0.0:{port}"])
def test_a_foreign_host_header_is_403_on_a_keyless_loopback_server(host):
    """DNS rebinding: a page at evil.example whose name now points at 127.0.0.1 sends
    ``Host: evil.example:PORT``; the server answers only to its own loopback names."""
    with Live(ScriptedBackend(arithmetic)) as server:
        port = server.url.rsplit(":", 1)[1]
        header = host.format(port=port)
        replies = [httpx.get(server.url + "/v1/models", headers={"host": header}),
                   httpx.get(server.url + "/health", headers={"host": header}),
                   _chat(server.url, {"content-type": "application/json", "host": header})]
    for reply in replies:
        assert reply.status_code == 403, reply.text
        error = reply.json()["error"]
        assert error["code"] == "host_not_allowed"
        assert "--allow-host" in error["message"] and header in error["message"]


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}",
                                  "LOCALHOST:{port}"])
def test_the_loopback_names_are_this_servers_hosts(host):
    with Live(ScriptedBackend(arithmetic)) as server:
        port = server.url.rsplit(":", 1)[1]
        reply = httpx.get(server.url + "/health", headers={"host": host.format(port=port)})
    assert reply.status_code == 200, reply.text


def test_the_live_pages_still_load_in_a_browser():
    """A browser's GETs of a traced request's page (no Origin on a navigation) and of its data
    (same origin) are served."""
    with Live(ScriptedBackend(arithmetic)) as server:
        sdk = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        reply = sdk.chat.completions.create(model="ponder-cot", messages=QUESTION,
                                            extra_body={"ponder": {"trace": True}})
        page_url = reply.model_extra["ponder"][0]["view_url"]
        browser = {"accept": "text/html", "sec-fetch-mode": "navigate",
                   "sec-fetch-site": "none", "user-agent": "Mozilla/5.0"}
        page = httpx.get(page_url, headers=browser)
        data = httpx.get(page_url + "/data", headers={"origin": server.url,
                                                       "sec-fetch-site": "same-origin"})
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert data.status_code == 200 and data.json()["views"]


def test_the_operator_can_allow_origins_and_hosts():
    with Live(ScriptedBackend(arithmetic), allow_origins=["https://app.example"],
              allow_hosts=["ponder.lan"]) as server:
        port = server.url.rsplit(":", 1)[1]
        json_type = {"content-type": "application/json"}
        origin = _chat(server.url, {**json_type, "origin": "https://app.example"})
        host = _chat(server.url, {**json_type, "host": f"ponder.lan:{port}",
                                  "origin": f"http://ponder.lan:{port}"})
        other = _chat(server.url, {**json_type, "origin": "https://other.example"})
    assert origin.status_code == 200, origin.text
    assert host.status_code == 200, host.text
    assert other.status_code == 403
    with Live(ScriptedBackend(arithmetic), allow_origins=["*"], allow_hosts=["*"]) as server:
        anything = _chat(server.url, {"content-type": "application/json",
                                      "origin": "https://any.example", "host": "any.example"})
    assert anything.status_code == 200, anything.text


def test_a_server_with_a_key_does_not_check_origins_but_still_wants_json():
    with Live(ScriptedBackend(arithmetic), api_key="k") as server:
        key = {"authorization": "Bearer k"}
        origin = _chat(server.url, {**key, "content-type": "application/json",
                                    "origin": "https://app.example"})
        text = _chat(server.url, {**key, "content-type": "text/plain"})
    assert origin.status_code == 200, origin.text
    assert text.status_code == 415


class Stop(Exception):
    """Raised where ponder serve would start listening: the server it built is kept."""


def serve_until_listening(monkeypatch, loaded: list | None = None) -> dict:
    """Make ``ponder serve`` build its server on a scripted backend and stop before it listens;
    the dict gets the server (and ``loaded`` a 1 per model load)."""
    seen: dict = {}

    def capture(self, **settings):
        seen["server"] = self
        raise Stop

    def load(*args, **kwargs):
        if loaded is not None:
            loaded.append(1)
        return ScriptedBackend()

    monkeypatch.setattr(serve_cli, "load_from_args", load)
    monkeypatch.setattr(PonderServer, "uvicorn_config", capture)
    return seen


def test_allow_flags_reach_the_server(monkeypatch):
    seen = serve_until_listening(monkeypatch)
    with pytest.raises(Stop):
        main(["serve", "--port", "0", "--allow-origin", "http://localhost:3000",
              "--allow-origin", "https://app.example", "--allow-host", "ponder.lan:8000"])
    server = seen["server"]
    assert server.access.origins == ("http://localhost:3000", "https://app.example")
    assert server.access.hosts == ("ponder.lan:8000",)


def test_the_config_file_allows_origins_and_hosts_and_flags_add_to_it(monkeypatch, tmp_path,
                                                                       capsys):
    loaded: list = []
    seen = serve_until_listening(monkeypatch, loaded)
    path = tmp_path / "serve.json"
    path.write_text(json.dumps({"access": {"origins": ["https://app.example"],
                                           "hosts": ["ponder.lan"]},
                                "limits": {"max_connections_per_client": 8}}))
    with pytest.raises(Stop):
        main(["serve", "--port", "0", "--config", str(path), "--allow-host", "other.lan"])
    server = seen["server"]
    assert server.access.origins == ("https://app.example",)
    assert server.access.hosts == ("ponder.lan", "other.lan")
    assert server.limits.max_connections_per_client == 8
    capsys.readouterr()
    for flags, message in ((["--allow-origin", "app.example"], "is not an origin"),
                           (["--allow-origin", "https://app.example/path"], "is not an origin"),
                           (["--allow-host", "http://x"], "is not a host")):
        assert main(["serve", "--port", "0", *flags]) == 1
        err = capsys.readouterr().err
        assert err.startswith("ponder: error: access: ") and message in err, err
    assert len(loaded) == 1  # a bad value fails before the model loads


# -- item 5: one client cannot lock the others out ---------------------------------------------


def _port(server: Live) -> int:
    return int(server.url.rsplit(":", 1)[1])


def test_half_sent_heads_from_one_address_leave_room_for_another():
    limits = Limits(max_connections=16, max_connections_per_client=4, header_timeout=10)
    with Live(ScriptedBackend(arithmetic), limits=limits) as server:
        held = []
        try:
            for _ in range(24):  # more than the whole server's cap, all from 127.0.0.1
                sock = socket.create_connection(("127.0.0.1", _port(server)))
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                held.append(sock)
            time.sleep(0.3)
            other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
            with other:
                replies = [other.get(server.url + "/health", timeout=5) for _ in range(5)]
            same = socket.create_connection(("127.0.0.1", _port(server)))
            same.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            same.settimeout(5)
            refused = same.recv(65536)
            same.close()
        finally:
            for sock in held:
                sock.close()
    assert [r.status_code for r in replies] == [200] * 5
    assert refused.startswith(b"HTTP/1.1 503 ") and b"too_many_connections" in refused


def test_unfinished_bodies_do_not_take_the_admission_tickets():
    limits = Limits(body_timeout=10, header_timeout=10)
    with Live(ScriptedBackend(arithmetic), api_key="k", max_concurrent=1, max_queue=1,
              limits=limits) as server:
        held = []
        try:
            for _ in range(6):
                sock = socket.create_connection(("127.0.0.1", _port(server)))
                sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             b"Authorization: Bearer k\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 1000\r\n\r\n{")
                held.append(sock)
            time.sleep(0.5)
            reply = _chat(server.url, {"authorization": "Bearer k",
                                       "content-type": "application/json"})
        finally:
            for sock in held:
                sock.close()
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"] == "5"
