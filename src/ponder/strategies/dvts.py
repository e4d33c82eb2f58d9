"""dvts (diverse verifier tree search, Beeching et al. 2024): the budget of N paths is split into
N / M independent subtrees; each is searched greedily (its best of M next steps kept at every
depth), so at large budgets the answers stay diverse instead of collapsing onto one prefix. All
subtrees expand in the same batched call per depth; the final pick votes over their answers."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from ponder.core.context import Context
from ponder.strategies.base import EvalMode, Outcome, StrategyConfig
from ponder.strategies.beam_search import finish, layered_search
from ponder.strategies.step_search import StepSearch, StepSearchConfig, StepSearchStrategy
from ponder.types import Problem


class DVTSConfig(StepSearchConfig):
    n: int = Field(8, ge=1, le=1024, description="paths per depth over all subtrees")
    m: int = Field(2, ge=1, le=64, description="next steps per subtree per depth")

    @property
    def subtrees(self) -> int:
        return max(1, self.n // self.m)


class DVTS(StepSearchStrategy):
    name: ClassVar[str] = "dvts"
    description: ClassVar[str] = "N/M independent greedy subtrees over steps, for diversity"
    Config: ClassVar[type[StrategyConfig]] = DVTSConfig
    config: DVTSConfig
    effort_presets: ClassVar[dict[str, dict[str, Any]]] = {
        "low": {"n": 4, "m": 2},
        "medium": {"n": 8, "m": 2},
        "high": {"n": 16, "m": 4},
    }
    budget_knob: ClassVar[str | None] = "n"
    eval_mode: ClassVar[EvalMode] = "budget"

    def root_data(self) -> dict[str, Any]:
        return {"subtrees": self.config.subtrees}

    async def solve(self, problem: Problem, ctx: Context, root: int) -> Outcome:
        cfg = self.config
        search = StepSearch(problem, ctx, cfg, root)
        roots = []
        for k in range(cfg.subtrees):
            node = search.root()
            node.trace_id = ctx.trace.add("subtree", f"subtree {k + 1}/{cfg.subtrees}",
                                          parent=root)
            roots.append([node])
        groups = await layered_search(search, roots, 1, cfg.m, "subtrees")
        return await finish(search, [g[0] for g in groups if g])
