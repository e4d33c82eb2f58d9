"""particle-filtering: N particles (partial solutions) moved forward one reasoning step at a
time and resampled by their step scores (Puri et al. 2025, "A Probabilistic Inference Approach
to Inference-Time Scaling of LLMs using Particle-Based Monte Carlo Methods"; its_hub's
``ParticleFiltering``).

The model is the transition (it proposes a particle's next step as beam search does: it
continues the partial answer up to the step delimiter) and the step scorer the emission: its
score of a particle's path is the particle's likelihood. Every iteration

1. extends every unfinished particle by one step: a partial held by k particles gets k sampled
   next steps in one request, all particles in one batched call;
2. scores the new steps in one scorer call (any step scorer; ``scorer_role`` runs the self-judge
   on a model of the run by role, e.g. ``strong``);
3. weighs each particle by its path score (``aggregate``, default ``last``: its latest step's
   score, which a process reward model gives with the whole prefix in view — the paper's
   choice; weights are not multiplied across steps, since resampling resets them):
   ``weighting=score``: w ∝ score, the score read as a probability (the paper's likelihood; a
   step scored 0 has no weight), or ``weighting=softmax``: w ∝ exp(logit(score) / T) with
   ``softmax_temperature`` T (its_hub's implementation at T = 1: the odds score / (1 - score);
   scores clipped to [1e-7, 1 - 1e-7], so no particle has exactly none);
4. resamples N particles with replacement in proportion to the weights: ``multinomial`` (N
   independent draws) or ``systematic`` (one draw, N evenly spaced positions: a particle of
   weight w gets floor(N w) or ceil(N w) copies), with the run's seeded generator
   (``ctx.rng``), so a seed gives the same run.

Finished particles (an answer stated, the end of the text, ``max_steps`` or the path's
``max_tokens`` reached) stop extending but stay in the population with their last weight, and
are resampled like the others — copied or dropped — as its_hub does. When every weight is 0 the
population stays as it is. The loop ends when every particle has finished. Unlike its_hub, the
last iteration does not resample: a population that will not move again would only be thinned
at random, so the final population keeps its weights. The answer is its best-scored particle
(``pick=best``, its_hub's default "argmax") or a weighted vote of its answers
(``pick=weighted-vote``: each particle votes with its weight, copies counted, by the one vote
rule). A budget that runs out ends the run with the population so far.

The trace: every step node sits under its parent's (the ancestry tree) and says how it fared —
kept (with its copies), pruned (not resampled) or answer; every iteration is a decision node
with the particles, their scores and weights, the effective sample size 1 / sum(w^2) and the
ancestors (for each new particle, the index of the particle it was resampled from).
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate
from typing import Any, ClassVar, Literal

from pydantic import Field

from ponder.core.context import Context
from ponder.errors import BudgetExhausted
from ponder.strategies.base import EvalMode, Outcome, StrategyConfig
from ponder.strategies.select import vote
from ponder.strategies.step_search import Node, StepSearch, StepSearchConfig, StepSearchStrategy
from ponder.types import Candidate, Problem, Usage
from ponder.verifiers.steps import Aggregate, StepScorer, load_step_scorer

Weighting = Literal["score", "softmax"]
Resampling = Literal["multinomial", "systematic"]
CLIP = 1e-7  # softmax weighting: scores are clipped to [CLIP, 1 - CLIP] before the logit


class ParticleFilteringConfig(StepSearchConfig):
    n: int = Field(8, ge=1, le=256, description="particles")
    aggregate: Aggregate = Field("last", description="a particle's score, and so its weight, "
                                 "from its step scores (last: its latest step's)")
    pick: Literal["weighted-vote", "best"] = Field(
        "best", description="final answer: the final population's best-scored particle, or "
        "its answers' vote, each particle weighted by its weight")
    weighting: Weighting = Field("score", description="score: weight = the score; softmax: "
                                 "exp(logit(score) / softmax_temperature)")
    softmax_temperature: float = Field(1.0, gt=0.0, le=100.0,
                                       description="weighting=softmax: lower is sharper")
    resampling: Resampling = Field("multinomial", description="multinomial: N independent "
                                   "draws; systematic: N evenly spaced positions")
    scorer_role: str | None = Field(None, pattern=r"^[a-z][a-z0-9_-]{0,31}$",
                                    description="run the self-judge step scorer on the model "
                                    "playing this role (e.g. strong)")

    def step_scorer(self) -> StepScorer:
        if self.scorer_role is None:
            return super().step_scorer()
        return load_step_scorer(self.scorer, {**self.scorer_options, "role": self.scorer_role})


def particle_weights(scores: Sequence[float], weighting: str = "score",
                     temperature: float = 1.0) -> list[float]:
    """Unnormalized weights from path scores in [0, 1].

    >>> particle_weights([0.5, 0.0, 1.0])
    [0.5, 0.0, 1.0]
    >>> [round(w, 3) for w in particle_weights([0.5, 0.8], "softmax")]  # the odds 1 : 4
    [0.25, 1.0]
    """
    if weighting == "score":
        return [max(0.0, s) for s in scores]
    logits = [math.log(c / (1.0 - c)) / temperature
              for c in (min(max(s, CLIP), 1.0 - CLIP) for s in scores)]
    top = max(logits, default=0.0)
    return [math.exp(x - top) for x in logits]


def effective_sample_size(weights: Sequence[float]) -> float | None:
    """1 / sum of the squared normalized weights: N when they are equal, 1 when one holds all
    (None when none has any).

    >>> effective_sample_size([1, 1, 1, 1]), effective_sample_size([0, 2, 0])
    (4.0, 1.0)
    """
    total = sum(weights)
    if total <= 0:
        return None
    return 1.0 / sum((w / total) ** 2 for w in weights)


def resample(weights: Sequence[float], n: int, rng: random.Random,
             how: str = "multinomial") -> list[int]:
    """``n`` indices drawn with replacement in proportion to ``weights`` (unnormalized, some
    positive), in ascending order: ``multinomial`` (``n`` uniform draws) or ``systematic`` (one
    draw u, positions (u + k) / n). A zero weight is never drawn.

    >>> resample([1, 0, 3], 4, random.Random(0), "systematic")
    [0, 2, 2, 2]
    """
    cumulative = list(accumulate(weights))
    total = cumulative[-1]
    if how == "systematic":
        u = rng.random()
        positions = [(u + k) / n for k in range(n)]
    else:
        positions = sorted(rng.random() for _ in range(n))
    # the first index whose cumulative weight exceeds the position: a zero weight adds nothing,
    # so it never does (p x total < total for p < 1; the bound only guards the last index)
    last = max(i for i, w in enumerate(weights) if w > 0)
    return [min(bisect_right(cumulative, p * total), last) for p in positions]


class ParticleFiltering(StepSearchStrategy):
    name: ClassVar[str] = "particle-filtering"
    description: ClassVar[str] = ("N particles over reasoning steps, resampled by step score "
                                  "at every step")
    Config: ClassVar[type[StrategyConfig]] = ParticleFilteringConfig
    config: ParticleFilteringConfig
    effort_presets: ClassVar[dict[str, dict[str, Any]]] = {
        "low": {"n": 4},
        "medium": {"n": 8},
        "high": {"n": 16},
    }
    budget_knob: ClassVar[str | None] = "n"
    eval_mode: ClassVar[EvalMode] = "budget"

    def required_roles(self) -> tuple[str, ...]:
        role = self.config.scorer_role
        return (role,) if role is not None else ()

    async def solve(self, problem: Problem, ctx: Context, root: int) -> Outcome:
        search = StepSearch(problem, ctx, self.config, root)
        population: list[Node] = [search.root()] * self.config.n
        step = 0
        try:
            while any(not particle.done for particle in population):
                step += 1
                population = await self.step(search, population, step)
        except BudgetExhausted:
            pass  # the context says which limit stopped it; the population so far answers
        return await self.pick(search, population)

    async def step(self, search: StepSearch, population: list[Node], step: int) -> list[Node]:
        """One iteration: extend, score, weigh, resample (not once every particle finished).
        Returns the new population; on a budget that runs out, the old one stands."""
        cfg, ctx = self.config, search.ctx
        n = len(population)
        moving: dict[int, tuple[Node, list[int]]] = {}  # a partial and the slots holding it
        for slot, particle in enumerate(population):
            if not particle.done:
                moving.setdefault(id(particle), (particle, []))[1].append(slot)
        rows = await search.expand([node for node, _ in moving.values()],
                                   [len(slots) for _, slots in moving.values()])
        extended = list(population)
        for (_, slots), children in zip(moving.values(), rows, strict=True):
            for slot, child in zip(slots, children, strict=True):
                extended[slot] = child
        decision = ctx.trace.add("decision", f"particles step {step}", parent=search.root_trace)
        await search.score([child for row in rows for child in row], parent=decision)
        raw = particle_weights([p.score for p in extended], cfg.weighting,
                               cfg.softmax_temperature)
        total = sum(raw)
        weights = [w / total for w in raw] if total > 0 else [0.0] * n
        finished = all(p.done for p in extended)
        resampled = not finished and total > 0
        if resampled:
            ancestors = resample(raw, n, ctx.rng, cfg.resampling)
            why = f"{cfg.resampling} resampling"
        else:  # nothing to resample, or nothing to resample by
            ancestors = list(range(n))
            why = "every particle finished" if finished else "no particle has weight"
        ess = effective_sample_size(raw)
        ctx.trace.nodes[decision].data.update(  # what a reader wants first, first
            ess=round(ess, 4) if ess is not None else None,
            weights=[round(w, 4) for w in weights], ancestors=ancestors, resampled=resampled,
            why=why, finished=sum(p.done for p in extended),
            scores=[round(p.score, 4) for p in extended],
            particles=[p.trace_id for p in extended],
            population=[extended[a].trace_id for a in ancestors])
        self.note(search, extended, weights, ancestors, step, resampled)
        return [extended[a] for a in ancestors]

    def note(self, search: StepSearch, extended: Sequence[Node], weights: Sequence[float],
             ancestors: Sequence[int], step: int, resampled: bool) -> None:
        """Mark every particle of this iteration with its weight, its copies in the new
        population and how it fared."""
        n = len(extended)
        held: dict[int, tuple[Node, float, int]] = {}  # a node, its weight, its copies
        for slot, node in enumerate(extended):
            _, weight, copies = held.get(id(node), (node, 0.0, 0))
            held[id(node)] = (node, weight + weights[slot], copies)
        for a in ancestors:
            node, weight, copies = held[id(extended[a])]
            held[id(node)] = (node, weight, copies + 1)
        for node, weight, copies in held.values():
            if copies == 0:
                why = f"not resampled at step {step}: weight {weight:.3f}"
            else:
                why = (f"{copies} of {n} particles {'after' if resampled else 'at'} step "
                       f"{step}: weight {weight:.3f}")
            search.note(node, status="pruned" if copies == 0 else "answer" if node.done
                        else "kept", copies=copies, weight=round(weight, 4), why=why)

    async def pick(self, search: StepSearch, population: Sequence[Node]) -> Outcome:
        """The final answer from the final population: its best-scored answered particle, or
        the vote of its answers weighted by the particles' weights (copies counted)."""
        cfg, ctx = self.config, search.ctx
        copies: dict[int, tuple[Node, int]] = {}
        for particle in population:
            node, k = copies.get(id(particle), (particle, 0))
            copies[id(particle)] = (node, k + 1)
        held = [(node, k) for node, k in copies.values() if node.depth > 0]
        finished = [(node, k) for node, k in held if node.done] or held
        raw = particle_weights([node.score for node, _ in finished], cfg.weighting,
                               cfg.softmax_temperature)
        total = sum(w * k for w, (_, k) in zip(raw, finished, strict=True)) or 1.0
        by = {"model": ctx.backend.model} if ctx.models else {}  # who wrote the steps
        candidates = [
            Candidate(text=node.text(cfg.delimiter), answer=node.answer,
                      score=round(node.score, 6), usage=Usage(completion_tokens=node.tokens),
                      finish_reason="length" if node.steps[-1].end == "length" else "stop",
                      metadata={"node": node.trace_id, "steps": node.depth,
                                "step_scores": [round(s, 4) for s in node.step_scores],
                                "copies": k, "weight": round(w * k / total, 6), **by})
            for (node, k), w in zip(finished, raw, strict=True)]
        if cfg.pick == "weighted-vote":
            outcome = await vote(search.problem, candidates, ctx, search.root_trace,
                                 weights=[w * k for w, (_, k) in zip(raw, finished, strict=True)],
                                 cut_weight=cfg.cut_weight, label="weighted vote of particles")
            chosen = next((i for i, c in enumerate(outcome.candidates)
                           if outcome.answer is not None and c.text == outcome.text), None)
        else:
            chosen = best_index(candidates, cfg.cut_weight)
            outcome = Outcome.chosen(candidates, chosen)
        node = finished[chosen][0] if chosen is not None else None
        ctx.trace.add("decision", f"pick: {cfg.pick}", parent=search.root_trace,
                      chosen=node.trace_id if node is not None else None,
                      answer=node.answer if node is not None else None)
        if outcome.answer is None and candidates:  # no answer: the best partial's text
            best = max(range(len(candidates)), key=lambda i: (candidates[i].score or 0.0, -i))
            return Outcome(None, candidates[best].text, outcome.candidates)
        return outcome


def best_index(candidates: Sequence[Candidate], cut_weight: float) -> int | None:
    """The best-scored candidate with an answer (ties: the first). One cut off at the token
    limit counts only when ``cut_weight`` > 0, and then after every uncut one — unless every
    answered candidate was cut (as the vote's rule)."""
    answered = [i for i, c in enumerate(candidates) if c.answer is not None]
    cut = {i for i in answered if candidates[i].finish_reason == "length"}
    if cut and len(cut) < len(answered):
        answered = [i for i in answered if i not in cut or cut_weight > 0]
    if not answered:
        return None
    return max(answered, key=lambda i: (i not in cut or len(cut) == len(answered),
                                        candidates[i].score or 0.0, -i))
