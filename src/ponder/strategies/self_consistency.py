"""self-consistency: N sampled chains, majority vote over equivalent answers."""

from __future__ import annotations

import math
import time
from typing import Any, ClassVar, Literal

from pydantic import Field

from ponder.domains import cluster_answers
from ponder.errors import BudgetExhausted, ConfigError
from ponder.strategies.aggregate import group_records, majority_vote, with_votes
from ponder.strategies.base import (
    BaseStrategy,
    Context,
    EvalMode,
    StrategyConfig,
    make_result,
)
from ponder.strategies.samplers import SamplingModeConfig, sample_candidates
from ponder.types import Problem, Result

NEUTRAL_SCORE = 0.5  # the weight of a candidate the verifier abstained on


class SelfConsistencyConfig(SamplingModeConfig):
    n: int = Field(8, ge=1, le=1024, description="number of sampled chains")
    weighting: Literal["none", "verifier", "logprob"] = "none"


class SelfConsistency(BaseStrategy):
    name: ClassVar[str] = "self-consistency"
    description: ClassVar[str] = "N sampled chains, majority vote over equivalent answers"
    Config: ClassVar[type[StrategyConfig]] = SelfConsistencyConfig
    config: SelfConsistencyConfig
    effort_presets: ClassVar[dict[str, dict[str, Any]]] = {
        "low": {"n": 4},
        "medium": {"n": 8},
        "high": {"n": 16},
    }

    budget_knob: ClassVar[str | None] = "n"
    eval_mode: ClassVar[EvalMode] = "vote"

    async def run(self, problem: Problem, ctx: Context) -> Result:
        cfg = self.config
        if cfg.weighting == "verifier" and ctx.verifier is None:
            raise ConfigError("weighting='verifier' needs a verifier (e.g. --verifier judge)")
        started = time.monotonic()
        root = ctx.trace.add("strategy", self.name, config=cfg.model_dump())
        params = cfg.sampling(logprobs=0 if cfg.weighting == "logprob" else None)
        candidates = await sample_candidates(problem, ctx, cfg, cfg.n, root, params)
        weights = [cfg.vote_weight(c) for c in candidates]
        if cfg.weighting == "logprob":
            weights = [w * (math.exp(c.mean_logprob) if c.mean_logprob is not None
                            else NEUTRAL_SCORE) for w, c in zip(weights, candidates, strict=True)]
        elif cfg.weighting == "verifier" and candidates:
            assert ctx.verifier is not None
            try:
                scores = await ctx.verifier.score(problem, candidates, ctx, root)
            except BudgetExhausted:
                scores = [None] * len(candidates)
            weights = [w * (NEUTRAL_SCORE if s is None else s)
                       for w, s in zip(weights, scores, strict=True)]
            candidates = [c.replace(score=s) for c, s in zip(candidates, scores, strict=True)]
        answers = [c.answer for c in candidates]
        clusters = await cluster_answers(problem, answers, ctx.sandbox)
        modes = [c.metadata.get("mode", "chain") for c in candidates]
        winner, groups = majority_vote(answers, weights, clusters, modes, cfg.cross_mode_bonus)
        candidates = with_votes(candidates, groups)
        ctx.trace.add("vote", "majority vote", parent=root, groups=group_records(groups, modes),
                      winner=winner.answer if winner else None)
        text = candidates[winner.members[0]].text if winner else ""
        return make_result(self, ctx, answer=winner.answer if winner else None, text=text,
                           candidates=candidates, started=started)
