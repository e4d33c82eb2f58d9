"""Running what a request asked for: a place in the queue (:class:`Ticket`, 429 beyond
``max_concurrent + max_queue``), a slot (at most ``max_concurrent`` at once), the plan run once
per choice within its time limit, and failures mapped to the client's errors (an upstream's
detail goes to the log, never to the client: :func:`upstream_error`)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ponder.backends.base import Backend
from ponder.domains import constraint_for
from ponder.domains.chat import CHAT, is_chat_problem, read_reply
from ponder.domains.schemas import request_budget
from ponder.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
    PromptTooLong,
    SandboxUnavailable,
)
from ponder.runner import new_context, run_strategy
from ponder.sandbox import Sandbox
from ponder.server.errors import ApiError
from ponder.server.metrics import Metrics
from ponder.server.plan import Plan
from ponder.server.views import LiveView, traces_of
from ponder.types import Message, Result, SamplingParams, Usage

log = logging.getLogger("ponder.server")


class Ticket:
    """A request's place in the queue, given back exactly once (a stream that never starts
    gives it back through its response's background task)."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def release(self) -> None:
        if self._release is not None:
            self._release, release = None, self._release
            release()


class Running:
    """How :class:`~ponder.server.app.PonderServer` runs a plan."""

    backend: Backend
    role_models: Mapping[str, Backend]
    metrics: Metrics
    sandbox: Sandbox
    grammar: bool
    model_id: str
    max_concurrent: int
    max_queue: int
    _slots: asyncio.Semaphore | None

    def _admit(self) -> Ticket:
        """A place in the queue, or 429 (checked once the body has arrived: :meth:`_opened`)."""
        if self.metrics.in_flight + self.metrics.queued >= self.max_concurrent + self.max_queue:
            raise ApiError(429, "the server is at capacity; retry shortly", "rate_limit_error",
                           code="queue_full", headers={"Retry-After": "1"})
        self.metrics.queued += 1

        def release() -> None:
            self.metrics.queued -= 1
        return Ticket(release)

    async def _slot(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrent)
        return self._slots

    async def admitted(self, plan: Plan, sinks: Sequence[Any],
                       ticket: Ticket | None = None, view: LiveView | None = None
                       ) -> list[Result]:
        """Wait for a slot, then run the plan once per choice; errors become ApiErrors (an
        upstream's detail goes to the log, never to the client). ``view``: the request's live
        page, which follows its traces."""
        try:
            results = await self._admitted(plan, sinks, ticket, view)
        except asyncio.CancelledError:
            if view is not None:
                view.end("cancelled")
            raise
        except ApiError as exc:
            if view is not None:
                view.end(f"failed ({exc.status})")
            raise
        return results

    async def _admitted(self, plan: Plan, sinks: Sequence[Any], ticket: Ticket | None,
                        view: LiveView | None) -> list[Result]:
        if ticket is None:
            ticket = self._admit()
        slots = await self._slot()
        traces = traces_of(view, len(sinks))
        try:
            async with slots:
                ticket.release()
                self.metrics.in_flight += 1
                try:
                    return await asyncio.wait_for(
                        asyncio.gather(*(self._run(plan, i, sink, view, traces[i])
                                         for i, sink in enumerate(sinks))),
                        plan.budget_seconds + 5)
                finally:
                    self.metrics.in_flight -= 1
        except asyncio.TimeoutError:
            raise ApiError(504, f"the request exceeded its time limit of "
                           f"{plan.budget_seconds:g} s", "api_error",
                           code="request_timeout") from None
        except PromptTooLong as exc:  # the request's conversation is longer than the model reads
            raise ApiError(400, f"the conversation is too long for this model: {exc}",
                           param="messages", code="context_length_exceeded") from None
        except BackendError as exc:
            raise upstream_error(exc) from None
        except SandboxUnavailable as exc:
            log.error("cannot run model-written code: %s", exc)
            raise ApiError(503, "this server cannot run model-written code: no jail can be made "
                           "on its host", "api_error", code="sandbox_unavailable") from None
        except ConfigError as exc:
            raise ApiError(400, str(exc), code="invalid_value") from None
        except ApiError:
            raise
        except Exception:
            incident = uuid.uuid4().hex[:12]
            log.exception("internal error %s running %s", incident,
                          plan.strategy.name if plan.strategy else "a completion")
            raise ApiError(500, f"internal server error (incident {incident})",
                           "server_error") from None
        finally:
            ticket.release()

    async def _run(self, plan: Plan, index: int, sink: Any, view: LiveView | None = None,
                   trace: Any = None) -> Result:
        seed = None if plan.seed is None else plan.seed + index
        budget = plan.budget()
        if plan.strategy is None:
            return await self._pass_through(plan, seed, sink)
        events = view.sink(sink, index=index) if view is not None else sink
        with request_budget():  # checking its answers against its schemas: bounded in all
            result = await run_strategy(plan.strategy, plan.problem, self.backend,
                                        verifier=plan.verifier, budget=budget, seed=seed,
                                        events=events, stream_text=sink is not None,
                                        sandbox=self.sandbox, trace=trace, models=self.role_models,
                                        grammar=self.grammar)
        if view is not None:
            view.finish(index, result)
        u = result.usage
        self.metrics.add_tokens(u.prompt_tokens, u.completion_tokens)
        return result

    async def _pass_through(self, plan: Plan, seed: int | None, sink: Any) -> Result:
        req = plan.request
        if is_chat_problem(plan.problem):  # the conversation, its tools and format in the prompt
            messages = tuple(CHAT.messages(plan.problem, "", ""))
        else:
            messages = tuple(Message("system" if m.role == "developer" else
                                     ("user" if m.role == "tool" else m.role), m.text())
                             for m in req.messages)
        stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
        params = SamplingParams(
            temperature=0.7 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            max_tokens=req.max_tokens or req.max_completion_tokens or 1024, stop=stop, seed=seed)
        ctx = new_context(self.backend, seed=seed, events=sink, stream_text=sink is not None,
                          grammar=self.grammar)
        found = constraint_for(plan.problem) if ctx.can_constrain() else None
        if found is not None:  # a reply to the conversation: its calls or JSON under grammar
            ctx.constraint, ctx.posed = found
        started = time.monotonic()
        [traced] = await ctx.sample(messages, params, label="completion")
        c = traced.completion
        self.metrics.add_tokens(c.usage.prompt_tokens, c.usage.completion_tokens)
        answer = read_reply(plan.problem, c.text) if is_chat_problem(plan.problem) else c.text
        return Result(answer=answer, text=c.reasoning or "", candidates=(),
                      usage=Usage(c.usage.prompt_tokens, c.usage.completion_tokens, 1,
                                  time.monotonic() - started),
                      trace=ctx.trace, strategy="pass-through",
                      model=self.model_id,
                      stop_reason="budget" if c.finish_reason == "length" else "done")


def upstream_error(exc: BackendError) -> ApiError:
    """What a client learns of an upstream failure: its kind and an incident id, never the
    upstream's body or URL (those go to the log, under the same id)."""
    incident = uuid.uuid4().hex[:12]
    log.warning("upstream failure %s (%s): %s", incident, type(exc).__name__, exc)
    if isinstance(exc, BackendTimeout):
        status, code, what = 504, "upstream_timeout", "did not answer in time"
    elif isinstance(exc, BackendUnavailable):
        status, code, what = 502, "upstream_unavailable", "is unavailable"
    else:
        status, code, what = 502, "upstream_error", "failed"
    return ApiError(status, f"a model server behind this one {what}; retry later "
                    f"(incident {incident})", "api_error", code=code)
