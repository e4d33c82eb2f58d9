"""best-of-n: N candidates, each scored by a verifier; the highest score wins."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from ponder.core.context import Context
from ponder.domains import cluster_answers
from ponder.domains.vote import best_score_pick
from ponder.errors import ConfigError
from ponder.strategies.base import BaseStrategy, EvalMode, Outcome, StrategyConfig
from ponder.strategies.samplers import SamplingModeConfig, sample_candidates
from ponder.strategies.select import cut_flags, modes_of, score_candidates
from ponder.types import Problem


class BestOfNConfig(SamplingModeConfig):
    n: int = Field(8, ge=1, le=1024, description="number of candidates")


class BestOfN(BaseStrategy):
    name: ClassVar[str] = "best-of-n"
    description: ClassVar[str] = "N candidates scored by a verifier (default: judge); best wins"
    Config: ClassVar[type[StrategyConfig]] = BestOfNConfig
    config: BestOfNConfig
    default_verifier: ClassVar[str] = "judge"
    effort_presets: ClassVar[dict[str, dict[str, Any]]] = {
        "low": {"n": 4},
        "medium": {"n": 8},
        "high": {"n": 16},
    }

    budget_knob: ClassVar[str | None] = "n"
    eval_mode: ClassVar[EvalMode] = "best-score"

    async def solve(self, problem: Problem, ctx: Context, root: int) -> Outcome:
        if ctx.verifier is None:
            raise ConfigError("best-of-n needs a verifier (e.g. --verifier judge)")
        cfg = self.config
        candidates = await sample_candidates(problem, ctx, cfg, cfg.n, root, label="candidate")
        candidates = await score_candidates(problem, candidates, ctx, root)
        scores = [c.score for c in candidates]
        clusters = await cluster_answers(problem, [c.answer for c in candidates], ctx.sandbox)
        # Highest score among answered candidates (ties: the earliest); a vote when the verifier
        # abstained on all of them.
        best = best_score_pick(scores, clusters, range(len(candidates)),
                               weights=[cfg.vote_weight(c) for c in candidates],
                               modes=modes_of(candidates), cross_mode_bonus=cfg.cross_mode_bonus,
                               cut=cut_flags(candidates), cut_weight=cfg.cut_weight)
        if any(s is not None and k is not None for s, k in zip(scores, clusters, strict=True)):
            how = "highest verifier score"
        else:
            how = "verifier abstained: majority vote"
        if best is None and candidates:
            best = 0
        ctx.trace.add("decision", how, parent=root, chosen=best, scores=scores)
        return Outcome.chosen(candidates, best)
