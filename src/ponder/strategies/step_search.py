"""What the step-level searches (beam-search, dvts, mcts, particle-filtering) share: the search
tree, batched expansion of many nodes by one step, step scoring, and the final pick.

A node is a partial solution: the steps so far. Expanding a node continues its partial assistant
message (prefill) and stops at the step delimiter; every node to expand goes into one batched
backend call, and nodes with the same text share one request (its prompt is evaluated once, its
samples split among them). A step that never reaches the delimiter is cut at ``step_tokens`` and
the next step continues it; at ``max_steps`` or when the path's ``max_tokens`` run out the last
expansion writes the rest of the answer without stopping. Each node's generation is a trace node
under its parent's, so the trace holds the search tree, with each node's scores and why it was
kept or pruned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from ponder import registry
from ponder.core.context import Context
from ponder.domains import cluster_answers, domain_for
from ponder.domains.answers import states_answer
from ponder.strategies.base import BaseStrategy, Capability, StrategyConfig, problem_messages
from ponder.types import Candidate, GenerationRequest, Problem, Step, Usage
from ponder.verifiers.steps import Aggregate, StepScorer, aggregate_steps, load_step_scorer


class StepSearchConfig(StrategyConfig):
    max_tokens: int = Field(640, ge=1, description="new tokens per solution path")
    delimiter: str = Field("\n\n", min_length=1, description="the text that ends a step")
    step_tokens: int = Field(192, ge=1, description="new tokens per step, at most")
    max_steps: int = Field(12, ge=1, le=256, description="steps per path, at most")
    scorer: str = Field("self-judge", description="step scorer: self-judge, confidence, prm, "
                        "prm-http")
    scorer_options: dict[str, Any] = Field(default_factory=dict)
    aggregate: Aggregate = Field("min", description="a path's score from its step scores")
    pick: Literal["weighted-vote", "best"] = Field(
        "weighted-vote", description="final answer: summed path scores per answer, or the best")
    cut_weight: float = Field(
        0.0, ge=0.0, description="a path whose last step was cut off at the token limit counts "
        "its score x this (0: not at all; when every answered path was cut, they count in full)")

    def step_scorer(self) -> StepScorer:
        return load_step_scorer(self.scorer, self.scorer_options)


class StepSearchStrategy(BaseStrategy):
    """A search over reasoning steps: it continues partial answers (prefill), and reads
    logprobs when its step scorer does."""

    config: StepSearchConfig

    def required_capabilities(self) -> tuple[Capability, ...]:
        scorer = registry.step_scorers.get(self.config.scorer)
        return ("prefill", "logprobs") if getattr(scorer, "needs_logprobs", False) \
            else ("prefill",)


@dataclass(eq=False)
class Node:
    """A partial solution in the search tree."""

    steps: tuple[Step, ...] = ()
    parent: Node | None = None
    trace_id: int | None = None
    tokens: int = 0  # completion tokens along the path
    step_scores: list[float] = field(default_factory=list)
    score: float = 1.0
    done: bool = False
    answer: str | None = None
    children: list[Node] = field(default_factory=list)
    visits: int = 0  # MCTS
    value_sum: float = 0.0  # MCTS

    @property
    def depth(self) -> int:
        return len(self.steps)

    @property
    def value(self) -> float:
        return self.value_sum / self.visits if self.visits else 0.0

    def prefix(self, delimiter: str) -> str:
        """The partial assistant message to continue."""
        return "".join(s.text + (delimiter if s.end == "delimiter" else "") for s in self.steps)

    def text(self, delimiter: str) -> str:
        """The path as one solution."""
        return self.prefix(delimiter).strip()


class StepSearch:
    """One problem's search: expands and scores nodes, records them in the trace."""

    def __init__(self, problem: Problem, ctx: Context, cfg: StepSearchConfig, root: int) -> None:
        self.problem = problem
        self.ctx = ctx
        self.cfg = cfg
        self.root_trace = root
        self.scorer = cfg.step_scorer()
        self.messages = tuple(problem_messages(problem, cfg.system))

    def root(self) -> Node:
        return Node(trace_id=self.root_trace)

    def _final(self, node: Node) -> bool:
        """Whether the next step of ``node`` must finish the answer."""
        return node.depth + 1 >= self.cfg.max_steps

    async def expand(self, nodes: Sequence[Node], counts: Sequence[int], label: str = "step",
                     final: bool = False) -> list[list[Node]]:
        """Sample ``counts[i]`` next steps of every ``nodes[i]`` in one batched call (``final``:
        write each to the end of its answer). Children are attached to their parents."""
        cfg = self.cfg
        groups: dict[tuple[str, bool], list[int]] = {}
        for i, node in enumerate(nodes):
            if counts[i] > 0:
                last = final or self._final(node)
                groups.setdefault((node.prefix(cfg.delimiter), last), []).append(i)
        requests, owners = [], []
        for (prefix, last), members in groups.items():
            left = max(1, cfg.max_tokens - max(nodes[i].tokens for i in members))
            params = cfg.sampling(
                max_tokens=left if last else min(cfg.step_tokens, left),
                stop=() if last else (cfg.delimiter,),
                logprobs=0 if self.scorer.needs_logprobs else None)
            requests.append(GenerationRequest(self.messages, params,
                                              n=sum(counts[i] for i in members), prefill=prefix))
            owners.append([i for i in members for _ in range(counts[i])])
        out: list[list[Node]] = [[] for _ in nodes]
        if not requests:
            return out
        depth = max(nodes[owner[0]].depth for owner in owners) + 1
        rows = await self.ctx.generate(
            requests, label=f"{label} {depth}" if label == "step" else label,
            parents=[nodes[owner[0]].trace_id for owner in owners])
        for owner, row in zip(owners, rows, strict=True):
            for j, (i, traced) in enumerate(zip(owner, row, strict=True)):
                parent = nodes[i]
                completion = traced.completion
                record = self.ctx.trace.nodes[traced.node]
                record.parent = parent.trace_id
                record.label = f"{label} {parent.depth + 1}" if label == "step" else label
                if len(row) > 1:
                    record.label += f" {j + 1}/{len(row)}"
                end: Any = ("length" if completion.finish_reason == "length" else
                            "delimiter" if completion.stop_sequence == cfg.delimiter else "end")
                tokens = completion.usage.completion_tokens
                step = Step(completion.text, end, tokens, completion.mean_logprob)
                child = Node(parent.steps + (step,), parent, traced.node, parent.tokens + tokens)
                child.done = (end == "end" or states_answer(completion.text)
                              or child.tokens >= cfg.max_tokens or child.depth >= cfg.max_steps)
                if child.done:
                    child.answer = domain_for(self.problem).extract(self.problem,
                                                                     child.text(cfg.delimiter))
                parent.children.append(child)
                out[i].append(child)
        return out

    async def score(self, nodes: Sequence[Node], parent: int | None = None) -> None:
        """Score the new steps of ``nodes`` (one batched scorer call) and their paths."""
        if not nodes:
            return
        before = len(self.ctx.trace.nodes)
        scores = await self.scorer.score_steps(
            self.problem, [n.steps for n in nodes], self.ctx, parent=parent,
            known=[n.parent.step_scores if n.parent else [] for n in nodes])
        for node, row in zip(nodes, scores, strict=True):
            node.step_scores = list(row)
            node.score = aggregate_steps(row, self.cfg.aggregate)
            self.note(node, score=round(node.score, 4),
                      step_score=round(row[-1], 4) if row else None,
                      **({"answer": node.answer} if node.done else {}))
        for record in self.ctx.trace.nodes[before:]:  # a judge's verdicts: link each to
            partial = record.data.pop("partial", None)  # the search node whose step it judged
            if isinstance(partial, int) and 0 <= partial < len(nodes):
                judged = nodes[partial]
                while judged.parent is not None and judged.depth > record.data.get("step", 0):
                    judged = judged.parent  # an earlier step of the path
                record.data["judged"] = judged.trace_id

    def note(self, node: Node, **data: Any) -> None:
        if node.trace_id is not None and node.trace_id != self.root_trace:
            self.ctx.trace.nodes[node.trace_id].data.update(data)

    async def pick(self, finished: Sequence[Node]) -> tuple[Node | None, list[Candidate]]:
        """The final answer among finished paths: the answer with the highest summed path score
        (``weighted-vote``) or the best path (``best``); candidates carry scores and votes."""
        keys = await cluster_answers(self.problem, [n.answer for n in finished],
                                     self.ctx.sandbox)
        cut = [bool(n.steps) and n.steps[-1].end == "length" for n in finished]
        answered = [i for i, k in enumerate(keys) if k is not None]
        # a path cut off at the token limit ends on whatever number its text reached: it counts
        # cut_weight of its score, unless every answered path was cut (as the vote's rule)
        discount = any(not cut[i] for i in answered)
        weight = [self.cfg.cut_weight if discount and c else 1.0 for c in cut]
        totals: dict[str, float] = {}
        for i, key in enumerate(keys):
            if key is not None and weight[i] > 0.0:
                totals[key] = totals.get(key, 0.0) + finished[i].score * weight[i]
        voting = [i for i in answered if weight[i] > 0.0]
        chosen = None
        if voting:
            if self.cfg.pick == "best":
                chosen = max(voting, key=lambda i: (weight[i], finished[i].score))
            else:
                best = max(totals, key=lambda k: totals[k])
                chosen = max((i for i in voting if keys[i] == best),
                             key=lambda i: finished[i].score)
        elif finished:
            chosen = max(range(len(finished)), key=lambda i: finished[i].score)
        candidates = [
            Candidate(text=n.text(self.cfg.delimiter), answer=n.answer,
                      score=round(n.score, 6),
                      votes=round(totals.get(k, 0.0), 6) if k is not None else 0.0,
                      usage=Usage(completion_tokens=n.tokens),
                      finish_reason="length" if c else "stop",
                      metadata={"node": n.trace_id, "steps": n.depth,
                                "step_scores": [round(s, 4) for s in n.step_scores]})
            for n, k, c in zip(finished, keys, cut, strict=True)]
        return (finished[chosen] if chosen is not None else None), candidates
