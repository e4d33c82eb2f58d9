"""A search's events as MCP progress notifications.

A strategy's events (:data:`ponder.core.context.EventSink`) arrive from any thread — the
llama.cpp backend reports tokens from its decoding thread — and are handed to the event loop,
where one task sends them on. What a client sees:

- ``progress``: the tokens generated so far over every call of the search, plus one for each
  call started and each sample finished, so that it grows with every notification (MCP asks
  that it increase); ``total`` is not known in advance and is left out;
- ``message``: what happened, in the words the server streams as reasoning
  (:class:`ponder.server.narrator.Narrator`): ``[chain: 8 samples]``, ``✓ chain 3/8 finished ·
  120 tokens · answer: 22 · votes so far: 22 ×2``, or ``412 tokens generated``.

Token counts alone are sent at most every :data:`TOKEN_INTERVAL` seconds; a call starting or a
sample finishing is always sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ponder.server.narrator import Narrator
from ponder.types import Problem

TOKEN_INTERVAL = 0.25
Report = Callable[[float, "float | None", "str | None"], Awaitable[None]]


class ProgressRelay:
    """An event sink (thread-safe) whose :meth:`pump` sends progress through ``report``."""

    def __init__(self, problem: Problem, report: Report) -> None:
        self.loop = asyncio.get_running_loop()
        self.report = report
        self.narrator = Narrator(problem)
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        self.tokens: dict[int, int] = {}  # call -> tokens generated so far in it
        self.steps = 0
        self.sent: list[tuple[float, str | None]] = []  # (progress, message), as sent

    def __call__(self, event: str, details: dict[str, Any]) -> None:
        if event not in ("generate", "tokens", "sample"):
            return
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (event, dict(details)))
        except RuntimeError:  # the loop has closed: nobody is listening any more
            pass

    def close(self) -> None:
        """No more events: :meth:`pump` ends once it has sent what is queued."""
        self.queue.put_nowait(None)

    @property
    def progress(self) -> int:
        return sum(self.tokens.values()) + self.steps

    async def pump(self) -> None:
        """Send what arrives until :meth:`close`; stops quietly when the client is gone."""
        last = float("-inf")
        while (item := await self.queue.get()) is not None:
            event, details = item
            if event == "tokens":
                call = int(details.get("call", 0))
                self.tokens[call] = max(self.tokens.get(call, 0), int(details.get("tokens", 0)))
                if time.monotonic() - last < TOKEN_INTERVAL:
                    continue
                message: str | None = f"{sum(self.tokens.values())} tokens generated"
            else:
                self.steps += 1
                message = self.narrator(event, details).strip() or None
            progress = float(self.progress)
            if self.sent and progress <= self.sent[-1][0]:
                continue
            last = time.monotonic()
            self.sent.append((progress, message))
            try:
                await self.report(progress, None, message)
            except Exception:  # the request is over or the client left: stop sending
                return
