"""self-refine: draft, critique, revise; stop when the critique finds no error."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import Field

from ponder.core.context import Context
from ponder.errors import BudgetExhausted
from ponder.strategies.base import (
    BaseStrategy,
    EvalMode,
    Outcome,
    StrategyConfig,
    problem_messages,
    to_candidate,
)
from ponder.types import Candidate, Message, Problem

CRITIQUE_PROMPT = """Problem:
{question}

Proposed solution:
{solution}

Check the solution step by step for mistakes in reasoning or arithmetic.
If it is entirely correct, reply with exactly: NO ERRORS
Otherwise, describe each mistake briefly."""

REVISE_PROMPT = """Problem:
{question}

Previous solution:
{solution}

A reviewer found these problems:
{critique}

Write a corrected solution, step by step. Finish with a final line of the form
'The answer is: <answer>'."""

_NO_ERRORS = re.compile(r"\bno\s+errors?\b|\bno\s+mistakes?\b|\bis\s+(entirely\s+)?correct\b",
                        re.IGNORECASE)


def critique_accepts(critique: str) -> bool:
    """Whether a critique says the solution has no error."""
    return bool(_NO_ERRORS.search(critique[:200]))


class SelfRefineConfig(StrategyConfig):
    rounds: int = Field(2, ge=0, le=20, description="most critique-and-revise rounds")
    critique_max_tokens: int = Field(256, ge=1)
    critique_temperature: float = Field(0.0, ge=0.0, le=5.0)


class SelfRefine(BaseStrategy):
    name: ClassVar[str] = "self-refine"
    description: ClassVar[str] = "draft, self-critique, revise; stops when no error is found"
    Config: ClassVar[type[StrategyConfig]] = SelfRefineConfig
    config: SelfRefineConfig
    effort_presets: ClassVar[dict[str, dict[str, Any]]] = {
        "low": {"rounds": 1},
        "medium": {"rounds": 2},
        "high": {"rounds": 4},
    }

    budget_knob: ClassVar[str | None] = "rounds"
    eval_mode: ClassVar[EvalMode] = "budget"

    async def solve(self, problem: Problem, ctx: Context, root: int) -> Outcome:
        cfg = self.config
        versions: list[Candidate] = []
        try:
            [draft] = await ctx.sample(problem_messages(problem, cfg.system), cfg.sampling(),
                                       parent=root, label="draft")
            versions.append(to_candidate(draft, problem))
            parent = draft.node
            for round_ in range(1, cfg.rounds + 1):
                current = versions[-1]
                [critique] = await ctx.sample(
                    [Message("user", CRITIQUE_PROMPT.format(question=problem.question,
                                                            solution=current.text))],
                    cfg.sampling(temperature=cfg.critique_temperature,
                                 max_tokens=cfg.critique_max_tokens),
                    parent=parent, label=f"critique {round_}",
                )
                text = critique.completion.text
                if critique_accepts(text):
                    ctx.trace.add("decision", "critique found no error: stop", parent=critique.node)
                    break
                [revision] = await ctx.sample(
                    [Message("system", cfg.system),
                     Message("user", REVISE_PROMPT.format(question=problem.question,
                                                          solution=current.text, critique=text))],
                    cfg.sampling(), parent=critique.node, label=f"revision {round_}",
                )
                versions.append(to_candidate(revision, problem))
                parent = revision.node
        except BudgetExhausted:
            ctx.trace.add("decision", "budget exhausted: keep the latest version", parent=root)
        return Outcome.chosen(versions, len(versions) - 1 if versions else None)
