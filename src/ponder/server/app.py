"""``ponder serve``: an OpenAI-compatible reasoning endpoint.

``POST /v1/chat/completions`` runs a strategy and answers like a reasoning model: the final
answer in ``message.content``, the winning chain and an account of the search in
``message.reasoning_content`` (and ``message.reasoning``), and ``usage`` summed over every
internal call. Which reasoning runs, in order of precedence: ``reasoning_effort`` (``minimal`` =
one chain of thought; ``low``/``medium``/``high`` = the strategy's effort preset, which wins over
the knobs below), a model named ``ponder-<strategy>``, then the ``ponder`` object (strategy, n,
budget, verifier, options). A request for the underlying model with none of these is passed
through as one plain completion.

Requests share the backend: with the in-process llama.cpp backend their samples decode in the
same batches. At most ``max_concurrent`` run at once, ``max_queue`` more wait; beyond that, 429.
A client that disconnects cancels its search.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from ponder import registry
from ponder.api import make_verifier
from ponder.backends.base import Backend
from ponder.budget import Budget
from ponder.effort import build_strategy
from ponder.errors import BackendError, BackendTimeout, BackendUnavailable, ConfigError
from ponder.server.metrics import Metrics
from ponder.server.narrator import Narrator, search_summary
from ponder.server.schemas import ChatCompletionRequest, ChatMessage
from ponder.strategies.base import Context
from ponder.types import Message, Problem, Result, SamplingParams, Usage

log = logging.getLogger("ponder.server")


class ApiError(Exception):
    """An error the client gets as OpenAI's error object."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = (
            status, message, type_, param, code)
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


@dataclass
class Plan:
    """What one request will run."""

    problem: Problem
    strategy: Any | None  # None: pass-through to the underlying model
    budget_tokens: int | None
    budget_seconds: float
    verifier: str | None
    seed: int | None
    request: ChatCompletionRequest


def _validation_error(exc: ValidationError) -> ApiError:
    err = exc.errors()[0]
    param = ".".join(str(p) for p in err["loc"]) or None
    if err["type"] == "extra_forbidden":
        return ApiError(400, f"Unrecognized request argument supplied: {param}", param=param,
                        code="unknown_parameter")
    message = err["msg"].removeprefix("Value error, ")
    return ApiError(400, f"Invalid value for '{param}': {message}", param=param,
                    code="invalid_value")


def _problem(messages: Sequence[ChatMessage]) -> Problem:
    """The last user message is the question; system/developer messages the system prompt;
    earlier turns are given as context."""
    system = "\n\n".join(m.text() for m in messages if m.role in ("system", "developer"))
    turns = [m for m in messages if m.role not in ("system", "developer")]
    last = max(i for i, m in enumerate(turns) if m.role == "user" and m.text().strip())
    question = turns[last].text()
    if last > 0:
        history = "\n".join(f"{m.role}: {m.text()}" for m in turns[:last])
        question = f"Earlier in this conversation:\n{history}\n\nNow answer:\n{question}"
    return Problem(question, system=system or None)


class PonderServer:
    def __init__(self, backend: Backend, *, api_key: str | None = None,
                 max_concurrent: int = 8, max_queue: int = 64,
                 max_request_tokens: int | None = None, max_request_seconds: float = 600.0
                 ) -> None:
        self.backend = backend
        self.api_key = api_key
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.max_request_tokens = max_request_tokens
        self.max_request_seconds = max_request_seconds
        self.metrics = Metrics()
        self.model_id = str(getattr(backend, "model", "") or backend.name)
        self._slots: asyncio.Semaphore | None = None

    # -- plumbing ----------------------------------------------------------------------------

    def app(self) -> Starlette:
        routes = [
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/metrics", self.prometheus, methods=["GET"]),
        ]
        handlers = {HTTPException: self._http_error, Exception: self._crash}
        return Starlette(routes=routes, exception_handlers=handlers)  # type: ignore[arg-type]

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

    def _admit(self) -> None:
        if self.metrics.in_flight + self.metrics.queued >= self.max_concurrent + self.max_queue:
            raise ApiError(429, "the server is at capacity; retry shortly", "rate_limit_error",
                           code="queue_full", headers={"Retry-After": "1"})
        self.metrics.queued += 1

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
        return PlainTextResponse(self.metrics.render(),
                                 media_type="text/plain; version=0.0.4")

    async def models(self, request: Request) -> Response:
        try:
            self._authorize(request)
        except ApiError as exc:
            return exc.response()
        data = [{"id": f"ponder-{name}", "object": "model", "created": 0, "owned_by": "ponder",
                 "description": cls.description} for name, cls in registry.strategies]
        data.append({"id": self.model_id, "object": "model", "created": 0,
                     "owned_by": self.backend.name})
        return JSONResponse({"object": "list", "data": data})

    async def chat(self, request: Request) -> Response:
        started = time.monotonic()
        try:
            self._authorize(request)
            plan = self._plan(await self._parse(request))
            self._admit()
        except ApiError as exc:
            self.metrics.observe(exc.status)
            return exc.response()
        if plan.request.stream:
            return StreamingResponse(self._stream(plan, started), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        work = asyncio.create_task(self._admitted(plan, [None] * plan.request.n))
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
        return JSONResponse(self._completion_body(plan, results))

    @staticmethod
    async def _watch_disconnect(request: Request, work: asyncio.Task) -> None:
        """Cancel a non-streaming request's work as soon as its client goes away."""
        while not work.done():
            await asyncio.sleep(0.25)
            if await request.is_disconnected():
                work.cancel()
                return

    async def _parse(self, request: Request) -> ChatCompletionRequest:
        body = await request.body()
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the body is not valid JSON: {exc}", code="invalid_json"
                           ) from None
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object", code="invalid_json")
        try:
            return ChatCompletionRequest.model_validate(data)
        except ValidationError as exc:
            raise _validation_error(exc) from None

    def _plan(self, req: ChatCompletionRequest) -> Plan:
        options = req.ponder
        name = None
        if req.model.startswith("ponder-"):
            name = req.model.removeprefix("ponder-")
            param = "model"
        elif req.model not in (self.model_id, "ponder"):
            raise ApiError(404, f"The model '{req.model}' does not exist; see GET /v1/models",
                           param="model", code="model_not_found")
        if name is None and options is not None and options.strategy:
            name, param = options.strategy, "ponder.strategy"
        if name is not None and name not in registry.strategies.names():
            valid = ", ".join(registry.strategies.names())
            raise ApiError(400, f"unknown strategy {name!r}; valid: {valid}", param=param,
                           code="unknown_strategy")
        effort = req.reasoning_effort
        if effort == "minimal":
            name = "cot"
        problem = _problem(req.messages)
        budget_tokens = min((t for t in (req.max_completion_tokens,
                                         options.budget if options else None,
                                         self.max_request_tokens) if t is not None), default=None)
        seconds = min(self.max_request_seconds, (options.max_seconds if options and
                                                  options.max_seconds else float("inf")))
        if name is None and effort is None and options is None:
            return Plan(problem, None, budget_tokens, seconds, None, req.seed, req)
        name = name or "self-consistency"
        knobs: dict[str, Any] = dict(options.options) if options else {}
        if options and options.n is not None:
            knobs["n"] = options.n
        for key in ("temperature", "top_p", "max_tokens"):
            if getattr(req, key) is not None:
                knobs[key] = getattr(req, key)
        if effort in ("low", "medium", "high"):
            knobs.update(registry.strategies.get(name).effort_presets.get(effort, {}))
        verifier = options.verifier if options else None
        if verifier is not None and verifier not in registry.verifiers.names():
            raise ApiError(400, f"unknown verifier {verifier!r}; valid: "
                           f"{', '.join(registry.verifiers.names())}", param="ponder.verifier",
                           code="unknown_verifier")
        try:
            strategy = build_strategy(name, **knobs)
        except ConfigError as exc:
            raise ApiError(400, str(exc), param="ponder", code="invalid_value") from None
        return Plan(problem, strategy, budget_tokens, seconds, verifier, req.seed, req)

    # -- running -----------------------------------------------------------------------------

    async def _admitted(self, plan: Plan, sinks: Sequence[Any]) -> list[Result]:
        """Wait for a slot, then run the plan once per choice; errors become ApiErrors."""
        slots = await self._slot()
        waiting = True
        try:
            async with slots:
                self.metrics.queued -= 1
                waiting = False
                self.metrics.in_flight += 1
                try:
                    return await asyncio.wait_for(
                        asyncio.gather(*(self._run(plan, i, sink)
                                         for i, sink in enumerate(sinks))),
                        plan.budget_seconds + 5)
                finally:
                    self.metrics.in_flight -= 1
        except TimeoutError:
            raise ApiError(504, f"the request exceeded its time limit of "
                           f"{plan.budget_seconds:g} s", "api_error",
                           code="request_timeout") from None
        except BackendTimeout as exc:
            raise ApiError(504, str(exc), "api_error", code="upstream_timeout") from None
        except BackendUnavailable as exc:
            raise ApiError(502, str(exc), "api_error", code="upstream_unavailable") from None
        except BackendError as exc:
            raise ApiError(502, str(exc), "api_error", code="upstream_error") from None
        except ConfigError as exc:
            raise ApiError(400, str(exc), code="invalid_value") from None
        finally:
            if waiting:
                self.metrics.queued -= 1

    async def _run(self, plan: Plan, index: int, sink: Any) -> Result:
        seed = None if plan.seed is None else plan.seed + index
        budget = Budget(max_tokens=plan.budget_tokens, max_seconds=plan.budget_seconds)
        if plan.strategy is None:
            return await self._pass_through(plan, seed, sink)
        ctx = Context(backend=self.backend, budget=budget, seed=seed, events=sink,
                      verifier=make_verifier(plan.verifier, plan.strategy, plan.problem),
                      stream_text=sink is not None)
        result = await plan.strategy.run(plan.problem, ctx)
        u = result.usage
        self.metrics.add_tokens(u.prompt_tokens, u.completion_tokens)
        return result

    async def _pass_through(self, plan: Plan, seed: int | None, sink: Any) -> Result:
        req = plan.request
        messages = tuple(Message("system" if m.role == "developer" else
                                 ("user" if m.role == "tool" else m.role), m.text())
                         for m in req.messages)
        stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
        params = SamplingParams(
            temperature=0.7 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            max_tokens=req.max_tokens or req.max_completion_tokens or 1024, stop=stop, seed=seed)
        ctx = Context(backend=self.backend, seed=seed, events=sink, stream_text=sink is not None)
        started = time.monotonic()
        [traced] = await ctx.sample(messages, params, label="completion")
        c = traced.completion
        self.metrics.add_tokens(c.usage.prompt_tokens, c.usage.completion_tokens)
        return Result(answer=c.text, text=c.reasoning or "", candidates=(),
                      usage=Usage(c.usage.prompt_tokens, c.usage.completion_tokens, 1,
                                  time.monotonic() - started),
                      trace=ctx.trace, strategy="pass-through",
                      model=self.model_id,
                      stop_reason="budget" if c.finish_reason == "length" else "done")

    # -- responses ---------------------------------------------------------------------------

    @staticmethod
    def _content(result: Result) -> str:
        if result.strategy == "pass-through":
            return result.answer or ""
        return result.answer if result.answer is not None else result.text

    @staticmethod
    def _reasoning(result: Result) -> str | None:
        if result.strategy == "pass-through":
            return result.text or None
        return f"{result.text.strip()}\n\n{search_summary(result)}".strip()

    @staticmethod
    def _usage(results: Sequence[Result]) -> dict[str, Any]:
        prompt = sum(r.usage.prompt_tokens for r in results)
        completion = sum(r.usage.completion_tokens for r in results)
        reasoning = sum(r.usage.completion_tokens for r in results
                        if r.strategy != "pass-through")
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "completion_tokens_details": {"reasoning_tokens": reasoning}}

    def _completion_body(self, plan: Plan, results: Sequence[Result]) -> dict[str, Any]:
        choices = []
        for i, r in enumerate(results):
            message: dict[str, Any] = {"role": "assistant", "content": self._content(r)}
            reasoning = self._reasoning(r)
            if reasoning:
                message["reasoning_content"] = message["reasoning"] = reasoning
            choices.append({"index": i, "message": message, "logprobs": None,
                            "finish_reason": "length" if r.stop_reason == "budget" else "stop"})
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
            "created": int(time.time()), "model": plan.request.model,
            "choices": choices, "usage": self._usage(results),
            "ponder": [self._details(r, trace=bool(plan.request.ponder and
                                                   plan.request.ponder.trace))
                       for r in results],
        }

    @staticmethod
    def _details(result: Result, trace: bool = False) -> dict[str, Any]:
        extra = {"trace": result.trace.to_dict()} if trace and result.trace is not None else {}
        return {**extra, "strategy": result.strategy, "config": dict(result.config),
                "stop_reason": result.stop_reason, "calls": result.usage.calls,
                "seconds": round(result.usage.seconds, 3),
                "candidates": [{"answer": c.answer, "votes": c.votes, "score": c.score,
                                "completion_tokens": c.usage.completion_tokens}
                               for c in result.candidates]}

    async def _stream(self, plan: Plan, started: float) -> AsyncIterator[bytes]:
        """Server-sent events: reasoning deltas while the search runs, then the answer, then
        usage (when asked), then [DONE]. Cancelled when the client disconnects."""
        req = plan.request
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[int, str, dict[str, Any]]] = asyncio.Queue()
        narrators = [Narrator(plan.problem) for _ in range(req.n)]

        def sink_for(index: int) -> Any:
            def sink(event: str, details: dict[str, Any]) -> None:
                loop.call_soon_threadsafe(queue.put_nowait, (index, event, details))
            return sink

        def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
            body = {"id": cid, "object": "chat.completion.chunk", "created": created,
                    "model": req.model, "choices": [{"index": index, "delta": delta,
                                                     "logprobs": None,
                                                     "finish_reason": finish}]}
            return f"data: {json.dumps(body)}\n\n".encode()

        work = asyncio.create_task(self._admitted(plan, [sink_for(i) for i in range(req.n)]))
        status = 200
        try:
            for i in range(req.n):
                yield chunk(i, {"role": "assistant", "content": ""})
            if plan.strategy is not None:
                for i in range(req.n):
                    intro = f"Thinking with {plan.strategy.name}…\n"
                    yield chunk(i, {"reasoning_content": intro, "reasoning": intro})
            getter: asyncio.Task | None = None
            while True:
                getter = getter or asyncio.create_task(queue.get())
                done, _ = await asyncio.wait({getter, work}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    index, event, details = getter.result()
                    getter = None
                    if plan.strategy is None:
                        text = narrators[index](event, details) if event == "text" else ""
                        if text:
                            yield chunk(index, {"content": text})
                        continue
                    text = narrators[index](event, details)
                    if text:
                        yield chunk(index, {"reasoning_content": text, "reasoning": text})
                elif work in done:
                    if getter is not None and not queue.empty():
                        continue  # drain what the search said before it finished
                    if getter is not None:
                        getter.cancel()
                    break
            try:
                results = work.result()
            except ApiError as exc:
                status = exc.status
                yield f"data: {json.dumps(exc.body())}\n\n".encode()
                yield b"data: [DONE]\n\n"
                return
            for i, r in enumerate(results):
                if plan.strategy is not None:
                    summary = "\n" + search_summary(r) + "\n"
                    yield chunk(i, {"reasoning_content": summary, "reasoning": summary})
                    yield chunk(i, {"content": self._content(r)})
                elif narrators[i].streamed < len(r.answer or ""):
                    yield chunk(i, {"content": (r.answer or "")[narrators[i].streamed:]})
                yield chunk(i, {}, "length" if r.stop_reason == "budget" else "stop")
            if req.stream_options is not None and req.stream_options.include_usage:
                body = {"id": cid, "object": "chat.completion.chunk", "created": created,
                        "model": req.model, "choices": [], "usage": self._usage(results)}
                yield f"data: {json.dumps(body)}\n\n".encode()
            yield b"data: [DONE]\n\n"
        except (asyncio.CancelledError, GeneratorExit):
            status = 499  # the client went away: stop its work now
            raise
        finally:
            if not work.done():
                work.cancel()
                try:
                    await work
                except (asyncio.CancelledError, Exception):  # noqa: BLE001 - already reported
                    pass
            self.metrics.observe(status, time.monotonic() - started if status == 200 else None)


def create_app(backend: Backend, **settings: Any) -> Starlette:
    """The ASGI app serving ``backend``; settings as :class:`PonderServer`."""
    return PonderServer(backend, **settings).app()
