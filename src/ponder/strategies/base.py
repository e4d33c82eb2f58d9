"""The Strategy protocol, its Context, and the helpers every strategy shares."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from ponder.backends.base import Backend
from ponder.budget import Budget
from ponder.domains import domain_for
from ponder.errors import BudgetExhausted
from ponder.sandbox import Sandbox
from ponder.trace import Trace
from ponder.types import (
    Candidate,
    Completion,
    GenerationRequest,
    Message,
    Problem,
    Result,
    SamplingParams,
    StopReason,
    Usage,
)

if TYPE_CHECKING:
    from ponder.verifiers.base import Verifier

# Progress events: (event name, details). Names: "generate" (before a backend call),
# "tokens" (tokens generated so far in the call), "sample" (one sample finished), "text" (the
# text so far of the call's first sample, when the context streams text), "generated" (after
# the call). Backends may emit from their own thread: sinks must be thread-safe.
EventSink = Callable[[str, dict[str, Any]], None]

DEFAULT_SYSTEM = (
    "You are a careful problem solver. Think step by step, showing your reasoning. "
    "Finish with a final line of the form 'The answer is: <answer>'."
)


DEFAULT_SANDBOX = Sandbox()  # shared, so its worker limit holds across concurrent runs


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


@dataclass(frozen=True)
class Traced:
    """A completion and the trace node that records it."""

    completion: Completion
    node: int


@dataclass
class Context:
    """Everything a strategy run needs; nothing global."""

    backend: Backend
    budget: Budget = field(default_factory=Budget)
    trace: Trace = field(default_factory=Trace)
    verifier: Verifier | None = None
    seed: int | None = None
    events: EventSink | None = None
    sandbox: Sandbox = field(default_factory=lambda: DEFAULT_SANDBOX)
    stream_text: bool = False
    stop_reason: StopReason = "done"
    rng: random.Random = field(init=False)
    _seed_counter: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def emit(self, event: str, **details: Any) -> None:
        if self.events is not None:
            self.events(event, details)

    def _next_seed(self) -> int | None:
        """Each backend call gets its own seed derived from the run's seed: reproducible runs,
        different samples in different calls."""
        if self.seed is None:
            return None
        self._seed_counter += 1
        return self.seed * 1000 + self._seed_counter

    async def generate(
        self,
        requests: Sequence[GenerationRequest],
        parent: int | None = None,
        label: str = "sample",
        backend: Backend | None = None,
        parents: Sequence[int | None] | None = None,
    ) -> list[list[Traced]]:
        """Generate through the backend (or ``backend``, e.g. a judge's), charging the budget
        and tracing every completion (under ``parent``, or ``parents[i]`` for request i).

        Raises :class:`BudgetExhausted` when the budget cannot pay for at least one new token
        per sample; otherwise caps ``max_tokens`` so the call cannot overrun it.
        """
        self.budget.check()
        n_total = sum(r.n for r in requests)
        prompt_estimate = sum(
            (sum(len(m.content) for m in r.messages) + len(r.prefill)) // 4 + 8 for r in requests
        )
        cap = self.budget.completion_cap(n_total, prompt_estimate)
        if cap is not None and cap < 1:
            self.stop_reason = "budget"
            raise BudgetExhausted(f"token budget too small for {n_total} more samples")
        prepared = []
        for r in requests:
            params = r.params
            if cap is not None and cap < params.max_tokens:
                params = params.replace(max_tokens=cap)
            if params.seed is None and self.seed is not None:
                params = params.replace(seed=self._next_seed())
            prepared.append(r.replace(params=params))
        if self.events is not None:
            prepared = [self._observed(r, label, first=i == 0) for i, r in enumerate(prepared)]
        self.emit("generate", samples=n_total, label=label)
        started = time.monotonic()
        results = await (backend or self.backend).generate(
            prepared, on_progress=lambda tokens: self.emit("tokens", tokens=tokens)
        )
        out: list[list[Traced]] = []
        for k, (request, completions) in enumerate(zip(prepared, results, strict=True)):
            under = parents[k] if parents is not None else parent
            row = []
            for i, completion in enumerate(completions):
                self.budget.charge(completion.usage)
                node = self.trace.add(
                    "generate",
                    f"{label} {i + 1}/{request.n}" if request.n > 1 else label,
                    parent=under,
                    usage=completion.usage,
                    text=completion.text,
                    finish_reason=completion.finish_reason,
                    **({"prefill": request.prefill} if request.prefill else {}),
                    **({"reasoning": completion.reasoning} if completion.reasoning else {}),
                )
                row.append(Traced(completion, node))
            out.append(row)
        self.emit(
            "generated",
            samples=n_total,
            seconds=time.monotonic() - started,
            tokens=sum(t.completion.usage.completion_tokens for row in out for t in row),
        )
        return out

    def _observed(self, request: GenerationRequest, label: str, first: bool
                  ) -> GenerationRequest:
        """The request with hooks that report each finished sample (and, when streaming text,
        the first sample's text as it grows)."""
        n = request.n

        def on_sample(index: int, completion: Completion) -> None:
            if request.on_sample is not None:
                request.on_sample(index, completion)
            self.emit("sample", label=label, index=index, n=n, text=completion.text,
                      tokens=completion.usage.completion_tokens,
                      finish_reason=completion.finish_reason)

        monitor = request.monitor
        if self.stream_text and first:
            inner = request.monitor

            def monitor(index: int, text: str, token: Any) -> bool:
                if index == 0:
                    self.emit("text", label=label, text=text)
                return bool(inner is not None and inner(index, text, token))

        return request.replace(on_sample=on_sample, monitor=monitor)

    async def sample(
        self,
        messages: Sequence[Message],
        params: SamplingParams,
        n: int = 1,
        *,
        prefill: str = "",
        parent: int | None = None,
        label: str = "sample",
    ) -> list[Traced]:
        """Generate ``n`` samples of one request."""
        request = GenerationRequest(tuple(messages), params, n=n, prefill=prefill)
        return (await self.generate([request], parent=parent, label=label))[0]


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


EvalMode = Literal["single", "vote", "best-score", "budget", "sequential", "batch"]


class Strategy(Protocol):
    """A way to spend compute on a problem. One file each, one config model each.

    ``effort_presets`` maps ``low``/``medium``/``high`` to config overrides. ``eval_mode`` tells
    the evaluation harness how compute scales: ``single`` (budget plays no part), ``vote`` and
    ``best-score`` (n independent samples: generate the largest n once, subsample smaller ones,
    aggregate by vote or by best verifier score), ``budget`` (run once per budget with
    ``budget_overrides(budget)``), ``sequential`` (draws samples in order and stops early:
    replayed on the vote pool with the class's ``samples_used(config, clusters, budget)``),
    ``batch`` (allocates compute across all the problems: run once with ``run_batch``).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type[StrategyConfig]]
    effort_presets: ClassVar[dict[str, dict[str, Any]]]
    eval_mode: ClassVar[EvalMode]
    config: StrategyConfig

    @classmethod
    def budget_overrides(cls, budget: int) -> dict[str, Any]: ...

    async def run(self, problem: Problem, ctx: Context) -> Result: ...


class BaseStrategy:
    """Plumbing the built-in strategies share: construction from a config (default: the
    ``Config`` defaults) and the budget mapping. ``budget_knob`` names the option that a budget
    sets in the evaluation harness (None: the budget plays no part)."""

    name: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type[StrategyConfig]]
    effort_presets: ClassVar[dict[str, dict[str, Any]]]
    eval_mode: ClassVar[EvalMode]
    budget_knob: ClassVar[str | None] = None

    def __init__(self, config: StrategyConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()

    @classmethod
    def budget_overrides(cls, budget: int) -> dict[str, Any]:
        return {cls.budget_knob: budget} if cls.budget_knob else {}


def make_result(
    strategy: Strategy,
    ctx: Context,
    *,
    answer: str | None,
    text: str,
    candidates: Sequence[Candidate],
    started: float,
) -> Result:
    """Assemble a Result whose usage is the sum over the trace and whose seconds are wall time."""
    traced = ctx.trace.usage
    usage = Usage(traced.prompt_tokens, traced.completion_tokens, traced.calls,
                  time.monotonic() - started)
    return Result(
        answer=answer,
        text=text,
        candidates=tuple(candidates),
        usage=usage,
        trace=ctx.trace,
        strategy=strategy.name,
        config=strategy.config.model_dump(),
        stop_reason=ctx.stop_reason,
        model=getattr(ctx.backend, "model", ""),
    )
