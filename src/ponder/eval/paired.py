"""Paired statistics for two strategies scored on the same problems.

Each problem gives one value per strategy: its expected accuracy at a budget (a fraction for a
subsampled budget, 0 or 1 for a single run). The difference of means gets a paired bootstrap
95% interval (the same resampled problems for both strategies) and an exact two-sided sign test
on the per-problem differences, ties dropped; on 0/1 outcomes that is the exact McNemar test
(a binomial test with p = 1/2 on the discordant pairs). No scipy: ``math.comb`` is exact.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ALPHA = 0.05
NOT_SIGNIFICANT = "not significant at 5%"


def sign_test(diffs: Sequence[float]) -> float:
    """Exact two-sided sign test on paired differences, zeros dropped: twice the smaller binomial
    tail of the positive count among the non-zero differences, p = 1/2 (at most 1)."""
    up = sum(1 for d in diffs if d > 0)
    down = sum(1 for d in diffs if d < 0)
    n = up + down
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(up, down) + 1))
    return min(1.0, 2 * tail / 2**n)


def _quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile of sorted values, interpolated linearly between ranks."""
    pos = q * (len(values) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (pos - low)


def paired_bootstrap(diffs: Sequence[float], draws: int, rng: random.Random,
                     level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean difference over ``draws`` resamples of the problems
    (with replacement); each resample keeps both strategies' values of a problem together."""
    if not diffs:
        return (math.nan, math.nan)
    n = len(diffs)
    means = sorted(statistics.fmean(rng.choices(diffs, k=n)) for _ in range(draws))
    tail = (1 - level) / 2
    return (_quantile(means, tail), _quantile(means, 1 - tail))


@dataclass(frozen=True)
class Comparison:
    """One strategy at a budget against a reference, on the problems both were scored on."""

    strategy: str
    budget: int
    reference: str
    reference_budget: int
    problems: int
    difference: float  # mean of strategy - reference, as a fraction (x100: points)
    ci_low: float
    ci_high: float
    p_value: float
    verdict: str

    def to_dict(self) -> dict[str, float | int | str]:
        return dict(self.__dict__)


def verdict(difference: float, p_value: float, up: int, down: int) -> str:
    """"better" or "worse" when the sign test rejects at 5% and the mean difference points the
    same way as most problems; otherwise not significant."""
    if p_value < ALPHA and difference > 0 and up > down:
        return "better"
    if p_value < ALPHA and difference < 0 and down > up:
        return "worse"
    return NOT_SIGNIFICANT


def compare(strategy: tuple[str, int], reference: tuple[str, int],
            values: Mapping[str, float], reference_values: Mapping[str, float],
            draws: int = 2000, seed: int = 0) -> Comparison:
    """Pair the per-problem values (problem id -> value) of a strategy and a reference on the
    problems both have; the bootstrap's generator is seeded by ``seed`` and the pair's names."""
    common = [pid for pid in values if pid in reference_values]
    diffs = [values[pid] - reference_values[pid] for pid in common]
    rng = random.Random(f"{seed}:{strategy[0]}@{strategy[1]}:{reference[0]}@{reference[1]}")
    low, high = paired_bootstrap(diffs, draws, rng)
    p = sign_test(diffs)
    mean = statistics.fmean(diffs) if diffs else math.nan
    up = sum(1 for d in diffs if d > 0)
    down = sum(1 for d in diffs if d < 0)
    return Comparison(strategy[0], strategy[1], reference[0], reference[1], len(diffs), mean,
                      low, high, p, verdict(mean, p, up, down) if diffs else NOT_SIGNIFICANT)
