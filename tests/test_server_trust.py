"""ponder serve trusts no client: the attacks a client on the network could try, each checked on
the host afterwards (what was loaded, who was contacted, what memory and connections it cost).

- Clients choose a strategy, an effort and capped knobs; naming a model, a scorer, a file or a
  URL is a 400 and nothing is built, loaded or contacted.
- The operator's options (config file) are the only source of scorers and judges; they are
  built at startup, and clients cannot override them.
- Upstream failures never echo the upstream's body or URL.
- Bodies are bounded in size and time, JSON in depth and number size; admission comes once the
  body has arrived, before it is parsed.
- Slow heads and bodies are cut off, connections are capped (per client too), headers are
  bounded.
- A non-loopback address without an API key is refused by the CLI unless --insecure.
"""

import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from starlette.testclient import TestClient
from test_server import Live, SlowBackend, arithmetic

from ponder import ScriptedBackend, registry
from ponder.backends import loading
from ponder.cli import endpoints as endpoints_cli
from ponder.cli.main import main
from ponder.errors import BackendError, BackendTimeout, ConfigError, RequestRejected
from ponder.runner import EFFORTS, strategy_options
from ponder.server import app as app_module
from ponder.server.app import PonderServer
from ponder.server.policy import client_options
from ponder.server.settings import Caps, Limits, load_config
from ponder.verifiers import steps

QUESTION = [{"role": "user", "content": "What is 2 + 3?"}]


class Listener:
    """A tiny HTTP server on localhost, in a thread: records every request it gets and answers
    ``status`` with ``body``."""

    def __init__(self, status=200, body=b"{}"):
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self):
                length = int(self.headers.get("content-length") or 0)
                outer.requests.append({"method": self.command, "path": self.path,
                                       "headers": dict(self.headers),
                                       "body": self.rfile.read(length)})
                self.send_response(status)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _any

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def loads(monkeypatch):
    """Every backend or step scorer the server builds, recorded (and refused)."""
    built = []
    registry.step_scorers.names()  # the built-ins registered first, then replaced here

    def record(*args, **kwargs):
        built.append(("load_backend", args, kwargs))
        raise AssertionError("a client made the server load a backend")

    monkeypatch.setattr(loading, "load_backend", record)
    monkeypatch.setattr(steps, "load_backend", record)
    for name in ("prm", "prm-http"):
        def factory(*args, _name=name, **kwargs):
            built.append((_name, args, kwargs))
            raise AssertionError(f"a client made the server build the {_name} scorer")
        monkeypatch.setitem(registry.step_scorers._items, name, factory)
    return built


def post(server, body, **kwargs):
    with TestClient(server.app()) as http:
        return http.post("/v1/chat/completions", json=body, **kwargs)


# -- clients choose knobs, never models, scorers, files or URLs ---------------------------------


def test_a_judge_url_named_by_a_client_is_never_contacted_nor_given_the_key(monkeypatch, loads):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-servers-own-key")
    with Listener() as listener:
        server = PonderServer(ScriptedBackend(arithmetic))
        attempts = [
            {"scorer_options": {"base_url": listener.url + "/v1", "model": "judge"}},
            {"scorer": "self-judge", "scorer_options": {"base_url": listener.url}},
            {"base_url": listener.url},
            {"scorer": "prm-http", "scorer_options": {"url": listener.url}},
        ]
        for options in attempts:
            for model in ("ponder-beam-search", "ponder-mcts"):
                for stream in (False, True):
                    reply = post(server, {"model": model, "messages": QUESTION,
                                          "stream": stream, "ponder": {"options": options}})
                    assert reply.status_code == 400, reply.text
                    assert reply.json()["error"]["param"].startswith("ponder.options.")
        time.sleep(0.3)  # anything sent would have arrived by now
        assert listener.requests == []
    assert loads == []
    assert not any(listener.url in key for key in steps._cache)


@pytest.mark.parametrize("options, param, code", [
    ({"scorer_options": {"model": "judge-model"}}, "ponder.options.scorer_options",
     "operator_only"),
    ({"scorer": "prm", "scorer_options": {"model": "/tmp/evil", "trust_remote_code": True}},
     "ponder.options.scorer", "operator_only"),
    ({"scorer_options": {"model": "hf:evil/repo/x.gguf", "trust_remote_code": True}},
     "ponder.options.scorer_options", "operator_only"),
    ({"scorer": "prm-http"}, "ponder.options.scorer", "operator_only"),
    ({"model": "hf:evil/repo/model.gguf"}, "ponder.options.model", "unknown_parameter"),
    ({"base_url": "http://169.254.169.254/"}, "ponder.options.base_url", "unknown_parameter"),
    ({"trust_remote_code": True}, "ponder.options.trust_remote_code", "unknown_parameter"),
    ({"api_key": "x"}, "ponder.options.api_key", "unknown_parameter"),
])
def test_a_client_naming_a_model_file_url_or_code_gets_400_and_nothing_loads(
        loads, options, param, code):
    server = PonderServer(ScriptedBackend(arithmetic))
    reply = post(server, {"model": "ponder-beam-search", "messages": QUESTION,
                          "ponder": {"options": options}})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert (error["param"], error["code"]) == (param, code)
    assert "Traceback" not in reply.text
    assert loads == []


def test_clients_keep_their_knobs_prompt_text_and_setup_free_scorers(loads):
    server = PonderServer(ScriptedBackend(arithmetic))
    reply = post(server, {"model": "ponder-beam-search", "messages": QUESTION,
                          "reasoning_effort": "low",
                          "ponder": {"n": 3, "options": {
                              "m": 2, "aggregate": "mean", "pick": "best", "temperature": 0.4,
                              "scorer": "self-judge", "system": "Be brief.",
                              "delimiter": "\n"}}})
    assert reply.status_code == 200, reply.text
    config = reply.json()["ponder"][0]["config"]
    assert (config["n"], config["m"], config["aggregate"], config["system"]) == (
        3, 2, "mean", "Be brief.")
    assert loads == []


def test_what_clients_may_set_is_read_off_each_config():
    for name in registry.strategies.names():
        kinds = client_options(name)
        fields = registry.strategies.get(name).Config.model_fields
        for option, field in fields.items():
            if "dict" in str(field.annotation) or "list" in str(field.annotation):
                assert kinds[option] == "operator", (name, option)
        assert kinds.get("temperature") == "knob" and kinds["system"] == "prompt"
    beam = client_options("beam-search")
    assert beam["scorer_options"] == "operator" and beam["scorer"] == "scorer"
    assert beam["n"] == beam["m"] == beam["aggregate"] == beam["pick"] == "knob"
    assert client_options("router")["hard_strategy"] == "knob"  # a Literal choice
    assert client_options("router")["mean_tokens"] == "knob"  # int | None


def test_every_default_and_preset_fits_the_default_caps():
    caps = Caps()
    for name in registry.strategies.names():
        cls = registry.strategies.get(name)
        for effort in (None, *EFFORTS):
            config = cls.Config(**strategy_options(name, effort))
            for option, value in config.model_dump().items():
                cap = caps.cap_for(option)
                if cap is not None and isinstance(value, int):
                    assert value <= cap, (name, effort, option, value, cap)


# -- the operator's options -------------------------------------------------------------------


def test_operator_scorer_is_built_at_startup_off_the_loop_and_cannot_be_overridden(
        monkeypatch):
    built = []
    monkeypatch.setattr(steps, "_cache", {})

    class Recorded:
        name = "recorded"
        needs_logprobs = False

        def __init__(self, **options):
            built.append((threading.current_thread().name, options))

        async def score_steps(self, problem, partials, ctx, parent=None, known=None):
            return [[0.9] * len(steps_) for steps_ in partials]

    monkeypatch.setitem(registry.step_scorers._items, "recorded", Recorded)
    operator = {"beam-search": {"scorer": "recorded", "n": 4, "scorer_options": {
        "url": "http://prm.internal:8000", "api_key": "prm-key-123"}}}
    server = PonderServer(ScriptedBackend(arithmetic), strategies=operator)
    with TestClient(server.app()) as http:
        assert len(built) == 1  # at startup, before any request
        main_thread = threading.main_thread().name
        assert built[0][1] == operator["beam-search"]["scorer_options"]
        assert built[0][0] != main_thread
        ok = http.post("/v1/chat/completions", json={
            "model": "ponder-beam-search", "messages": QUESTION,
            "ponder": {"n": 2, "trace": True}})
        assert ok.status_code == 200, ok.text
        config = ok.json()["ponder"][0]["config"]
        # the client's knob wins over the operator's number; the operator's scorer stays
        assert (config["n"], config["scorer"]) == (2, "recorded")
        # the operator's URL and key are not the client's to read, in the config or the trace
        assert "scorer_options" not in config
        assert "prm.internal" not in ok.text and "prm-key-123" not in ok.text
        assert ok.json()["ponder"][0]["trace"]["nodes"][0]["data"]["config"]["n"] == 2
        defaults = http.post("/v1/chat/completions", json={
            "model": "ponder-beam-search", "messages": QUESTION, "reasoning_effort": "high"})
        assert defaults.json()["ponder"][0]["config"]["n"] == 4  # explicit over the preset
        for options in ({"scorer": "self-judge"}, {"scorer_options": {}}):
            refused = http.post("/v1/chat/completions", json={
                "model": "ponder-beam-search", "messages": QUESTION,
                "ponder": {"options": options}})
            assert refused.status_code == 400
            assert refused.json()["error"]["code"] == "operator_only"
    assert len(built) == 1  # requests reuse it


def test_operator_prm_http_failure_is_logged_not_echoed_and_gets_no_key(monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-servers-own-key")
    secret = b"secret-body: stack trace at /srv/prm/internal.py, token=abc"
    with Listener(status=500, body=secret) as prm:
        operator = {"beam-search": {"scorer": "prm-http", "scorer_options": {"url": prm.url}}}
        server = PonderServer(ScriptedBackend(arithmetic), strategies=operator)
        with caplog.at_level(logging.WARNING, logger="ponder.server"):
            reply = post(server, {"model": "ponder-beam-search", "messages": QUESTION})
        assert prm.requests, "the operator's PRM was not called"
        assert all("authorization" not in {k.lower() for k in r["headers"]}
                   for r in prm.requests)
    assert reply.status_code == 502
    # a 5xx still failing after prm-http's retries, mapped as the OpenAI backend maps it
    assert reply.json()["error"]["code"] == "upstream_unavailable"
    assert "secret-body" not in reply.text and prm.url not in reply.text
    assert "127.0.0.1" not in reply.text
    assert "secret-body" in caplog.text  # the operator sees the detail in the log


def test_an_operator_judge_at_another_url_never_gets_the_servers_key(monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-servers-own-key")
    with Listener(status=404, body=b'{"error": {"message": "secret-body"}}') as judge:
        operator = {"beam-search": {"scorer": "self-judge", "scorer_options": {
            "base_url": judge.url + "/v1", "model": "judge"}}}
        server = PonderServer(ScriptedBackend(arithmetic), strategies=operator)
        with caplog.at_level(logging.WARNING, logger="ponder.server"):
            reply = post(server, {"model": "ponder-beam-search", "messages": QUESTION})
    assert judge.requests, "the operator's judge was not called"
    for request in judge.requests:
        assert "sk-the-servers-own-key" not in json.dumps(request["headers"])
    assert reply.status_code == 502 and "secret-body" not in reply.text
    assert judge.url not in reply.text


# -- upstream errors ----------------------------------------------------------------------------


def _failing(error):
    def respond(request, index):
        raise error
    return ScriptedBackend(respond)


@pytest.mark.parametrize("error, status, code", [
    (BackendError("upstream said 500: secret-body from http://10.0.0.7:9000/v1"), 502,
     "upstream_error"),
    (RequestRejected("400 from http://10.0.0.7:9000/v1: secret-body"), 502, "upstream_error"),
    (BackendTimeout("http://10.0.0.7:9000/v1 timed out: secret-body"), 504, "upstream_timeout"),
])
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_error_bodies_never_reach_the_client(error, status, code, stream, caplog):
    server = PonderServer(_failing(error))
    with caplog.at_level(logging.WARNING, logger="ponder.server"):
        reply = post(server, {"model": "ponder-cot", "messages": QUESTION, "stream": stream})
    assert "secret-body" not in reply.text and "10.0.0.7" not in reply.text
    if stream:
        events = [json.loads(line[6:]) for line in reply.text.splitlines()
                  if line.startswith("data: {")]
        error_body = events[-1]["error"]
    else:
        assert reply.status_code == status
        error_body = reply.json()["error"]
    assert error_body["code"] == code and "incident" in error_body["message"]
    incident = error_body["message"].split("incident ")[1].rstrip(")")
    assert incident in caplog.text and "secret-body" in caplog.text


def test_an_unexpected_error_in_a_run_is_a_generic_500_with_no_traceback(caplog):
    server = PonderServer(_failing(RuntimeError("internal path /srv/secret")))
    with caplog.at_level(logging.ERROR, logger="ponder.server"):
        reply = post(server, {"model": "ponder-cot", "messages": QUESTION})
    assert reply.status_code == 500 and reply.json()["error"]["type"] == "server_error"
    assert "/srv/secret" not in reply.text and "Traceback" not in reply.text


# -- caps ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("model, ponder, top, param, cap", [
    ("ponder-self-consistency", {"options": {"n": 100000}}, {}, "ponder.options.n", 64),
    ("ponder-self-consistency", {"n": 100000}, {}, "ponder.n", 64),
    ("ponder-self-consistency", {"options": {"n": "100"}}, {}, "ponder.options.n", 64),
    ("ponder-mcts", {"options": {"simulations": 100000}}, {}, "ponder.options.simulations", 64),
    ("ponder-mcts", {"options": {"parallel": 200}}, {}, "ponder.options.parallel", 16),
    ("ponder-beam-search", {"n": 200}, {}, "ponder.n", 64),
    ("ponder-beam-search", {"options": {"m": 60}}, {}, "ponder.options.m", 16),
    ("ponder-adaptive-consistency", {"options": {"max_n": 1000}}, {}, "ponder.options.max_n",
     64),
    ("ponder-adaptive-consistency", {"options": {"wave": 200}}, {}, "ponder.options.wave", 64),
    ("ponder-router", {"options": {"probe_n": 50}}, {}, "ponder.options.probe_n", 16),
    ("ponder-deepconf", {"options": {"warmup": 200}}, {}, "ponder.options.warmup", 64),
    ("ponder-self-refine", {"options": {"rounds": 20}}, {}, "ponder.options.rounds", 8),
    ("ponder-debate", {"options": {"agents": 12}}, {}, "ponder.options.agents", 8),
    ("ponder-debate", {"options": {"rounds": 9}}, {}, "ponder.options.rounds", 8),
    ("ponder-mixture-of-agents", {"options": {"layers": 5}}, {}, "ponder.options.layers", 4),
    ("ponder-mixture-of-agents", {"options": {"n_per_proposer": 17}}, {},
     "ponder.options.n_per_proposer", 16),
    ("ponder-self-debug", {"options": {"rounds": 10}}, {}, "ponder.options.rounds", 8),
    ("ponder-beam-search", {"options": {"max_steps": 200}}, {}, "ponder.options.max_steps",
     64),
    ("ponder-cot", None, {"max_tokens": 1000000}, "max_tokens", 32768),
    ("ponder-beam-search", {"options": {"step_tokens": 100000}}, {},
     "ponder.options.step_tokens", 32768),
    ("ponder-budget-forcing", {"options": {"max_thinking_tokens": 10**6}}, {},
     "ponder.options.max_thinking_tokens", 32768),
    ("scripted", None, {"max_tokens": 1000000}, "max_tokens", 32768),  # a plain completion
])
def test_knobs_over_a_cap_are_refused_naming_the_option_and_the_cap(model, ponder, top, param,
                                                                    cap, loads):
    body = {"model": model, "messages": QUESTION, **top}
    if ponder is not None:
        body["ponder"] = ponder
    reply = post(PonderServer(ScriptedBackend(arithmetic)), body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert (error["param"], error["code"]) == (param, "integer_above_max_value")
    assert str(cap) in error["message"]
    assert loads == []


def test_caps_are_configurable_and_lower_presets_without_refusing_them():
    backend = ScriptedBackend(arithmetic)
    tight = PonderServer(backend, limits=Limits(caps=Caps(n=3)))
    high = post(tight, {"model": "ponder-self-consistency", "messages": QUESTION,
                        "reasoning_effort": "high"})
    assert high.status_code == 200 and high.json()["ponder"][0]["config"]["n"] == 3
    assert post(tight, {"model": "ponder-self-consistency", "messages": QUESTION,
                        "ponder": {"n": 4}}).status_code == 400
    loose = PonderServer(backend, limits=Limits(caps=Caps(n=100)))
    reply = post(loose, {"model": "ponder-self-consistency", "messages": QUESTION,
                         "ponder": {"n": 100}})
    assert reply.status_code == 200 and reply.json()["ponder"][0]["config"]["n"] == 100


def test_operator_options_over_the_caps_are_refused():
    with pytest.raises(ConfigError, match="strategies.best-of-n.n is 500.*caps.n = 64"):
        PonderServer(ScriptedBackend(), strategies={"best-of-n": {"n": 500}})


# -- bodies, JSON, admission -------------------------------------------------------------------


def _recording_parser(monkeypatch):
    calls = []
    real = app_module.parse_json

    def parse(*args, **kwargs):
        calls.append(len(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(app_module, "parse_json", parse)
    return calls


def test_an_oversized_body_is_413_before_it_is_read_or_parsed(monkeypatch):
    parsed = _recording_parser(monkeypatch)
    server = PonderServer(ScriptedBackend(arithmetic), limits=Limits(max_body_bytes=4096))
    sent = []

    def body():
        for _ in range(64):
            sent.append(1)
            yield b" " * 1024

    json_type = {"content-type": "application/json"}
    with TestClient(server.app()) as http:
        declared = http.post("/v1/chat/completions", content=b"{}",
                             headers={**json_type, "content-length": "10000000"})
        chunked = http.post("/v1/chat/completions", content=body(), headers=json_type)
        small = http.post("/v1/chat/completions", json={"model": "ponder-cot",
                                                        "messages": QUESTION})
    for reply in (declared, chunked):
        assert reply.status_code == 413, reply.text
        assert reply.json()["error"]["code"] == "request_too_large"
        assert "4096" in reply.json()["error"]["message"]
    assert small.status_code == 200
    assert len(parsed) == 1  # only the small one was parsed
    assert server.metrics.queued == 0 and server.metrics.in_flight == 0


def _rss_mib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status")


def test_a_50_mb_body_costs_the_live_server_almost_no_memory(monkeypatch):
    parsed = _recording_parser(monkeypatch)
    chunk = b"x" * 65536
    total = 50 * 1024 * 1024

    def body():
        for _ in range(total // len(chunk)):
            yield chunk

    with Live(ScriptedBackend(arithmetic)) as server:
        url = server.url + "/v1/chat/completions"
        httpx.post(url, json={"model": "ponder-cot", "messages": QUESTION}).raise_for_status()
        base = peak = _rss_mib()
        stop = threading.Event()

        def sample():
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, _rss_mib())
                time.sleep(0.005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            json_type = {"content-type": "application/json"}
            replies = [httpx.post(url, content=body(), timeout=30, headers=json_type),
                       httpx.post(url, content=body(), timeout=30,
                                  headers={**json_type, "content-length": str(total)})]
        finally:
            stop.set()
            sampler.join()
    for reply in replies:
        assert reply.status_code == 413, reply.text
    assert peak - base < 20, f"RSS grew {peak - base:.1f} MiB for a refused 50 MiB body"
    assert len(parsed) == 1  # the warm-up request only


def _nested(depth, open_="[", close="]"):
    return open_ * depth + close * depth


@pytest.mark.parametrize("raw", [
    '{"model": "ponder-cot", "messages": ' + _nested(100_000) + "}",
    '{"model": "ponder-cot", "messages": [{"role": "user", "content": "x"}], "x": '
    + '{"a":' * 100_000 + "1" + "}" * 100_000 + "}",
    '{"model": "ponder-cot", "n": 1e400, "messages": [{"role": "user", "content": "x"}]}',
    '{"model": "ponder-cot", "seed": ' + "9" * 100_000
    + ', "messages": [{"role": "user", "content": "x"}]}',
    '{"model": "ponder-cot", "seed": ' + "9" * 10_000
    + ', "messages": [{"role": "user", "content": "x"}]}',
    '{"model": "ponder-cot", "temperature": NaN, "messages": [{"role": "user", "content": "x"}]}',
    '{"model": "ponder-cot", "temperature": -Infinity, "messages": []}',
    '{"model": "ponder-cot", "ponder": {"options": {"n": 1e400}}, "messages": []}',
    '{"model": "ponder-cot", "messages": [{"role": "user", "content": "x"}], "top_p": 1'
    + "0" * 60 + "}",
    b'{"model": "ponder-cot", "messages": "\xff"}',
], ids=["lists-100k-deep", "objects-100k-deep", "1e400", "int-100k-digits", "int-10k-digits",
        "NaN", "-Infinity", "options-1e400", "long-literal", "not-utf-8"])
def test_hostile_json_is_400_not_500(raw, monkeypatch):
    server = PonderServer(ScriptedBackend(arithmetic))
    content = raw if isinstance(raw, bytes) else raw.encode()
    started = time.monotonic()
    with TestClient(server.app(), raise_server_exceptions=False) as http:
        reply = http.post("/v1/chat/completions", content=content,
                          headers={"content-type": "application/json"})
    assert reply.status_code == 400, reply.text[:300]
    assert reply.json()["error"]["code"] == "invalid_json"
    assert "Traceback" not in reply.text
    assert time.monotonic() - started < 5


def test_nesting_past_the_limit_is_refused_before_the_parser_runs(monkeypatch):
    parsed = []
    monkeypatch.setattr("ponder.server.limits.json.loads",
                        lambda *a, **k: parsed.append(a) or {})
    server = PonderServer(ScriptedBackend(arithmetic), limits=Limits(max_json_depth=8))
    reply = post(server, {"model": "ponder-cot", "messages": QUESTION,
                          "metadata": {"a": [[[[[[[["deep"]]]]]]]]}})
    assert reply.status_code == 400 and "nests 10 levels deep" in reply.text
    assert parsed == []


def test_brackets_inside_strings_are_not_nesting():
    content = "[" * 5000 + '"\\"{' + "]" * 5000
    reply = post(PonderServer(ScriptedBackend(arithmetic)), {
        "model": "ponder-cot", "messages": [{"role": "user", "content": content},
                                            {"role": "user", "content": "What is 2 + 3?"}]})
    assert reply.status_code == 200, reply.text


def test_admission_comes_after_the_body_is_read_and_before_it_is_parsed(monkeypatch):
    """A ticket is taken once the body has arrived (a client sending slowly holds none), and
    before the body is parsed (a full server parses nothing)."""
    parsed = _recording_parser(monkeypatch)
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
        busy = http.post("/v1/chat/completions", content=b"{not json" + b" " * 100_000,
                         headers={"content-type": "application/json"})
        t.join(30)
    assert busy.status_code == 429 and busy.json()["error"]["code"] == "queue_full"
    assert results["first"].status_code == 200
    assert len(parsed) == 1  # the first request's
    assert server.metrics.queued == 0


# -- connections: slow clients, too many, big heads ---------------------------------------------


def _head(port, length=None):
    lines = ["POST /v1/chat/completions HTTP/1.1", f"Host: 127.0.0.1:{port}",
             "Content-Type: application/json"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_until_closed(sock, limit=10.0):
    """What the server sent until it closed the connection, and how long that took."""
    sock.settimeout(limit)
    started, data = time.monotonic(), b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data, time.monotonic() - started


def _trickle(sock, pieces, every=0.1):
    def run():
        for piece in pieces:
            time.sleep(every)
            try:
                sock.sendall(piece)
            except OSError:
                return
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


FAST = Limits(header_timeout=0.5, body_timeout=0.5, keep_alive_timeout=1)


def test_a_slow_header_client_is_cut_off_at_the_header_timeout():
    with Live(ScriptedBackend(arithmetic), limits=FAST) as server:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\n")
            trickler = _trickle(sock, [b"X-Slow: 1\r\n"] * 20)  # a header every 0.1 s
            data, seconds = _read_until_closed(sock)
            trickler.join(5)
        with socket.create_connection(("127.0.0.1", port)) as idle:
            silent, idle_seconds = _read_until_closed(idle)
    assert data.startswith(b"HTTP/1.1 408 ")
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"
    assert 0.4 < seconds < 2.0
    assert silent == b"" and 0.4 < idle_seconds < 2.0


def test_a_slow_body_client_is_cut_off_at_the_body_timeout():
    with Live(ScriptedBackend(arithmetic), limits=FAST) as server:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(_head(port, length=1000) + b"{")
            trickler = _trickle(sock, [b" "] * 25)  # a byte every 0.1 s: never idle
            data, seconds = _read_until_closed(sock)
            trickler.join(10)
        assert server.server.metrics.queued == 0
    assert data.startswith(b"HTTP/1.1 408 ")
    assert b'"request_timeout"' in data
    assert 0.4 < seconds < 2.0


def test_connections_over_the_cap_are_refused_and_the_rest_still_served():
    limits = Limits(max_connections=4, header_timeout=10)
    with Live(ScriptedBackend(arithmetic), limits=limits) as server:
        port = int(server.url.rsplit(":", 1)[1])
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        try:
            time.sleep(0.2)
            refused = []
            for _ in range(3):
                with socket.create_connection(("127.0.0.1", port)) as extra:
                    try:
                        extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                    except OSError:
                        pass
                    refused.append(_read_until_closed(extra, limit=3))
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.3)
        after = httpx.get(server.url + "/health")
    for data, seconds in refused:
        assert seconds < 2.0
        assert data == b"" or data.startswith(b"HTTP/1.1 503 "), data
    assert any(b"too_many_connections" in data for data, _ in refused)
    assert after.status_code == 200


def test_headers_over_the_limit_are_431_json():
    with Live(ScriptedBackend(arithmetic), limits=Limits(max_header_bytes=4096)) as server:
        port = int(server.url.rsplit(":", 1)[1])
        for split in (False, True):
            with socket.create_connection(("127.0.0.1", port)) as sock:
                head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000
                if split:  # arriving in pieces or whole
                    sock.sendall(head[:2000])
                    time.sleep(0.1)
                    head = head[2000:]
                try:
                    sock.sendall(head + b"\r\n\r\n")
                except OSError:
                    pass
                data, _ = _read_until_closed(sock, limit=3)
            assert data.startswith(b"HTTP/1.1 431 "), data
            assert b'"headers_too_large"' in data
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"NOT AN HTTP REQUEST\r\n\r\n")
            data, _ = _read_until_closed(sock, limit=3)
        assert data.startswith(b"HTTP/1.1 400 ") and b'"invalid_http"' in data, data
        assert httpx.get(server.url + "/health").status_code == 200


# -- the CLI: exposure, the config file ---------------------------------------------------------


@pytest.fixture
def no_backend(monkeypatch):
    """`ponder serve` stops where it would load the model (so nothing is served)."""
    calls = []

    def stop(*args, **kwargs):
        calls.append((args, kwargs))
        raise ConfigError("stopped before loading the model")

    monkeypatch.setattr(endpoints_cli, "load_backend", stop)
    monkeypatch.delenv("PONDER_API_KEY", raising=False)
    return calls


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.0.2.1"])
def test_a_non_loopback_address_without_a_key_is_refused_in_one_line(host, no_backend, capsys):
    assert main(["serve", "--host", host]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ponder: error: refusing to serve")
    assert "--api-key" in err and "--insecure" in err
    assert no_backend == []


def test_insecure_warns_and_a_key_or_loopback_needs_no_flag(no_backend, capsys, monkeypatch):
    assert main(["serve", "--host", "0.0.0.0", "--insecure"]) == 1
    err = capsys.readouterr().err
    assert "ponder: warning: serving 0.0.0.0 without an API key (--insecure)" in err
    assert "stopped before loading the model" in err
    assert main(["serve", "--host", "0.0.0.0", "--api-key", "k"]) == 1
    assert "refusing" not in capsys.readouterr().err
    monkeypatch.setenv("PONDER_API_KEY", "k")
    assert main(["serve", "--host", "0.0.0.0"]) == 1
    assert "refusing" not in capsys.readouterr().err
    monkeypatch.delenv("PONDER_API_KEY")
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert main(["serve", "--host", host]) == 1
        err = capsys.readouterr().err
        assert "refusing" not in err and "warning" not in err
    assert len(no_backend) == 7


def test_a_config_file_sets_operator_options_and_limits(tmp_path):
    path = tmp_path / "serve.json"
    path.write_text(json.dumps({
        "strategies": {"beam-search": {"scorer": "prm-http", "n": 4, "scorer_options": {
            "url": "http://prm:8000", "model": "Qwen/Qwen2.5-Math-PRM-7B"}}},
        "limits": {"max_body_bytes": 2048, "header_timeout": 3, "caps": {"n": 8}}}))
    config = load_config(path)
    assert config.strategies["beam-search"]["scorer_options"]["url"] == "http://prm:8000"
    assert (config.limits.max_body_bytes, config.limits.header_timeout) == (2048, 3)
    assert (config.limits.caps.n, config.limits.caps.m) == (8, 16)


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON"),
    ("[]", "must hold a JSON object"),
    ('{"strategy": {}}', "strategy: unknown key"),
    ('{"limits": {"max_body_byte": 5}}', "limits.max_body_byte: unknown key"),
    ('{"limits": {"caps": {"beams": 5}}}', "limits.caps.beams: unknown key"),
    ('{"limits": {"header_timeout": -1}}', "limits.header_timeout"),
    ('{"strategies": {"warp-drive": {}}}', "unknown strategy 'warp-drive'"),
    ('{"strategies": {"beam-search": {"beams": 3}}}', "strategies.beam-search"),
    ('{"strategies": {"beam-search": {"scorer": "oracle"}}}', "unknown step scorer 'oracle'"),
    ('{"strategies": {"best-of-n": {"n": 100}}}', "above the cap limits.caps.n = 64"),
])
def test_a_bad_config_file_is_one_clear_error(tmp_path, no_backend, capsys, content, message):
    path = tmp_path / "serve.json"
    path.write_text(content)
    assert main(["serve", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ponder: error: ") and message in err, err
    assert no_backend == []


def test_flags_override_the_config_file_limits(tmp_path, monkeypatch, capsys):
    seen = {}

    class Stop(Exception):
        pass

    def capture(self, **settings):
        seen["limits"] = self.limits
        raise Stop

    monkeypatch.setattr(endpoints_cli, "load_backend", lambda *a, **k: ScriptedBackend())
    monkeypatch.setattr(PonderServer, "uvicorn_config", capture)
    path = tmp_path / "serve.json"
    path.write_text('{"limits": {"max_body_bytes": 2048, "body_timeout": 9, "caps": {"m": 3}}}')
    with pytest.raises(Stop):
        main(["serve", "--config", str(path), "--port", "0", "--max-body-bytes", "4096",
              "--header-timeout", "2", "--max-connections", "7", "--cap", "n=5"])
    limits = seen["limits"]
    assert (limits.max_body_bytes, limits.body_timeout, limits.header_timeout) == (4096, 9, 2)
    assert (limits.max_connections, limits.caps.n, limits.caps.m) == (7, 5, 3)
    capsys.readouterr()
    assert main(["serve", "--cap", "beams=3"]) == 1
    assert "--cap: unknown option beams" in capsys.readouterr().err
