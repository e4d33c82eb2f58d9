"""The values that flow through ponder: frozen dataclasses, cheap to copy and compare."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class Message:
    """One chat message."""

    role: Role
    content: str


@dataclass(frozen=True)
class Problem:
    """A question to solve, with its gold answer when known (evaluation)."""

    question: str
    answer: str | None = None
    id: str = ""
    system: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. ``logprobs``: None = none, 0 = chosen token only, k = top-k alternatives."""

    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: int | None = None

    def replace(self, **changes: Any) -> SamplingParams:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class TokenLogprob:
    """The log-probability of one generated token and its top alternatives."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


# Called after every generated token of every sequence: (sample index, text so far, the token's
# logprob or None). Returning True stops that sequence (finish_reason "cancelled"), not the others.
TokenMonitor = Callable[[int, str, "TokenLogprob | None"], bool]
# Called once per sample as soon as it is finished: (sample index, its completion). Backends may
# call it from their own thread.
SampleCallback = Callable[[int, "Completion"], None]


@dataclass(frozen=True)
class Constraint:
    """Decode under a grammar where the backend can (its capabilities' ``grammar``).

    ``grammar`` holds GBNF rules (none named ``root``); ``triggers`` pairs each trigger text with
    the rule that what follows it must match (e.g. ``<tool_call>`` and the call after it).
    ``lazy``: the text is free until the model writes a trigger (a reply that never does stays
    free); not lazy: the reply starts with one of them. ``name`` says in traces what was
    constrained.
    """

    grammar: str
    triggers: tuple[tuple[str, str], ...]
    lazy: bool = False
    name: str = "grammar"

    def after(self, trigger: str) -> str:
        """The grammar of what follows ``trigger``: its rule as ``root``."""
        rule = dict(self.triggers)[trigger]
        return f"root ::= {rule}\n{self.grammar}"

    def from_trigger(self) -> str:
        """The grammar of the text from a trigger on (a trigger, then what follows it): what an
        engine that watches for the triggers (llama.cpp's lazy grammars), or a reply that must
        start with one, decodes under."""
        starts = " | ".join(
            (_gbnf_literal(trigger) + " " if trigger else "") + rule
            for trigger, rule in self.triggers)
        return f"root ::= {starts}\n{self.grammar}"


def _gbnf_literal(text: str) -> str:
    return '"' + "".join("\\" + c if c in '"\\' else c for c in text) + '"'


@dataclass(frozen=True)
class GenerationRequest:
    """Ask for ``n`` samples of the assistant's next message.

    ``prefill`` continues a partial assistant message: the completions hold only the new text.
    ``affinity`` names requests that share a prompt prefix (e.g. the judge calls of one problem)
    so that an endpoint pool sends them to one server; empty: derived from the messages.
    ``constraint`` decodes the samples under a grammar where the backend can (a backend without
    the ``grammar`` capability samples freely; the answers are checked afterwards either way).
    """

    messages: tuple[Message, ...]
    params: SamplingParams = field(default_factory=SamplingParams)
    n: int = 1
    prefill: str = ""
    monitor: TokenMonitor | None = field(default=None, compare=False, repr=False)
    on_sample: SampleCallback | None = field(default=None, compare=False, repr=False)
    affinity: str = field(default="", compare=False, repr=False)
    constraint: Constraint | None = None

    def replace(self, **changes: Any) -> GenerationRequest:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Usage:
    """Compute spent. Prompt tokens count the tokens a backend actually evaluated."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    seconds: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.calls + other.calls,
            self.seconds + other.seconds,
        )

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @staticmethod
    def sum(items: Any) -> Usage:
        total = Usage()
        for item in items:
            total = total + item
        return total

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "calls": self.calls,
            "seconds": round(self.seconds, 4),
        }


@dataclass(frozen=True)
class Prices:
    """What a model's tokens cost, in dollars per million: prompt (input) and completion
    (output) tokens, as API providers price them."""

    input: float
    output: float

    def dollars(self, usage: Usage) -> float:
        return (usage.prompt_tokens * self.input + usage.completion_tokens * self.output) / 1e6

    def to_dict(self) -> dict[str, float]:
        return {"input": self.input, "output": self.output}


@dataclass(frozen=True)
class ModelCost:
    """What one model of a run spent, and its size: the cost that makes runs on models of
    different sizes comparable is ``flops``, 2 x parameters per token (prompt tokens included,
    the usual forward-pass estimate), None where the model's size is unknown; where the
    operator gave the model's prices, ``dollars`` too."""

    usage: Usage
    parameters: int | None = None
    prices: Prices | None = None

    @property
    def flops(self) -> float | None:
        if self.parameters is None:
            return None
        return 2.0 * self.parameters * self.usage.total_tokens

    @property
    def dollars(self) -> float | None:
        return None if self.prices is None else self.prices.dollars(self.usage)

    def to_dict(self) -> dict[str, Any]:
        out = {**self.usage.to_dict(), "parameters": self.parameters, "flops": self.flops}
        if self.prices is not None:
            out.update(prices=self.prices.to_dict(), dollars=self.dollars)
        return out


@dataclass(frozen=True)
class Completion:
    """One generated sample.

    A request's prompt is evaluated once however many samples it asks for, so its prompt tokens
    and its one call are charged to the request's first completion; the others carry only their
    own completion tokens. Summing the usage of every completion gives the true cost.
    """

    text: str
    finish_reason: FinishReason = "stop"
    usage: Usage = field(default_factory=Usage)
    logprobs: tuple[TokenLogprob, ...] | None = None
    reasoning: str | None = None
    # The stop string that ended the sample (not part of ``text``); None when it ended at the
    # end of the answer (or by length).
    stop_sequence: str | None = None

    @property
    def mean_logprob(self) -> float | None:
        if not self.logprobs:
            return None
        return sum(t.logprob for t in self.logprobs) / len(self.logprobs)


StepEnd = Literal["delimiter", "end", "length"]


@dataclass(frozen=True)
class Step:
    """One reasoning step of a partial solution: its text (without the delimiter that ended it),
    how it ended, its completion tokens and their mean logprob (when the backend gave them)."""

    text: str
    end: StepEnd = "delimiter"
    tokens: int = 0
    mean_logprob: float | None = None


@dataclass(frozen=True)
class Candidate:
    """A full answer a strategy considered, with its extracted answer and score."""

    text: str
    answer: str | None
    score: float | None = None
    votes: float = 0.0
    usage: Usage = field(default_factory=Usage)
    finish_reason: FinishReason = "stop"
    mean_logprob: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> Candidate:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "answer": self.answer,
            "score": self.score,
            "votes": self.votes,
            "finish_reason": self.finish_reason,
            "mean_logprob": self.mean_logprob,
            "usage": self.usage.to_dict(),
            "metadata": dict(self.metadata),
        }


StopReason = Literal["done", "budget", "time"]


@dataclass(frozen=True)
class Result:
    """What a strategy returns: the answer, what it considered, what it did and what it cost."""

    answer: str | None
    text: str
    candidates: tuple[Candidate, ...]
    usage: Usage
    trace: Any  # ponder.trace.Trace; typed loosely to keep this module free of imports
    strategy: str
    config: Mapping[str, Any] = field(default_factory=dict)
    stop_reason: StopReason = "done"
    model: str = ""
    # what each model spent, by model name (every run has at least its generator's entry)
    models: Mapping[str, ModelCost] = field(default_factory=dict)

    @property
    def flops(self) -> float | None:
        """FLOPs-equivalent cost over every model of the run; None if a model's size is
        unknown (then compare runs by tokens per model instead)."""
        costs = [m.flops for m in self.models.values()]
        if not costs or any(c is None for c in costs):
            return None
        return float(sum(c for c in costs if c is not None))

    @property
    def dollars(self) -> float | None:
        """What the run cost in dollars over every model, where each model's prices are known
        (the operator's ``price`` option or endpoints file); else None."""
        costs = [m.dollars for m in self.models.values()]
        if not costs or any(c is None for c in costs):
            return None
        return float(sum(c for c in costs if c is not None))

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "text": self.text,
            "strategy": self.strategy,
            "model": self.model,
            "config": dict(self.config),
            "stop_reason": self.stop_reason,
            "usage": self.usage.to_dict(),
            "models": {name: cost.to_dict() for name, cost in self.models.items()},
            "flops": self.flops,
            **({"dollars": self.dollars} if self.dollars is not None else {}),
            "candidates": [c.to_dict() for c in self.candidates],
            "trace": self.trace.to_dict() if self.trace is not None else None,
        }
