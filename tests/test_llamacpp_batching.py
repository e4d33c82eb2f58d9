"""The llama.cpp backend's decoding loop under concurrent callers, and its automatic defaults,
on the real bundled model."""

import asyncio

import pytest

from ponder import GenerationRequest, Message, SamplingParams
from ponder.backends.llamacpp import LlamaCppBackend, auto_settings

pytestmark = pytest.mark.model

SHEEP = (Message("user", "A farmer has 17 sheep and buys 5 more. How many sheep does he have?"),)
TRAIN = (Message("user", "A train goes 60 km in one hour. How far does it go in 3 hours?"),)
STORY = (Message("user", "Write a very long story about a dragon."),)


@pytest.fixture(scope="module")
def split(model_path):
    backend = LlamaCppBackend(model_path, n_ctx=2048, n_seq_max=8, kv_unified=False)
    yield backend
    backend.close()


def texts(rows):
    return [[c.text for c in row] for row in rows]


def record_batches(backend, monkeypatch, ids=None):
    """The size of every llama_decode batch the loop sends (and, into ``ids``, the sequence
    ids of every decode step: one token per sequence)."""
    sizes: list[int] = []
    decode = type(backend)._decode

    def spy(self, items):
        sizes.append(len(items))
        if ids is not None and all(item[3] for item in items):
            ids.append([item[2] for item in items])
        return decode(self, items)

    monkeypatch.setattr(type(backend), "_decode", spy)
    return sizes


def test_auto_settings_follow_cores_memory_and_model(split):
    model = split._model.model
    # SmolLM2-135M: 30 layers, 3 KV heads of 64 -> 2 * 2 bytes * 30 * 3 * 64 = 23040 B a cell.
    big = auto_settings(model, cores=2, memory=64 << 30)  # budget 1 GiB: 46603 cells
    assert (big.n_seq_max, big.n_ctx, big.n_threads) == (16, 16 * 2816, 2)
    small = auto_settings(model, cores=2, memory=4 << 30)  # an eighth: 512 MiB, 23301 cells
    assert small.n_ctx == 16 * 1280
    one = auto_settings(model, cores=1, memory=64 << 30)  # 8 sequences, capped at 4096 each
    assert (one.n_seq_max, one.n_ctx, one.n_threads) == (8, 8 * 4096, 1)
    assert auto_settings(model, cores=16, memory=64 << 30).n_seq_max == 32
    assert auto_settings(model, n_seq_max=3, cores=2, memory=64 << 30).n_seq_max == 3


def test_defaults_are_split_streams_sized_by_auto_settings(model_path):
    backend = LlamaCppBackend(model_path, n_seq_max=2)
    try:
        assert backend.kv_unified is False
        assert backend.n_seq_max == 2 and backend.n_ctx == 2 * 4096
        assert backend.seq_ctx == 4096
    finally:
        backend.close()


def test_concurrent_calls_decode_together_and_give_what_each_gives_alone(split, monkeypatch):
    a = GenerationRequest(SHEEP, SamplingParams(temperature=0.8, max_tokens=24, seed=1), n=3)
    b = GenerationRequest(TRAIN, SamplingParams(temperature=0.8, max_tokens=24, seed=2), n=2)
    alone_a = asyncio.run(split.generate([a]))
    alone_b = asyncio.run(split.generate([b]))
    sizes = record_batches(split, monkeypatch)

    async def both():
        return await asyncio.gather(split.generate([a]), split.generate([b]))

    together_a, together_b = asyncio.run(both())
    # One decode step carried all five sequences of the two calls.
    assert max(sizes) >= 5 and 5 in sizes
    # Split streams: a sequence's logits do not depend on its batch mates, so the same seeds
    # give the same samples as each call alone.
    assert texts(together_a) == texts(alone_a) and texts(together_b) == texts(alone_b)
    # Each prompt is charged once (to the sample that finished first), with the one call: in
    # full when evaluated alone; less when admitted in the same round as the other call's,
    # whose stream it copies up to their common prefix (system prompt and chat template).
    def charged(rows):
        return (sum(c.usage.prompt_tokens for c in rows[0]), sum(c.usage.calls for c in rows[0]))

    lengths = [len(split.prompt_tokens(r)) for r in (a, b)]
    assert [charged(alone_a), charged(alone_b)] == [(lengths[0], 1), (lengths[1], 1)]
    (pa, ca), (pb, cb) = charged(together_a), charged(together_b)
    assert ca == cb == 1
    assert 0 < pa <= lengths[0] and 0 < pb <= lengths[1]
    assert pa == lengths[0] or pb == lengths[1]  # the first one admitted in full
    for together, alone in ((together_a, alone_a), (together_b, alone_b)):
        assert [c.usage.completion_tokens for c in together[0]] == \
            [c.usage.completion_tokens for c in alone[0]]


def test_cancelling_one_call_leaves_the_other_untouched(split):
    keep = GenerationRequest(SHEEP, SamplingParams(temperature=0.7, max_tokens=32, seed=4), n=2)
    alone = asyncio.run(split.generate([keep]))
    seen: list[int] = []

    async def race():
        long = asyncio.create_task(split.generate(
            [GenerationRequest(STORY, SamplingParams(temperature=0.8, max_tokens=400, seed=1),
                               n=3)], on_progress=seen.append))
        other = asyncio.create_task(split.generate([keep]))
        while not seen or seen[-1] < 9:
            await asyncio.sleep(0.005)
        long.cancel()
        with pytest.raises(asyncio.CancelledError):
            await long
        return await other

    kept = asyncio.run(race())
    assert texts(kept) == texts(alone)
    assert [c.usage.completion_tokens for c in kept[0]] == \
        [c.usage.completion_tokens for c in alone[0]]
    assert seen[-1] < 3 * 400  # the cancelled call stopped early


def test_a_budget_stop_of_one_sequence_does_not_disturb_another_call(split, monkeypatch):
    def monitor(index, text, token):
        return len(text) >= 12  # every sample of this call stops after ~12 characters

    stopped = GenerationRequest(STORY, SamplingParams(temperature=0.8, max_tokens=200, seed=2),
                                n=2, monitor=monitor)
    other = GenerationRequest(TRAIN, SamplingParams(temperature=0.8, max_tokens=24, seed=6), n=2)
    alone = asyncio.run(split.generate([other]))
    steps: list[list[int]] = []
    record_batches(split, monkeypatch, steps)

    async def both():
        return await asyncio.gather(split.generate([stopped]), split.generate([other]))

    cut, kept = asyncio.run(both())
    # When sequences finish, the others move down: every step's ids are 0..k-1, in order, so
    # llama.cpp decodes the step as one ubatch over consecutive streams.
    assert steps and all(ids == list(range(len(ids))) for ids in steps)
    assert max(map(len, steps)) == 4 and min(map(len, steps)) <= 2
    assert [c.finish_reason for c in cut[0]] == ["cancelled", "cancelled"]
    assert all(12 <= len(c.text) < 60 for c in cut[0])
    assert texts(kept) == texts(alone)


def test_split_streams_share_a_common_prefix_between_requests(split):
    """Beams of a step search: the later prompts copy the first one's stream up to the common
    prefix and evaluate only their own tail, with the same result as evaluating all of it."""
    params = SamplingParams(temperature=0.0, max_tokens=8)
    beams = [GenerationRequest(SHEEP, params, prefill=p)
             for p in ("He starts with 17 sheep.", "He starts with 17 sheep. Then he buys")]
    together = asyncio.run(split.generate(beams))
    alone = [asyncio.run(split.generate([b]))[0][0] for b in beams]
    full = len(split.prompt_tokens(beams[1]))
    assert together[1][0].usage.prompt_tokens < full - 20  # the question was not evaluated again
    assert [row[0].text for row in together] == [c.text for c in alone]


@pytest.fixture(scope="module")
def unified(model_path):
    backend = LlamaCppBackend(model_path, n_ctx=2048, n_seq_max=8, kv_unified=True)
    yield backend
    backend.close()


@pytest.mark.parametrize("layout", ["split", "unified"])
def test_a_prompt_that_starts_like_a_live_sequences_copies_it(layout, request):
    """A request admitted while another with the same question is still decoding (another plan
    on the same problem, the rest of a request admitted in parts, few-shot exemplars) copies
    that sequence's prompt cells (split streams) or shares them (unified) instead of evaluating
    them again, and samples the same."""
    split = request.getfixturevalue(layout)
    story = GenerationRequest(STORY, SamplingParams(temperature=0.0, max_tokens=96))
    later = GenerationRequest(STORY, SamplingParams(temperature=0.0, max_tokens=8),
                              prefill="Once upon a time, in a land")

    async def go():
        loop = asyncio.get_running_loop()
        started = asyncio.Event()
        first = asyncio.create_task(split.generate(
            [story], on_progress=lambda n: loop.call_soon_threadsafe(started.set)))
        await started.wait()  # the story is decoding: its cells hold the question
        second = await split.generate([later])
        return (await first)[0][0], second[0][0]

    first, shared = asyncio.run(go())
    alone = asyncio.run(split.generate([later]))[0][0]
    full = len(split.prompt_tokens(later))
    assert first.usage.completion_tokens == 96  # still decoding when the later one came
    assert alone.usage.prompt_tokens == full
    assert shared.usage.prompt_tokens < full - 20  # only the prefill's tail was evaluated
    assert shared.text == alone.text
