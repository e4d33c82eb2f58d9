"""The learned selector: logistic regression on answer-group features, from stored samples of dev
problems with gold answers.

Every decision (a problem, a sampling setting, a subset of its stored samples as large as a
budget) gives one row per answer group: the group's :data:`~ponder.domains.selector.FEATURES`
and whether its answer is right. The fitted coefficients are a
:class:`~ponder.domains.selector.Selector` (the vote picks the group with the highest score): a
small JSON file, no pickle, readable by anyone. Cross-validation keeps each problem's rows in
one fold and compares the fitted rule with the plain majority on the held-out folds' decisions.
scikit-learn is the optional extra ``ponder[tune]``, imported only here.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ponder.domains.selector import FEATURES, RULES, Selector, Signal, group_features
from ponder.domains.vote import tally
from ponder.errors import ConfigError


@dataclass(frozen=True)
class Decision:
    """One choice among answer groups: each group's features and whether it is right."""

    problem_id: str
    features: list[list[float]]
    right: list[bool]


def decisions(problem_id: str, clusters: Sequence[int | None], signals: Sequence[Signal],
              answers: Sequence[str | None], correct: Sequence[bool], sizes: Sequence[int],
              draws: int, rng: random.Random) -> list[Decision]:
    """Decisions of one problem's stored samples: ``draws`` random subsets per size."""
    out = []
    for k in sizes:
        if k > len(clusters):
            continue
        for _ in range(draws):
            subset = sorted(rng.sample(range(len(clusters)), k))
            groups = tally(clusters, subset)
            if not groups:
                continue
            rows = [group_features(g.members, signals, answers[g.members[0]], subset)
                    for g in groups]
            out.append(Decision(problem_id, [[r[f] for f in FEATURES] for r in rows],
                                [correct[g.members[0]] for g in groups]))
    return out


def require_sklearn() -> Any:
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise ConfigError("the learned selector needs scikit-learn: pip install 'ponder[tune]'"
                          ) from None
    return LogisticRegression


def fit(rows: Sequence[Decision], c: float = 1.0, name: str = "learned") -> Selector | None:
    """Logistic regression on every group of ``rows`` (standardized inside, coefficients given
    back on the raw features); None when the rows hold only right or only wrong groups."""
    x = [f for d in rows for f in d.features]
    y = [int(r) for d in rows for r in d.right]
    if len(set(y)) < 2:
        return None
    means = [statistics.fmean(col) for col in zip(*x, strict=True)]
    scales = [statistics.pstdev(col) or 1.0 for col in zip(*x, strict=True)]
    z = [[(v - m) / s for v, m, s in zip(row, means, scales, strict=True)] for row in x]
    model = require_sklearn()(C=c, max_iter=5000)
    model.fit(z, y)
    coef = [float(w) / s for w, s in zip(model.coef_[0], scales, strict=True)]
    intercept = float(model.intercept_[0]) - sum(w * m for w, m in zip(coef, means, strict=True))
    return Selector(name, dict(zip(FEATURES, coef, strict=True)), intercept)


def accuracy(selector: Selector, rows: Sequence[Decision]) -> float:
    """How often the selector's top group is right (ties: the group seen first)."""
    hits = 0
    for d in rows:
        scores = [selector.score(dict(zip(FEATURES, f, strict=True))) for f in d.features]
        best = max(scores)
        hits += d.right[next(i for i, s in enumerate(scores) if s >= best - 1e-12)]
    return hits / len(rows) if rows else float("nan")


def folds_of(problem_ids: Sequence[str], k: int, seed: int) -> list[list[str]]:
    """The problems dealt into ``k`` folds after a seeded shuffle."""
    ids = sorted(set(problem_ids))
    random.Random(f"{seed}:folds").shuffle(ids)
    return [ids[i::k] for i in range(k)]


def cross_validate(rows: Sequence[Decision], folds: Sequence[Sequence[str]], c: float = 1.0
                   ) -> tuple[dict[str, Any], list[Selector | None]]:
    """Fit on all folds but one, test on it: the held-out selection accuracy of the fitted rule
    and of the majority rule, and each fold's selector (fitted without that fold)."""
    fitted: list[Selector | None] = []
    learned = majority = 0.0
    n = 0
    for fold in folds:
        held = set(fold)
        model = fit([d for d in rows if d.problem_id not in held], c)
        fitted.append(model)
        test = [d for d in rows if d.problem_id in held]
        if model is not None and test:
            learned += accuracy(model, test) * len(test)
            majority += accuracy(RULES["majority"], test) * len(test)
            n += len(test)
    report = {"folds": len(folds), "decisions": n,
              "learned": learned / n if n else None, "majority": majority / n if n else None}
    return report, fitted

