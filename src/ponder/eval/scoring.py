"""Curves from an evaluation's stored samples and results: accuracy, confidence interval and
cost per strategy and budget, coverage, the tokens early-stopping strategies actually spent, and
the per-problem details of the drill-down."""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from typing import Any

from ponder.domains.answers import equivalent
from ponder.eval.curves import CurvePoint, mean_ci, pass_at_k
from ponder.eval.plans import Plan, graded, plan_samples, samples_used, seed_of
from ponder.eval.pools import (
    clusters_of,
    counts,
    pick,
    pool_keys,
    score_values,
    stratified_accuracy,
)
from ponder.eval.store import Store
from ponder.types import Prices, Problem

# one problem's (correct, generated tokens, calls, seconds, FLOPs-equivalent or None, dollars
# (and dollars or None)
Values = tuple[float, float, float, float, "float | None", "float | None"]


def _quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile of sorted values (nearest rank)."""
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]



class Scoring:
    """Reads an evaluation's store for its problems and plans (nothing is generated here)."""

    def __init__(self, store: Store, problems: Sequence[Problem], plans: Sequence[Plan],
                 seed: int, parameters: int | None = None, prices: Prices | None = None
                 ) -> None:
        self.store = store
        # the generator's size: FLOPs-equivalent cost of its samples (None: unknown, no FLOPs)
        self.parameters = parameters
        self.prices = prices  # the generator's dollars per million tokens (None: not given)
        self.problems = list(problems)
        self.plans = list(plans)
        self.seed = seed
        self.values: dict[str, dict[int, dict[str, float]]] = {}

    def _keep(self, label: str, budget: int, problem_id: str, value: float) -> None:
        """One problem's expected accuracy for a strategy at a budget (for paired tests)."""
        self.values.setdefault(label, {}).setdefault(budget, {})[problem_id] = value

    def curves(self, draws: int = 200) -> dict[str, Any]:
        """Accuracy, confidence interval and cost for every strategy x budget, plus the greedy
        baseline and coverage; per-problem details for the drill-down, and each problem's expected
        accuracy per strategy and budget (``per_problem[label][budget][problem_id]``)."""
        self.values = {}
        points: list[CurvePoint] = []
        coverage: list[CurvePoint] = []
        per_problem: dict[str, dict[str, Any]] = {
            p.id: {"id": p.id, "question": p.question, "gold": p.answer, "strategies": {}}
            for p in self.problems
        }
        spent: list[dict[str, Any]] = []
        for plan in self.plans:
            if plan.mode in ("vote", "best-score"):
                points.extend(self._sampled_points(plan, draws, per_problem))
                if not coverage:
                    coverage = self._coverage(plan)
            elif plan.mode == "sequential":
                new, distribution = self._sequential_points(plan, per_problem)
                points.extend(new)
                spent.extend(distribution)
            else:
                points.extend(self._run_points(plan, per_problem))
        return {
            "points": [p.to_dict() for p in points],
            "coverage": [p.to_dict() for p in coverage],
            "spent": spent,
            "problems": list(per_problem.values()),
            "per_problem": self.values,
        }

    def _sampled_points(self, plan: Plan, draws: int, per_problem: dict[str, Any]
                        ) -> list[CurvePoint]:
        rng = random.Random(seed_of(self.seed, "curves", plan.key))
        by_budget: dict[int, list[Values]] = {}
        targets = counts(plan.config, plan.pools, max(plan.budgets))
        for problem in self.problems:
            samples = plan_samples(self.store, plan, problem, targets)
            stored = ({p.key: self.store.scores(p.key, plan.verifier, problem.id)
                       for p in plan.pools} if plan.verifier else {})
            scores = score_values(samples, plan.pools, stored)
            keys = pool_keys(samples, plan.pools)
            if not samples or (plan.verifier and any(
                    r.idx not in stored[k] for k, r in zip(keys, samples, strict=True))):
                continue  # not (fully) generated or scored yet
            clusters = clusters_of(samples)

            def chooser(subset: Sequence[int], samples=samples, scores=scores,
                        clusters=clusters) -> int | None:
                return pick(plan.mode, plan.config, samples, scores, subset, clusters)

            # (generated tokens, calls, seconds, every token read or written)
            cost = [(r.completion_tokens, r.calls, r.seconds,
                     r.prompt_tokens + r.completion_tokens) for r in samples]
            if plan.verifier:
                extra = [stored[k][r.idx] for k, r in zip(keys, samples, strict=True)]
                cost = [(t + x.completion_tokens, c + x.calls, s + x.seconds,
                         a + x.prompt_tokens + x.completion_tokens)
                        for (t, c, s, a), x in zip(cost, extra, strict=True)]
            strata, start = [], 0
            for pool in plan.pools:
                size = sum(1 for r in samples[start:] if r.mode == pool.mode
                           or len(plan.pools) == 1)
                strata.append(range(start, start + size))
                start += size
            correct = [r.correct for r in samples]
            for k in plan.budgets:
                sizes = counts(plan.config, plan.pools, k)
                if any(n > len(s) for n, s in zip(sizes, strata, strict=True)):
                    continue
                acc = stratified_accuracy(chooser, correct, strata, sizes, draws, rng)
                spent = [sum(n * statistics.fmean(cost[i][j] for i in s) if n else 0.0
                             for n, s in zip(sizes, strata, strict=True)) for j in range(4)]
                by_budget.setdefault(k, []).append(
                    (acc, spent[0], spent[1], spent[2], *self._costs(spent[0], spent[3])))
                self._keep(plan.label, k, problem.id, acc)
            chosen = chooser(list(range(len(samples))))
            per_problem[problem.id]["strategies"][plan.label] = {
                "budget": len(samples),
                "answer": samples[chosen].answer if chosen is not None else None,
                "correct": bool(chosen is not None and samples[chosen].correct),
                "candidates": [
                    {"answer": r.answer, "correct": r.correct, "tokens": r.completion_tokens,
                     "score": score, "mode": r.mode, "text": r.text,
                     **({"output": r.meta.get("output"), "error": r.meta.get("error")}
                        if r.mode == "program" and r.meta else {})}
                    for r, score in zip(samples, scores, strict=True)
                ],
            }
        return [self._point(plan.label, k, values) for k, values in sorted(by_budget.items())]

    def _sequential_points(self, plan: Plan, per_problem: dict[str, Any]
                           ) -> tuple[list[CurvePoint], list[dict[str, Any]]]:
        """Replay an early-stopping strategy on the stored samples, in order: its accuracy and
        the tokens it actually spent, per problem, at each budget (its most samples)."""
        targets = counts(plan.config, plan.pools, max(plan.budgets))
        by_budget: dict[int, list[Values]] = {}
        used_at: dict[int, list[int]] = {}
        for problem in self.problems:
            samples = plan_samples(self.store, plan, problem, targets)
            if len(samples) < sum(targets):
                continue
            clusters = clusters_of(samples)
            for budget in plan.budgets:
                used = samples_used(plan, samples, budget, clusters)
                chosen = pick("vote", plan.config, samples, [None] * len(samples),
                              range(used), clusters)
                correct = float(chosen is not None and samples[chosen].correct)
                by_budget.setdefault(budget, []).append((
                    correct, float(sum(r.completion_tokens for r in samples[:used])),
                    sum(r.calls for r in samples[:used]), sum(r.seconds for r in samples[:used]),
                    *self._costs(sum(r.completion_tokens for r in samples[:used]),
                                 sum(r.prompt_tokens + r.completion_tokens
                                     for r in samples[:used]))))
                used_at.setdefault(budget, []).append(used)
                self._keep(plan.label, budget, problem.id, correct)
                if budget == max(plan.budgets):
                    per_problem[problem.id]["strategies"][plan.label] = {
                        "budget": used, "answer": samples[chosen].answer if chosen is not None
                        else None, "correct": bool(correct),
                        "candidates": [{"answer": r.answer, "correct": r.correct,
                                        "tokens": r.completion_tokens, "score": None,
                                        "text": r.text} for r in samples[:used]]}
        points = [self._point(plan.label, k, v) for k, v in sorted(by_budget.items())]
        distribution = []
        for budget, values in sorted(by_budget.items()):
            tokens = sorted(v[1] for v in values)
            distribution.append({
                "strategy": plan.label, "budget": budget, "problems": len(tokens),
                "mean": statistics.fmean(tokens), "p10": _quantile(tokens, 0.1),
                "p50": _quantile(tokens, 0.5), "p90": _quantile(tokens, 0.9),
                "max": tokens[-1], "samples_mean": statistics.fmean(used_at[budget]),
                "stopped_early": sum(u < budget for u in used_at[budget]) / len(tokens),
            })
        return points, distribution

    def _run_points(self, plan: Plan, per_problem: dict[str, Any]) -> list[CurvePoint]:
        points = []
        for budget in plan.budgets:
            values = []
            for problem in self.problems:
                row = self.store.result(plan.key, problem.id, budget)
                if row is None:
                    continue
                costs = (row.flops, row.dollars) if row.models is not None else \
                    self._costs(row.completion_tokens, row.prompt_tokens + row.completion_tokens)
                values.append((float(row.correct), float(row.completion_tokens),
                               float(row.calls), row.seconds, *costs))
                self._keep(plan.label, budget, problem.id, float(row.correct))
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

    def _costs(self, generated: float, tokens: float) -> tuple[float | None, float | None]:
        """The FLOPs-equivalent and dollar costs on the generator of ``tokens`` read or written,
        ``generated`` of them generated (None where its size or prices are unknown)."""
        flops = None if self.parameters is None else 2.0 * self.parameters * tokens
        dollars = None if self.prices is None else (
            (tokens - generated) * self.prices.input + generated * self.prices.output) / 1e6
        return flops, dollars

    @staticmethod
    def _point(label: str, budget: int, values: list[Values]) -> CurvePoint:
        acc, lo, hi = mean_ci([v[0] for v in values])
        flops, dollars = [v[4] for v in values], [v[5] for v in values]
        return CurvePoint(
            label, budget, acc, lo, hi,
            tokens=statistics.fmean(v[1] for v in values),
            calls=statistics.fmean(v[2] for v in values),
            seconds=statistics.fmean(v[3] for v in values),
            problems=len(values),
            flops=None if any(f is None for f in flops)
            else statistics.fmean(f for f in flops if f is not None),
            dollars=None if any(d is None for d in dollars)
            else statistics.fmean(d for d in dollars if d is not None),
        )

    def _coverage(self, plan: Plan) -> list[CurvePoint]:
        """pass@k (unbiased) over the plan's first pool."""
        by_budget: dict[int, list[Values]] = {}
        pool = plan.pools[0]
        for problem in self.problems:
            rows = graded(self.store.samples(pool.key, problem.id)[: max(plan.budgets)],
                          problem)
            if not rows:
                continue
            c = sum(r.correct for r in rows)
            tokens = statistics.fmean(r.completion_tokens for r in rows)
            read = statistics.fmean(r.prompt_tokens + r.completion_tokens for r in rows)
            for k in plan.budgets:
                if k <= len(rows):
                    by_budget.setdefault(k, []).append(
                        (pass_at_k(len(rows), c, k), k * tokens, 0.0, 0.0,
                         *self._costs(k * tokens, k * read)))
        return [self._point(f"coverage ({plan.label})", k, v) for k, v in sorted(by_budget.items())]
