"""Budgets: token counts, FLOPs or ``ref@N`` (what the reference spends at N samples), what
fits one, the reference at a budget and the best configuration within it."""

from __future__ import annotations

from collections.abc import Sequence

from ponder.errors import ConfigError
from ponder.tune.space import Candidate, Setting


def check_budgets(budgets: Sequence[int | float | str], sizes: Sequence[int]) -> None:
    """Positive token counts (or FLOPs), or ``ref@N`` with N one of the sample counts tried."""
    if not budgets:
        raise ConfigError("--budget must be positive token counts")
    for b in budgets:
        if isinstance(b, str) and parse_reference_budget(b) not in sizes:
            raise ConfigError(f"--budget {b}: the reference's sample count must be one of "
                              f"--samples ({', '.join(map(str, sizes))})")
        if isinstance(b, int) and b < 1 or isinstance(b, float) and not b > 0:
            raise ConfigError("--budget must be positive token counts")


def parse_reference_budget(text: str) -> int:
    """``ref@8`` -> 8: a budget of what the reference spends at 8 samples."""
    name, _, n = text.strip().partition("@")
    if name != "ref" or not n.isdigit() or int(n) < 1:
        raise ConfigError(f"--budget {text!r}: expected token counts or ref@N (the reference's "
                          "tokens at N samples)")
    return int(n)


def fits_in(c: Candidate, budget: int | float) -> bool:
    """Mean cost within the budget (a mean is a float: 1234.0000000000002 fits 1234, and
    FLOPs summed in another order fit their own budget)."""
    return c.cost <= budget + 1e-6 + 1e-12 * abs(budget)


def reference_at(candidates: Sequence[Candidate], reference: Setting, budget: int | float
                 ) -> Candidate | None:
    """Self-consistency by majority at the reference setting, with the most samples that fit."""
    fits = [c for c in candidates if c.kind == "small" and c.setting.label == reference.label
            and c.selector == "majority" and fits_in(c, budget)]
    return max(fits, key=lambda c: c.n, default=None)


def best_at(candidates: Sequence[Candidate], budget: int | float) -> Candidate | None:
    """The most accurate configuration within the budget (ties: cheaper, then the first
    in the grid's order)."""
    fits = [c for c in candidates if fits_in(c, budget)]
    return min(fits, key=lambda c: (-round(c.accuracy, 12), c.cost), default=None)
