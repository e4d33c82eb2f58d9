"""cot: one chain of thought, greedy by default."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from ponder.core.context import Context
from ponder.strategies.base import (
    BaseStrategy,
    EvalMode,
    Outcome,
    StrategyConfig,
    problem_messages,
    to_candidate,
)
from ponder.types import Problem


class ChainOfThoughtConfig(StrategyConfig):
    temperature: float = Field(0.0, ge=0.0, le=5.0)


class ChainOfThought(BaseStrategy):
    name: ClassVar[str] = "cot"
    description: ClassVar[str] = "one step-by-step chain of thought (greedy)"
    Config: ClassVar[type[StrategyConfig]] = ChainOfThoughtConfig
    config: ChainOfThoughtConfig
    effort_presets: ClassVar[dict[str, dict[str, Any]]] = {
        "low": {"max_tokens": 256},
        "medium": {"max_tokens": 512},
        "high": {"max_tokens": 1024},
    }

    eval_mode: ClassVar[EvalMode] = "single"

    async def solve(self, problem: Problem, ctx: Context, root: int) -> Outcome:
        [traced] = await ctx.sample(
            problem_messages(problem, self.config.system), self.config.sampling(),
            parent=root, label="chain",
        )
        return Outcome.chosen([to_candidate(traced, problem)], 0)
