"""The run context: everything one strategy run needs, nothing global — the backend, the
budget, the trace, the verifier, the seed, the event sink and the sandbox — and the Verifier
protocol, whose calls go through the context."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from ponder.backends.base import Backend
from ponder.budget import Budget
from ponder.errors import BudgetExhausted, ConfigError
from ponder.sandbox import Sandbox
from ponder.trace import Trace
from ponder.types import (
    Candidate,
    Completion,
    Constraint,
    GenerationRequest,
    Message,
    Prices,
    Problem,
    SamplingParams,
    StopReason,
    Usage,
)

# Progress events: (event name, details). Names: "generate" (before a backend call),
# "tokens" (tokens generated so far in the call), "sample" (one sample finished), "text" (the
# text so far of the call's first sample, when the context streams text), "generated" (after
# the call). Every event but "text" carries ``call``: the call's number in its context, so a
# sink can tell concurrent calls apart. Backends may emit from their own thread: sinks must be
# thread-safe.
EventSink = Callable[[str, dict[str, Any]], None]

DEFAULT_SANDBOX = Sandbox()  # shared, so its worker limit holds across concurrent runs
# Without the backend's tokenizer, a prompt's tokens are bounded from above: no token of a
# byte-level (or byte-fallback) vocabulary is shorter than one byte, and a chat template adds a
# few tokens around each message and the conversation.
TEMPLATE_TOKENS_PER_MESSAGE = 16
TEMPLATE_TOKENS = 64


async def prompt_tokens_bound(backend: Backend, request: GenerationRequest) -> int:
    """The prompt tokens a request costs: counted by the backend where it can, else an upper
    bound, so a token budget is never overrun."""
    exact = await backend.count_prompt_tokens(request)
    if exact is not None:
        return exact
    return (sum(len(m.content.encode()) + TEMPLATE_TOKENS_PER_MESSAGE for m in request.messages)
            + len(request.prefill.encode()) + TEMPLATE_TOKENS)


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
    # the other models of a many-model run, by role ("strong", "judge", "proposer2", ...);
    # ``backend`` is the generator
    models: Mapping[str, Backend] = field(default_factory=dict)
    # decode the problem's answers under its grammar (tool calls, a JSON format) where the
    # backend can; ``constraint`` and ``posed`` (the problem's own turns, no system message)
    # are set by the strategy run for the problem in hand
    grammar: bool = True
    constraint: Constraint | None = None
    posed: tuple[Message, ...] = ()
    stop_reason: StopReason = "done"
    rng: random.Random = field(init=False)
    _seed_counter: int = field(default=0, init=False)
    _calls: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def model(self, role: str) -> Backend:
        """The backend playing ``role`` ("generator": the run's own); a role the run was not
        given is a :class:`ConfigError` naming the flag that gives it."""
        if role == "generator":
            return self.backend
        if role not in self.models:
            given = ", ".join(sorted(self.models)) or "none"
            raise ConfigError(f"no {role!r} model in this run (roles given: {given}); name one "
                              f"with --model {role}=PATH.gguf or {role}=URL#NAME")
        return self.models[role]

    def parameters(self) -> dict[str, int | None]:
        """Each model's parameter count (None: unknown), by model name."""
        return {b.model: getattr(b, "parameters", None)
                for b in (self.backend, *self.models.values())}

    def prices(self) -> dict[str, Prices | None]:
        """Each model's prices per million tokens (None: not given), by model name."""
        return {b.model: getattr(b, "prices", None)
                for b in (self.backend, *self.models.values())}

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

        Raises :class:`BudgetExhausted` when the budget cannot pay for the prompts and at least
        one new token per sample; otherwise caps ``max_tokens`` so the call cannot overrun it
        (the prompts counted with the backend's tokenizer, or bounded from above without one).
        """
        try:
            self.budget.check()
        except BudgetExhausted as exc:
            self.stop_reason = exc.stop_reason
            raise
        n_total = sum(r.n for r in requests)
        used = backend or self.backend
        prompts = sum(await asyncio.gather(*(prompt_tokens_bound(used, r) for r in requests))) \
            if self.budget.max_tokens is not None else 0
        cap = self.budget.completion_cap(n_total, prompts)
        if cap is not None and cap < 1:
            self.stop_reason = "budget"
            raise BudgetExhausted(f"token budget too small for {n_total} more samples")
        prepared = []
        constrain = self.grammar and self.constraint is not None and used.capabilities.grammar
        for r in requests:
            if constrain and r.constraint is None and self._poses(r):
                r = r.replace(constraint=self.constraint)
            params = r.params
            if cap is not None and cap < params.max_tokens:
                params = params.replace(max_tokens=cap)
            if params.seed is None and self.seed is not None:
                params = params.replace(seed=self._next_seed())
            prepared.append(r.replace(params=params))
        self._calls += 1
        call = self._calls
        if self.events is not None:
            prepared = [self._observed(r, label, call, first=i == 0)
                        for i, r in enumerate(prepared)]
        self.emit("generate", samples=n_total, label=label, call=call)
        started = time.monotonic()
        results = await used.generate(
            prepared, on_progress=lambda tokens: self.emit("tokens", tokens=tokens, call=call)
        )
        out: list[list[Traced]] = []
        tagged = used is not self.backend or bool(self.models)
        for k, (request, completions) in enumerate(zip(prepared, results, strict=True)):
            under = parents[k] if parents is not None else parent
            capped = request.params.max_tokens < requests[k].params.max_tokens
            row = []
            for i, completion in enumerate(completions):
                if capped and completion.finish_reason == "length":
                    self.stop_reason = "budget"  # the budget, not the request, cut it short
                self.budget.charge(completion.usage)
                node = self.trace.add(
                    "generate",
                    f"{label} {i + 1}/{request.n}" if request.n > 1 else label,
                    parent=under,
                    usage=completion.usage,
                    text=completion.text,
                    finish_reason=completion.finish_reason,
                    # whose tokens these are, where the run has more than one model
                    **({"model": used.model} if tagged else {}),
                    **({"prefill": request.prefill} if request.prefill else {}),
                    **({"constrained": request.constraint.name} if request.constraint else {}),
                    **({"reasoning": completion.reasoning} if completion.reasoning else {}),
                )
                row.append(Traced(completion, node))
            out.append(row)
        self.emit(
            "generated",
            samples=n_total,
            seconds=time.monotonic() - started,
            tokens=sum(t.completion.usage.completion_tokens for row in out for t in row),
            call=call,
        )
        return out

    def can_constrain(self) -> bool:
        """Grammar is on and some model of the run decodes under one (the problem's grammar is
        built only then)."""
        return self.grammar and any(b.capabilities.grammar
                                    for b in (self.backend, *self.models.values()))

    def _poses(self, request: GenerationRequest) -> bool:
        """The request asks for the next message of the problem's own conversation (not a
        judge's prompt, not a critique of an answer), from where the grammar can start: no
        prefill, or for a lazy grammar one that has not yet written the trigger."""
        assert self.constraint is not None
        turns = tuple(m for m in request.messages if m.role != "system")
        if turns != self.posed:
            return False
        if not request.prefill:
            return True
        return self.constraint.lazy and not any(
            t and t in request.prefill for t, _ in self.constraint.triggers)

    def account(self, kind: str, label: str, usage: Usage, parent: int | None = None,
                **data: Any) -> int:
        """Record compute spent outside ``generate`` (a reward model's forward pass): traced
        with its usage, so results count it, and charged to the budget."""
        self.budget.charge(usage)
        return self.trace.add(kind, label, parent=parent, usage=usage, **data)

    def _observed(self, request: GenerationRequest, label: str, call: int, first: bool
                  ) -> GenerationRequest:
        """The request with hooks that report each finished sample (and, when streaming text,
        the first sample's text as it grows)."""
        n = request.n

        def on_sample(index: int, completion: Completion) -> None:
            if request.on_sample is not None:
                request.on_sample(index, completion)
            self.emit("sample", label=label, index=index, n=n, text=completion.text,
                      tokens=completion.usage.completion_tokens,
                      finish_reason=completion.finish_reason, call=call)

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
        backend: Backend | None = None,
    ) -> list[Traced]:
        """Generate ``n`` samples of one request (on ``backend``, default the run's own)."""
        request = GenerationRequest(tuple(messages), params, n=n, prefill=prefill)
        return (await self.generate([request], parent=parent, label=label,
                                    backend=backend))[0]


@runtime_checkable
class Verifier(Protocol):
    """Scores candidates in [0, 1]; None means no opinion. Calls go through ``ctx`` so they are
    budgeted and traced like any other."""

    name: ClassVar[str]

    async def score(
        self, problem: Problem, candidates: Sequence[Candidate], ctx: Context, parent: int | None
    ) -> list[float | None]: ...
