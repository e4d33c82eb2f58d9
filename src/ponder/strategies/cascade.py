"""cascade: the small model answers what it is sure of; what it is not sure of goes to a
stronger model (FrugalGPT, Chen et al. 2023; RouteLLM, Ong et al. 2024).

The generator draws ``n`` samples and votes. When the evidence behind its answer is weak —
the leading answer's share of the samples (``signal=agreement``), its lead over the runner-up
(``margin``) or the run's verifier's mean score for it (``verifier``) is below ``threshold`` —
the problem goes to the ``strong`` model: one greedy answer (``strong_n=1``) or a vote over
``strong_n`` samples, optionally told what the small model answered (``hints``). The strong
model's answer wins when it has one; otherwise the small model's vote stands. With
``selector`` the small model's answer is picked by that rule (as self-consistency's), the
evidence still the vote's. ``ponder tune`` chooses the threshold on a dev set; the trace records
the evidence and whether the problem was escalated, and each candidate which model wrote it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from ponder.core.context import Context
from ponder.domains import cluster_answers
from ponder.domains.selector import get_selector
from ponder.domains.vote import AnswerGroup, leader, tally
from ponder.errors import ConfigError
from ponder.strategies.base import (
    BaseStrategy,
    EvalMode,
    Outcome,
    StrategyConfig,
    to_candidate,
)
from ponder.strategies.samplers import SamplingModeConfig, chain_messages, sample_candidates
from ponder.strategies.select import cut_flags, modes_of, score_candidates, selector_vote, vote
from ponder.types import Candidate, Message, Problem

Signal = Literal["agreement", "margin", "verifier"]

HINT = ("Another, smaller solver answered this problem {count} times: {answers}. Its answers "
        "may be wrong. Solve the problem yourself, step by step, and end with your own final "
        "answer.")


class CascadeConfig(SamplingModeConfig):
    n: int = Field(4, ge=1, le=256, description="the generator's samples")
    signal: Signal = Field("agreement", description="the evidence that keeps the small "
                           "model's answer: agreement (leader's share), margin (leader minus "
                           "runner-up, as shares) or verifier (mean score of the leader)")
    threshold: float = Field(0.75, ge=0.0, le=1.0,
                             description="escalate when the evidence is below this")
    strong_role: str = Field("strong", pattern=r"^[a-z][a-z0-9_-]{0,31}$",
                             description="the role of the model that takes over")
    strong_n: int = Field(1, ge=1, le=64,
                          description="the strong model's samples (1: one greedy answer)")
    strong_temperature: float = Field(0.7, ge=0.0, le=2.0,
                                      description="the strong model's temperature (strong_n > 1)")
    hints: bool = Field(False, description="tell the strong model the small model's answers")
    selector: str | None = Field(
        None, description="pick the small model's answer by a rule over answer-group signals "
        "(as self-consistency's selector); the evidence is still the vote's")

    @field_validator("selector")
    @classmethod
    def _known_selector(cls, value: str | None) -> str | None:
        if value is not None:
            get_selector(value)  # an unknown rule or unreadable file is refused now
        return value


def group_shares(groups: Sequence[AnswerGroup], n: int) -> tuple[float, float]:
    """(leader's share, lead over the runner-up as a share) of ``n`` samples: a sample with no
    answer, or one that did not vote, counts against the leader."""
    weights = sorted((g.weight for g in groups), reverse=True)
    if not weights or n == 0:
        return 0.0, 0.0
    second = weights[1] if len(weights) > 1 else 0.0
    return weights[0] / n, (weights[0] - second) / n


class Cascade(BaseStrategy):
    name: ClassVar[str] = "cascade"
    description: ClassVar[str] = ("the small model votes; weak evidence hands the problem to "
                                  "a strong model")
    Config: ClassVar[type[StrategyConfig]] = CascadeConfig
    config: CascadeConfig
    effort_presets: ClassVar[dict[str, dict[str, Any]]] = {
        "low": {"n": 2, "threshold": 0.5},
        "medium": {"n": 4, "threshold": 0.75},
        "high": {"n": 8, "threshold": 0.75, "strong_n": 4, "hints": True},
    }
    budget_knob: ClassVar[str | None] = "n"
    eval_mode: ClassVar[EvalMode] = "budget"

    def required_roles(self) -> tuple[str, ...]:
        return (self.config.strong_role,)

    async def solve(self, problem: Problem, ctx: Context, root: int) -> Outcome:
        cfg = self.config
        if cfg.signal == "verifier" and ctx.verifier is None:
            raise ConfigError("cascade signal=verifier needs a verifier (e.g. --verifier judge)")
        strong = ctx.model(cfg.strong_role)
        confidence = cfg.selector is not None and ctx.backend.capabilities.logprobs
        small = await sample_candidates(problem, ctx, cfg, cfg.n, root,
                                        cfg.sampling(logprobs=0) if confidence else None,
                                        label="small")
        small = [_by(c, ctx.backend.model) for c in small]
        if cfg.signal == "verifier":
            small = await score_candidates(problem, small, ctx, root)
        clusters = await cluster_answers(problem, [c.answer for c in small], ctx.sandbox)
        modes = modes_of(small)
        groups = tally(clusters, None, [cfg.vote_weight(c) for c in small], modes,
                       cfg.cross_mode_bonus, cut_flags(small), cfg.cut_weight)
        evidence = self.evidence(groups, small)
        escalate = evidence < cfg.threshold
        ctx.trace.add("decision", f"{cfg.signal} {evidence:.2f} "
                      + (f"< {cfg.threshold:.2f}: escalate to {strong.model}" if escalate
                         else f">= {cfg.threshold:.2f}: the small model's answer stands"),
                      parent=root, signal=cfg.signal, evidence=round(evidence, 6),
                      threshold=cfg.threshold, escalated=escalate, strong_model=strong.model)
        weights = [cfg.vote_weight(c) for c in small]
        if cfg.selector is not None:
            outcome = await selector_vote(problem, small, ctx, root, cfg.selector)
        else:
            outcome = await vote(problem, small, ctx, root, weights=weights, modes=modes,
                                 cross_mode_bonus=cfg.cross_mode_bonus, clusters=clusters,
                                 label="small model's vote", cut_weight=cfg.cut_weight)
        if not escalate:
            return outcome
        messages = chain_messages(problem, cfg)
        if cfg.hints:
            messages = with_hint(messages, small)
        greedy = cfg.strong_n == 1
        params = cfg.sampling().replace(temperature=0.0 if greedy else cfg.strong_temperature)
        traced = await ctx.sample(messages, params, n=cfg.strong_n, parent=root, label="strong",
                                  backend=strong)
        taken = [_by(to_candidate(t, problem), strong.model) for t in traced]
        decided = await vote(problem, taken, ctx, root, label="strong model's vote"
                             if not greedy else "strong model's answer",
                             cut_weight=cfg.cut_weight)
        candidates = list(outcome.candidates) + list(decided.candidates)
        if decided.answer is None:
            ctx.trace.add("decision", "the strong model gave no answer: the small model's "
                          "vote stands", parent=root)
            return Outcome(outcome.answer, outcome.text, candidates)
        return Outcome(decided.answer, decided.text, candidates)

    def evidence(self, groups: Sequence[AnswerGroup], small: Sequence[Candidate]) -> float:
        """How sure the small model is of its leading answer, as ``signal`` measures it."""
        cfg = self.config
        n = sum(cfg.vote_weight(c) for c in small)
        agreement, margin = group_shares(groups, n)
        if cfg.signal == "agreement":
            return agreement
        if cfg.signal == "margin":
            return margin
        top = leader(groups)
        if top is None:
            return 0.0
        scores = [small[i].score for i in top.members if small[i].score is not None]
        return sum(scores) / len(scores) if scores else 0.0


def _by(candidate: Candidate, model: str) -> Candidate:
    """The candidate marked with the model that wrote it."""
    return candidate.replace(metadata={**candidate.metadata, "model": model})


def with_hint(messages: Sequence[Message], small: Sequence[Candidate]) -> list[Message]:
    """The problem's conversation with the small model's answers (counted, each on one line of
    at most 60 characters) added to its last user turn."""
    counts: dict[str, int] = {}
    for c in small:
        if c.answer is not None:
            shown = " ".join(c.answer.split())[:60]
            counts[shown] = counts.get(shown, 0) + 1
    answers = ", ".join(f"{a!r} ({k}x)" for a, k in counts.items()) or "no answer"
    hint = HINT.format(count=len(small), answers=answers)
    out = list(messages)
    last = max(i for i, m in enumerate(out) if m.role == "user")
    out[last] = Message("user", f"{out[last].content}\n\n{hint}")
    return out
