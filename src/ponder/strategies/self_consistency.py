"""self-consistency: N sampled chains, majority vote over equivalent answers."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from ponder.core.context import Context
from ponder.domains.selector import get_selector
from ponder.errors import ConfigError
from ponder.strategies.base import BaseStrategy, Capability, EvalMode, Outcome, StrategyConfig
from ponder.strategies.samplers import SamplingModeConfig, sample_candidates
from ponder.strategies.select import modes_of, score_candidates, selector_vote, vote
from ponder.types import Problem

NEUTRAL_SCORE = 0.5  # the weight of a candidate the verifier abstained on


class SelfConsistencyConfig(SamplingModeConfig):
    n: int = Field(8, ge=1, le=1024, description="number of sampled chains")
    weighting: Literal["none", "verifier", "logprob"] = "none"
    selector: str | None = Field(
        None, description="pick by a rule over answer-group signals (majority, confidence, "
        "clean, cross-mode, short, integer) or a fitted selector FILE.json; a rule weighs cut "
        "samples by its own 'truncated' feature, not cut_weight")

    @field_validator("selector")
    @classmethod
    def _known_selector(cls, value: str | None) -> str | None:
        if value is not None:
            get_selector(value)  # an unknown rule or unreadable file is refused now
        return value


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

    def required_capabilities(self) -> tuple[Capability, ...]:
        return ("logprobs",) if self.config.weighting == "logprob" else ()

    async def solve(self, problem: Problem, ctx: Context, root: int) -> Outcome:
        cfg = self.config
        if cfg.weighting == "verifier" and ctx.verifier is None:
            raise ConfigError("weighting='verifier' needs a verifier (e.g. --verifier judge)")
        confidence = cfg.selector is not None and ctx.backend.capabilities.logprobs
        params = cfg.sampling(logprobs=0 if cfg.weighting == "logprob" or confidence else None)
        candidates = await sample_candidates(problem, ctx, cfg, cfg.n, root, params)
        if cfg.selector is not None:
            return await selector_vote(problem, candidates, ctx, root, cfg.selector)
        weights = [cfg.vote_weight(c) for c in candidates]
        if cfg.weighting == "logprob":
            weights = [w * (math.exp(c.mean_logprob) if c.mean_logprob is not None
                            else NEUTRAL_SCORE) for w, c in zip(weights, candidates, strict=True)]
        elif cfg.weighting == "verifier":
            candidates = await score_candidates(problem, candidates, ctx, root)
            weights = [w * (NEUTRAL_SCORE if c.score is None else c.score)
                       for w, c in zip(weights, candidates, strict=True)]
        return await vote(problem, candidates, ctx, root, weights=weights,
                          modes=modes_of(candidates), cross_mode_bonus=cfg.cross_mode_bonus,
                          cut_weight=cfg.cut_weight)
