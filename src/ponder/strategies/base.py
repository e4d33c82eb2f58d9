"""The Strategy protocol, the skeleton every built-in strategy runs in, and the helpers they share.

A strategy file holds only its own idea: :class:`BaseStrategy` opens the run (timer, root trace
node), calls the strategy's ``solve``, stops cleanly when the budget runs out, and assembles the
:class:`~ponder.types.Result` from the :class:`Outcome` that ``solve`` returns.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from ponder.core.context import Context, Traced
from ponder.domains import constraint_for, domain_for
from ponder.errors import BudgetExhausted
from ponder.types import (
    Candidate,
    Message,
    ModelCost,
    Problem,
    Result,
    SamplingParams,
    Usage,
)

DEFAULT_SYSTEM = (
    "You are a careful problem solver. Think step by step, showing your reasoning. "
    "Finish with a final line of the form 'The answer is: <answer>'."
)

EvalMode = Literal["single", "vote", "best-score", "budget", "sequential", "batch"]
# Backend capabilities a strategy can require (fields of ponder.backends.base.Capabilities).
Capability = Literal["parallel_n", "logprobs", "prefill", "early_stop"]


class StrategyConfig(BaseModel):
    """Knobs every strategy shares. Subclasses add their own; unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(0.7, ge=0.0, le=5.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0)
    min_p: float = Field(0.0, ge=0.0, le=1.0)
    max_tokens: int = Field(512, ge=1, description="new tokens per generation")
    system: str = DEFAULT_SYSTEM

    def sampling(self, **changes: Any) -> SamplingParams:
        params = SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            min_p=self.min_p,
            max_tokens=self.max_tokens,
        )
        return params.replace(**changes) if changes else params


def problem_messages(problem: Problem, system: str) -> list[Message]:
    """The conversation that poses ``problem``, as its domain words it (``system`` unless the
    problem brings its own; code problems swap the default for a coding one)."""
    return domain_for(problem).messages(problem, system, DEFAULT_SYSTEM)


def to_candidate(traced: Traced, problem: Problem, text: str | None = None) -> Candidate:
    """A completion as a candidate, its answer extracted the way the problem's domain reads it."""
    completion = traced.completion
    body = completion.text if text is None else text
    return Candidate(
        text=body,
        answer=domain_for(problem).extract(problem, body),
        usage=completion.usage,
        finish_reason=completion.finish_reason,
        mean_logprob=completion.mean_logprob,
        metadata={"node": traced.node},
    )


class Strategy(Protocol):
    """A way to spend compute on a problem. One file each, one config model each.

    ``effort_presets`` maps ``low``/``medium``/``high`` to config overrides. ``eval_mode`` tells
    the evaluation harness how compute scales: ``single`` (budget plays no part), ``vote`` and
    ``best-score`` (n independent samples: generate the largest n once, subsample smaller ones,
    aggregate by vote or by best verifier score), ``budget`` (run once per budget with
    ``budget_overrides(budget)``), ``sequential`` (draws samples in order and stops early:
    replayed on the vote pool with the class's ``samples_used(config, clusters, budget)``),
    ``batch`` (allocates compute across all the problems: run once with ``run_batch``).
    ``required_capabilities()`` names what the backend must offer for this configuration; a run
    on a backend without it is refused before it starts.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type[StrategyConfig]]
    effort_presets: ClassVar[dict[str, dict[str, Any]]]
    eval_mode: ClassVar[EvalMode]
    config: StrategyConfig

    @classmethod
    def budget_overrides(cls, budget: int) -> dict[str, Any]: ...

    def required_capabilities(self) -> tuple[Capability, ...]: ...

    async def run(self, problem: Problem, ctx: Context) -> Result: ...


@dataclass(frozen=True)
class Outcome:
    """What a strategy's ``solve`` found: the answer, the text it stands on, the candidates."""

    answer: str | None = None
    text: str = ""
    candidates: Sequence[Candidate] = ()

    @classmethod
    def chosen(cls, candidates: Sequence[Candidate], index: int | None) -> Outcome:
        """The candidate at ``index`` wins (its vote is 1); None: nothing won."""
        if index is None:
            return cls(candidates=candidates)
        marked = list(candidates)
        marked[index] = marked[index].replace(votes=1.0)
        return cls(marked[index].answer, marked[index].text, marked)


class BaseStrategy:
    """The skeleton of the built-in strategies: construction from a config (default: the
    ``Config`` defaults), the budget mapping, the capabilities they need, and a ``run`` that
    wraps the strategy's own ``solve``. ``budget_knob`` names the option that a budget sets in
    the evaluation harness (None: the budget plays no part); ``needs`` the backend capabilities
    every configuration requires."""

    name: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type[StrategyConfig]]
    effort_presets: ClassVar[dict[str, dict[str, Any]]]
    eval_mode: ClassVar[EvalMode]
    budget_knob: ClassVar[str | None] = None
    needs: ClassVar[tuple[Capability, ...]] = ()
    roles: ClassVar[tuple[str, ...]] = ()  # models it needs besides the generator, by role

    def __init__(self, config: StrategyConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()

    @classmethod
    def budget_overrides(cls, budget: int) -> dict[str, Any]:
        return {cls.budget_knob: budget} if cls.budget_knob else {}

    def required_capabilities(self) -> tuple[Capability, ...]:
        return self.needs

    def required_roles(self) -> tuple[str, ...]:
        """The models by role (``strong``, ...) this configuration needs besides the
        generator; a run without them is refused before it starts."""
        return self.roles

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Open the run, ``solve``, assemble the result. A budget that runs out in a way
        ``solve`` does not handle gives the result with no answer and ``stop_reason`` "budget"
        (or "time")."""
        started, root = self.begin(ctx, problem)
        outer = ctx.constraint, ctx.posed  # a run inside another, on another problem
        found = constraint_for(problem) if ctx.can_constrain() else None
        ctx.constraint, ctx.posed = found if found is not None else (None, ())
        try:
            outcome = await self.solve(problem, ctx, root)
        except BudgetExhausted as exc:
            if ctx.stop_reason == "done":
                ctx.stop_reason = exc.stop_reason
            ctx.trace.add("decision", "budget exhausted: no answer", parent=root)
            outcome = Outcome()
        finally:
            ctx.constraint, ctx.posed = outer
        return make_result(self, ctx, outcome, started)

    async def solve(self, problem: Problem, ctx: Context, root: int) -> Outcome:
        """The strategy's own idea: spend compute on ``problem`` under the trace node ``root``."""
        raise NotImplementedError

    def begin(self, ctx: Context, problem: Problem | None = None) -> tuple[float, int]:
        """Start the clock and the root trace node (the configuration, the question and
        ``root_data()``), so a trace read on its own says what was asked."""
        asked = {"question": problem.question} if problem is not None else {}
        return time.monotonic(), ctx.trace.add("strategy", self.name,
                                               config=self.config.model_dump(),
                                               **asked, **self.root_data())

    def root_data(self) -> dict[str, Any]:
        """What the root trace node records besides the configuration."""
        return {}


def make_result(strategy: Strategy, ctx: Context, outcome: Outcome, started: float) -> Result:
    """A Result whose usage is the sum over the trace and whose seconds are wall time. The root
    trace node records the answer and why the run stopped (a trace read alone says both)."""
    for node in ctx.trace.nodes[:1]:
        if node.kind == "strategy":
            node.data.update(answer=outcome.answer, stop_reason=ctx.stop_reason)
    traced = ctx.trace.usage
    usage = Usage(traced.prompt_tokens, traced.completion_tokens, traced.calls,
                  time.monotonic() - started)
    return Result(
        answer=outcome.answer,
        text=outcome.text,
        candidates=tuple(outcome.candidates),
        usage=usage,
        trace=ctx.trace,
        strategy=strategy.name,
        config=strategy.config.model_dump(),
        stop_reason=ctx.stop_reason,
        model=ctx.backend.model,
        models=model_costs(ctx),
    )


def model_costs(ctx: Context) -> dict[str, ModelCost]:
    """What each model of the run spent (from the trace) and its size."""
    sizes, prices = ctx.parameters(), ctx.prices()
    return {name: ModelCost(usage, sizes.get(name), prices.get(name))
            for name, usage in ctx.trace.usage_by_model(ctx.backend.model).items()}
