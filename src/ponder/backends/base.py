"""The Backend protocol and its declared capabilities."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ponder.errors import ConfigError
from ponder.types import Completion, GenerationRequest, Prices

# Called with the number of tokens generated so far in the current call (for progress displays).
ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, declared once so strategies never guess.

    parallel_n: ``n`` samples of one request come from one batched run sharing the prompt.
    logprobs:   per-token logprobs (with top alternatives) are available.
    prefill:    ``request.prefill`` is continued and only the new text comes back (the openai
                backend may emulate it on a server that cannot: see its ``prefill_mode``).
    early_stop: a request's ``monitor`` can stop one sequence mid-generation.
    grammar:    ``request.constraint`` is decoded under its grammar (others sample freely).
    max_context: the context window in tokens (0 = unknown).
    """

    parallel_n: bool = False
    logprobs: bool = False
    prefill: bool = False
    early_stop: bool = False
    grammar: bool = False
    max_context: int = 0


@runtime_checkable
class Backend(Protocol):
    """Generates completions. One call may carry many requests, each asking for ``n`` samples;
    the answer holds one list of ``n`` completions per request, in order.

    ``probe()`` learns what the backend can do before the first request (an HTTP backend asks
    its server; it fails early and clearly on a wrong URL or model) and ``aclose()`` releases
    what the backend holds. Backends that subclass this protocol inherit no-op defaults.
    """

    name: str
    model: str

    @property
    def capabilities(self) -> Capabilities: ...

    async def generate(
        self,
        requests: Sequence[GenerationRequest],
        on_progress: ProgressCallback | None = None,
    ) -> list[list[Completion]]: ...

    def identity(self) -> dict[str, Any]:
        """What produced this backend's samples, for stored runs to be keyed by (after
        ``probe``): at least the backend and the model."""
        return {"backend": self.name, "model": self.model}

    async def count_prompt_tokens(self, request: GenerationRequest) -> int | None:
        """The tokens the request's prompt (chat template, messages, prefill) takes, counted
        with the backend's own tokenizer; None where the backend cannot count them."""
        return None

    async def probe(self) -> Capabilities:
        """What the backend can do, learnt once (later calls return the cached answer)."""
        return self.capabilities

    async def aclose(self) -> None:
        """Release connections, threads and weights."""
        return None


def parameter_count(value: object) -> int | None:
    """A model size as an operator writes it (``1.5e9``, ``494032768``, ``"1.5e9"``): a whole
    positive number of parameters, or None when not given."""
    if value is None:
        return None
    try:
        count = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"parameters must be a number of parameters, e.g. 1.5e9; got "
                          f"{value!r}") from None
    if not count >= 1 or count != count or count == float("inf"):
        raise ConfigError(f"parameters must be a positive number, e.g. 1.5e9; got {value!r}")
    return int(count)


def parse_prices(value: object) -> Prices | None:
    """Prices per million tokens as an operator writes them: ``"0.15/0.60"`` (input/output),
    one number for both, a mapping ``{"input": 0.15, "output": 0.60}``; None when not given."""
    if value is None or isinstance(value, Prices):
        return value
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"input", "output"})
        if unknown or set(value) != {"input", "output"}:
            raise ConfigError(f"price needs input and output (dollars per million tokens), got "
                              f"{value!r}")
        parts = [value["input"], value["output"]]
    elif isinstance(value, str):
        parts = value.split("/")
    else:
        parts = [value]
    try:
        numbers = [float(p) for p in parts]
    except (TypeError, ValueError):
        numbers = []
    if len(numbers) == 1:
        numbers *= 2
    if len(numbers) != 2 or any(not 0 <= n < float("inf") for n in numbers):
        raise ConfigError(f"price is dollars per million tokens, input/output, e.g. "
                          f"price=0.15/0.60; got {value!r}")
    return Prices(*numbers)


async def generate_each(
    requests: Sequence[GenerationRequest],
    on_progress: ProgressCallback | None,
    one: Callable[[GenerationRequest, ProgressCallback], Awaitable[list[Completion]]],
) -> list[list[Completion]]:
    """Every request through ``one(request, progress)`` at once; ``progress(tokens)`` adds to a
    running total of generated tokens that ``on_progress`` is told."""
    done = [0]

    def progress(tokens: int) -> None:
        done[0] += tokens
        if on_progress is not None:
            on_progress(done[0])

    return list(await asyncio.gather(*(one(r, progress) for r in requests)))
