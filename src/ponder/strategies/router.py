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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field

from ponder.core.context import Context
from ponder.domains import cluster_answers
from ponder.domains.vote import best_score_pick
from ponder.strategies.base import BaseStrategy, EvalMode, Outcome, StrategyConfig, make_result
from ponder.strategies.samplers import SamplingModeConfig, sample_candidates
from ponder.strategies.select import cut_flags, modes_of, score_candidates, vote
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

    async def solve(self, problem: Problem, ctx: Context, root: int) -> Outcome:
        probe = await self._probe(problem, ctx, root)
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
        contexts = [make_ctx(p) for p in problems]
        opened = [self.begin(ctx, p) for p, ctx in zip(problems, contexts, strict=True)]
        probes = await asyncio.gather(*(self._probe(p, ctx, root) for p, ctx, (_, root)
                                        in zip(problems, contexts, opened, strict=True)))
        extra = self.allocate(probes)
        outcomes = await asyncio.gather(*(self._finish(p, n) for p, n in
                                          zip(probes, extra, strict=True)))
        return [make_result(self, ctx, outcome, started) for ctx, outcome, (started, _)
                in zip(contexts, outcomes, opened, strict=True)]

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

    async def _probe(self, problem: Problem, ctx: Context, root: int) -> Probe:
        cfg = self.config
        candidates = await sample_candidates(problem, ctx, cfg, cfg.probe_n, root, label="probe")
        clusters = await cluster_answers(problem, [c.answer for c in candidates], ctx.sandbox)
        probe = Probe(problem, ctx, root, candidates, clusters)
        ctx.trace.add("decision", f"probe agreement {probe.agreement:.2f}: "
                      + ("easy" if probe.agreement >= cfg.easy_share else "needs more"),
                      parent=root, agreement=probe.agreement)
        return probe

    async def _finish(self, probe: Probe, extra: int) -> Outcome:
        cfg, ctx, problem = self.config, probe.ctx, probe.problem
        route = "probe vote" if extra == 0 else cfg.hard_strategy
        ctx.trace.add("decision", f"route: {route}, {extra} more samples", parent=probe.root,
                      route=route, extra_samples=extra, agreement=probe.agreement)
        candidates = list(probe.candidates)
        if extra:
            candidates += await sample_candidates(problem, ctx, cfg, extra, probe.root,
                                                  label="sample")
        clusters = await cluster_answers(problem, [c.answer for c in candidates], ctx.sandbox)
        modes = modes_of(candidates)
        weights = [cfg.vote_weight(c) for c in candidates]
        outcome = await vote(problem, candidates, ctx, probe.root, weights=weights, modes=modes,
                             cross_mode_bonus=cfg.cross_mode_bonus, clusters=clusters,
                             label=route, cut_weight=cfg.cut_weight)
        if route != "best-of-n" or ctx.verifier is None or not candidates:
            return outcome
        scored = await score_candidates(problem, outcome.candidates, ctx, probe.root)
        chosen = best_score_pick([c.score for c in scored], clusters, range(len(scored)),
                                 weights=weights, modes=modes,
                                 cross_mode_bonus=cfg.cross_mode_bonus,
                                 cut=cut_flags(scored), cut_weight=cfg.cut_weight)
        ctx.trace.add("decision", "highest verifier score", parent=probe.root, chosen=chosen,
                      answer=scored[chosen].answer if chosen is not None else None)
        if chosen is None:
            return Outcome(candidates=scored)
        return Outcome(scored[chosen].answer, scored[chosen].text, scored)
