"""adaptive-consistency: sample in waves; stop as soon as the leading answer is very likely to
stay the leader (Aggarwal et al., "Let's Sample Step by Step: Adaptive-Consistency", 2023).

After each wave the rule looks at the two largest answer groups, a (leader) and b (runner-up)
votes (a chain cut off at the token limit counts ``cut_weight``, 0 by default, as in the
vote), and puts a uniform prior on the leader's share among those two: the posterior is
Beta(a + 1, b + 1), and sampling stops when P(share > 1/2) >= ``threshold``. For whole numbers
that probability is a binomial tail, computed exactly. Four unanimous samples give 0.969; three
against one 0.812; a tie 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field

from ponder.core.context import Context
from ponder.domains import cluster_answers
from ponder.domains.vote import is_cut, tally
from ponder.strategies.base import BaseStrategy, EvalMode, Outcome, StrategyConfig
from ponder.strategies.samplers import SamplingModeConfig, sample_candidates
from ponder.strategies.select import modes_of, vote
from ponder.types import Candidate, Problem


def leader_stays_probability(a: float, b: float) -> float:
    """P(p > 1/2) for p ~ Beta(a + 1, b + 1): the chance the leader (a votes) beats the
    runner-up (b votes). Exact binomial tail for whole counts; weighted counts are rounded.

    >>> round(leader_stays_probability(4, 0), 3), leader_stays_probability(2, 2)
    (0.969, 0.5)
    """
    a, b = round(a), round(b)
    n = a + b + 1
    # I_{1/2}(a + 1, b + 1) = P(Binomial(n, 1/2) >= a + 1) = P(p <= 1/2)
    tail = sum(math.comb(n, k) for k in range(a + 1, n + 1)) / 2**n
    return 1.0 - tail


def voting_top_two(clusters: Sequence[int | None], cut: Sequence[bool] | None = None,
                   cut_weight: float = 0.0) -> tuple[float, float]:
    """The two largest groups' votes: one per sample, a sample cut off at the token limit
    ``cut_weight``. Cut samples never count in full here: the final vote falls back on them
    when they are all there is, but they are no reason to stop sampling."""
    weights = None if cut is None else [cut_weight if c else 1.0 for c in cut]
    ranked = sorted((g.weight for g in tally(clusters, weights=weights)),
                    reverse=True) + [0.0, 0.0]
    return ranked[0], ranked[1]


def should_stop(clusters: Sequence[int | None], threshold: float,
                cut: Sequence[bool] | None = None, cut_weight: float = 0.0
                ) -> tuple[bool, float]:
    a, b = voting_top_two(clusters, cut, cut_weight)
    p = leader_stays_probability(a, b) if a > 0 else 0.0
    return p >= threshold, p


class AdaptiveConsistencyConfig(SamplingModeConfig):
    wave: int = Field(4, ge=1, le=256, description="samples per wave")
    max_n: int = Field(16, ge=1, le=1024, description="most samples in all")
    threshold: float = Field(0.95, gt=0.5, lt=1.0,
                             description="stop when P(leader stays the leader) reaches this")


class AdaptiveConsistency(BaseStrategy):
    name: ClassVar[str] = "adaptive-consistency"
    description: ClassVar[str] = ("self-consistency in waves; stops once the leading answer "
                                  "is likely to stay ahead")
    Config: ClassVar[type[StrategyConfig]] = AdaptiveConsistencyConfig
    config: AdaptiveConsistencyConfig
    effort_presets: ClassVar[dict[str, dict[str, Any]]] = {
        "low": {"max_n": 8, "threshold": 0.9},
        "medium": {"max_n": 16, "threshold": 0.95},
        "high": {"max_n": 32, "threshold": 0.99},
    }
    budget_knob: ClassVar[str | None] = "max_n"
    # The harness replays the stopping rule on the stored self-consistency samples, in order:
    # the same run as plain voting, so the saving is measured on identical samples.
    eval_mode: ClassVar[EvalMode] = "sequential"

    @staticmethod
    def samples_used(config: Any, clusters: Sequence[int | None], budget: int,
                     cut: Sequence[bool] | None = None) -> int:
        """How many of these samples (in order) the strategy would draw at ``max_n = budget``
        (``cut``: which were cut off at the token limit): the evaluation harness replays the
        rule on stored samples with it."""
        limit = min(budget, len(clusters))
        used = 0
        while used < limit:
            used = min(used + config.wave, limit)
            if should_stop(clusters[:used], config.threshold,
                           None if cut is None else cut[:used], config.cut_weight)[0]:
                break
        return used

    async def solve(self, problem: Problem, ctx: Context, root: int) -> Outcome:
        cfg = self.config
        candidates: list[Candidate] = []
        clusters: list[int | None] = []
        wave = 0
        while len(candidates) < cfg.max_n:
            wave += 1
            k = min(cfg.wave, cfg.max_n - len(candidates))
            new = await sample_candidates(problem, ctx, cfg, k, root, label=f"wave {wave}")
            if not new:
                break  # the budget is spent
            candidates += new
            clusters = await cluster_answers(problem, [c.answer for c in candidates],
                                             ctx.sandbox)
            cut = [is_cut(c.finish_reason) for c in candidates]
            stop, p = should_stop(clusters, cfg.threshold, cut, cfg.cut_weight)
            a, b = voting_top_two(clusters, cut, cfg.cut_weight)
            ctx.trace.add("decision", f"after wave {wave}: P(leader stays) = {p:.3f}",
                          parent=root, samples=len(candidates), leader=a, runner_up=b,
                          p=round(p, 4), stop=stop)
            if stop:
                break
        return await vote(problem, candidates, ctx, root,
                          weights=[cfg.vote_weight(c) for c in candidates],
                          modes=modes_of(candidates), cross_mode_bonus=cfg.cross_mode_bonus,
                          clusters=clusters, samples=len(candidates), cut_weight=cfg.cut_weight)
