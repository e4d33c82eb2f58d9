"""The openai backend against a real OpenAI-compatible server (llama-cpp-python's) on localhost."""

import asyncio

import pytest

from ponder import (
    BackendUnavailable,
    GenerationRequest,
    Message,
    ModelNotServed,
    SamplingParams,
    asolve,
)
from ponder.backends.openai_http import OpenAIBackend

pytestmark = pytest.mark.model

QUESTION = (Message("user", "What is 2 + 3?"),)


async def _generate(backend, requests):
    try:
        return await backend.generate(requests)
    finally:
        await backend.aclose()


def test_probe_and_n_samples(llama_server):
    backend = OpenAIBackend("smol", llama_server)
    request = GenerationRequest(QUESTION, SamplingParams(temperature=0.9, max_tokens=16, seed=1),
                                n=3)
    [samples] = asyncio.run(_generate(backend, [request]))
    caps = backend.capabilities
    assert len(samples) == 3
    assert all(c.usage.completion_tokens >= 1 for c in samples)
    if caps.parallel_n:  # one request: its prompt charged once
        assert sum(c.usage.calls for c in samples) == 1
    else:  # n was not honoured: three requests, each charged its prompt
        assert [c.usage.calls for c in samples] == [1, 1, 1]
        assert all(c.usage.prompt_tokens > 0 for c in samples)


def test_fallback_when_n_is_not_honoured(llama_server):
    from dataclasses import replace

    async def scenario():
        backend = OpenAIBackend("smol", llama_server)
        await backend.probe()
        backend._caps = replace(backend._caps, parallel_n=False)  # as if the server ignored n
        request = GenerationRequest(QUESTION, SamplingParams(temperature=0.9, max_tokens=8), n=4)
        return await _generate(backend, [request])

    [samples] = asyncio.run(scenario())
    assert len(samples) == 4
    assert [c.usage.calls for c in samples] == [1, 1, 1, 1]


def test_streamed_monitor_stops_a_sample(llama_server):
    backend = OpenAIBackend("smol", llama_server)
    request = GenerationRequest(QUESTION, SamplingParams(temperature=0.0, max_tokens=64), n=1,
                                monitor=lambda i, text, tok: len(text) >= 5)
    [[c]] = asyncio.run(_generate(backend, [request]))
    assert c.finish_reason == "cancelled"
    assert 5 <= len(c.text) < 60


def test_strategy_through_the_server(llama_server):
    result = asyncio.run(asolve("What is 2 + 3?", "self-consistency", n=2, model="smol",
                                base_url=llama_server, max_tokens=32, seed=3))
    assert len(result.candidates) == 2
    assert result.usage.completion_tokens > 0 and result.usage.prompt_tokens > 0


def test_model_not_served(llama_server):
    with pytest.raises(ModelNotServed, match="does not serve 'gpt-17'.*smol"):
        asyncio.run(asolve("q", "cot", model="gpt-17", base_url=llama_server))


def test_server_down_is_a_clear_error():
    from conftest import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    backend = OpenAIBackend("smol", url, max_retries=0, timeout=5)
    with pytest.raises(BackendUnavailable, match="cannot reach the server"):
        asyncio.run(_generate(backend, [GenerationRequest(QUESTION)]))


def test_reasoning_text_is_kept_apart():
    from types import SimpleNamespace

    from ponder.backends.openai_http import _reasoning

    assert _reasoning(SimpleNamespace(content="5", reasoning_content="2 + 3 = 5")) == "2 + 3 = 5"
    newer = SimpleNamespace(content="5", model_extra={"reasoning": "think"})
    assert _reasoning(newer) == "think"
    assert _reasoning(SimpleNamespace(content="5")) is None


def test_streamed_logprobs_reach_the_monitor(llama_server):
    """deepconf's online stop over HTTP: per-token logprobs (with alternatives) arrive while
    the sample streams, and the monitor can stop it on them."""
    backend = OpenAIBackend("smol", llama_server)
    seen = []

    def monitor(index, text, token):
        seen.append(token)
        return len(seen) >= 6

    request = GenerationRequest(QUESTION, SamplingParams(temperature=0.0, max_tokens=64,
                                                         logprobs=3), n=1, monitor=monitor)
    [[c]] = asyncio.run(_generate(backend, [request]))
    assert c.finish_reason == "cancelled"
    assert all(t is not None and t.top for t in seen)
    assert len(c.logprobs) == len(seen) == 6


def test_which_stop_ended_a_choice():
    from types import SimpleNamespace

    from ponder.backends.openai_http import _stop_sequence

    def choice(finish, **extra):
        return SimpleNamespace(finish_reason=finish, model_extra=extra)

    assert _stop_sequence(choice("stop", stop_reason="\n\n"), ("\n\n",)) == "\n\n"  # vLLM
    assert _stop_sequence(choice("stop", stop_reason=None), ("\n\n",)) is None  # end of answer
    assert _stop_sequence(choice("stop", stop_reason=151645), ("\n\n",)) is None  # a stop token
    assert _stop_sequence(choice("stop"), ("\n\n",)) == "\n\n"  # the server does not say
    assert _stop_sequence(choice("stop"), ()) is None
    assert _stop_sequence(choice("length"), ("\n\n",)) is None


def test_step_search_through_the_server(llama_server):
    result = asyncio.run(asolve("What is 2 + 3?", "beam-search", n=1, m=2, model="smol",
                                base_url=llama_server, max_tokens=48, step_tokens=24,
                                max_steps=2, seed=3))
    steps = [n for n in result.trace.nodes if n.label.startswith("step")]
    assert len(steps) >= 2 and len(result.candidates) == 1
    assert result.usage.completion_tokens == sum(
        n.usage.completion_tokens for n in result.trace.nodes if n.usage is not None)
