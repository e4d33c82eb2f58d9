"""The plans of an evaluation grid: one per strategy, with its store keys, budgets and sample
pools, and what both the harness (generation) and the scoring (replay) read of them."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ponder import registry
from ponder.domains import MATH, domain_for
from ponder.domains.answers import equivalent
from ponder.errors import ConfigError
from ponder.eval.pools import Pool, clusters_of, cut_of
from ponder.eval.store import SampleRow, Store
from ponder.runner import build_strategy
from ponder.types import Problem

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

    Sampling plans (vote, best-score) draw from sample ``pools``, shared by every plan with the
    same sampling configuration; best-score plans add ``verifier`` scores.
    """

    label: str
    name: str
    key: str
    mode: str
    budgets: list[int]
    options: dict[str, Any]
    pools: list[Pool] = field(default_factory=list)
    verifier: str | None = None

    @functools.cached_property
    def config(self) -> Any:
        return self.build().config

    def build(self, budget: int | None = None) -> Any:
        overrides = {}
        if budget is not None:
            overrides = registry.strategies.get(self.name).budget_overrides(budget)
        return build_strategy(self.name, **{**self.options, **overrides})


def seed_of(*parts: Any) -> int:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def plan_samples(store: Store, plan: Plan, problem: Problem, targets: Sequence[int]
                 ) -> list[SampleRow]:
    """The plan's samples of a problem: each pool's first ``target``, chains first (math
    answers graded by today's rule: :func:`graded`)."""
    return graded([row for pool, target in zip(plan.pools, targets, strict=True)
                   for row in store.samples(pool.key, problem.id)[:target]], problem)


def graded(rows: Sequence[SampleRow], problem: Problem) -> list[SampleRow]:
    """The rows with their math answers graded again against the gold answer, by today's
    equivalence: a store keeps the grade each sample got when it was drawn, and a better
    reading of answers ("The farmer has a total of 22 sheep" is 22) must not leave an older
    store's grades behind the vote that now counts them. Code and chat grades stand (they
    came from tests and tools)."""
    if domain_for(problem) is not MATH or problem.answer is None:
        return list(rows)
    gold = problem.answer
    return [row if row.correct == (ok := equivalent(row.answer, gold))
            else dataclasses.replace(row, correct=ok) for row in rows]


def samples_used(plan: Plan, samples: Sequence[SampleRow], budget: int,
                 clusters: Sequence[int | None] | None = None) -> int:
    """Samples a plan uses at a budget: all of them, unless it stops early (sequential)."""
    if plan.mode != "sequential":
        return len(samples)
    cls = registry.strategies.get(plan.name)
    return cls.samples_used(plan.config, clusters or clusters_of(samples), budget,
                            cut=cut_of(samples))
