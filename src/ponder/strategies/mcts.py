"""mcts: Monte Carlo tree search over reasoning steps (as in rStar-Math and OpenR).

A simulation selects a leaf by UCT (mean value + ``exploration`` x sqrt(ln N_parent / N_child))
from the root, expands it into ``m`` sampled next steps, evaluates each new node — by its path
score from the step scorer (``scorer``), by the score of a rollout written from it to an answer
(``rollout``), or by their mean (``both``) — and backpropagates each value to the root: every
node's visits count the evaluations below it and its value is their mean. ``parallel`` leaves
are selected per round (a virtual loss steers later selections away from pending ones) and
expanded in one batched call. Selecting a finished path re-evaluates it (no call). The answer
is picked among finished paths and rollouts like beam search does; when no simulation reached
an answer, the most visited path is written to the end.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import Field

from ponder.core.context import Context
from ponder.errors import BudgetExhausted
from ponder.strategies.base import EvalMode, Outcome, StrategyConfig
from ponder.strategies.beam_search import finish
from ponder.strategies.step_search import Node, StepSearch, StepSearchConfig, StepSearchStrategy
from ponder.types import Problem


class MCTSConfig(StepSearchConfig):
    simulations: int = Field(16, ge=1, le=4096, description="leaves selected and evaluated")
    m: int = Field(2, ge=1, le=64, description="next steps sampled per expansion")
    parallel: int = Field(4, ge=1, le=256, description="leaves expanded per batched call")
    exploration: float = Field(1.0, ge=0.0, description="UCT exploration constant")
    evaluation: Literal["scorer", "rollout", "both"] = "scorer"


def uct(child: Node, parent_visits: int, c: float) -> float:
    if child.visits == 0:
        return math.inf
    return child.value + c * math.sqrt(math.log(max(parent_visits, 1)) / child.visits)


def select(root: Node, c: float) -> Node:
    """Descend from ``root`` to a leaf (or a finished node) by UCT; ties go to the first."""
    node = root
    while node.children and not node.done:
        node = max(node.children, key=lambda ch: uct(ch, node.visits, c))
    return node


def backpropagate(node: Node, value: float, visits: int = 1) -> None:
    walk: Node | None = node
    while walk is not None:
        walk.visits += visits
        walk.value_sum += value
        walk = walk.parent


class MCTS(StepSearchStrategy):
    name: ClassVar[str] = "mcts"
    description: ClassVar[str] = "Monte Carlo tree search over steps: UCT, step scores, rollouts"
    Config: ClassVar[type[StrategyConfig]] = MCTSConfig
    config: MCTSConfig
    effort_presets: ClassVar[dict[str, dict[str, Any]]] = {
        "low": {"simulations": 8},
        "medium": {"simulations": 16},
        "high": {"simulations": 32, "m": 3},
    }
    budget_knob: ClassVar[str | None] = "simulations"
    eval_mode: ClassVar[EvalMode] = "budget"

    async def solve(self, problem: Problem, ctx: Context, root_id: int) -> Outcome:
        cfg = self.config
        search = StepSearch(problem, ctx, cfg, root_id)
        root = search.root()
        finished: list[Node] = []
        left, round_no = cfg.simulations, 0
        try:
            while left > 0:
                round_no += 1
                leaves = self._select_leaves(root, min(cfg.parallel, left))
                left -= len(leaves)
                await self._simulate(search, root, leaves, finished, round_no)
            if not finished and root.children:
                finished.append(await self._complete_best(search, root))
        except BudgetExhausted:
            pass  # the context says which limit stopped it
        ctx.trace.add("decision", "tree", parent=root_id, visits=root.visits,
                      value=round(root.value, 4),
                      children=[(ch.trace_id, ch.visits, round(ch.value, 4))
                                for ch in root.children])
        leaves = finished or [n for n in _walk(root) if n.depth > 0]
        return await finish(search, leaves)

    async def _complete_best(self, search: StepSearch, root: Node) -> Node:
        """No simulation reached an answer: follow the most visited children (ties: higher
        value) to a leaf and write its answer to the end (one call)."""
        node = root
        while node.children:
            node = max(node.children, key=lambda ch: (ch.visits, ch.value))
        [[answer]] = await search.expand([node], [1], label="complete", final=True)
        node.children.remove(answer)
        await search.score([answer], parent=search.root_trace)
        search.note(answer, status="answer", why="no simulation reached an answer: the most "
                                                 "visited path, written to the end")
        return answer

    def _select_leaves(self, root: Node, k: int) -> list[Node]:
        """Up to ``k`` leaves, each selected with a virtual loss (a visit of value 0) on the
        ones before it, so parallel selections spread out; the losses are undone here."""
        leaves: list[Node] = []
        for _ in range(k):
            leaf = select(root, self.config.exploration)
            if any(leaf is other for other in leaves) and not leaf.done:
                break  # nothing else to expand this round
            leaves.append(leaf)
            backpropagate(leaf, 0.0)
        for leaf in leaves:
            backpropagate(leaf, 0.0, visits=-1)
        return leaves

    async def _simulate(self, search: StepSearch, root: Node, leaves: list[Node],
                        finished: list[Node], round_no: int) -> None:
        cfg, ctx = self.config, search.ctx
        decision = ctx.trace.add("decision", f"simulation round {round_no}",
                                 parent=search.root_trace,
                                 selected=[leaf.trace_id for leaf in leaves])
        open_leaves = [n for n in leaves if not n.done]
        rows = await search.expand(open_leaves, [cfg.m] * len(open_leaves))
        children = [c for row in rows for c in row]
        await search.score(children, parent=decision)
        values = {id(c): c.score for c in children}
        if cfg.evaluation != "scorer":
            pending = [c for c in children if not c.done]
            outs = await search.expand(pending, [1] * len(pending), label="rollout", final=True)
            rollouts = [r for row in outs for r in row]
            await search.score(rollouts, parent=decision)
            for child, rollout in zip(pending, rollouts, strict=True):
                child.children.remove(rollout)  # an evaluation, not part of the tree
                search.note(rollout, status="rollout")
                finished.append(rollout)
                values[id(child)] = (rollout.score if cfg.evaluation == "rollout"
                                     else (child.score + rollout.score) / 2)
        for child in children:
            backpropagate(child, values[id(child)])
            search.note(child, status="answer" if child.done else "expanded",
                        value=round(values[id(child)], 4))
            if child.done:
                finished.append(child)
        for leaf in leaves:
            if leaf.done:  # a finished path selected again: evaluated again, no call
                backpropagate(leaf, leaf.score)
        for node in _walk(root):
            search.note(node, visits=node.visits, value=round(node.value, 4))


def _walk(node: Node):
    yield node
    for child in node.children:
        yield from _walk(child)
