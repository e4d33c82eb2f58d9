"""``llm -m ponder-<strategy> "question"``: ponder's search as an ``llm`` model.

The search runs in-process. Its backend is, in this order: another ``llm`` model
(``-o backend_model gpt-4o-mini``, through :class:`~ponder.llm_plugin.backend.LlmBackend`), a
server (``-o base_url http://localhost:8000/v1 -o model NAME``), or a GGUF file run by llama.cpp
(``-o model PATH.gguf``, else ``$PONDER_MODEL``, else the bundled SmolLM2-135M-Instruct). A GGUF
is loaded once per process and kept.

While the search runs, what it does is streamed as reasoning (``llm`` writes it dimmed to stderr;
``-R`` hides it): each call, each finished sample with its answer and the votes so far, then the
account of the search. The answer is the response's text. The usage (prompt and completion tokens
over every call, the calls, the seconds) goes to ``response.set_usage``, and the whole result —
candidates, configuration, trace — to ``response.response_json``, so ``llm logs`` keeps both.

A prompt in a conversation (``llm -c``, ``llm chat``) carries the earlier turns in its question.
A system prompt (``-s``) becomes the strategy's ``system`` option where it has one.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import threading
from collections.abc import Iterator
from typing import Any, Literal

import llm
from llm.parts import StreamEvent, TextPart
from pydantic import Field

from ponder import registry
from ponder.backends.base import Backend
from ponder.backends.loading import load_backend, release
from ponder.budget import Budget
from ponder.errors import PonderError
from ponder.llm_plugin.backend import LlmBackend
from ponder.runner import build_strategy, run_strategy
from ponder.server.narrator import Narrator, search_summary
from ponder.types import Problem, Result

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def plugin_loop() -> asyncio.AbstractEventLoop:
    """The event loop every search of this process runs on, in a thread of its own: a model
    loaded once serves every prompt of a ``llm chat`` on the same loop, and a search runs
    whatever loop (or none) the caller has."""
    global _loop
    with _loop_lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="ponder-llm", daemon=True).start()
            _loop = loop
        return _loop


def single_model_strategies() -> list[str]:
    """The strategies that run on one model (a ``ponder-<name>`` model each)."""
    return [name for name in registry.strategies.names()
            if not getattr(registry.strategies.get(name)(), "required_roles", lambda: ())()]


class Ponder(llm.Model):
    """A ponder strategy as an ``llm`` model."""

    can_stream = True

    class Options(llm.Options):
        strategy: str | None = Field(
            None, description="run this strategy instead of the model's, e.g. beam-search")
        effort: Literal["low", "medium", "high"] | None = Field(
            None, description="the strategy's preset knobs")
        n: int | None = Field(None, ge=1, description="samples / candidates / beams")
        max_tokens: int | None = Field(None, ge=1, description="new tokens per generation")
        max_tokens_total: int | None = Field(
            None, ge=1, description="token budget over the whole search")
        temperature: float | None = Field(None, ge=0, description="sampling temperature")
        seed: int | None = Field(None, ge=0, description="reproducible sampling")
        verifier: str | None = Field(None, description="judge, logprob or code-tests")
        strategy_options: str | None = Field(
            None, description='any other strategy options as a JSON object, e.g. {"m": 4}')
        model: str | None = Field(
            None, description="ponder's model: PATH.gguf or hf:OWNER/REPO/FILE.gguf (default "
            "$PONDER_MODEL, else the bundled SmolLM2-135M-Instruct), or a served model's name "
            "with base_url")
        base_url: str | None = Field(
            None, description="an OpenAI-compatible server to run the search on")
        backend_model: str | None = Field(
            None, description="an llm model to run the search on instead, e.g. gpt-4o-mini")
        backend_parallel: int = Field(
            1, ge=1, description="samples sent to backend_model at once (default 1)")

    def __init__(self, strategy: str) -> None:
        self.strategy = strategy
        self.model_id = f"ponder-{strategy}"
        # llm models this one ran on, kept for the next prompt (llm chat): an in-process one
        # loads its weights once
        self._llm_backends: dict[tuple[str, int], LlmBackend] = {}

    def execute(self, prompt: llm.Prompt, stream: bool, response: llm.Response,
                conversation: llm.Conversation | None) -> Iterator[str | StreamEvent]:
        options: Ponder.Options = prompt.options  # type: ignore[assignment]
        name = options.strategy or self.strategy
        if name not in single_model_strategies():
            raise llm.ModelError(f"unknown strategy {name!r}; valid: "
                                 f"{', '.join(single_model_strategies())}")
        problem = Problem(_question(prompt))
        if not problem.question.strip():
            raise llm.ModelError("the prompt is empty")
        extra = _strategy_options(options, prompt.system, name)
        n = extra.pop("n", None) if options.n is None else options.n  # -o n wins
        extra.pop("n", None)
        try:
            strategy = build_strategy(name, options.effort, n=n, **extra)
        except PonderError as exc:
            raise llm.ModelError(str(exc)) from None
        backend, owned = self._backend(options)
        events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        budget = Budget(max_tokens=options.max_tokens_total)
        future = asyncio.run_coroutine_threadsafe(
            _search(strategy, problem, backend, owned, options, budget,
                    lambda event, details: events.put((event, details))), plugin_loop())
        narrator = Narrator(problem)
        try:
            while True:
                try:
                    event, details = events.get(timeout=0.1)
                except queue.Empty:
                    if future.done():
                        break
                    continue
                line = narrator(event, details) if event in ("generate", "sample") else ""
                if stream and line.strip():
                    yield StreamEvent(type="reasoning", chunk=line.lstrip("\n"))
            result = future.result()
        except PonderError as exc:
            raise llm.ModelError(str(exc)) from None
        finally:
            future.cancel()  # a prompt interrupted (Ctrl-C) stops its search
        if stream:
            yield StreamEvent(type="reasoning", chunk=search_summary(result) + "\n")
        u = result.usage
        response.set_usage(input=u.prompt_tokens, output=u.completion_tokens,
                           details={"calls": u.calls, "seconds": round(u.seconds, 3),
                                    "strategy": result.strategy,
                                    "candidates": len(result.candidates)})
        response.response_json = {"ponder": result.to_dict(),
                                  "backend": backend.identity()}
        yield result.answer if result.answer is not None else "(no answer)"

    def _backend(self, options: Ponder.Options) -> tuple[Backend, bool]:
        """The backend and whether this prompt owns it (closes it afterwards)."""
        if options.backend_model:
            key = (options.backend_model, options.backend_parallel)
            if key not in self._llm_backends:
                try:
                    inner = llm.get_model(options.backend_model)
                except llm.UnknownModelError as exc:
                    raise llm.ModelError(f"backend_model: {exc.args[0]}") from None
                if isinstance(inner, Ponder):
                    raise llm.ModelError("backend_model is a ponder model: name the model the "
                                         "search should run on, e.g. gpt-4o-mini")
                self._llm_backends[key] = LlmBackend(inner, options.backend_parallel)
            return self._llm_backends[key], False
        try:
            backend = load_backend(options.model or os.environ.get("PONDER_MODEL") or None,
                                   options.base_url)
        except PonderError as exc:
            raise llm.ModelError(str(exc)) from None
        return backend, True


async def _search(strategy: Any, problem: Problem, backend: Backend, owned: bool,
                  options: Ponder.Options, budget: Budget, events: Any) -> Result:
    try:
        return await run_strategy(strategy, problem, backend, verifier=options.verifier,
                                  budget=budget, seed=options.seed, events=events)
    finally:
        if owned:
            await release(backend)  # an in-process model stays loaded for the next prompt


def _question(prompt: llm.Prompt) -> str:
    """The prompt's text, after the earlier turns of its conversation, if any."""
    earlier = []
    messages = prompt.messages
    if any(m.role == "assistant" for m in messages):
        for m in messages[:-1]:
            text = "".join(p.text for p in m.parts if isinstance(p, TextPart))
            if m.role in ("user", "assistant") and text:
                earlier.append(f"{m.role.capitalize()}: {text}")
    question = prompt.prompt
    if earlier:
        return "Earlier in this conversation:\n" + "\n".join(earlier) + "\n\nNow: " + question
    return question


def _strategy_options(options: Ponder.Options, system: str | None, name: str
                      ) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if options.strategy_options:
        try:
            extra = json.loads(options.strategy_options)
        except json.JSONDecodeError as exc:
            raise llm.ModelError(f"strategy_options is not JSON: {exc}") from None
        if not isinstance(extra, dict):
            raise llm.ModelError('strategy_options must be a JSON object, e.g. {"m": 4}')
    for key in ("max_tokens", "temperature"):
        value = getattr(options, key)
        if value is not None:
            extra[key] = value
    fields = registry.strategies.get(name).Config.model_fields
    if system and "system" in fields:
        extra.setdefault("system", system)
    return extra
