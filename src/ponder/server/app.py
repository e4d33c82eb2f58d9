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
import logging
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    Response,
)
from starlette.routing import Route

from ponder import registry
from ponder.backends.base import Backend
from ponder.domains.schemas import CHECK_SECONDS
from ponder.runner import build_strategy
from ponder.sandbox import Sandbox
from ponder.server.access import AccessChecks, Gate
from ponder.server.errors import ApiError, validation_error
from ponder.server.forward import Forwarding
from ponder.server.limits import parse_json
from ponder.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ponder.server.metrics import Metrics
from ponder.server.pages import Pages
from ponder.server.plan import Plan, plan_request, roles_of
from ponder.server.policy import check_operator_caps
from ponder.server.protocol import uvicorn_config
from ponder.server.running import Running
from ponder.server.schemas import ChatCompletionRequest
from ponder.server.settings import (
    Limits,
    check_strategies,
    make_access,
    own_keys_only,
    prepare_scorers,
)
from ponder.server.surfaces import Surfaces
from ponder.server.views import ViewStore

log = logging.getLogger("ponder.server")
# the longest a request's checks (its schemas) may take, on top of their own step budget
PLAN_SECONDS = CHECK_SECONDS + 5.0
PLANNERS = 2  # threads that plan requests, for every server in the process
_planner: ThreadPoolExecutor | None = None


class PonderServer(AccessChecks, Pages, Running, Forwarding, Surfaces):
    """The server: its settings and state, its routes and the reading and planning of a
    request; who may ask (:mod:`~ponder.server.access`), the pages
    (:mod:`~ponder.server.pages`), the API surfaces (:mod:`~ponder.server.surfaces`), running
    (:mod:`~ponder.server.running`) and the proxy (:mod:`~ponder.server.forward`) are its
    parts."""

    def __init__(self, backend: Backend, *, api_key: str | None = None,
                 max_concurrent: int = 8, max_queue: int = 64,
                 max_request_tokens: int | None = None, max_request_seconds: float = 600.0,
                 limits: Limits | None = None,
                 strategies: Mapping[str, dict[str, Any]] | None = None,
                 max_views: int = 64, view_seconds: float = 3600.0,
                 allow_origins: Sequence[str] = (), allow_hosts: Sequence[str] = (),
                 models: Mapping[str, Backend] | None = None, grammar: bool = True) -> None:
        """``limits``: what one client may ask (:class:`~ponder.server.settings.Limits`);
        ``strategies``: the operator's options per strategy (checked here; ConfigError);
        ``max_views`` / ``view_seconds``: how many live pages of traced requests are kept, and
        for how long (:mod:`ponder.server.views`); ``allow_origins`` / ``allow_hosts``: the web
        origins and host names a server without a key answers besides its own
        (:class:`~ponder.server.settings.Access`; ConfigError); ``models``: the operator's
        other models by role (``strong``, ...), for the strategies that use several;
        ``grammar``: tool calls and JSON answers decode under their schemas' grammar where the
        backend can (:mod:`ponder.domains.grammar`)."""
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
        self.grammar = grammar
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

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = "not_found" if exc.status_code == 404 else "method_not_allowed"
        return ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}",
                        code=code).response()

    async def _crash(self, request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s", request.url.path)
        self.metrics.observe(500)
        return ApiError(500, "internal server error", "server_error").response()

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


def planner() -> ThreadPoolExecutor:
    """The threads requests are planned in (their schemas checked): few, so that however many
    clients send costly schemas at once, the event loop competes for the GIL with at most
    :data:`PLANNERS` of them; a request that waits past PLAN_SECONDS is dropped unplanned."""
    global _planner
    if _planner is None:
        _planner = ThreadPoolExecutor(PLANNERS, thread_name_prefix="ponder-plan")
    return _planner




def create_app(backend: Backend, **settings: Any) -> Starlette:
    """The ASGI app serving ``backend``; settings as :class:`PonderServer`."""
    return PonderServer(backend, **settings).app()
