"""Accuracy at every budget from stored samples: subsampling, coverage, confidence intervals.

The largest budget's samples are generated once; a smaller budget k is scored by drawing many
random k-subsets of them (fixed seed) and aggregating each subset as the strategy would (majority
vote, or the best verifier score). Each problem contributes its expected accuracy over the draws.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054


Picker = Callable[[Sequence[int]], "int | None"]


def expected_accuracy(pick: Picker, correct: Sequence[bool], k: int, draws: int,
                      rng: random.Random) -> float:
    """Mean correctness of ``pick`` over k-subsets of the samples: every subset when there are
    at most ``draws`` of them (exact), else ``draws`` random ones."""
    n = len(correct)
    if n == 0:
        return 0.0
    k = min(k, n)
    if math.comb(n, k) <= draws:
        subsets = list(itertools.combinations(range(n), k))
        hits = 0
        for subset in subsets:
            chosen = pick(subset)
            hits += chosen is not None and correct[chosen]
        return hits / len(subsets)
    hits = 0
    for _ in range(draws):
        chosen = pick(sorted(rng.sample(range(n), k)))
        hits += chosen is not None and correct[chosen]
    return hits / draws


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased coverage estimator: 1 - C(n-c, k) / C(n, k)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def mean_ci(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95% normal-approximation interval over problems, clipped to [0, 1]."""
    if not values:
        return (math.nan, math.nan, math.nan)
    mean = statistics.fmean(values)
    if len(values) < 2:
        return (mean, mean, mean)
    half = Z95 * statistics.stdev(values) / math.sqrt(len(values))
    return (mean, max(0.0, mean - half), min(1.0, mean + half))


@dataclass(frozen=True)
class CurvePoint:
    strategy: str
    budget: int
    accuracy: float
    ci_low: float
    ci_high: float
    tokens: float  # mean generated tokens per problem, verifier tokens included
    calls: float
    seconds: float
    problems: int
    # mean FLOPs-equivalent cost per problem over every model (2 x parameters per token read or
    # written), None where a model's size is unknown
    flops: float | None = None
    dollars: float | None = None  # mean dollars per problem, where every model is priced

    def to_dict(self) -> dict[str, float | int | str]:
        return dict(self.__dict__)
