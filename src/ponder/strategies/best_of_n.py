"""best-of-n: N candidates, each scored by a verifier; the highest score wins."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from pydantic import Field

from ponder.domains import cluster_answers
from ponder.errors import BudgetExhausted, ConfigError
from ponder.strategies.aggregate import best_score_pick
from ponder.strategies.base import (
    BaseStrategy,
    Context,
    EvalMode,
    StrategyConfig,
    make_result,
)
from ponder.strategies.samplers import SamplingModeConfig, sample_candidates
from ponder.types import Problem, Result


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

    async def run(self, problem: Problem, ctx: Context) -> Result:
        if ctx.verifier is None:
            raise ConfigError("best-of-n needs a verifier (e.g. --verifier judge)")
        cfg = self.config
        started = time.monotonic()
        root = ctx.trace.add("strategy", self.name, config=cfg.model_dump())
        candidates = await sample_candidates(problem, ctx, cfg, cfg.n, root, label="candidate")
        try:
            scores = await ctx.verifier.score(problem, candidates, ctx, root)
        except BudgetExhausted:
            scores = [None] * len(candidates)
        candidates = [c.replace(score=s) for c, s in zip(candidates, scores, strict=True)]
        clusters = await cluster_answers(problem, [c.answer for c in candidates], ctx.sandbox)
        # Highest score among answered candidates (ties: the earliest); a vote when the verifier
        # abstained on all of them.
        best = best_score_pick(scores, clusters, range(len(candidates)),
                               weights=[cfg.vote_weight(c) for c in candidates],
                               modes=[c.metadata.get("mode", "chain") for c in candidates],
                               cross_mode_bonus=cfg.cross_mode_bonus)
        if any(s is not None and k is not None for s, k in zip(scores, clusters, strict=True)):
            how = "highest verifier score"
        else:
            how = "verifier abstained: majority vote"
        if best is None and candidates:
            best = 0
        ctx.trace.add("decision", how, parent=root, chosen=best, scores=scores)
        if best is None:
            return make_result(self, ctx, answer=None, text="", candidates=[], started=started)
        candidates[best] = candidates[best].replace(votes=1.0)
        chosen = candidates[best]
        return make_result(self, ctx, answer=chosen.answer, text=chosen.text,
                           candidates=candidates, started=started)
