"""cot: one chain of thought, greedy by default."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from pydantic import Field

from ponder.strategies.base import (
    BaseStrategy,
    Context,
    EvalMode,
    StrategyConfig,
    make_result,
    problem_messages,
    to_candidate,
)
from ponder.types import Problem, Result


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

    async def run(self, problem: Problem, ctx: Context) -> Result:
        started = time.monotonic()
        root = ctx.trace.add("strategy", self.name, config=self.config.model_dump())
        [traced] = await ctx.sample(
            problem_messages(problem, self.config.system), self.config.sampling(),
            parent=root, label="chain",
        )
        candidate = to_candidate(traced, problem).replace(votes=1.0)
        return make_result(self, ctx, answer=candidate.answer, text=candidate.text,
                           candidates=[candidate], started=started)
