"""Which strategy is compared with which in a report, and the paired table that results.

By default every strategy at a budget is compared with self-consistency at the same budget (when
it was run) and with the greedy baseline; ``--reference LABEL[@BUDGET]`` names another reference.
The statistics are ``paired.compare``'s, on the per-problem values of ``Scoring.curves``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ponder.errors import ConfigError
from ponder.eval.paired import compare
from ponder.eval.plans import GREEDY

SELF_CONSISTENCY = "self-consistency"

Reference = tuple[str, int | None]  # a label, and a fixed budget or None (the row's budget)
Pair = tuple[tuple[str, int], tuple[str, int]]


def parse_reference(text: str, labels: Sequence[str]) -> Reference:
    """``LABEL`` or ``LABEL@BUDGET``; the label must be one of the evaluated strategies."""
    label, budget = text.strip(), None
    head, at, tail = label.rpartition("@")
    if at and label not in labels:
        if not tail.isdigit() or int(tail) < 1:
            raise ConfigError(f"--reference {text!r}: the budget after '@' must be a positive "
                              "integer")
        label, budget = head, int(tail)
    if label not in labels:
        known = ", ".join(labels) or "none"
        raise ConfigError(f"--reference names an unknown strategy {label!r} (evaluated: {known})")
    return (label, budget)


def check_reference(reference: Reference, budgets: Mapping[str, Sequence[int]]) -> None:
    """A fixed reference budget must be one its strategy is evaluated at."""
    label, budget = reference
    if budget is not None and budget not in budgets[label]:
        have = ", ".join(str(b) for b in budgets[label])
        raise ConfigError(f"--reference {label}@{budget}: {label} is evaluated at budgets "
                          f"{have} only")


def _default_sc(names: Mapping[str, str]) -> str | None:
    if names.get(SELF_CONSISTENCY) == SELF_CONSISTENCY:
        return SELF_CONSISTENCY
    return next((label for label, name in names.items() if name == SELF_CONSISTENCY), None)


def _reference_budget(budget: int, have: Sequence[int], fixed: int | None) -> int | None:
    if fixed is not None:
        return fixed if fixed in have else None
    if budget in have:
        return budget
    return have[0] if len(have) == 1 else None  # a one-budget baseline serves every budget


def pairs(budgets: Mapping[str, Sequence[int]], names: Mapping[str, str],
          reference: Reference | None = None) -> list[Pair]:
    """(strategy, budget) against (reference, budget) for every scored point, in table order.

    ``budgets``: the budgets each strategy has per-problem values at; ``names``: each label's
    strategy name (to find self-consistency under a label such as ``self-consistency[n=3]``)."""
    if reference is not None:
        refs: list[Reference] = [reference]
    else:
        sc = _default_sc(names)
        refs = [(label, None) for label in (sc, GREEDY) if label is not None]
    out: list[Pair] = []
    for label, have in budgets.items():
        if reference is None and label == GREEDY:
            continue  # the baseline is what the others are measured against, not a row
        for budget in have:
            for ref, fixed in refs:
                if ref not in budgets:
                    continue
                ref_budget = _reference_budget(budget, budgets[ref], fixed)
                if ref_budget is not None and (ref, ref_budget) != (label, budget):
                    out.append(((label, budget), (ref, ref_budget)))
    return out


def paired_table(values: Mapping[str, Mapping[int, Mapping[str, float]]],
                 names: Mapping[str, str], reference: Reference | None = None,
                 seed: int = 0, draws: int = 2000) -> list[dict[str, Any]]:
    """The report's paired comparisons: one row per pair with problems both were scored on.

    ``values``: ``Scoring.curves()["per_problem"]``, label -> budget -> problem id -> value."""
    budgets = {label: sorted(by_budget) for label, by_budget in values.items()}
    rows = []
    for (label, budget), (ref, ref_budget) in pairs(budgets, names, reference):
        row = compare((label, budget), (ref, ref_budget), values[label][budget],
                      values[ref][ref_budget], draws=draws, seed=seed)
        if row.problems:
            rows.append(row.to_dict())
    return rows
