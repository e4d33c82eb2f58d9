"""Integration tests on the real bundled model through the in-process llama.cpp backend."""

import asyncio

import pytest

from ponder import BackendError, GenerationRequest, Message, ModelError, SamplingParams, asolve
from ponder.backends.llamacpp import LlamaCppBackend

pytestmark = pytest.mark.model

QUESTION = (Message("user", "A farmer has 17 sheep and buys 5 more. How many sheep does he have?"),)


def generate(backend, *requests):
    return asyncio.run(backend.generate(list(requests)))


def test_n_samples_come_from_one_batched_run_with_correct_usage(llama):
    request = GenerationRequest(QUESTION, SamplingParams(temperature=0.9, max_tokens=24, seed=3),
                                n=4)
    [samples] = generate(llama, request)
    assert len(samples) == 4
    prompt_len = len(llama.prompt_tokens(request))
    # The prompt was evaluated once: charged once, to the first sample, with the one call.
    assert [c.usage.prompt_tokens for c in samples] == [prompt_len, 0, 0, 0]
    assert [c.usage.calls for c in samples] == [1, 0, 0, 0]
    for c in samples:
        assert 1 <= c.usage.completion_tokens <= 24
        assert c.finish_reason in ("stop", "length")
        if c.finish_reason == "length":
            assert c.usage.completion_tokens == 24
    assert len({c.text for c in samples}) > 1  # different random streams


def test_same_seed_same_outputs(llama):
    request = GenerationRequest(QUESTION, SamplingParams(temperature=1.0, max_tokens=16, seed=11),
                                n=3)
    first = [c.text for c in generate(llama, request)[0]]
    second = [c.text for c in generate(llama, request)[0]]
    other = [c.text for c in generate(llama, request.replace(
        params=request.params.replace(seed=12)))[0]]
    assert first == second
    assert first != other


def test_logprobs_and_token_count_agree(llama):
    request = GenerationRequest(QUESTION, SamplingParams(temperature=0.0, max_tokens=12,
                                                         logprobs=3))
    [[c]] = generate(llama, request)
    assert len(c.logprobs) == c.usage.completion_tokens
    for t in c.logprobs:
        assert t.logprob <= 0.0 and len(t.top) == 3
        assert t.top[0][1] >= t.top[1][1] >= t.top[2][1]
    # Greedy decoding picks the most likely token each time.
    assert all(abs(t.logprob - t.top[0][1]) < 1e-9 for t in c.logprobs)


def test_prefill_continues_and_stop_strings_cut(llama):
    request = GenerationRequest(
        (Message("user", "Count from 1 to 10, separated by commas."),),
        SamplingParams(temperature=0.0, max_tokens=20, stop=("7",)),
        prefill="1, 2, 3,",
    )
    [[c]] = generate(llama, request)
    assert c.text.strip().startswith("4")
    assert "7" not in c.text and c.finish_reason == "stop" and c.stop_sequence == "7"
    [[free]] = generate(llama, request.replace(params=request.params.replace(stop=())))
    assert free.stop_sequence is None


def test_prompts_sharing_a_prefix_evaluate_it_once(llama):
    """Beams of a step search: same question, different partial answers, one call."""
    params = SamplingParams(temperature=0.0, max_tokens=8)
    beams = [GenerationRequest(QUESTION, params, prefill=p)
             for p in ("He starts with 17 sheep.", "He starts with 17 sheep. Then", "First,")]
    together = generate(llama, *beams)
    alone = [generate(llama, b)[0][0] for b in beams]
    lengths = [len(llama.prompt_tokens(b)) for b in beams]
    shared = len(llama.prompt_tokens(GenerationRequest(QUESTION)))  # at least the question
    assert together[0][0].usage.prompt_tokens == lengths[0]
    assert all(row[0].usage.prompt_tokens <= n - shared + 1
               for row, n in zip(together[1:], lengths[1:], strict=True))
    assert [row[0].text for row in together] == [c.text for c in alone]


def test_monitor_stops_one_sequence_and_not_the_others(llama):
    def monitor(index, text, token):
        return index == 1 and len(text) >= 10

    request = GenerationRequest(QUESTION, SamplingParams(temperature=0.7, max_tokens=20, seed=5,
                                                         logprobs=0), n=3, monitor=monitor)
    [samples] = generate(llama, request)
    assert samples[1].finish_reason == "cancelled"
    assert len(samples[1].text) >= 10
    assert samples[1].usage.completion_tokens == len(samples[1].logprobs)
    assert samples[1].usage.completion_tokens < max(s.usage.completion_tokens
                                                     for s in (samples[0], samples[2]))
    assert all(s.finish_reason != "cancelled" for s in (samples[0], samples[2]))


def test_many_requests_share_one_call_and_more_samples_than_slots(llama):
    requests = [GenerationRequest((Message("user", f"Say the number {i}."),),
                                  SamplingParams(temperature=0.5, max_tokens=6, seed=i), n=5)
                for i in range(3)]  # 15 sequences on a backend with 8 slots: split into rounds
    rows = generate(llama, *requests)
    assert [len(r) for r in rows] == [5, 5, 5]
    assert sum(c.usage.calls for r in rows for c in r) >= 3


def test_strategy_end_to_end_on_the_bundled_model(llama):
    result = asyncio.run(asolve("What is 2 + 3?", "self-consistency", n=3, backend=llama, seed=1,
                                max_tokens=48))
    assert len(result.candidates) == 3
    assert result.usage.completion_tokens == sum(c.usage.completion_tokens
                                                 for c in result.candidates)
    assert result.usage.calls == 1


def test_missing_and_corrupt_model_files(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        LlamaCppBackend(tmp_path / "nope.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(ModelError, match="not a GGUF"):
        LlamaCppBackend(junk)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(ModelError, match="corrupt"):
        LlamaCppBackend(truncated)


def test_concurrent_calls_share_the_decoding_loop(llama):
    steps: dict[str, list[int]] = {"a": [], "b": []}

    async def both():
        def request(i):
            return GenerationRequest(QUESTION, SamplingParams(temperature=0.7, max_tokens=24,
                                                              seed=i), n=2)
        return await asyncio.gather(
            llama.generate([request(1)], on_progress=steps["a"].append),
            llama.generate([request(2)], on_progress=steps["b"].append),
        )

    a, b = asyncio.run(both())
    assert len(a[0]) == 2 and len(b[0]) == 2
    # Both calls advanced in the same steps: each saw progress while the other was running.
    assert steps["a"] and steps["b"]
    assert steps["a"][0] == 2 and steps["b"][0] == 2


def test_cancelling_a_call_stops_its_generation(llama):
    import time

    story = (Message("user", "Write a very long story about a dragon."),)
    job = llama.submit([GenerationRequest(story, SamplingParams(temperature=0.8, max_tokens=2000,
                                                                seed=1), n=4)])
    deadline = time.monotonic() + 30
    while job.produced < 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    job.cancel.set()
    [samples] = job.future.result(timeout=30)
    assert any(c.finish_reason == "cancelled" for c in samples)
    assert all(c.usage.completion_tokens < 100 for c in samples)
    # The loop is free again at once.
    [[c]] = generate(llama, GenerationRequest(QUESTION, SamplingParams(max_tokens=4)))
    assert c.usage.completion_tokens <= 4


def test_a_failing_call_fails_alone_and_the_loop_goes_on(llama):
    from ponder import BackendError

    def explode(tokens):
        raise RuntimeError("progress display crashed")

    async def both():
        bad = GenerationRequest(QUESTION, SamplingParams(max_tokens=8))
        good = GenerationRequest(QUESTION, SamplingParams(max_tokens=8, seed=1), n=2)
        return await asyncio.gather(llama.generate([bad], on_progress=explode),
                                    llama.generate([good]), return_exceptions=True)

    bad, good = asyncio.run(both())
    assert isinstance(bad, BackendError) and "progress display crashed" in str(bad)
    assert len(good[0]) == 2  # the other caller's samples were not lost
    [[c]] = generate(llama, GenerationRequest(QUESTION, SamplingParams(max_tokens=4)))
    assert c.usage.completion_tokens >= 1  # and the decoding thread goes on


def test_split_kv_cache_shares_the_prompt_and_bounds_each_sequence(model_path):
    """kv_unified=False: each sequence has its own n_ctx / n_seq_max cells (attention does not
    span every other sequence's cells); the prompt is still evaluated once and copied."""
    backend = LlamaCppBackend(model_path, n_ctx=1024, n_seq_max=4, kv_unified=False)
    try:
        assert backend.seq_ctx == 256
        request = GenerationRequest((Message("user", "Name a colour."),),
                                    SamplingParams(max_tokens=400, seed=1), n=4)
        [completions] = asyncio.run(backend.generate([request]))
        assert len(completions) == 4 and all(c.text for c in completions)
        assert completions[0].usage.calls == 1 and completions[1].usage.prompt_tokens == 0
        assert all(c.usage.completion_tokens <= 256 for c in completions)
        long = GenerationRequest((Message("user", "word " * 400),), SamplingParams(max_tokens=4))
        with pytest.raises(BackendError, match="per sequence"):
            asyncio.run(backend.generate([long]))
    finally:
        backend.close()
