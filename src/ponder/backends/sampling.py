"""Token sampling and logprobs from raw logits, in NumPy (used by the llamacpp backend).

Exact over the full vocabulary, and cheap per token: top-p sorts only the likely head.
"""

from __future__ import annotations

import numpy as np

from ponder.types import SamplingParams


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


def _nucleus(p: np.ndarray, top_p: float) -> np.ndarray:
    """Indices of the smallest set of most likely tokens whose mass reaches ``top_p`` of the
    total, most likely first. Sorts only the tokens above a threshold that is lowered until
    they hold that mass, so the result is exact without sorting the whole vocabulary."""
    target = top_p * float(p.sum(dtype=np.float64))
    threshold = float(p.max()) * 1e-3
    while True:
        idx = np.flatnonzero(p >= threshold)
        if float(p[idx].sum(dtype=np.float64)) >= target or threshold == 0.0:
            break
        threshold = threshold * 1e-3 if threshold > 1e-30 else 0.0
    idx = idx[np.argsort(-p[idx], kind="stable")]
    cum = np.cumsum(p[idx], dtype=np.float64)
    return idx[: int(np.searchsorted(cum, target)) + 1]


def sample_token(logits: np.ndarray, params: SamplingParams, rng: np.random.Generator) -> int:
    """Draw one token id. Temperature 0 is greedy. Does not modify ``logits``."""
    if params.temperature <= 0.0:
        return int(np.argmax(logits))
    x = logits.astype(np.float32) / np.float32(params.temperature)
    candidates: np.ndarray | None = None
    if 0 < params.top_k < x.size:
        candidates = np.argpartition(-x, params.top_k - 1)[: params.top_k]
        x = x[candidates]
    p = np.exp(x - x.max())  # the most likely token has p = 1
    if params.min_p > 0.0:
        p[p < params.min_p] = 0.0
    if params.top_p < 1.0:
        keep = _nucleus(p, params.top_p)
        candidates = keep if candidates is None else candidates[keep]
        p = p[keep]
    cum = np.cumsum(p, dtype=np.float64)
    choice = min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), p.size - 1)
    return int(choice if candidates is None else candidates[choice])
