"""The Verifier protocol: batched scores of candidate answers, None to abstain."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

from ponder.types import Candidate, Problem

if TYPE_CHECKING:
    from ponder.strategies.base import Context


@runtime_checkable
class Verifier(Protocol):
    """Scores candidates in [0, 1]; None means no opinion. Calls go through ``ctx`` so they are
    budgeted and traced like any other."""

    name: ClassVar[str]

    async def score(
        self, problem: Problem, candidates: Sequence[Candidate], ctx: Context, parent: int | None
    ) -> list[float | None]: ...


class MeanLogprobVerifier:
    """Scores a candidate by its geometric-mean token probability (no extra call)."""

    name: ClassVar[str] = "logprob"
    description: ClassVar[str] = "geometric-mean token probability of the candidate (no call)"

    async def score(
        self, problem: Problem, candidates: Sequence[Candidate], ctx: Context, parent: int | None
    ) -> list[float | None]:
        return [None if c.mean_logprob is None else math.exp(c.mean_logprob) for c in candidates]
