"""``ponder serve``: an OpenAI-compatible reasoning endpoint.

``POST /v1/chat/completions`` runs a strategy and answers like a reasoning model: the final
answer in ``message.content``, the winning chain and an account of the search in
``message.reasoning_content`` (and ``message.reasoning``), and ``usage`` summed over every
internal call. Which reasoning runs: ``reasoning_effort: minimal`` is one chain of thought;
otherwise the strategy a model named ``ponder-<strategy>`` or the ``ponder`` object names
(default self-consistency), with the ``low``/``medium``/``high`` effort preset under the
explicit knobs (``ponder.n``, ``ponder.options``, ``temperature``...), exactly as ``ponder ask``
and the Python API build it (:mod:`ponder.runner`). A request for the underlying model with none
of these is passed through as one plain completion.

Requests with ``tools``, a ``response_format`` or several turns become chat problems
(:mod:`ponder.server.tools`, :mod:`ponder.domains.chat`): strategies vote over actions and a
winning call comes back as ``tool_calls``; a pass-through on an OpenAI-compatible backend
forwards them as written. ``POST /v1/responses`` (:mod:`ponder.server.responses`) is the same
run, asked and answered in the Responses API's words.

Requests share the backend: with the in-process llama.cpp backend their samples decode in the
same batches. At most ``max_concurrent`` run at once, ``max_queue`` more wait; beyond that, 429.
A client that disconnects cancels its search.

The server trusts no client. A request is checked in this order, each step before anything
costly: without an API key, its ``Host`` and ``Origin`` (403: the server answers its own
loopback names and its own pages, not another site's; :class:`Gate`), the API key (401), its
declared type (415 unless JSON), the body's size (413, on ``Content-Length`` up front and while
reading) and arrival time (408), capacity (429, once the body has arrived: a slow sender holds
no place in the queue), its JSON (400: nesting, number literals, NaN), its schema, then what it
asks for (:mod:`ponder.server.policy`: a client chooses a strategy, an effort and capped knobs;
models, scorers, files and URLs are the operator's), worked out in a thread (a client's JSON
schemas are bounded work, :mod:`ponder.domains.schemas`, but not the event loop's). Upstream
failures are logged in full and answered with a generic 502/504 that echoes neither the
upstream's body nor its URL. The connection-level limits (connection caps overall and per
client address, header timeout) are :mod:`ponder.server.protocol`'s.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import ipaddress
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TypeVar

import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ponder import registry
from ponder.backends.base import Backend
from ponder.backends.openai_http import OpenAIBackend, forward_chat, forward_chat_stream
from ponder.core.context import EventSink
from ponder.domains.chat import CHAT, is_chat_problem, read_reply
from ponder.domains.schemas import CHECK_SECONDS, request_budget
from ponder.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
    SandboxUnavailable,
)
from ponder.runner import build_strategy, new_context, run_strategy
from ponder.sandbox import Sandbox
from ponder.server.errors import ApiError, clip, validation_error
from ponder.server.limits import check_json_type, parse_json, read_body
from ponder.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ponder.server.metrics import Metrics
from ponder.server.narrator import search_summary
from ponder.server.plan import Plan, plan_request, roles_of
from ponder.server.policy import check_operator_caps
from ponder.server.protocol import uvicorn_config
from ponder.server.replies import completion_body
from ponder.server.responses import chat_request, read_request, response_body, response_events
from ponder.server.schemas import ChatCompletionRequest, forwarded_messages
from ponder.server.settings import (
    Limits,
    check_strategies,
    make_access,
    own_keys_only,
    prepare_scorers,
)
from ponder.server.stream import sse_events
from ponder.server.views import LiveView, ViewStore, traces_of
from ponder.types import Message, Result, SamplingParams, Usage
from ponder.view import render_page
from ponder.view.page import content_security_policy

log = logging.getLogger("ponder.server")
# the longest a request's checks (its schemas) may take, on top of their own step budget
PLAN_SECONDS = CHECK_SECONDS + 5.0
PLANNERS = 2  # threads that plan requests, for every server in the process
_planner: ThreadPoolExecutor | None = None
T = TypeVar("T")


class Ticket:
    """A request's place in the queue, given back exactly once (a stream that never starts
    gives it back through its response's background task)."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def release(self) -> None:
        if self._release is not None:
            self._release, release = None, self._release
            release()


class PonderServer:
    def __init__(self, backend: Backend, *, api_key: str | None = None,
                 max_concurrent: int = 8, max_queue: int = 64,
                 max_request_tokens: int | None = None, max_request_seconds: float = 600.0,
                 limits: Limits | None = None,
                 strategies: Mapping[str, dict[str, Any]] | None = None,
                 max_views: int = 64, view_seconds: float = 3600.0,
                 allow_origins: Sequence[str] = (), allow_hosts: Sequence[str] = (),
                 models: Mapping[str, Backend] | None = None) -> None:
        """``limits``: what one client may ask (:class:`~ponder.server.settings.Limits`);
        ``strategies``: the operator's options per strategy (checked here; ConfigError);
        ``max_views`` / ``view_seconds``: how many live pages of traced requests are kept, and
        for how long (:mod:`ponder.server.views`); ``allow_origins`` / ``allow_hosts``: the web
        origins and host names a server without a key answers besides its own
        (:class:`~ponder.server.settings.Access`; ConfigError); ``models``: the operator's
        other models by role (``strong``, ...), for the strategies that use several."""
        self.backend = backend
        self.role_models = dict(models or {})
        self.api_key = api_key
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.max_request_tokens = max_request_tokens
        self.max_request_seconds = max_request_seconds
        self.limits = limits or Limits()
        self.access = make_access(allow_origins, allow_hosts)
        self.strategies = own_keys_only(dict(strategies or {}))
        check_strategies(self.strategies)
        check_operator_caps(self.strategies, self.limits.caps)
        self.metrics = Metrics()
        self.metrics.endpoints = getattr(backend, "endpoint_stats", None)
        self.views = ViewStore(max_views, view_seconds)
        # the jail, whatever PONDER_SANDBOX says: a server never runs a client's code without it
        self.sandbox = Sandbox(isolation="jail")
        self.model_id = str(getattr(backend, "model", "") or backend.name)
        self._slots: asyncio.Semaphore | None = None
        self._prepared = False
        self._prepare_lock = threading.Lock()

    def prepare(self) -> None:
        """Build the step scorers the operator configured (a reward model loads here). Called
        before serving, and off the event loop at startup; a request never loads one."""
        with self._prepare_lock:
            if not self._prepared:
                prepare_scorers(self.strategies)
                self._prepared = True

    def uvicorn_config(self, **settings: Any) -> uvicorn.Config:
        """uvicorn's configuration serving this app under the server's limits."""
        return uvicorn_config(self.app(), self.limits, **settings)

    # -- plumbing ----------------------------------------------------------------------------

    def app(self) -> Starlette:
        routes = [
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/responses", self.responses, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/metrics", self.prometheus, methods=["GET"]),
            Route("/ui/{view_id}", self.ui_page, methods=["GET"]),
            Route("/ui/{view_id}/data", self.ui_data, methods=["GET"]),
        ]
        handlers = {HTTPException: self._http_error, Exception: self._crash}

        @asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            await asyncio.to_thread(self.prepare)
            yield

        return Starlette(routes=routes, exception_handlers=handlers,  # type: ignore[arg-type]
                         lifespan=lifespan, middleware=[Middleware(Gate, server=self)])

    def refusal(self, scope: Scope) -> ApiError | None:
        """Why a server without an API key must not answer this request (None: it may): a
        ``Host`` that is not its own on loopback (DNS rebinding), or an ``Origin`` that is not
        its own (another site's page). SDKs and curl send no ``Origin``; a browser sends the
        server's own for its pages."""
        if self.api_key:
            return None
        headers = Headers(scope=scope)
        host = headers.get("host")
        local, port = (scope.get("server") or (None, None))[:2]
        if host is not None and local is not None and is_loopback(local) \
                and not self.access.allows_host(host, local, int(port or 0)):
            shown = clip(host, 100)
            return ApiError(403, f"this server has no API key and answers only to its own "
                            f"loopback names, not Host {shown!r} (a DNS-rebinding page?); "
                            f"to allow it, start ponder serve with --allow-host "
                            f"{shown} (or set --api-key)", code="host_not_allowed")
        origin = headers.get("origin")
        if origin is not None and not self.access.allows_origin(origin, host):
            shown = clip(origin, 100)
            return ApiError(403, f"this server has no API key and answers no page of another "
                            f"origin than its own, not {shown!r}; to allow it, start "
                            f"ponder serve with --allow-origin {shown} (or set "
                            "--api-key)", code="origin_not_allowed")
        return None

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = "not_found" if exc.status_code == 404 else "method_not_allowed"
        return ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}",
                        code=code).response()

    async def _crash(self, request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s", request.url.path)
        self.metrics.observe(500)
        return ApiError(500, "internal server error", "server_error").response()

    def _authorize(self, request: Request) -> None:
        if not self.api_key:
            return
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(token.encode(), self.api_key.encode()):
            raise ApiError(401, "Incorrect or missing API key (Authorization: Bearer ...)",
                           "authentication_error", code="invalid_api_key")

    def _authorize_view(self, request: Request) -> None:
        """A page asks for the API key as the API does: a Bearer token, or (a browser, which
        cannot send one) the key as the password of Basic auth, which the browser prompts for."""
        if not self.api_key:
            return
        header = request.headers.get("authorization", "")
        token = ""
        if header.lower().startswith("bearer "):
            token = header[7:]
        elif header.lower().startswith("basic "):
            try:
                token = base64.b64decode(header[6:], validate=True).decode().partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                token = ""
        if not hmac.compare_digest(token.encode(), self.api_key.encode()):
            raise ApiError(401, "Incorrect or missing API key (Authorization: Bearer ..., or "
                           "the key as the Basic-auth password)", "authentication_error",
                           code="invalid_api_key",
                           headers={"WWW-Authenticate": 'Basic realm="ponder", charset="UTF-8"'})

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

    # -- routes ------------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": self.model_id,
                             "in_flight": self.metrics.in_flight,
                             "queued": self.metrics.queued})

    async def prometheus(self, request: Request) -> Response:
        try:
            self._authorize(request)
        except ApiError as exc:
            return exc.response()
        return PlainTextResponse(self.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    async def models(self, request: Request) -> Response:
        try:
            self._authorize(request)
        except ApiError as exc:
            return exc.response()
        data = [{"id": f"ponder-{name}", "object": "model", "created": 0, "owned_by": "ponder",
                 "description": cls.description} for name, cls in registry.strategies
                if set(roles_of(build_strategy(name, **self.strategies.get(name, {}))))
                <= set(self.role_models)]
        data.append({"id": self.model_id, "object": "model", "created": 0,
                     "owned_by": self.backend.name})
        return JSONResponse({"object": "list", "data": data})

    async def _live(self, request: Request) -> LiveView:
        self._authorize_view(request)
        view = self.views.get(str(request.path_params.get("view_id", "")))
        if view is None:  # unknown, expired, or not an id: the same answer
            raise ApiError(404, "no such page: it may have expired", code="not_found")
        return view

    async def ui_page(self, request: Request) -> Response:
        """A traced request's page: live while it runs (the page polls ``data``)."""
        try:
            view = await self._live(request)
        except ApiError as exc:
            return exc.response()
        live = {"data": f"{request.url.path}/data", "interval": 1000}
        page = render_page(view.views(), title=f"{view.strategy} · live",
                           live=live if view.status == "running" else None)
        return HTMLResponse(page, headers=self._page_headers(live=view.status == "running"))

    async def ui_data(self, request: Request) -> Response:
        """What the live page redraws from."""
        try:
            view = await self._live(request)
        except ApiError as exc:
            return exc.response()
        live = {"data": request.url.path, "interval": 1000}
        body = {"views": view.views(), "selected": 0, "title": f"{view.strategy} · live",
                "live": live, "generator": "ponder serve · live"}
        return JSONResponse(body, headers={"Cache-Control": "no-store",
                                           "X-Content-Type-Options": "nosniff"})

    @staticmethod
    def _page_headers(live: bool) -> dict[str, str]:
        return {"Content-Security-Policy": content_security_policy(live=live),
                "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}

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

    def _forwards(self, plan: Plan) -> bool:
        """A pass-through with tools, a JSON format or tool turns goes to an OpenAI-compatible
        backend as the client wrote it (its server calls tools natively)."""
        req = plan.request
        return (plan.strategy is None and isinstance(self.backend, OpenAIBackend)
                and bool(req.tools or req.response_format or req.tool_choice
                         or any(m.role == "tool" or m.tool_calls for m in req.messages)))

    async def _forward(self, request: Request, plan: Plan, ticket: Ticket,
                       started: float) -> Response:
        """The request, as the client wrote it, to the backend's server; its reply (or its
        stream, chunk by chunk) back with the model the client named."""
        assert isinstance(self.backend, OpenAIBackend)
        backend = self.backend
        req = plan.request
        body = req.model_dump(mode="json", exclude_none=True, by_alias=True,
                              exclude={"model", "ponder", "stream"})
        body["messages"] = forwarded_messages(body["messages"])
        slots = await self._slot()

        def named(reply: dict[str, Any]) -> dict[str, Any]:
            reply["model"] = req.model
            usage = reply.get("usage") or {}
            self.metrics.add_tokens(usage.get("prompt_tokens") or 0,
                                    usage.get("completion_tokens") or 0)
            return reply

        if not req.stream:
            try:
                async with slots:
                    ticket.release()
                    reply = await forward_chat(backend, body)
            except BackendError as exc:
                error = upstream_error(exc)
                self.metrics.observe(error.status)
                return error.response()
            finally:
                ticket.release()
            self.metrics.observe(200, time.monotonic() - started)
            return JSONResponse(named(reply))

        async def events() -> AsyncIterator[bytes]:
            status = 200
            try:
                async with slots:
                    ticket.release()
                    async for chunk in forward_chat_stream(backend, body):
                        yield f"data: {json.dumps(named(chunk))}\n\n".encode()
            except BackendError as exc:
                error = upstream_error(exc)
                status = error.status
                yield f"data: {json.dumps(error.body())}\n\n".encode()
            finally:
                ticket.release()
                self.metrics.observe(status, time.monotonic() - started)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"},
                                 background=BackgroundTask(ticket.release))

    @staticmethod
    async def _watch_disconnect(request: Request, work: asyncio.Task) -> None:
        """Cancel a non-streaming request's work as soon as its client goes away."""
        while not work.done():
            await asyncio.sleep(0.25)
            if await request.is_disconnected():
                work.cancel()
                return

    def _parse(self, raw: bytes) -> dict[str, Any]:
        """The body's JSON object, parsed within the limits."""
        limits = self.limits
        data = parse_json(raw, limits.max_json_depth, limits.max_number_length)
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object", code="invalid_json")
        return data

    async def _plan(self, raw: bytes) -> Plan:
        """Parse and validate the body, within the limits; what it will run."""
        data = self._parse(raw)
        try:
            req = ChatCompletionRequest.model_validate(data)
        except ValidationError as exc:
            raise validation_error(exc) from None
        return await self._plan_for(req)

    async def _plan_for(self, req: ChatCompletionRequest) -> Plan:
        """What a validated request will run, worked out in a thread: checking a client's JSON
        schemas is bounded work (:mod:`ponder.domains.schemas`), but it is work, and the event
        loop serves every other client meanwhile."""
        limits = self.limits
        planning = asyncio.get_running_loop().run_in_executor(
            planner(), partial(plan_request, req, self.model_id, self.max_request_tokens,
                               self.max_request_seconds, strategies=self.strategies,
                               caps=limits.caps, roles=tuple(self.role_models)))
        try:
            plan = await asyncio.wait_for(planning, PLAN_SECONDS)
        except asyncio.TimeoutError:  # not TimeoutError before Python 3.11
            raise ApiError(503, f"the request could not be checked within {PLAN_SECONDS:g} s; "
                           "retry shortly", "api_error", code="server_busy") from None
        if not self._prepared:  # not started through the lifespan: build scorers off the loop
            await asyncio.to_thread(self.prepare)
        return plan

    # -- running -----------------------------------------------------------------------------

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
                                        sandbox=self.sandbox, trace=trace, models=self.role_models)
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
        ctx = new_context(self.backend, seed=seed, events=sink, stream_text=sink is not None)
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


class Gate:
    """ASGI middleware: a request the server refuses (:meth:`PonderServer.refusal`) is answered
    403 before it reaches a route."""

    def __init__(self, app: ASGIApp, server: PonderServer) -> None:
        self.app, self.server = app, server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self.server.refusal(scope)
            if refusal is not None:
                self.server.metrics.observe(refusal.status)
                await refusal.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


def planner() -> ThreadPoolExecutor:
    """The threads requests are planned in (their schemas checked): few, so that however many
    clients send costly schemas at once, the event loop competes for the GIL with at most
    :data:`PLANNERS` of them; a request that waits past PLAN_SECONDS is dropped unplanned."""
    global _planner
    if _planner is None:
        _planner = ThreadPoolExecutor(PLANNERS, thread_name_prefix="ponder-plan")
    return _planner


def is_loopback(address: str) -> bool:
    """Whether an IP address is a loopback one (an IPv4-mapped IPv6 address counts as its
    IPv4 address); a name is not."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    ip = getattr(ip, "ipv4_mapped", None) or ip
    return ip.is_loopback




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


def create_app(backend: Backend, **settings: Any) -> Starlette:
    """The ASGI app serving ``backend``; settings as :class:`PonderServer`."""
    return PonderServer(backend, **settings).app()
