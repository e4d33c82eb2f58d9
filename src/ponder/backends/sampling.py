"""Token sampling and logprobs from raw logits, in NumPy (used by the llamacpp backend).

Exact for the full vocabulary: top-p sorts only a short head of candidates and widens it when
that head does not reach the requested mass.
"""

from __future__ import annotations

import numpy as np

from ponder.types import SamplingParams

_HEAD = 1024


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    m = x.max()
    return x - (m + np.log(np.exp(x - m).sum()))


def top_logprobs(logits: np.ndarray, token: int, k: int) -> tuple[float, list[tuple[int, float]]]:
    """The chosen token's logprob and the top-``k`` (token, logprob) alternatives, best first,
    under the model's own distribution (temperature 1, no truncation), as OpenAI reports them."""
    lp = log_softmax(logits)
    top: list[tuple[int, float]] = []
    if k > 0:
        k = min(k, lp.size)
        idx = np.argpartition(-lp, k - 1)[:k]
        idx = idx[np.argsort(-lp[idx], kind="stable")]
        top = [(int(i), float(lp[i])) for i in idx]
    return float(lp[token]), top


def sample_token(logits: np.ndarray, params: SamplingParams, rng: np.random.Generator) -> int:
    """Draw one token id. Temperature 0 is greedy. Does not modify ``logits``."""
    if params.temperature <= 0.0:
        return int(np.argmax(logits))
    x = logits.astype(np.float64) / params.temperature
    candidates = np.arange(x.size)
    if 0 < params.top_k < x.size:
        candidates = np.argpartition(-x, params.top_k - 1)[: params.top_k]
        x = x[candidates]
    p = np.exp(x - x.max())
    p /= p.sum()
    if params.min_p > 0.0:
        keep = p >= params.min_p * p.max()
        candidates, p = candidates[keep], p[keep]
        p = p / p.sum()
    if params.top_p < 1.0:
        head = min(_HEAD, p.size)
        while True:
            idx = np.argpartition(-p, head - 1)[:head] if head < p.size else np.arange(p.size)
            idx = idx[np.argsort(-p[idx], kind="stable")]
            cum = np.cumsum(p[idx])
            if cum[-1] >= params.top_p or head >= p.size:
                break
            head = min(p.size, head * 4)
        cut = int(np.searchsorted(cum, params.top_p)) + 1
        idx = idx[:cut]
        candidates, p = candidates[idx], p[idx] / p[idx].sum()
    choice = int(np.searchsorted(np.cumsum(p), rng.random() * p.sum()))
    return int(candidates[min(choice, candidates.size - 1)])
