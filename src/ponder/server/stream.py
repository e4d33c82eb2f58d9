"""Server-sent events for ``stream: true``: reasoning deltas while the search runs, then the
answer, then usage (when asked), then [DONE]. A client that disconnects cancels the work."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from ponder.core.context import EventSink
from ponder.server.errors import ApiError
from ponder.server.metrics import Metrics
from ponder.server.narrator import Narrator, search_summary
from ponder.server.plan import Plan
from ponder.server.replies import message_of, usage_of
from ponder.types import Result

# Runs the plan, one choice per event sink; errors arrive as ApiError.
Runner = Callable[[Sequence[EventSink]], Awaitable[list[Result]]]


async def sse_events(run: Runner, plan: Plan, metrics: Metrics, started: float,
                     view_url: str | None = None) -> AsyncIterator[bytes]:
    """Server-sent events: reasoning deltas while ``run`` searches, then the answer, then
    usage (when asked), then [DONE]. Cancelled when the client disconnects. ``view_url``: the
    traced request's live page, announced in the first chunk (``ponder.view_url``) and the
    reasoning's first line."""
    req = plan.request
    cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, str, dict[str, Any]]] = asyncio.Queue()
    narrators = [Narrator(plan.problem) for _ in range(req.n)]

    def sink_for(index: int) -> Any:
        def sink(event: str, details: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (index, event, details))
        return sink

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None,
              **extra: Any) -> bytes:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created,
                "model": req.model, "choices": [{"index": index, "delta": delta,
                                                 "logprobs": None,
                                                 "finish_reason": finish}], **extra}
        return f"data: {json.dumps(body)}\n\n".encode()

    # a pass-through that may call tools or must answer in JSON is parsed before it is sent
    meta = plan.problem.metadata
    hidden = bool(meta.get("tools") or meta.get("response_format"))
    work = asyncio.create_task(run([sink_for(i) for i in range(req.n)]))
    status = 200
    try:
        live = {"ponder": {"view_url": view_url}} if view_url else {}
        for i in range(req.n):
            yield chunk(i, {"role": "assistant", "content": ""}, **live)
        if plan.strategy is not None:
            for i in range(req.n):
                intro = f"Thinking with {plan.strategy.name}…\n"
                if view_url:
                    intro += f"Watch the search: {view_url}\n"
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
                    if text and not hidden:
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
            message, finish = message_of(plan, r)
            if plan.strategy is not None:
                summary = "\n" + search_summary(r) + "\n"
                yield chunk(i, {"reasoning_content": summary, "reasoning": summary})
            if message.get("tool_calls"):
                yield chunk(i, {"tool_calls": [{"index": k, **call} for k, call
                                               in enumerate(message["tool_calls"])]})
            elif plan.strategy is not None or hidden:
                yield chunk(i, {"content": message["content"]})
            elif narrators[i].streamed < len(r.answer or ""):
                yield chunk(i, {"content": (r.answer or "")[narrators[i].streamed:]})
            yield chunk(i, {}, finish)
        if req.stream_options is not None and req.stream_options.include_usage:
            body = {"id": cid, "object": "chat.completion.chunk", "created": created,
                    "model": req.model, "choices": [], "usage": usage_of(results)}
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
        metrics.observe(status, time.monotonic() - started if status == 200 else None)
