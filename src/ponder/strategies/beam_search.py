"""beam-search: N partial solutions kept by path score, each extended by M sampled next steps,
until every kept path has an answer (Snell et al. 2024; Hugging Face's search-and-learn).

At every depth the pool is the new children plus the finished paths kept so far; the top N by
path score stay (finished ones stop expanding), the rest are pruned. All beams' next steps come
from one batched call per depth, and all new steps are scored in one scorer call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field

from ponder.core.context import Context
from ponder.errors import BudgetExhausted
from ponder.strategies.base import EvalMode, Outcome, StrategyConfig
from ponder.strategies.step_search import Node, StepSearch, StepSearchConfig, StepSearchStrategy
from ponder.types import Problem


class BeamSearchConfig(StepSearchConfig):
    n: int = Field(4, ge=1, le=256, description="beams kept at every depth")
    m: int = Field(2, ge=1, le=64, description="next steps sampled per beam")


async def layered_search(search: StepSearch, groups: list[list[Node]], keep: int, m: int,
                         label: str) -> list[list[Node]]:
    """Grow every group one depth at a time: each unfinished node gets ``m`` next steps (a root
    gets ``keep`` x ``m``), the group keeps its best ``keep`` of new children and finished paths.
    Every group's expansions share one backend call per depth. Returns the kept nodes per group
    (partial ones too when the budget ran out)."""
    ctx = search.ctx
    depth = 0
    try:
        while True:
            active = [(g, node) for g, nodes in enumerate(groups) for node in nodes
                      if not node.done]
            if not active:
                break
            depth += 1
            counts = [keep * m if node.depth == 0 else m for _, node in active]
            children = await search.expand([node for _, node in active], counts)
            decision = ctx.trace.add("decision", f"{label} depth {depth}",
                                     parent=search.root_trace)
            await search.score([c for row in children for c in row], parent=decision)
            new_groups: list[list[Node]] = []
            kept_ids: list[list[int | None]] = []
            pruned_ids: list[list[int | None]] = []
            for g, nodes in enumerate(groups):
                pool = [c for (h, _), row in zip(active, children, strict=True) if h == g
                        for c in row] + [node for node in nodes if node.done]
                ranked = sorted(pool, key=lambda node: -node.score)  # stable: earlier wins ties
                kept, dropped = ranked[:keep], ranked[keep:]
                cutoff = kept[-1].score if kept else 0.0
                for rank, node in enumerate(kept, 1):
                    search.note(node, status="answer" if node.done else "kept",
                                why=f"rank {rank} of {len(pool)} at depth {depth}")
                for rank, node in enumerate(dropped, keep + 1):
                    search.note(node, status="pruned",
                                why=f"rank {rank} of {len(pool)} at depth {depth}: score "
                                    f"{node.score:.3f} < kept {cutoff:.3f}")
                new_groups.append(kept)
                kept_ids.append([node.trace_id for node in kept])
                pruned_ids.append([node.trace_id for node in dropped])
            ctx.trace.nodes[decision].data.update(kept=kept_ids, pruned=pruned_ids)
            groups = new_groups
    except BudgetExhausted:
        pass  # the context says which limit stopped it; what was kept is the result
    return groups


async def finish(search: StepSearch, leaves: Sequence[Node]) -> Outcome:
    """A pick among finished paths (the best partial ones when none finished)."""
    finished = [n for n in leaves if n.done] or [n for n in leaves if n.depth > 0]
    chosen, candidates = await search.pick(finished)
    search.ctx.trace.add("decision", f"pick: {search.cfg.pick}", parent=search.root_trace,
                         chosen=chosen.trace_id if chosen else None,
                         answer=chosen.answer if chosen else None)
    if chosen is None:
        return Outcome(candidates=candidates)
    return Outcome(chosen.answer, chosen.text(search.cfg.delimiter), candidates)


class BeamSearch(StepSearchStrategy):
    name: ClassVar[str] = "beam-search"
    description: ClassVar[str] = "N beams over reasoning steps, M next steps each, scored per step"
    Config: ClassVar[type[StrategyConfig]] = BeamSearchConfig
    config: BeamSearchConfig
    effort_presets: ClassVar[dict[str, dict[str, Any]]] = {
        "low": {"n": 2, "m": 2},
        "medium": {"n": 4, "m": 2},
        "high": {"n": 8, "m": 4},
    }
    budget_knob: ClassVar[str | None] = "n"
    eval_mode: ClassVar[EvalMode] = "budget"

    async def solve(self, problem: Problem, ctx: Context, root: int) -> Outcome:
        cfg = self.config
        search = StepSearch(problem, ctx, cfg, root)
        groups = await layered_search(search, [[search.root()]], cfg.n, cfg.m, "beams")
        return await finish(search, groups[0])
