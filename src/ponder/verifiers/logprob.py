"""The ``logprob`` verifier: a candidate's geometric-mean token probability (no extra call)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

from ponder.core.context import Context
from ponder.types import Candidate, Problem


class MeanLogprobVerifier:
    """Scores a candidate by its geometric-mean token probability (no extra call)."""

    name: ClassVar[str] = "logprob"
    description: ClassVar[str] = "geometric-mean token probability of the candidate (no call)"

    async def score(
        self, problem: Problem, candidates: Sequence[Candidate], ctx: Context, parent: int | None
    ) -> list[float | None]:
        return [None if c.mean_logprob is None else math.exp(c.mean_logprob) for c in candidates]
