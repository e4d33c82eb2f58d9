"""The evaluation harness: every strategy at every budget on every problem, resumable.

Sampling strategies (``eval_mode`` vote / best-score) generate their largest budget once per
problem, each new sample stored as its call returns; smaller budgets are computed from the stored
samples (``curves``). Budget strategies run once per budget; ``single`` strategies once. A greedy
chain of thought is the baseline; coverage (pass@k) comes from the first sampling strategy.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ponder import registry
from ponder.api import make_verifier
from ponder.backends.base import Backend
from ponder.domains import domain_for, labels
from ponder.effort import build_strategy
from ponder.errors import ConfigError
from ponder.eval.curves import CurvePoint, expected_accuracy, mean_ci, pass_at_k
from ponder.eval.store import ResultRow, SampleRow, ScoreRow, Store, strategy_key
from ponder.sandbox import Sandbox
from ponder.strategies.aggregate import best_score_pick, cluster_ids, vote_pick
from ponder.strategies.base import (
    DEFAULT_SANDBOX,
    Context,
    StrategyConfig,
    problem_messages,
    to_candidate,
)
from ponder.types import Candidate, Problem
from ponder.verifiers.answers import equivalent

GREEDY = "greedy"


def parse_budgets(text: str) -> list[int]:
    """``"1,2,4,8"`` -> [1, 2, 4, 8]; must be strictly increasing positive integers."""
    try:
        budgets = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"budgets must be integers, got {text!r}") from None
    if not budgets or any(b < 1 for b in budgets) or any(
        a >= b for a, b in zip(budgets, budgets[1:], strict=False)
    ):
        raise ConfigError(f"budgets must be increasing positive integers, got {text!r}")
    return budgets


@dataclass
class Plan:
    """One strategy of the grid: its label, store keys, mode and how to build it per budget.

    Sampling plans (vote, best-score) draw from the sample pool ``sample_key``, shared by every
    plan with the same sampling configuration; best-score plans add ``verifier`` scores.
    """

    label: str
    name: str
    key: str
    mode: str
    budgets: list[int]
    options: dict[str, Any]
    sample_key: str | None = None
    verifier: str | None = None

    def build(self, budget: int | None = None) -> Any:
        overrides = {}
        if budget is not None:
            overrides = registry.strategies.get(self.name).budget_overrides(budget)
        return build_strategy(self.name, **{**self.options, **overrides})


@dataclass
class Status:
    """What the progress display shows."""

    problems_total: int
    problems_done: int = 0
    samples: int = 0
    tokens: int = 0
    started: float = field(default_factory=time.monotonic)
    correct: int = 0
    scored: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.scored if self.scored else None


def _clusters(samples: Sequence[SampleRow]) -> list[int | None]:
    """Stored execution signatures (code) when there are any, else answer equivalence."""
    if any(r.signature is not None for r in samples):
        return labels([r.signature for r in samples])
    return cluster_ids([r.answer for r in samples])


def _seed(*parts: Any) -> int:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class Harness:
    def __init__(
        self,
        backend: Backend,
        store: Store,
        problems: Sequence[Problem],
        strategies: Sequence[str],
        budgets: Sequence[int],
        *,
        options: dict[str, Any] | None = None,
        verifier: str | None = None,
        seed: int = 0,
        greedy: bool = True,
        concurrency: int = 1,
        on_update: Callable[[Status], None] | None = None,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.backend = backend
        self.store = store
        self.problems = list(problems)
        self.budgets = list(budgets)
        self.options = dict(options or {})
        self.verifier = verifier
        self.seed = seed
        self.concurrency = max(1, concurrency)
        self.on_update = on_update
        self.sandbox = sandbox or DEFAULT_SANDBOX
        self.status = Status(len(self.problems))
        self.plans: list[Plan] = []
        if greedy:
            self.plans.append(self._plan(GREEDY, "cot", {**self.options, "temperature": 0.0}))
        for name in strategies:
            self.plans.append(self._plan(name, name, self.options))

    def _plan(self, label: str, name: str, options: dict[str, Any]) -> Plan:
        strategy = build_strategy(name, **options)  # validates name and options up front
        mode = strategy.eval_mode
        config = strategy.config.model_dump()
        for knob in type(strategy).budget_overrides(1):
            config.pop(knob, None)  # the budget is a row key, not part of the strategy's key
        sample_key = verifier = None
        if mode in ("vote", "best-score"):
            if config.get("weighting", "none") != "none":
                raise ConfigError("ponder eval scores self-consistency by plain majority vote; "
                                  f"weighting={config['weighting']} is not supported there")
            sampling = {k: config[k] for k in StrategyConfig.model_fields}
            sample_key = strategy_key("samples", sampling)
            if mode == "best-score":
                verifier = self.verifier or (
                    domain_for(self.problems[0]).default_verifier if self.problems else None
                ) or getattr(strategy, "default_verifier", None)
                config["verifier"] = verifier
        key = strategy_key(name, config)
        self.store.register_strategy(key, name, config)
        budgets = [1] if mode == "single" else self.budgets
        return Plan(label, name, key, mode, budgets, dict(options), sample_key, verifier)

    # -- generation ------------------------------------------------------------------------

    async def run(self) -> None:
        probe = getattr(self.backend, "probe", None)
        if probe is not None:
            await probe()  # an HTTP backend learns what it can do before the judge asks
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(problem: Problem) -> None:
            async with semaphore:
                for plan in self.plans:
                    await self._ensure(plan, problem)
                self.status.problems_done += 1
                self._update()

        await asyncio.gather(*(one(p) for p in self.problems))

    def _update(self) -> None:
        if self.on_update is not None:
            self.on_update(self.status)

    def _note(self, correct: bool, completion_tokens: int, samples: int) -> None:
        self.status.samples += samples
        self.status.tokens += completion_tokens
        self.status.scored += 1
        self.status.correct += correct
        self._update()

    async def _grade(self, problem: Problem, answers: Sequence[str | None]) -> list[bool]:
        return await domain_for(problem).grade(problem, answers, self.sandbox)

    async def _ensure(self, plan: Plan, problem: Problem) -> None:
        if plan.sample_key is not None:
            await self._ensure_sampled(plan, plan.sample_key, problem)
            return
        for budget in plan.budgets:
            if self.store.result(plan.key, problem.id, budget) is not None:
                continue
            strategy = plan.build(budget if plan.mode == "budget" else None)
            ctx = Context(backend=self.backend, sandbox=self.sandbox,
                          verifier=make_verifier(self.verifier, strategy, problem),
                          seed=_seed(self.seed, plan.key, problem.id, budget))
            result = await strategy.run(problem, ctx)
            u = result.usage
            answers = [result.answer, *(c.answer for c in result.candidates)]
            correct, *each = await self._grade(problem, answers)
            self.store.add_result(plan.key, problem.id, ResultRow(
                budget, result.answer, correct,
                u.prompt_tokens, u.completion_tokens, u.calls, u.seconds,
                [{**c.to_dict(), "correct": ok} for c, ok in zip(result.candidates, each,
                                                                  strict=True)],
            ))
            self._note(correct, u.completion_tokens, len(result.candidates))

    async def _ensure_sampled(self, plan: Plan, sample_key: str, problem: Problem) -> None:
        """Top up the problem's sample pool to the largest budget, then (best-score) score the
        samples that lack this verifier's score. Each step is stored as soon as it returns."""
        target = max(plan.budgets)
        have = self.store.sample_count(sample_key, problem.id)
        new_tokens = 0
        if have < target:
            cfg = plan.build().config
            ctx = Context(backend=self.backend, seed=_seed(self.seed, sample_key, problem.id, have))
            started = time.monotonic()
            traced = await ctx.sample(problem_messages(problem, cfg.system), cfg.sampling(),
                                      n=target - have, label="sample")
            seconds, calls, n = time.monotonic() - started, ctx.trace.usage.calls, len(traced)
            candidates = [to_candidate(t, problem) for t in traced]
            answers = [c.answer for c in candidates]
            domain = domain_for(problem)
            grades = await domain.grade(problem, answers, self.sandbox)
            keys = await domain.signatures(problem, answers, self.sandbox) or [None] * n
            rows = []
            for i, (c, ok, key) in enumerate(zip(candidates, grades, keys, strict=True)):
                rows.append(SampleRow(
                    have + i, c.text, c.answer, ok,
                    c.usage.prompt_tokens, c.usage.completion_tokens, calls / n, seconds / n,
                    c.finish_reason, key,
                ))
                new_tokens += c.usage.completion_tokens
            self.store.add_samples(sample_key, problem.id, rows)
        samples = self.store.samples(sample_key, problem.id)[:target]
        scores: dict[int, ScoreRow] = {}
        if plan.verifier is not None:
            scores = self.store.scores(sample_key, plan.verifier, problem.id)
            missing = [r for r in samples if r.idx not in scores]
            if missing:
                ctx = Context(backend=self.backend, sandbox=self.sandbox,
                              seed=_seed(self.seed, plan.key, problem.id))
                started = time.monotonic()
                verifier = make_verifier(plan.verifier, None, problem)
                assert verifier is not None
                values = await verifier.score(
                    problem, [Candidate(r.text, r.answer) for r in missing], ctx, None)
                u, m = ctx.trace.usage, len(missing)
                seconds = time.monotonic() - started
                rows = [ScoreRow(r.idx, v, u.completion_tokens / m, u.prompt_tokens / m,
                                 u.calls / m, seconds / m)
                        for r, v in zip(missing, values, strict=True)]
                self.store.add_scores(sample_key, plan.verifier, problem.id, rows)
                scores.update({r.idx: r for r in rows})
                new_tokens += u.completion_tokens
        if have < target or plan.verifier is not None:
            chosen = self._pick(plan, samples, scores, range(len(samples)))
            correct = chosen is not None and samples[chosen].correct
            self._note(correct, new_tokens, max(0, target - have))

    @staticmethod
    def _pick(plan: Plan, samples: Sequence[SampleRow], scores: dict[int, ScoreRow],
              subset: Sequence[int], clusters: Sequence[int | None] | None = None
              ) -> int | None:
        clusters = clusters if clusters is not None else _clusters(samples)
        if plan.mode == "vote":
            return vote_pick(clusters, subset)
        values = [scores[r.idx].score if r.idx in scores else None for r in samples]
        return best_score_pick(values, clusters, subset)

    # -- curves ----------------------------------------------------------------------------

    def curves(self, draws: int = 200) -> dict[str, Any]:
        """Accuracy, confidence interval and cost for every strategy x budget, plus the greedy
        baseline and coverage; per-problem details for the drill-down."""
        points: list[CurvePoint] = []
        coverage: list[CurvePoint] = []
        per_problem: dict[str, dict[str, Any]] = {
            p.id: {"id": p.id, "question": p.question, "gold": p.answer, "strategies": {}}
            for p in self.problems
        }
        for plan in self.plans:
            if plan.mode in ("vote", "best-score"):
                points.extend(self._sampled_points(plan, draws, per_problem))
                if not coverage:
                    coverage = self._coverage(plan)
            else:
                points.extend(self._run_points(plan, per_problem))
        return {
            "points": [p.to_dict() for p in points],
            "coverage": [p.to_dict() for p in coverage],
            "problems": list(per_problem.values()),
        }

    def _sampled_points(self, plan: Plan, draws: int, per_problem: dict[str, Any]
                        ) -> list[CurvePoint]:
        assert plan.sample_key is not None
        rng = random.Random(_seed(self.seed, "curves", plan.key))
        by_budget: dict[int, list[tuple[float, float, float, float]]] = {}
        for problem in self.problems:
            samples = self.store.samples(plan.sample_key, problem.id)[: max(plan.budgets)]
            scores = (self.store.scores(plan.sample_key, plan.verifier, problem.id)
                      if plan.verifier else {})
            if not samples or (plan.verifier and len(scores) < len(samples)):
                continue
            clusters = _clusters(samples)

            def pick(subset: Sequence[int], samples=samples, scores=scores, clusters=clusters
                     ) -> int | None:
                return self._pick(plan, samples, scores, subset, clusters)

            cost = [(r.completion_tokens, r.calls, r.seconds) for r in samples]
            if plan.verifier:
                cost = [(t + scores[r.idx].completion_tokens, c + scores[r.idx].calls,
                         s + scores[r.idx].seconds) for (t, c, s), r in zip(cost, samples,
                                                                            strict=True)]
            mean_cost = [statistics.fmean(x[i] for x in cost) for i in range(3)]
            correct = [r.correct for r in samples]
            for k in plan.budgets:
                if k <= len(samples):
                    acc = expected_accuracy(pick, correct, k, draws, rng)
                    by_budget.setdefault(k, []).append((acc, *(k * m for m in mean_cost)))
            chosen = pick(list(range(len(samples))))
            per_problem[problem.id]["strategies"][plan.label] = {
                "budget": len(samples),
                "answer": samples[chosen].answer if chosen is not None else None,
                "correct": bool(chosen is not None and samples[chosen].correct),
                "candidates": [
                    {"answer": r.answer, "correct": r.correct, "tokens": r.completion_tokens,
                     "score": scores[r.idx].score if r.idx in scores else None, "text": r.text}
                    for r in samples
                ],
            }
        return [self._point(plan.label, k, values) for k, values in sorted(by_budget.items())]

    def _run_points(self, plan: Plan, per_problem: dict[str, Any]) -> list[CurvePoint]:
        points = []
        for budget in plan.budgets:
            values = []
            for problem in self.problems:
                row = self.store.result(plan.key, problem.id, budget)
                if row is None:
                    continue
                values.append((float(row.correct), float(row.completion_tokens),
                               float(row.calls), row.seconds))
                if budget == max(plan.budgets):
                    per_problem[problem.id]["strategies"][plan.label] = {
                        "budget": budget, "answer": row.answer, "correct": row.correct,
                        "candidates": [
                            {"answer": c["answer"], "score": c["score"],
                             "correct": c.get("correct",
                                              equivalent(c["answer"], problem.answer)),
                             "tokens": c["usage"]["completion_tokens"], "text": c["text"]}
                            for c in row.candidates
                        ],
                    }
            if values:
                points.append(self._point(plan.label, budget, values))
        return points

    @staticmethod
    def _point(label: str, budget: int, values: list[tuple[float, float, float, float]]
               ) -> CurvePoint:
        acc, lo, hi = mean_ci([v[0] for v in values])
        return CurvePoint(
            label, budget, acc, lo, hi,
            tokens=statistics.fmean(v[1] for v in values),
            calls=statistics.fmean(v[2] for v in values),
            seconds=statistics.fmean(v[3] for v in values),
            problems=len(values),
        )

    def _coverage(self, plan: Plan) -> list[CurvePoint]:
        by_budget: dict[int, list[tuple[float, float, float, float]]] = {}
        assert plan.sample_key is not None
        for problem in self.problems:
            rows = self.store.samples(plan.sample_key, problem.id)[: max(plan.budgets)]
            if not rows:
                continue
            c = sum(r.correct for r in rows)
            tokens = statistics.fmean(r.completion_tokens for r in rows)
            for k in plan.budgets:
                if k <= len(rows):
                    by_budget.setdefault(k, []).append(
                        (pass_at_k(len(rows), c, k), k * tokens, 0.0, 0.0))
        return [self._point(f"coverage ({plan.label})", k, v) for k, v in sorted(by_budget.items())]
