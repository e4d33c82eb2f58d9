"""budget-forcing (s1): think at least ``min_thinking_tokens`` by replacing each attempt to stop
with a continuation cue ("Wait"), cap thinking at ``max_thinking_tokens``, then force the answer.

The end of thinking is the model writing the answer marker (or ending its turn). Each continuation
resumes the partial assistant message, so the backend must support prefill.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from ponder.core.context import Context
from ponder.domains.answers import extract_answer
from ponder.errors import BudgetExhausted
from ponder.strategies.base import (
    BaseStrategy,
    Capability,
    EvalMode,
    Outcome,
    StrategyConfig,
    problem_messages,
)
from ponder.types import Candidate, Problem, Usage


class BudgetForcingConfig(StrategyConfig):
    temperature: float = Field(0.0, ge=0.0, le=5.0)
    min_thinking_tokens: int = Field(256, ge=0)
    max_thinking_tokens: int = Field(1024, ge=1)
    max_waits: int = Field(4, ge=0, description="most continuation cues inserted")
    cue: str = "Wait,"
    answer_marker: str = "The answer is:"
    answer_max_tokens: int = Field(48, ge=1)

    @model_validator(mode="after")
    def _min_below_max(self) -> BudgetForcingConfig:
        if self.min_thinking_tokens > self.max_thinking_tokens:
            raise ValueError("min_thinking_tokens must not exceed max_thinking_tokens")
        return self


class BudgetForcing(BaseStrategy):
    name: ClassVar[str] = "budget-forcing"
    description: ClassVar[str] = "s1 budget forcing: 'Wait' until min thinking tokens, cap, answer"
    Config: ClassVar[type[StrategyConfig]] = BudgetForcingConfig
    config: BudgetForcingConfig
    effort_presets: ClassVar[dict[str, dict[str, Any]]] = {
        "low": {"min_thinking_tokens": 128, "max_thinking_tokens": 512},
        "medium": {"min_thinking_tokens": 256, "max_thinking_tokens": 1024},
        "high": {"min_thinking_tokens": 512, "max_thinking_tokens": 2048},
    }

    eval_mode: ClassVar[EvalMode] = "budget"
    needs: ClassVar[tuple[Capability, ...]] = ("prefill",)

    @classmethod
    def budget_overrides(cls, budget: int) -> dict[str, Any]:
        return {"min_thinking_tokens": 64 * budget, "max_thinking_tokens": 128 * budget}

    async def solve(self, problem: Problem, ctx: Context, root: int) -> Outcome:
        cfg = self.config
        messages = problem_messages(problem, cfg.system)
        thinking, thinking_tokens, waits, capped = "", 0, 0, False
        spent = Usage()
        answer_text = ""
        try:
            while True:
                remaining = cfg.max_thinking_tokens - thinking_tokens
                if remaining <= 0:
                    capped = True
                    break
                [step] = await ctx.sample(
                    messages,
                    cfg.sampling(max_tokens=remaining, stop=(cfg.answer_marker,)),
                    prefill=thinking, parent=root, label=f"think {waits + 1}",
                )
                spent = spent + step.completion.usage
                thinking += step.completion.text
                thinking_tokens += step.completion.usage.completion_tokens
                if step.completion.finish_reason == "length":
                    capped = True
                    break
                if thinking_tokens >= cfg.min_thinking_tokens or waits >= cfg.max_waits:
                    break
                waits += 1
                thinking = thinking.rstrip() + f"\n{cfg.cue} "
                ctx.trace.add("decision", f"suppress the end of thinking: append {cfg.cue!r}",
                              parent=step.node, thinking_tokens=thinking_tokens)
            prefill = thinking.rstrip() + f"\n{cfg.answer_marker} "
            [final] = await ctx.sample(
                messages,
                cfg.sampling(temperature=0.0, max_tokens=cfg.answer_max_tokens, stop=("\n",)),
                prefill=prefill, parent=root, label="force answer",
            )
            spent = spent + final.completion.usage
            answer_text = final.completion.text.strip()
        except BudgetExhausted:
            ctx.trace.add("decision", "budget exhausted: answer from the thinking so far",
                          parent=root)
        answer = extract_answer(f"{cfg.answer_marker} {answer_text}") if answer_text else None
        if answer is None:
            answer = extract_answer(thinking)
        text = thinking.rstrip() + (f"\n{cfg.answer_marker} {answer_text}" if answer_text else "")
        ctx.trace.add("decision", "thinking summary", parent=root, thinking_tokens=thinking_tokens,
                      waits=waits, capped=capped)
        candidate = Candidate(text=text, answer=answer, votes=1.0, usage=spent,
                              metadata={"thinking_tokens": thinking_tokens, "waits": waits,
                                        "capped": capped})
        return Outcome(answer, text, [candidate])
