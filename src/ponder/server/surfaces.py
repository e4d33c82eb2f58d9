"""The two API surfaces: ``POST /v1/chat/completions`` and ``POST /v1/responses`` (the same
run, asked and answered in the Responses API's words: :mod:`ponder.server.responses`), each
read whole before a place in the queue is taken, streamed or not, cancelled when its client
leaves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ponder.backends.openai_http import OpenAIBackend, forward_chat
from ponder.core.context import EventSink
from ponder.errors import BackendError
from ponder.server.errors import ApiError
from ponder.server.limits import check_json_type, read_body
from ponder.server.narrator import search_summary
from ponder.server.plan import Plan
from ponder.server.replies import completion_body
from ponder.server.responses import chat_request, read_request, response_body, response_events
from ponder.server.running import Ticket, upstream_error
from ponder.server.schemas import forwarded_messages
from ponder.server.stream import sse_events

T = TypeVar("T")


class Surfaces:
    """The chat and Responses routes of :class:`~ponder.server.app.PonderServer` (the
    methods they call are the server's: reading and planning in ``app``, running in
    :mod:`~ponder.server.running`, forwarding in :mod:`~ponder.server.forward`)."""

    async def chat(self, request: Request) -> Response:
        started = time.monotonic()
        try:
            ticket, plan = await self._opened(request, self._plan)
        except ApiError as exc:
            self.metrics.observe(exc.status)
            return exc.response()
        if self._forwards(plan):
            return await self._forward(request, plan, ticket, started)
        view = None
        if plan.strategy is not None and plan.request.ponder and plan.request.ponder.trace:
            view = self.views.open(plan.problem.question, plan.strategy.name, plan.request.n,
                                   self.model_id, problem=plan.problem)
        view_url = f"{str(request.base_url).rstrip('/')}/ui/{view.id}" if view else None
        if plan.request.stream:
            return StreamingResponse(sse_events(lambda sinks: self.admitted(plan, sinks, ticket,
                                                                            view),
                                                plan, self.metrics, started, view_url),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"},
                                     background=BackgroundTask(ticket.release))
        work = asyncio.create_task(self.admitted(plan, [None] * plan.request.n, ticket, view))
        watcher = asyncio.create_task(self._watch_disconnect(request, work))
        try:
            results = await work
        except ApiError as exc:
            self.metrics.observe(exc.status)
            return exc.response()
        except asyncio.CancelledError:
            self.metrics.observe(499)
            if watcher.done():  # the client left; nobody reads this
                return ApiError(499, "client closed the request", code="cancelled").response()
            raise
        finally:
            watcher.cancel()
            if not work.done():
                work.cancel()
        self.metrics.observe(200, time.monotonic() - started)
        return JSONResponse(completion_body(plan, results, view_url))

    async def responses(self, request: Request) -> Response:
        """``POST /v1/responses``: the request as the chat request it means
        (:mod:`ponder.server.responses`), run the same way, written as a ``response``."""
        started = time.monotonic()

        async def read(raw: bytes) -> tuple[Any, Plan]:
            rreq = read_request(self._parse(raw))
            return rreq, await self._plan_for(chat_request(rreq))

        try:
            ticket, (rreq, plan) = await self._opened(request, read)
        except ApiError as exc:
            self.metrics.observe(exc.status)
            return exc.response()
        if rreq.stream:
            return StreamingResponse(
                response_events(rreq, plan, partial(self._answer, None, plan, ticket),
                                self.metrics, started),
                media_type="text/event-stream", headers={"Cache-Control": "no-cache"},
                background=BackgroundTask(ticket.release))
        try:
            chat, summary, chain = await self._answer(request, plan, ticket)
        except ApiError as exc:
            self.metrics.observe(exc.status)
            return exc.response()
        finally:
            ticket.release()
        self.metrics.observe(200, time.monotonic() - started)
        return JSONResponse(response_body(rreq, chat, summary, chain))

    async def _opened(self, request: Request, interpret: Callable[[bytes], Awaitable[T]]
                      ) -> tuple[Ticket, T]:
        """The client authorized, its JSON body read whole, a ticket taken, and the body
        interpreted (``interpret``); the ticket is given back when that fails. A ticket is taken
        only once the body has arrived: clients that send their bodies slowly wait on their own
        connections (capped per client address, :mod:`ponder.server.protocol`) and never hold a
        place that a complete request could use. Errors as ApiError."""
        self._authorize(request)
        check_json_type(request.headers.get("content-type"))
        limits = self.limits
        raw = await read_body(request, limits.max_body_bytes, limits.body_timeout)
        ticket = self._admit()
        try:
            return ticket, await interpret(raw)
        except BaseException:
            ticket.release()
            raise

    async def _answer(self, request: Request | None, plan: Plan, ticket: Ticket,
                      sink: EventSink | None = None
                      ) -> tuple[dict[str, Any], str | None, str | None]:
        """A plan's chat completion body (one choice), the account of its search and its
        winning chain; errors as ApiError. ``sink`` hears the search as it runs. A client that
        leaves cancels the work (``request``: watched for it; None: the caller's stream is
        cancelled instead)."""
        if self._forwards(plan):
            assert isinstance(self.backend, OpenAIBackend)
            body = plan.request.model_dump(mode="json", exclude_none=True, by_alias=True,
                                           exclude={"model", "ponder", "stream"})
            body["messages"] = forwarded_messages(body["messages"])
            slots = await self._slot()
            try:
                async with slots:
                    ticket.release()
                    chat = await forward_chat(self.backend, body)
            except BackendError as exc:
                raise upstream_error(exc) from None
            message = (chat.get("choices") or [{}])[0].get("message") or {}
            chain = message.get("reasoning_content") or message.get("reasoning")
            if not chat.get("choices"):
                raise upstream_error(BackendError("the upstream reply had no choices"))
            return chat, None, chain
        work = asyncio.create_task(self.admitted(plan, [sink], ticket))
        watcher = (asyncio.create_task(self._watch_disconnect(request, work))
                   if request is not None else None)
        try:
            [result] = await work
        finally:
            if watcher is not None:
                watcher.cancel()
            if not work.done():
                work.cancel()
        summary = None if result.strategy == "pass-through" else search_summary(result)
        return completion_body(plan, [result]), summary, result.text.strip() or None

    @staticmethod
    async def _watch_disconnect(request: Request, work: asyncio.Task) -> None:
        """Cancel a non-streaming request's work as soon as its client goes away."""
        while not work.done():
            await asyncio.sleep(0.25)
            if await request.is_disconnected():
                work.cancel()
                return
