"""Budget: meters tokens, calls and seconds, and says when a strategy must stop."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ponder.errors import BudgetExhausted, ConfigError
from ponder.types import Usage


@dataclass
class Budget:
    """Limits on total tokens (prompt + completion), calls and wall seconds; None = unlimited.

    >>> b = Budget(max_tokens=100)
    >>> b.charge(Usage(prompt_tokens=60, completion_tokens=50, calls=1))
    >>> b.exhausted
    True
    """

    max_tokens: int | None = None
    max_calls: int | None = None
    max_seconds: float | None = None
    spent: Usage = field(default_factory=Usage)
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        for name in ("max_tokens", "max_calls", "max_seconds"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"budget {name.replace('_', '-')} must be positive, got {value}")

    def charge(self, usage: Usage) -> None:
        self.spent = self.spent + usage

    @property
    def remaining_tokens(self) -> int | None:
        if self.max_tokens is None:
            return None
        return self.max_tokens - self.spent.total_tokens

    def spent_limit(self) -> str | None:
        """Which limit is spent: "tokens", "calls", "time", or None."""
        if self.max_tokens is not None and self.spent.total_tokens >= self.max_tokens:
            return "tokens"
        if self.max_calls is not None and self.spent.calls >= self.max_calls:
            return "calls"
        if self.max_seconds is not None and time.monotonic() - self.started >= self.max_seconds:
            return "time"
        return None

    @property
    def exhausted(self) -> bool:
        return self.spent_limit() is not None

    def check(self) -> None:
        """Raise :class:`BudgetExhausted` (saying which limit) when nothing more may be spent."""
        limit = self.spent_limit()
        if limit is not None:
            raise BudgetExhausted(f"budget exhausted ({limit}) after {self.spent.total_tokens} "
                                  f"tokens, {self.spent.calls} calls", limit)

    def completion_cap(self, n_samples: int, prompt_tokens: int) -> int | None:
        """The most new tokens each of ``n_samples`` may generate without overrunning the
        token budget, given (an upper bound of) the prompt tokens the call will evaluate."""
        remaining = self.remaining_tokens
        if remaining is None:
            return None
        return (remaining - prompt_tokens) // max(1, n_samples)
