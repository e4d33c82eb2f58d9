"""The openai backend against a scripted fake server (httpx.MockTransport): no model, no socket."""

import asyncio
import json

import httpx
import openai
import pytest

from ponder.backends.openai_http import (
    _PROBE_PREFILL,
    _PROBE_QUESTION,
    CONTINUE_INSTRUCTION,
    OpenAIBackend,
)
from ponder.errors import BackendError, BackendTimeout, BackendUnavailable, ModelNotServed
from ponder.types import GenerationRequest, Message, SamplingParams, TokenLogprob

MODEL = "m"
BASE_URL = "http://fake/v1"
QUESTION = (Message("user", "What is 2 + 3?"),)
FAST_RETRY = {"retry-after-ms": "1"}  # the SDK waits what the server asks instead of backing off


def token(text, logprob, top=()):
    return {"token": text, "logprob": logprob, "bytes": None,
            "top_logprobs": [{"token": t, "logprob": p, "bytes": None} for t, p in top]}


def choice(text, index=0, finish="stop", tokens=None, reasoning=None, **extra):
    message = {"role": "assistant", "content": text}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    return {"index": index, "message": message, "finish_reason": finish,
            "logprobs": None if tokens is None else {"content": tokens}, **extra}


def completion(*choices, prompt=10, generated=5):
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000,
            "model": MODEL, "choices": list(choices),
            "usage": {"prompt_tokens": prompt, "completion_tokens": generated,
                      "total_tokens": prompt + generated}}


def error(status, message):
    return httpx.Response(status, headers=FAST_RETRY,
                          json={"error": {"message": message, "type": "error", "code": status}})


def stream(body, pieces, usage=None):
    """An SSE body as OpenAI sends it: a role chunk, one chunk per piece ``(text, token)``, a
    finish chunk, then (when asked for) a usage chunk with no choices."""

    def chunk(delta, tokens=None, finish=None):
        return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000,
                "model": MODEL,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                             "logprobs": None if tokens is None else {"content": tokens}}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": text}, None if tok is None else [tok]) for text, tok in pieces]
    chunks.append(chunk({}, finish="stop"))
    if usage is not None and body.get("stream_options", {}).get("include_usage"):
        chunks.append({**chunk({}), "choices": [],
                       "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                                 "total_tokens": sum(usage)}})
    text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, text=text)


def probe_reply(body, n, logprobs, prefill):
    """How a server with these features answers the backend's probes; None for other requests."""
    messages = body["messages"]
    if messages[0]["content"] == "Say yes.":
        if n == "rejects" and body.get("n", 1) > 1:
            return error(400, "n > 1 is not supported")
        count = body.get("n", 1) if n == "honours" else 1
        tokens = [token("Yes", -0.1, [("Yes", -0.1), ("No", -2.4)])] if logprobs else None
        return completion(*(choice("Yes", i, tokens=tokens) for i in range(count)), generated=count)
    if messages[0]["content"] != _PROBE_QUESTION:
        return None
    flagged = body.get("continue_final_message") is True
    if prefill == "vllm":  # continues only with vLLM's flag; otherwise starts a new turn
        text = " 5, 6" if flagged else "1, 2, 3"
    elif prefill == "assistant":  # continues a trailing assistant message; rejects unknown fields
        if flagged:
            return error(400, "Unrecognized request argument: continue_final_message")
        text = "5, 6"
    elif prefill == "restart":
        text = "Sure! 1, 2"
    else:
        return error(400, "the last message must come from the user")
    return completion(choice(text, finish="length"), generated=4)


def fake_server(answer=None, *, n="honours", logprobs=True, prefill="vllm", models=(MODEL,),
                tokenize=None):
    """A handler for httpx.MockTransport and the list ``seen`` of every (path, JSON body) it got.
    Probes are answered per the features; other chat requests by ``answer(body)`` (a JSON dict,
    an httpx.Response, or an exception raised as the transport's)."""
    seen = []

    def handler(request):
        body = json.loads(request.content) if request.content else None
        seen.append((request.url.path, body))
        if request.url.path == "/tokenize":  # vLLM's; most servers have none
            if tokenize is None:
                return httpx.Response(404, json={"detail": "Not Found"})
            return httpx.Response(200, json={"count": tokenize(body), "max_model_len": 4096})
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "me"} for m in models]})
        assert request.url.path == "/v1/chat/completions"
        reply = probe_reply(body, n, logprobs, prefill)
        if reply is None:
            reply = answer(body)
        if isinstance(reply, Exception):
            raise reply
        return reply if isinstance(reply, httpx.Response) else httpx.Response(200, json=reply)

    return handler, seen


def chats(seen, probes=False):
    """The bodies of the chat requests (without the probes' unless asked)."""
    bodies = [b for path, b in seen if path == "/v1/chat/completions"]
    first = ("Say yes.", _PROBE_QUESTION)
    return bodies if probes else [b for b in bodies if b["messages"][0]["content"] not in first]


def run(handler, scenario, *, max_retries=0, probe=True):
    """``scenario(backend)`` against the fake server, with the backend's client replaced."""

    async def main():
        backend = OpenAIBackend(MODEL, BASE_URL, api_key="k", max_retries=max_retries, probe=probe)
        await backend.client.close()
        backend.client = openai.AsyncOpenAI(
            base_url=BASE_URL, api_key="k", max_retries=max_retries,
            http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
        try:
            return backend, await scenario(backend)
        finally:
            await backend.aclose()

    return asyncio.run(main())


def generate(handler, request, **options):
    backend, [completions] = run(handler, lambda b: b.generate([request]), **options)
    return backend, completions


@pytest.mark.parametrize("n, logprobs, expected", [
    ("honours", True, (True, True)),
    ("ignores", False, (False, False)),  # one choice back, no logprobs
    ("rejects", True, (False, True)),  # a 400 for n=2, then a plain request
])
def test_probe_finds_n_and_logprobs(n, logprobs, expected):
    handler, seen = fake_server(n=n, logprobs=logprobs)
    _, caps = run(handler, lambda b: b.probe())
    assert (caps.parallel_n, caps.logprobs) == expected
    asks = [b for b in chats(seen, probes=True) if b["messages"][0]["content"] == "Say yes."]
    assert [(b.get("n"), b["max_tokens"], b["logprobs"], b["top_logprobs"]) for b in asks] == (
        [(2, 1, True, 2), (None, 1, True, 2)] if n == "rejects" else [(2, 1, True, 2)])


def test_probe_runs_once():
    handler, seen = fake_server()

    async def twice(backend):
        first = await backend.probe()
        requests = len(seen)
        return first, await backend.probe(), requests

    _, (first, second, requests) = run(handler, twice)
    assert second is first
    # /models, n and logprobs, prefill (vLLM's, at once), a tokenizer endpoint
    assert requests == len(seen) == 4


def test_a_server_tokenizer_counts_prompts_exactly_for_the_budget():
    """Where the server counts a chat's tokens (vLLM's /tokenize), a budget's cap uses its
    count; elsewhere the prompt is bounded by its bytes."""
    from ponder.budget import Budget
    from ponder.core.context import Context
    from ponder.errors import BudgetExhausted

    def answer(body):
        return completion(*(choice("ok", i) for i in range(body.get("n", 1))), prompt=13,
                          generated=2 * body.get("n", 1))

    async def sample(backend):
        await backend.probe()
        ctx = Context(backend, budget=Budget(max_tokens=100))
        await ctx.sample(QUESTION * 2, SamplingParams(max_tokens=500), n=2)
        return backend.tokenize_url

    handler, seen = fake_server(answer, tokenize=lambda body: 5 * len(body["messages"]) + 3)
    _, url = run(handler, sample)
    assert url == "http://fake/tokenize"
    assert seen[-2] == ("/tokenize", {"model": MODEL, "add_generation_prompt": True,
                                      "messages": [{"role": "user",
                                                    "content": "What is 2 + 3?"}] * 2})
    assert chats(seen)[-1]["max_tokens"] == (100 - 13) // 2  # the server's 13, exactly
    # no tokenizer: 2 x (14 bytes + 16) + 64 = 124 > 100 is the bound, nothing may be generated
    handler, seen = fake_server(answer)
    with pytest.raises(BudgetExhausted):
        run(handler, sample)
    assert chats(seen) == []


@pytest.mark.parametrize("server, mode, tries", [
    ("vllm", "vllm", 1), ("assistant", "assistant", 2), ("restart", "emulate", 2),
    ("rejects", "emulate", 2)])
def test_probe_finds_the_prefill_mode_and_uses_it(server, mode, tries):
    handler, seen = fake_server(lambda body: completion(choice(" 5.")), prefill=server)

    async def scenario(backend):
        await backend.probe()
        return await backend.generate([GenerationRequest(QUESTION, prefill="So it is")])

    backend, _ = run(handler, scenario)
    assert backend.prefill_mode == mode
    probes = [b for b in chats(seen, probes=True) if b["messages"][0]["content"] == _PROBE_QUESTION]
    assert len(probes) == tries
    assert all(b["messages"][-1] == {"role": "assistant", "content": _PROBE_PREFILL}
               for b in probes)
    flags = probes[0]["continue_final_message"], probes[0]["add_generation_prompt"]
    assert flags == (True, False)
    assert all("continue_final_message" not in b for b in probes[1:])
    [body] = chats(seen)
    prefill = {"role": "assistant", "content": "So it is"}
    if mode == "emulate":
        assert body["messages"][-2:] == [prefill, {"role": "user", "content": CONTINUE_INSTRUCTION}]
    else:
        assert body["messages"][-1] == prefill
        assert body.get("continue_final_message") is (True if mode == "vllm" else None)


def test_a_model_the_server_does_not_serve():
    handler, seen = fake_server(models=("llama-3", "qwen2.5"))
    with pytest.raises(ModelNotServed, match=r"does not serve 'm'; it serves: llama-3, qwen2\.5$"):
        run(handler, lambda b: b.probe())
    assert [path for path, _ in seen] == ["/v1/models"]


def test_n_samples_become_n_requests_when_n_is_ignored():
    def answer(body):
        seed = body["seed"]
        return completion(choice(f"sample {seed}"), prompt=30 + seed, generated=seed - 4)

    handler, seen = fake_server(answer, n="ignores", logprobs=False)
    request = GenerationRequest(QUESTION, SamplingParams(seed=7, max_tokens=16), n=3)
    backend, samples = generate(handler, request)
    assert backend.capabilities.parallel_n is False
    assert [c.text for c in samples] == ["sample 7", "sample 8", "sample 9"]
    assert [(c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.calls)
            for c in samples] == [(37, 3, 1), (38, 4, 1), (39, 5, 1)]
    bodies = chats(seen)
    assert sorted(b["seed"] for b in bodies) == [7, 8, 9]
    assert all("n" not in b and b["max_tokens"] == 16 for b in bodies)


@pytest.mark.parametrize("logprobs, generated, expected", [
    (0, 9, [4, 2, 3]),  # counted from each choice's logprobs
    (None, 10, [4, 3, 3]),  # no logprobs: usage's 10 split by divmod(10, 3) = (3, 1)
])
def test_n_samples_in_one_request(logprobs, generated, expected):
    def tokens(i, body):
        return [token(f"{'abc'[i]}{k}", -k / 2) for k in range((4, 2, 3)[i])] \
            if body.get("logprobs") else None

    def answer(body):  # choices out of order: the backend sorts them by index
        return completion(*(choice("abc"[i], i, tokens=tokens(i, body)) for i in (2, 0, 1)),
                          prompt=12, generated=generated)

    handler, seen = fake_server(answer)
    request = GenerationRequest(QUESTION, SamplingParams(logprobs=logprobs), n=3)
    _, samples = generate(handler, request)
    [body] = chats(seen)
    assert body["n"] == 3 and "top_logprobs" not in body
    assert body.get("logprobs") is (True if logprobs == 0 else None)
    assert [c.text for c in samples] == ["a", "b", "c"]
    assert [(c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.calls)
            for c in samples] == [(12, expected[0], 1), (0, expected[1], 0), (0, expected[2], 0)]
    assert samples[1].logprobs == (
        (TokenLogprob("b0", 0.0), TokenLogprob("b1", -0.5)) if logprobs == 0 else None)


def test_samples_a_batched_reply_lacks_are_asked_for_alone():
    """A server that honoured n at the probe but returns fewer choices later: the missing
    samples come from single requests, and the batched call's cost is still counted."""
    def answer(body):
        if body.get("n") == 3:
            return completion(choice("a", 0), choice("b", 1), prompt=12, generated=6)
        return completion(choice("c"), prompt=12, generated=2)

    handler, seen = fake_server(answer)
    _, samples = generate(handler, GenerationRequest(QUESTION, SamplingParams(seed=4), n=3))
    assert [c.text for c in samples] == ["a", "b", "c"]
    assert [(c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.calls)
            for c in samples] == [(12, 3, 1), (0, 3, 0), (12, 2, 1)]
    assert [(b.get("n"), b["seed"]) for b in chats(seen)] == [(3, 4), (None, 6)]


WORDS = ["The", " answer", " is", " 5", "."]
PIECES = [(w, token(w, -k / 4, [(w, -k / 4), ("?", -3.0)])) for k, w in enumerate(WORDS)]


def test_a_monitor_stops_a_streamed_sample():
    calls = []

    def monitor(index, text, tok):
        calls.append((index, text, tok))
        return len(calls) == 3

    handler, seen = fake_server(lambda body: stream(body, PIECES, usage=(14, 6)))
    request = GenerationRequest(QUESTION, SamplingParams(logprobs=1), monitor=monitor)
    _, [c] = generate(handler, request)
    assert (c.text, c.finish_reason, c.stop_sequence) == ("The answer is", "cancelled", None)
    assert [(i, text) for i, text, _ in calls] == [(0, "The"), (0, "The answer"),
                                                   (0, "The answer is")]
    assert calls[2][2] == TokenLogprob(" is", -0.5, ((" is", -0.5), ("?", -3.0)))
    assert c.logprobs == tuple(tok for _, _, tok in calls)
    # stopped before the usage chunk: the tokens seen are the count
    assert (c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.calls) == (0, 3, 1)
    [body] = chats(seen)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert (body["logprobs"], body["top_logprobs"]) == (True, 1)


@pytest.mark.parametrize("usage, expected", [((14, 6), (14, 6)), (None, (0, 5))])
def test_a_streamed_sample_to_the_end(usage, expected):
    handler, _ = fake_server(lambda body: stream(body, PIECES, usage=usage))
    request = GenerationRequest(QUESTION, SamplingParams(logprobs=1),
                                monitor=lambda i, text, tok: False)
    _, [c] = generate(handler, request)
    assert (c.text, c.finish_reason) == ("The answer is 5.", "stop")
    assert [t.token for t in c.logprobs] == WORDS
    assert (c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.calls) == (*expected, 1)


def test_streamed_token_count_without_logprobs_or_usage():
    handler, _ = fake_server(lambda body: stream(body, [(w, None) for w in WORDS]),
                             logprobs=False)
    request = GenerationRequest(QUESTION, monitor=lambda i, text, tok: False)
    _, [c] = generate(handler, request)
    assert c.text == "The answer is 5."
    assert c.usage.completion_tokens == 5  # five content chunks


@pytest.mark.parametrize("extra, finish, stop", [
    ({"stop_reason": "###"}, "stop", "###"),  # vLLM names the stop string
    ({"stop_reason": None}, "stop", None),  # vLLM: the end of the answer
    ({}, "stop", "\n\n"),  # the server does not say: the first stop string is assumed
    ({"stop_reason": None}, "length", None)])
def test_usage_reasoning_and_stop_come_through(extra, finish, stop):
    handler, seen = fake_server(lambda body: completion(
        choice("5", finish=finish, reasoning="2 + 3 = 5", **extra), prompt=31, generated=17))
    request = GenerationRequest(QUESTION, SamplingParams(stop=("\n\n", "###")))
    _, [c] = generate(handler, request)
    assert (c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.calls) == (31, 17, 1)
    assert (c.text, c.reasoning, c.finish_reason, c.stop_sequence) == ("5", "2 + 3 = 5", finish,
                                                                       stop)
    assert chats(seen)[0]["stop"] == ["\n\n", "###"]


def test_a_503_is_retried():
    replies = [error(503, "overloaded"), completion(choice("5"))]
    handler, seen = fake_server(lambda body: replies.pop(0))
    _, [c] = generate(handler, GenerationRequest(QUESTION), max_retries=2, probe=False)
    assert c.text == "5" and len(chats(seen)) == 2


@pytest.mark.parametrize("reply, retries, error_type, message, attempts", [
    (lambda: error(503, "overloaded"), 0, BackendError, r"answered 503: .*overloaded", 1),
    (lambda: error(429, "slow down"), 2, BackendError, r"answered 429: .*slow down", 3),
    (lambda: error(401, "bad key"), 0, BackendError, "rejected the API key", 1),
    (lambda: error(404, "no such model"), 0, ModelNotServed, "does not serve 'm'$", 1),
    (lambda: httpx.ReadTimeout("slow"), 0, BackendTimeout, "fake/v1 timed out", 1),
])
def test_http_errors_are_translated(reply, retries, error_type, message, attempts):
    handler, seen = fake_server(lambda body: reply())
    with pytest.raises(error_type, match=message):
        generate(handler, GenerationRequest(QUESTION), max_retries=retries, probe=False)
    assert len(chats(seen)) == attempts


def test_an_unreachable_server_is_unavailable():
    def handler(request):
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(BackendUnavailable, match="cannot reach the server at http://fake/v1") as e:
        generate(handler, GenerationRequest(QUESTION))
    assert not isinstance(e.value, BackendTimeout)


def test_an_overloaded_server_fails_the_probe():
    inner, _ = fake_server()

    def handler(request):
        return error(503, "overloaded") if request.url.path.endswith("/completions") \
            else inner(request)

    with pytest.raises(BackendError, match="503"):
        run(handler, lambda b: b.probe())
