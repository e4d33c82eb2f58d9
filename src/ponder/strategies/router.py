"""router: compute-optimal allocation — a cheap probe estimates how hard each question is, then
the compute goes where it can change the answer (Snell et al., "Scaling LLM Test-Time Compute
Optimally can be More Effective than Scaling Model Parameters", 2024).

Every question gets ``probe_n`` sampled chains. Their agreement (the leading answer's share) is
the difficulty estimate: unanimous probes are easy and stop there; split probes get more samples
(reusing the probes) and a vote, or, with ``hard_strategy=best-of-n``, a verifier's pick.

- One question (``ponder ask``, the API): the extra samples follow a fixed escalation, up to
  ``max_n`` for the least agreement; with ``mean_tokens``, as many as that allowance buys.
- A batch (``run_batch``, used by ``ponder eval``): ``mean_tokens`` x questions is the budget for
  the whole batch. After probing them all, the rest goes to the questions whose probes disagree,
  in proportion to their disagreement, never past ``max_n`` samples each — so easy questions cost
  the probe and hard ones get the compute. Every decision is in each question's trace.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field

from ponder.domains import cluster_answers
from ponder.errors import BudgetExhausted
from ponder.strategies.aggregate import best_score_pick, group_records, majority_vote, with_votes
from ponder.strategies.base import (
    BaseStrategy,
    Context,
    EvalMode,
    StrategyConfig,
    make_result,
)
from ponder.strategies.samplers import SamplingModeConfig, sample_candidates
from ponder.types import Candidate, Problem, Result


class RouterConfig(SamplingModeConfig):
    probe_n: int = Field(4, ge=1, le=64, description="probe samples per question")
    max_n: int = Field(16, ge=1, le=1024, description="most samples one question gets")
    mean_tokens: int | None = Field(None, ge=1, description="completion tokens per question "
                                    "on average, probes included (a batch's budget)")
    easy_share: float = Field(1.0, gt=0.5, le=1.0,
                              description="a probe agreement at or above this is easy")
    hard_strategy: Literal["self-consistency", "best-of-n"] = "self-consistency"


@dataclass
class Probe:
    """One question's probe: its samples, clusters and difficulty."""

    problem: Problem
    ctx: Context
    root: int
    started: float
    candidates: list[Candidate]
    clusters: list[int | None]

    @property
    def agreement(self) -> float:
        counts: dict[int, int] = {}
        for c in self.clusters:
            if c is not None:
                counts[c] = counts.get(c, 0) + 1
        return max(counts.values()) / len(self.clusters) if counts else 0.0

    @property
    def tokens_per_sample(self) -> float:
        spent = [c.usage.completion_tokens for c in self.candidates]
        return sum(spent) / len(spent) if spent else 1.0


class Router(BaseStrategy):
    name: ClassVar[str] = "router"
    description: ClassVar[str] = ("probe each question, then give more samples only where "
                                  "the probes disagree")
    Config: ClassVar[type[StrategyConfig]] = RouterConfig
    config: RouterConfig
    effort_presets: ClassVar[dict[str, dict[str, Any]]] = {
        "low": {"probe_n": 2, "max_n": 8},
        "medium": {"probe_n": 4, "max_n": 16},
        "high": {"probe_n": 4, "max_n": 32},
    }
    eval_mode: ClassVar[EvalMode] = "batch"

    async def run(self, problem: Problem, ctx: Context) -> Result:
        probe = await self._probe(problem, ctx)
        cfg = self.config
        if cfg.mean_tokens is not None:
            extra = max(0, int((cfg.mean_tokens - sum(
                c.usage.completion_tokens for c in probe.candidates)) / probe.tokens_per_sample))
        else:  # fixed escalation: the less agreement, the more samples
            extra = round((1.0 - probe.agreement) * 2 * (cfg.max_n - cfg.probe_n))
        return await self._finish(probe, self._extra(probe, extra))

    async def run_batch(self, problems: Sequence[Problem],
                        make_ctx: Callable[[Problem], Context]) -> list[Result]:
        """Route a batch under one budget of ``mean_tokens`` x len(problems) tokens."""
        probes = await asyncio.gather(*(self._probe(p, make_ctx(p)) for p in problems))
        extra = self.allocate(probes)
        return list(await asyncio.gather(*(self._finish(p, n) for p, n in
                                           zip(probes, extra, strict=True))))

    def allocate(self, probes: Sequence[Probe]) -> list[int]:
        """Extra samples per question: the batch's remaining tokens go, one sample at a time,
        to the question with the most disagreement per sample it already has (so in proportion
        to disagreement), never to an easy one and never past ``max_n``."""
        cfg = self.config
        room = [self._extra(p, cfg.max_n) for p in probes]
        if cfg.mean_tokens is None:
            return room
        left = cfg.mean_tokens * len(probes) - sum(
            c.usage.completion_tokens for p in probes for c in p.candidates)
        extra = [0] * len(probes)
        while True:
            open_ = [i for i, p in enumerate(probes)
                     if extra[i] < room[i] and p.tokens_per_sample <= left]
            if not open_:
                return extra
            i = max(open_, key=lambda j: ((1.0 - probes[j].agreement)
                                          / (len(probes[j].candidates) + extra[j]), -j))
            extra[i] += 1
            left -= probes[i].tokens_per_sample

    def _extra(self, probe: Probe, wanted: int) -> int:
        """Easy questions get nothing more; the rest at most up to ``max_n`` samples."""
        if probe.agreement >= self.config.easy_share:
            return 0
        return max(0, min(wanted, self.config.max_n - len(probe.candidates)))

    async def _probe(self, problem: Problem, ctx: Context) -> Probe:
        cfg = self.config
        started = time.monotonic()
        root = ctx.trace.add("strategy", self.name, config=cfg.model_dump())
        candidates = await sample_candidates(problem, ctx, cfg, cfg.probe_n, root, label="probe")
        clusters = await cluster_answers(problem, [c.answer for c in candidates], ctx.sandbox)
        probe = Probe(problem, ctx, root, started, candidates, clusters)
        ctx.trace.add("decision", f"probe agreement {probe.agreement:.2f}: "
                      + ("easy" if probe.agreement >= cfg.easy_share else "needs more"),
                      parent=root, agreement=probe.agreement)
        return probe

    async def _finish(self, probe: Probe, extra: int) -> Result:
        cfg, ctx, problem = self.config, probe.ctx, probe.problem
        route = "probe vote" if extra == 0 else cfg.hard_strategy
        ctx.trace.add("decision", f"route: {route}, {extra} more samples", parent=probe.root,
                      route=route, extra_samples=extra, agreement=probe.agreement)
        candidates = list(probe.candidates)
        if extra:
            candidates += await sample_candidates(problem, ctx, cfg, extra, probe.root,
                                                  label="sample")
        answers = [c.answer for c in candidates]
        clusters = await cluster_answers(problem, answers, ctx.sandbox)
        modes = [c.metadata.get("mode", "chain") for c in candidates]
        weights = [cfg.vote_weight(c) for c in candidates]
        winner, groups = majority_vote(answers, weights, clusters, modes, cfg.cross_mode_bonus)
        chosen = winner.members[0] if winner else None
        if route == "best-of-n" and ctx.verifier is not None and candidates:
            try:
                scores = await ctx.verifier.score(problem, candidates, ctx, probe.root)
            except BudgetExhausted:
                scores = [None] * len(candidates)
            candidates = [c.replace(score=s) for c, s in zip(candidates, scores, strict=True)]
            chosen = best_score_pick(scores, clusters, range(len(candidates)), weights=weights,
                                     modes=modes, cross_mode_bonus=cfg.cross_mode_bonus)
        candidates = with_votes(candidates, groups)
        answer = candidates[chosen].answer if chosen is not None else None
        ctx.trace.add("vote", route, parent=probe.root, winner=answer,
                      groups=group_records(groups))
        text = candidates[chosen].text if chosen is not None else ""
        return make_result(self, ctx, answer=answer, text=text, candidates=candidates,
                           started=probe.started)
