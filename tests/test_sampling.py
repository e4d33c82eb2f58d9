import numpy as np
import pytest

from ponder.backends.sampling import log_softmax, sample_token, top_logprobs
from ponder.types import SamplingParams

LOGITS = np.log(np.array([0.5, 0.25, 0.15, 0.1], dtype=np.float32))


def frequencies(params, draws=20000, seed=0):
    rng = np.random.default_rng(seed)
    counts = np.bincount([sample_token(LOGITS, params, rng) for _ in range(draws)], minlength=4)
    return counts / draws


def test_greedy():
    assert sample_token(LOGITS, SamplingParams(temperature=0), np.random.default_rng()) == 0


def test_plain_sampling_follows_the_distribution():
    assert frequencies(SamplingParams(temperature=1.0)) == pytest.approx([0.5, 0.25, 0.15, 0.1],
                                                                        abs=0.02)


def test_top_p_keeps_the_nucleus():
    # 0.5 + 0.25 = 0.75 >= 0.7: only the first two tokens, renormalised to 2/3 and 1/3.
    f = frequencies(SamplingParams(temperature=1.0, top_p=0.7))
    assert f[2] == f[3] == 0.0
    assert f[:2] == pytest.approx([2 / 3, 1 / 3], abs=0.02)


def test_top_k_and_min_p():
    f = frequencies(SamplingParams(temperature=1.0, top_k=3))
    assert f[3] == 0.0 and f[:3] == pytest.approx([0.5 / 0.9, 0.25 / 0.9, 0.15 / 0.9], abs=0.02)
    f = frequencies(SamplingParams(temperature=1.0, min_p=0.4))  # keeps p >= 0.4 * 0.5
    assert f[2] == f[3] == 0.0


def test_seeded_draws_repeat():
    params = SamplingParams(temperature=1.0)
    a = [sample_token(LOGITS, params, np.random.default_rng(3)) for _ in range(5)]
    b = [sample_token(LOGITS, params, np.random.default_rng(3)) for _ in range(5)]
    assert a == b


def test_top_p_on_a_large_flat_vocabulary():
    logits = np.zeros(50000, dtype=np.float32)  # every token equally likely: no short head
    rng = np.random.default_rng(1)
    draws = {sample_token(logits, SamplingParams(temperature=1.0, top_p=0.5), rng)
             for _ in range(200)}
    assert max(draws) < 25001  # the nucleus is the first half (stable order)


def test_logprobs():
    lp, top = top_logprobs(LOGITS, 2, 2)
    assert lp == pytest.approx(np.log(0.15), abs=1e-6)
    assert [t for t, _ in top] == [0, 1]
    assert np.exp(log_softmax(LOGITS)).sum() == pytest.approx(1.0)
