"""ponder serve: the official openai client against a live server, malformed requests,
disconnects, concurrency, auth, metrics, and a property-based fuzz of the request schema."""

import asyncio
import json
import re
import threading
import time

import httpx
import pytest
import uvicorn
from helpers import scraped
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from ponder import ScriptedBackend
from ponder.backends.base import Backend, Capabilities
from ponder.errors import BackendTimeout, BackendUnavailable
from ponder.server.app import PonderServer
from ponder.types import Completion, Usage

openai = pytest.importorskip("openai")


def arithmetic(request, index):
    """Answers 'What is A + B?' correctly; judge prompts get 'Yes'."""
    question = request.messages[-1].content
    found = re.findall(r"What is (\d+) \+ (\d+)\?", question)
    if not found:
        return "Yes"
    a, b = map(int, found[-1])
    return f"{a} plus {b} makes {a + b}. The answer is: {a + b}"


class SlowBackend(Backend):
    """Generates one word every 20 ms until cancelled or done; records what happened."""

    name = "slow"
    model = "slow-model"

    def __init__(self, words: int = 500) -> None:
        self.words = words
        self.cancelled = threading.Event()
        self.started = threading.Event()
        self.produced = 0

    @property
    def capabilities(self):
        return Capabilities()

    async def generate(self, requests, on_progress=None):
        self.started.set()
        out = []
        try:
            for request in requests:
                row = []
                for i in range(request.n):
                    text = ""
                    for k in range(self.words):
                        await asyncio.sleep(0.02)
                        text += f"w{k} "
                        self.produced += 1
                        if request.monitor is not None:
                            request.monitor(i, text, None)
                    row.append(Completion(text + "The answer is: 1",
                                          usage=Usage(5, self.words, 1)))
                out.append(row)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return out


class Live:
    """A real uvicorn server on a free port, in a thread."""

    def __init__(self, backend, **settings):
        self.server = PonderServer(backend, **settings)
        # the configuration `ponder serve` runs: the guarded protocol and the server's limits
        config = self.server.uvicorn_config(host="127.0.0.1", port=0, log_level="error")
        self.uvicorn = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.uvicorn.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.uvicorn.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        port = self.uvicorn.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc):
        self.uvicorn.should_exit = True
        self.thread.join(10)


@pytest.fixture
def live():
    with Live(ScriptedBackend(arithmetic)) as server:
        yield server


def client(server, key="unused"):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)


def test_non_streaming_reasoning_and_usage_equal_to_the_trace(live):
    reply = client(live).chat.completions.create(
        model="ponder-self-consistency", messages=[{"role": "user", "content": "What is 2 + 3?"}],
        extra_body={"ponder": {"n": 3, "trace": True}})
    message = reply.choices[0].message
    assert message.content == "5"
    extra = message.model_extra
    assert "2 plus 3 makes 5" in extra["reasoning_content"]
    assert "self-consistency: 3 candidate(s)" in extra["reasoning_content"]
    assert extra["reasoning"] == extra["reasoning_content"]
    trace = reply.model_extra["ponder"][0]["trace"]["nodes"]
    spent = [n["usage"] for n in trace if "usage" in n]
    assert reply.usage.prompt_tokens == sum(u["prompt_tokens"] for u in spent)
    assert reply.usage.completion_tokens == sum(u["completion_tokens"] for u in spent) == 3 * 9
    assert reply.usage.completion_tokens_details.reasoning_tokens == 27
    assert reply.choices[0].finish_reason == "stop"


def test_step_search_served_with_its_options(live):
    reply = client(live).chat.completions.create(
        model="ponder-beam-search", messages=[{"role": "user", "content": "What is 2 + 3?"}],
        extra_body={"ponder": {"n": 2, "options": {"m": 2, "aggregate": "mean"}, "trace": True}})
    assert reply.choices[0].message.content == "5"
    assert "beam-search: 2 candidate(s)" in reply.choices[0].message.model_extra[
        "reasoning_content"]
    nodes = reply.model_extra["ponder"][0]["trace"]["nodes"]
    assert sum(n["label"].startswith("step 1") for n in nodes) == 4  # n x m first steps
    assert sum(n["label"] == "judge step" for n in nodes) == 4


def test_streaming_sends_progress_before_the_answer(live):
    stream = client(live).chat.completions.create(
        model="ponder-self-consistency", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "What is 4 + 4?"}], extra_body={"ponder": {"n": 2}})
    reasoning, content, usage, order = "", "", None, []
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        if (delta.model_extra or {}).get("reasoning_content"):
            reasoning += delta.model_extra["reasoning_content"]
            order.append("reasoning")
        if delta.content:
            content += delta.content
            order.append("content")
    assert content == "8"
    assert "chain 1/2 finished" in reasoning and "votes so far: 8 ×2" in reasoning
    assert order.index("content") > order.index("reasoning")
    assert usage is not None and usage.completion_tokens == 18


def test_reasoning_effort_model_names_and_pass_through(live):
    c = client(live)
    ask = [{"role": "user", "content": "What is 1 + 1?"}]
    minimal = c.chat.completions.create(model="scripted", messages=ask, reasoning_effort="minimal")
    assert minimal.model_extra["ponder"][0]["strategy"] == "cot"
    high = c.chat.completions.create(model="scripted", messages=ask, reasoning_effort="high")
    assert high.model_extra["ponder"][0]["config"]["n"] == 16  # self-consistency, high preset
    # the ponder object's knobs win over the effort preset, as on the CLI and in the API
    both = c.chat.completions.create(model="ponder-best-of-n", messages=ask,
                                     reasoning_effort="low", extra_body={"ponder": {"n": 2}})
    assert both.model_extra["ponder"][0]["strategy"] == "best-of-n"
    assert both.model_extra["ponder"][0]["config"]["n"] == 2
    preset = c.chat.completions.create(model="ponder-best-of-n", messages=ask,
                                       reasoning_effort="low")
    assert preset.model_extra["ponder"][0]["config"]["n"] == 4
    plain = c.chat.completions.create(model="scripted", messages=ask)
    assert plain.choices[0].message.content.endswith("The answer is: 2")
    assert plain.model_extra["ponder"][0]["strategy"] == "pass-through"
    models = {m.id for m in c.models.list()}
    assert {"ponder-self-consistency", "ponder-program-of-thought", "scripted"} <= models


def test_sixteen_concurrent_clients_all_get_their_own_answer(live):
    async def one(k):
        c = openai.AsyncOpenAI(base_url=live.url + "/v1", api_key="x", max_retries=0)
        try:
            reply = await c.chat.completions.create(
                model="ponder-self-consistency",
                messages=[{"role": "user", "content": f"What is {k} + 100?"}],
                extra_body={"ponder": {"n": 2}}, stream=k % 2 == 0)
            if k % 2 == 0:
                return "".join([ch.choices[0].delta.content or "" async for ch in reply
                                if ch.choices])
            return reply.choices[0].message.content
        finally:
            await c.close()

    async def all16():
        return await asyncio.gather(*(one(k) for k in range(16)))

    assert asyncio.run(all16()) == [str(k + 100) for k in range(16)]


def test_disconnect_mid_stream_cancels_the_work():
    backend = SlowBackend()
    with Live(backend) as server, httpx.Client(timeout=10) as http:
        body = {"model": "ponder-cot", "stream": True,
                "messages": [{"role": "user", "content": "What is 1 + 1?"}]}
        with http.stream("POST", server.url + "/v1/chat/completions", json=body) as response:
            for line in response.iter_lines():
                if "w3 " in line:
                    break  # the chain is being streamed: now hang up
        assert backend.cancelled.wait(5), "the backend kept generating after the disconnect"
        produced = backend.produced
        time.sleep(0.3)
        assert backend.produced == produced
        assert produced < backend.words
        deadline = time.monotonic() + 5
        while server.server.metrics.in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.server.metrics.in_flight == 0


def test_disconnect_of_a_plain_request_cancels_the_work():
    backend = SlowBackend()
    with Live(backend) as server:
        body = {"model": "ponder-cot", "messages": [{"role": "user", "content": "hi"}]}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(server.url + "/v1/chat/completions", json=body, timeout=0.5)
        assert backend.cancelled.wait(5)


def test_full_queue_is_429_with_retry_after():
    backend = SlowBackend(words=100)
    server = PonderServer(backend, max_concurrent=1, max_queue=0)
    with TestClient(server.app()) as http:
        results = {}

        def first():
            results["first"] = http.post("/v1/chat/completions", json={
                "model": "ponder-cot", "messages": [{"role": "user", "content": "hi"}]})

        t = threading.Thread(target=first)
        t.start()
        assert backend.started.wait(5)
        second = http.post("/v1/chat/completions", json={
            "model": "ponder-cot", "messages": [{"role": "user", "content": "hi"}]})
        t.join(30)
    assert second.status_code == 429 and second.headers["retry-after"] == "1"
    assert second.json()["error"]["type"] == "rate_limit_error"
    assert results["first"].status_code == 200


def test_auth_health_and_metrics():
    server = PonderServer(ScriptedBackend(arithmetic), api_key="s3cret")
    with TestClient(server.app()) as http:
        body = {"model": "ponder-cot", "messages": [{"role": "user", "content": "What is 1 + 2?"}]}
        denied = http.post("/v1/chat/completions", json=body)
        assert denied.status_code == 401
        assert denied.json()["error"]["code"] == "invalid_api_key"
        ok = http.post("/v1/chat/completions", json=body,
                       headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "3"
        assert http.get("/health").json()["status"] == "ok"  # open, for load balancers
        assert http.get("/metrics").status_code == 401
        metrics = http.get("/metrics", headers={"Authorization": "Bearer s3cret"}).text
    values = scraped(metrics)
    assert values[("ponder_requests_total", (("status", "200"),))] == 1
    assert values[("ponder_requests_total", (("status", "401"),))] == 1
    assert values[("ponder_tokens_total", (("kind", "completion"),))] == 9
    assert values[("ponder_request_seconds_count", ())] == 1
    assert values[("ponder_queue_depth", ())] == 0


def test_metrics_count_a_latency_on_a_bucket_bound_in_that_bucket():
    from ponder.server.metrics import Metrics

    metrics = Metrics()
    for seconds in (0.5, 1.0, 1.0000001, 400.0):
        metrics.observe(200, seconds)
    metrics.observe(429)  # refused: counted, no latency
    values = scraped(metrics.render())
    bucket = {le: values[("ponder_request_seconds_bucket", (("le", le),))]
              for le in ("0.1", "0.5", "1.0", "2.5", "300.0", "+Inf")}
    assert bucket == {"0.1": 0, "0.5": 1, "1.0": 2, "2.5": 3, "300.0": 3, "+Inf": 4}
    assert values[("ponder_request_seconds_sum", ())] == pytest.approx(402.5000001)
    assert values[("ponder_requests_total", (("status", "429"),))] == 1
    assert values[("ponder_requests_total", (("status", "200"),))] == 4
    assert Metrics().render().count("ponder_requests_total{") == 0  # one registry per server


def _failing(error):
    def respond(request, index):
        raise error
    return ScriptedBackend(respond)


@pytest.mark.parametrize("body, status, code", [
    (b"{not json", 400, "invalid_json"),
    (b"[1, 2]", 400, "invalid_json"),
    ({"model": "ponder-cot"}, 400, "invalid_value"),
    ({"model": "ponder-cot", "messages": "hello"}, 400, "invalid_value"),
    ({"model": "ponder-cot", "messages": [{"role": "user"}]}, 400, "invalid_value"),
    ({"model": "ponder-cot", "messages": [{"role": "wizard", "content": "x"}]}, 400,
     "invalid_value"),
    ({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}, 404, "model_not_found"),
    ({"model": "ponder-magic", "messages": [{"role": "user", "content": "x"}]}, 400,
     "unknown_strategy"),
    # a strategy that needs a second model: a server has none
    ({"model": "ponder-cascade", "messages": [{"role": "user", "content": "x"}]}, 400,
     "unknown_strategy"),
    ({"model": "scripted", "ponder": {"strategy": "verify-by-strong"},
      "messages": [{"role": "user", "content": "x"}]}, 400, "unknown_strategy"),
    ({"model": "ponder-cot", "n": 99, "messages": [{"role": "user", "content": "x"}]}, 400,
     "invalid_value"),
    ({"model": "scripted", "ponder": {"budget": 0}, "messages": [{"role": "user", "content": "x"}]},
     400, "invalid_value"),
    # over the server's cap on n: OpenAI's code for it (was invalid_value from the schema, which
    # no longer bounds n: the configurable caps do, through every route)
    ({"model": "scripted", "ponder": {"n": 5000}, "messages": [{"role": "user", "content": "x"}]},
     400, "integer_above_max_value"),
    # an option the strategy lacks is refused before anything is built, as an unrecognised
    # argument (was invalid_value from building the strategy)
    ({"model": "ponder-cot", "ponder": {"options": {"n": 3}},
      "messages": [{"role": "user", "content": "x"}]}, 400, "unknown_parameter"),
    ({"model": "ponder-cot", "temperature": "hot", "messages": [{"role": "user", "content": "x"}]},
     400, "invalid_value"),
    ({"model": "ponder-cot", "frobnicate": 1, "messages": [{"role": "user", "content": "x"}]},
     400, "unknown_parameter"),
    ({"model": "scripted", "ponder": {"verifier": "oracle"},
      "messages": [{"role": "user", "content": "x"}]}, 400, "unknown_verifier"),
])
def test_malformed_requests(body, status, code):
    server = PonderServer(ScriptedBackend(arithmetic))
    with TestClient(server.app()) as http:
        kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
        response = http.post("/v1/chat/completions", **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and error["type"]
    assert "Traceback" not in response.text


@pytest.mark.parametrize("error, status, code", [
    (BackendUnavailable("cannot reach the server at http://x"), 502, "upstream_unavailable"),
    (BackendTimeout("the server at http://x timed out"), 504, "upstream_timeout"),
])
def test_upstream_failures(error, status, code):
    server = PonderServer(_failing(error))
    with TestClient(server.app()) as http:
        response = http.post("/v1/chat/completions", json={
            "model": "ponder-cot", "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == status and response.json()["error"]["code"] == code


def test_an_upstream_that_is_down_for_real():
    from conftest import free_port

    from ponder.backends.openai_http import OpenAIBackend

    backend = OpenAIBackend("m", base_url=f"http://127.0.0.1:{free_port()}/v1",
                            max_retries=0, probe=False)
    with TestClient(PonderServer(backend).app()) as http:
        response = http.post("/v1/chat/completions", json={
            "model": "ponder-cot", "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 502
    # the client learns that the upstream is unavailable, not its URL (it used to read "cannot
    # reach the server at http://127.0.0.1:PORT/v1"): that detail goes to the server's log
    error = response.json()["error"]
    assert error["code"] == "upstream_unavailable" and "unavailable" in error["message"]
    assert "127.0.0.1" not in response.text


def test_request_token_budget_is_enforced_and_reported():
    server = PonderServer(ScriptedBackend(lambda r, i: "word " * 400), max_request_tokens=100)
    with TestClient(server.app()) as http:
        reply = http.post("/v1/chat/completions", json={
            "model": "ponder-self-consistency", "ponder": {"n": 4},
            "messages": [{"role": "user", "content": "count"}]}).json()
    # the prompt counts 26 tokens (the backend counts them exactly), so each of the 4 samples
    # is capped at (100 - 26) // 4 = 18 tokens: the budget, not the request, cut them
    assert reply["usage"] == {"prompt_tokens": 26, "completion_tokens": 72, "total_tokens": 98,
                              "completion_tokens_details": {"reasoning_tokens": 72}}
    assert [c["completion_tokens"] for c in reply["ponder"][0]["candidates"]] == [18] * 4
    assert reply["ponder"][0]["stop_reason"] == "budget"
    assert reply["choices"][0]["finish_reason"] == "length"


def test_unknown_routes_and_methods_are_json_errors():
    with TestClient(PonderServer(ScriptedBackend(arithmetic)).app()) as http:
        assert http.get("/v2/nothing").json()["error"]["code"] == "not_found"
        assert http.get("/v1/chat/completions").status_code == 405


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6)
                     | st.floats(allow_nan=False) | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
_MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "x"]),
                                  "content": st.one_of(st.text(max_size=30), _JSON)})
_REQUEST = st.fixed_dictionaries(
    {"model": st.sampled_from(["ponder-cot", "ponder-self-consistency", "scripted", "ponder-x",
                               ""]),
     "messages": st.one_of(st.lists(_MESSAGE, max_size=3), _JSON)},
    optional={
        "reasoning_effort": st.one_of(st.sampled_from(["minimal", "low", "high", "max"]), _JSON),
        "n": st.one_of(st.integers(-2, 12), _JSON),
        "temperature": st.one_of(st.floats(-1, 3, allow_nan=False), _JSON),
        "max_tokens": st.one_of(st.integers(-5, 50), _JSON),
        "stream": st.one_of(st.booleans(), _JSON),
        "ponder": st.one_of(st.fixed_dictionaries({}, optional={
            "strategy": st.sampled_from(["cot", "best-of-n", "nope"]),
            "n": st.integers(-1, 70), "budget": st.integers(-1, 500),
            "options": st.dictionaries(st.sampled_from(["n", "rounds", "bad"]), _JSON,
                                       max_size=2)}), _JSON),
        "seed": st.one_of(st.integers(), _JSON),
        "stop": _JSON,
    })


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(body=_REQUEST)
def test_fuzzed_requests_never_500(body):
    server = PonderServer(ScriptedBackend(arithmetic), max_request_seconds=10)
    with TestClient(server.app(), raise_server_exceptions=False) as http:
        response = http.post("/v1/chat/completions", content=json.dumps(body),
                             headers={"content-type": "application/json"})
    assert response.status_code < 500, (body, response.text)
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["message"] and error["type"]


class Recording(Backend):
    """Wraps a backend and records when it last produced tokens."""

    def __init__(self, inner):
        self.inner, self.name, self.model = inner, inner.name, inner.model
        self.progress_at: list[float] = []

    @property
    def capabilities(self):
        return self.inner.capabilities

    async def generate(self, requests, on_progress=None):
        def progress(tokens):
            self.progress_at.append(time.monotonic())
            if on_progress is not None:
                on_progress(tokens)
        return await self.inner.generate(requests, progress)


@pytest.mark.model
def test_bundled_model_served_streamed_and_cancelled_on_disconnect(llama):
    backend = Recording(llama)
    with Live(backend) as server:
        reply = client(server).chat.completions.create(
            model="ponder-self-consistency", max_tokens=24, seed=3,
            messages=[{"role": "user", "content": "What is 3 + 4?"}],
            extra_body={"ponder": {"n": 2, "trace": True}})
        nodes = reply.model_extra["ponder"][0]["trace"]["nodes"]
        assert reply.usage.completion_tokens == sum(
            n["usage"]["completion_tokens"] for n in nodes if "usage" in n) > 0
        assert "self-consistency: 2 candidate(s)" in reply.choices[0].message.model_extra[
            "reasoning_content"]
        body = {"model": "ponder-self-consistency", "stream": True, "max_tokens": 400,
                "ponder": {"n": 4}, "messages": [{"role": "user", "content": "Write a story."}]}
        with httpx.Client(timeout=60) as http, http.stream(
                "POST", server.url + "/v1/chat/completions", json=body) as response:
            seen = 0
            for line in response.iter_lines():
                seen += '"reasoning_content"' in line
                if seen >= 6:
                    break  # tokens are streaming: hang up mid-generation
        time.sleep(1.0)
        before = len(backend.progress_at)
        time.sleep(1.0)
        assert len(backend.progress_at) == before, "the model kept generating"
        assert server.server.metrics.in_flight == 0


def test_the_model_list_leaves_out_strategies_that_need_a_second_model():
    server = PonderServer(ScriptedBackend(arithmetic))
    with TestClient(server.app()) as http:
        ids = [m["id"] for m in http.get("/v1/models").json()["data"]]
    assert "ponder-self-consistency" in ids
    assert "ponder-cascade" not in ids and "ponder-verify-by-strong" not in ids


def split_vote(request, index):
    """'What is A + B?': right, then one off, in turn (a split vote); judge prompts 'Yes'."""
    found = re.findall(r"What is (\d+) \+ (\d+)\?", request.messages[-1].content)
    if not found:
        return "Yes"
    a, b = map(int, found[-1])
    return f"The answer is: {a + b + index % 2}"


def test_a_server_with_a_strong_model_lists_and_runs_the_strategies_that_need_it():
    small = ScriptedBackend(split_vote, model="small")
    strong = ScriptedBackend(arithmetic, model="strong")
    server = PonderServer(small, models={"strong": strong})
    with TestClient(server.app()) as http:
        ids = [m["id"] for m in http.get("/v1/models").json()["data"]]
        assert "ponder-cascade" in ids and "ponder-verify-by-strong" in ids
        reply = http.post("/v1/chat/completions", json={
            "model": "ponder-cascade", "ponder": {"n": 2},
            "messages": [{"role": "user", "content": "What is 17 + 5?"}]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    # the small model split 22/23 (agreement 0.5 < 0.75): the strong model answered, 22
    assert body["choices"][0]["message"]["content"].rstrip().endswith("22")
    assert [r.n for r in small.history] == [2] and [r.n for r in strong.history] == [1]
    # the usage is both models': 2 x 4 tokens from the small one, 9 from the strong one
    assert body["usage"]["completion_tokens"] == 2 * 4 + 9


def test_a_role_the_operator_names_but_did_not_give_is_a_clear_400():
    small = ScriptedBackend(split_vote, model="small")
    server = PonderServer(small, models={"strong": ScriptedBackend(arithmetic)},
                          strategies={"cascade": {"strong_role": "big"}})
    with TestClient(server.app()) as http:
        ids = [m["id"] for m in http.get("/v1/models").json()["data"]]
        reply = http.post("/v1/chat/completions", json={
            "model": "ponder-cascade",
            "messages": [{"role": "user", "content": "What is 17 + 5?"}]})
    assert "ponder-cascade" not in ids and "ponder-verify-by-strong" in ids
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "unknown_strategy" and "needs a big model" in error["message"]
    assert small.history == []
