"""The pass-through proxy: a request for the underlying model with tools, a JSON format or
tool turns goes to an OpenAI-compatible backend as the client wrote it (its server calls tools
natively), and its reply (or its stream, chunk by chunk) comes back under the model the client
named."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ponder.backends.base import Backend
from ponder.backends.openai_http import OpenAIBackend, forward_chat, forward_chat_stream
from ponder.errors import BackendError
from ponder.server.metrics import Metrics
from ponder.server.plan import Plan
from ponder.server.running import Ticket, upstream_error
from ponder.server.schemas import forwarded_messages


class Forwarding:
    """The proxy of :class:`~ponder.server.app.PonderServer`."""

    backend: Backend
    metrics: Metrics

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
