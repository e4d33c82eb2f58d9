"""deepconf: vote with the model's own token confidence, and stop unconfident traces early
(Fu et al., "Deep Think with Confidence", 2025).

Token confidence is the negative mean log-probability of the top-k alternatives at a token (high
when the model is sure: one alternative holds the mass and the rest are improbable). A trace's
confidence is read over sliding groups of ``group_size`` tokens: its lowest group
(``lowest-group``), its last ``tail_tokens`` (``tail``), or its mean.

- ``offline``: sample N traces, keep the most confident ``keep`` fraction, and vote with
  confidence as the weight.
- ``online``: ``warmup`` traces set a threshold (the confidence that the ``keep`` fraction of them
  reach); later traces, sampled in waves, are **stopped mid-generation** the moment their running
  group confidence falls under it, and sampling ends once the leading answer holds ``consensus``
  of the weighted vote (or at ``max_n``). Stopped traces do not vote; nor do traces cut off at
  the token limit (``cut_weight``, as in self-consistency).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field

from ponder.core.context import Context
from ponder.domains import cluster_answers
from ponder.domains.vote import majority_vote
from ponder.errors import BudgetExhausted
from ponder.strategies.base import (
    BaseStrategy,
    Capability,
    EvalMode,
    Outcome,
    StrategyConfig,
    problem_messages,
    to_candidate,
)
from ponder.strategies.select import cut_flags, vote
from ponder.types import Candidate, GenerationRequest, Problem, TokenLogprob


def token_confidence(token: TokenLogprob, k: int) -> float:
    """-mean log p over the token's top-k alternatives (the chosen token alone when the backend
    gave none)."""
    top = [lp for _, lp in token.top[:k]] or [token.logprob]
    return -sum(top) / len(top)


def group_confidences(confidences: Sequence[float], size: int) -> list[float]:
    """Mean confidence of every window of ``size`` consecutive tokens (one window, the whole
    trace, when it is shorter)."""
    if not confidences:
        return []
    if len(confidences) <= size:
        return [sum(confidences) / len(confidences)]
    out, window = [], sum(confidences[:size])
    out.append(window / size)
    for i in range(size, len(confidences)):
        window += confidences[i] - confidences[i - size]
        out.append(window / size)
    return out


def trace_confidence(confidences: Sequence[float], metric: str, group_size: int,
                     tail_tokens: int) -> float | None:
    if not confidences:
        return None
    if metric == "lowest-group":
        return min(group_confidences(confidences, group_size))
    if metric == "tail":
        tail = confidences[-tail_tokens:]
        return sum(tail) / len(tail)
    return sum(confidences) / len(confidences)


class DeepConfConfig(StrategyConfig):
    mode: Literal["offline", "online"] = "online"
    max_n: int = Field(16, ge=1, le=1024, description="most traces (offline: exactly this many)")
    warmup: int = Field(4, ge=1, le=256, description="online: traces that set the threshold")
    wave: int = Field(4, ge=1, le=256, description="online: traces per wave after the warm-up")
    keep: float = Field(0.9, gt=0.0, le=1.0, description="fraction of traces kept, by confidence")
    top_logprobs: int = Field(5, ge=1, le=20, description="k alternatives per token")
    group_size: int = Field(32, ge=1, description="tokens per sliding group")
    tail_tokens: int = Field(64, ge=1)
    metric: Literal["lowest-group", "tail", "mean"] = "lowest-group"
    consensus: float = Field(0.95, gt=0.5, le=1.0,
                             description="online: stop when the leader holds this share")
    cut_weight: float = Field(
        0.0, ge=0.0, description="a trace cut off at the token limit votes with its weight x "
        "this (0: not at all; when every voting trace was cut, they vote at full weight)")


class DeepConf(BaseStrategy):
    name: ClassVar[str] = "deepconf"
    description: ClassVar[str] = ("confidence-filtered, confidence-weighted vote; online mode "
                                  "stops unconfident traces mid-generation")
    Config: ClassVar[type[StrategyConfig]] = DeepConfConfig
    config: DeepConfConfig
    effort_presets: ClassVar[dict[str, dict[str, Any]]] = {
        "low": {"max_n": 8, "keep": 0.1},
        "medium": {"max_n": 16, "keep": 0.5},
        "high": {"max_n": 32, "keep": 0.9},
    }
    budget_knob: ClassVar[str | None] = "max_n"
    eval_mode: ClassVar[EvalMode] = "budget"

    def _confidence(self, candidate_logprobs: Sequence[TokenLogprob] | None) -> float | None:
        cfg = self.config
        if not candidate_logprobs:
            return None
        values = [token_confidence(t, cfg.top_logprobs) for t in candidate_logprobs]
        return trace_confidence(values, cfg.metric, cfg.group_size, cfg.tail_tokens)

    async def _wave(self, problem: Problem, ctx: Context, n: int, parent: int, label: str,
                    threshold: float | None) -> list[Candidate]:
        """n traces; with a threshold, each is stopped as soon as its latest group's confidence
        falls under it."""
        cfg = self.config
        params = cfg.sampling(logprobs=cfg.top_logprobs)
        history: dict[int, list[float]] = {}

        def monitor(index: int, text: str, token: TokenLogprob | None) -> bool:
            if threshold is None or token is None:
                return False
            values = history.setdefault(index, [])
            values.append(token_confidence(token, cfg.top_logprobs))
            if len(values) < cfg.group_size:
                return False
            return sum(values[-cfg.group_size:]) / cfg.group_size < threshold

        request = GenerationRequest(tuple(problem_messages(problem, cfg.system)), params, n=n,
                                    monitor=monitor if threshold is not None else None)
        try:
            [traced] = await ctx.generate([request], parent=parent, label=label)
        except BudgetExhausted:
            return []
        out = []
        for t in traced:
            c = to_candidate(t, problem)
            stopped = t.completion.finish_reason == "cancelled"
            conf = self._confidence(t.completion.logprobs)
            dip = first_dip(t.completion.logprobs or (), cfg.top_logprobs, cfg.group_size,
                            threshold)
            ctx.trace.add("confidence", f"{c.answer}: {conf:.3f}" if conf is not None else
                          "no logprobs", parent=t.node, confidence=conf, stopped=stopped,
                          first_dip=dip, curve=confidence_curve(
                              t.completion.logprobs or (), cfg.top_logprobs, cfg.group_size))
            out.append(c.replace(score=conf, metadata={**c.metadata, "stopped": stopped,
                                                       "confidence": conf, "first_dip": dip}))
        return out

    def required_capabilities(self) -> tuple[Capability, ...]:
        return ("logprobs", "early_stop") if self.config.mode == "online" else ("logprobs",)

    async def solve(self, problem: Problem, ctx: Context, root: int) -> Outcome:
        cfg = self.config
        threshold = None
        if cfg.mode == "offline":
            candidates = await self._wave(problem, ctx, cfg.max_n, root, "trace", None)
        else:
            candidates = await self._wave(problem, ctx, min(cfg.warmup, cfg.max_n), root,
                                          "warm-up", None)
            threshold = keep_threshold([c.score for c in candidates], cfg.keep)
            ctx.trace.add("decision", f"threshold {threshold:.3f}" if threshold is not None
                          else "no logprobs: no threshold", parent=root, threshold=threshold)
            while len(candidates) < cfg.max_n and threshold is not None:
                if (await self._settled(problem, ctx, candidates, threshold)) >= cfg.consensus:
                    break
                k = min(cfg.wave, cfg.max_n - len(candidates))
                new = await self._wave(problem, ctx, k, root, "trace", threshold)
                if not new:
                    break
                candidates += new
        voters = self._voters(candidates, threshold)
        return await vote(problem, candidates, ctx, root, voters=voters,
                          weights=[c.score if c.score is not None else 1.0 for c in candidates],
                          label="confidence-weighted vote", cut_weight=cfg.cut_weight)

    def _voters(self, candidates: Sequence[Candidate], threshold: float | None) -> set[int]:
        """Offline: the most confident ``keep`` fraction. Online: every trace not stopped and
        at or above the threshold."""
        scored = [i for i, c in enumerate(candidates) if c.score is not None]
        if not scored:
            return set(range(len(candidates)))
        if threshold is None:
            keep = max(1, math.ceil(self.config.keep * len(scored)))
            return set(sorted(scored, key=lambda i: -candidates[i].score)[:keep])  # type: ignore
        return {i for i in scored if not candidates[i].metadata.get("stopped")
                and candidates[i].score >= threshold}  # type: ignore[operator]

    async def _settled(self, problem: Problem, ctx: Context, candidates: Sequence[Candidate],
                       threshold: float) -> float:
        """The leading answer's share of the confidence-weighted vote."""
        voters = self._voters(candidates, threshold)
        answers = [c.answer if i in voters else None for i, c in enumerate(candidates)]
        weights = [c.score or 0.0 for c in candidates]
        clusters = await cluster_answers(problem, answers, ctx.sandbox)
        winner, groups = majority_vote(answers, weights, clusters, cut=cut_flags(candidates),
                                       cut_weight=self.config.cut_weight)
        total = sum(g.weight for g in groups)
        return winner.weight / total if winner and total > 0 else 0.0


def first_dip(logprobs: Sequence[TokenLogprob], k: int, group_size: int,
              threshold: float | None) -> int | None:
    """The token count at which a trace's latest full group first fell under the threshold
    (None: never, or no threshold): where online mode must have stopped it."""
    if threshold is None:
        return None
    values = [token_confidence(t, k) for t in logprobs]
    for end in range(group_size, len(values) + 1):
        if sum(values[end - group_size:end]) / group_size < threshold:
            return end
    return None


def confidence_curve(logprobs: Sequence[TokenLogprob], k: int, group_size: int,
                     points: int = 64) -> list[list[float]]:
    """The trace's group confidence as it was written: [tokens so far, the confidence of the
    group ending there], at most ``points`` of them (evenly spaced, the last always kept)."""
    groups = group_confidences([token_confidence(t, k) for t in logprobs], group_size)
    if not groups:
        return []
    first = min(group_size, len(logprobs))  # the first group ends at this token
    step = max(1, math.ceil(len(groups) / points))
    picks = list(range(0, len(groups), step))
    if picks[-1] != len(groups) - 1:
        picks.append(len(groups) - 1)
    return [[first + i, round(groups[i], 4)] for i in picks]


def keep_threshold(confidences: Sequence[float | None], keep: float) -> float | None:
    """The confidence the top ``keep`` fraction of the warm-up traces reach: the lowest of the
    ceil(keep * n) most confident."""
    values = sorted((c for c in confidences if c is not None), reverse=True)
    if not values:
        return None
    return values[max(1, math.ceil(keep * len(values))) - 1]
