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
from ponder.effort import build_strategy
from ponder.errors import ConfigError
from ponder.eval.curves import (
    CurvePoint,
    best_score_pick,
    cluster_ids,
    expected_accuracy,
    mean_ci,
    pass_at_k,
    vote_pick,
)
from ponder.eval.store import ResultRow, SampleRow, Store, strategy_key
from ponder.strategies.base import Context
from ponder.types import Problem, Result
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
    """One strategy of the grid: its label, store key, mode and how to build it per budget."""

    label: str
    name: str
    key: str
    mode: str
    budgets: list[int]
    options: dict[str, Any]

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
        config["verifier"] = self.verifier or getattr(strategy, "default_verifier", None)
        key = strategy_key(name, config)
        self.store.register_strategy(key, name, config)
        budgets = [1] if mode == "single" else self.budgets
        return Plan(label, name, key, mode, budgets, dict(options))

    # -- generation ------------------------------------------------------------------------

    async def run(self) -> None:
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

    def _context(self, strategy: Any, seed: int) -> Context:
        return Context(backend=self.backend, verifier=make_verifier(self.verifier, strategy),
                       seed=seed)

    def _note(self, result: Result, problem: Problem) -> None:
        self.status.tokens += result.usage.completion_tokens
        self.status.scored += 1
        self.status.correct += equivalent(result.answer, problem.answer)
        self._update()

    async def _ensure(self, plan: Plan, problem: Problem) -> None:
        if plan.mode in ("vote", "best-score"):
            have = self.store.sample_count(plan.key, problem.id)
            need = max(plan.budgets) - have
            if need <= 0:
                return
            strategy = plan.build(need)
            ctx = self._context(strategy, _seed(self.seed, plan.key, problem.id, have))
            result = await strategy.run(problem, ctx)
            self.store.add_samples(plan.key, problem.id, self._sample_rows(result, problem, have))
            self.status.samples += len(result.candidates)
            self._note(result, problem)
            return
        for budget in plan.budgets:
            if self.store.result(plan.key, problem.id, budget) is not None:
                continue
            strategy = plan.build(budget if plan.mode == "budget" else None)
            ctx = self._context(strategy, _seed(self.seed, plan.key, problem.id, budget))
            result = await strategy.run(problem, ctx)
            u = result.usage
            self.store.add_result(plan.key, problem.id, ResultRow(
                budget, result.answer, equivalent(result.answer, problem.answer),
                u.prompt_tokens, u.completion_tokens, u.calls, u.seconds,
                [c.to_dict() for c in result.candidates],
            ))
            self.status.samples += len(result.candidates)
            self._note(result, problem)

    @staticmethod
    def _sample_rows(result: Result, problem: Problem, start: int) -> list[SampleRow]:
        candidates = result.candidates
        n = max(1, len(candidates))
        own = sum(c.usage.completion_tokens for c in candidates)
        extra = (result.usage.completion_tokens - own) / n  # tokens the verifier generated
        return [
            SampleRow(
                idx=start + i, text=c.text, answer=c.answer,
                correct=equivalent(c.answer, problem.answer), score=c.score,
                prompt_tokens=c.usage.prompt_tokens, completion_tokens=c.usage.completion_tokens,
                extra_tokens=max(0.0, extra), calls=result.usage.calls / n,
                seconds=result.usage.seconds / n, finish_reason=c.finish_reason,
            )
            for i, c in enumerate(candidates)
        ]

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
        rng = random.Random(_seed(self.seed, "curves", plan.key))
        by_budget: dict[int, list[tuple[float, float, float, float]]] = {}
        for problem in self.problems:
            rows = self.store.samples(plan.key, problem.id)[: max(plan.budgets)]
            if not rows:
                continue
            clusters = cluster_ids([r.answer for r in rows])
            correct = [r.correct for r in rows]
            scores = [r.score for r in rows]

            def pick(subset: Sequence[int], clusters=clusters, scores=scores) -> int | None:
                if plan.mode == "vote":
                    return vote_pick(clusters, subset)
                return best_score_pick(scores, clusters, subset)

            per_sample_tokens = statistics.fmean(r.completion_tokens + r.extra_tokens
                                                 for r in rows)
            per_sample_calls = statistics.fmean(r.calls for r in rows)
            per_sample_seconds = statistics.fmean(r.seconds for r in rows)
            for k in plan.budgets:
                if k > len(rows):
                    continue
                acc = expected_accuracy(pick, correct, k, draws, rng)
                by_budget.setdefault(k, []).append(
                    (acc, k * per_sample_tokens, k * per_sample_calls, k * per_sample_seconds)
                )
            chosen = pick(list(range(len(rows))))
            per_problem[problem.id]["strategies"][plan.label] = {
                "budget": len(rows),
                "answer": rows[chosen].answer if chosen is not None else None,
                "correct": bool(chosen is not None and rows[chosen].correct),
                "candidates": [
                    {"answer": r.answer, "score": r.score, "correct": r.correct,
                     "tokens": r.completion_tokens, "text": r.text} for r in rows
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
                             "correct": equivalent(c["answer"], problem.answer),
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
        for problem in self.problems:
            rows = self.store.samples(plan.key, problem.id)[: max(plan.budgets)]
            if not rows:
                continue
            c = sum(r.correct for r in rows)
            tokens = statistics.fmean(r.completion_tokens for r in rows)
            for k in plan.budgets:
                if k <= len(rows):
                    by_budget.setdefault(k, []).append(
                        (pass_at_k(len(rows), c, k), k * tokens, 0.0, 0.0))
        return [self._point(f"coverage ({plan.label})", k, v) for k, v in sorted(by_budget.items())]
