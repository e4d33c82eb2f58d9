"""What an async backend holds per event loop, closed on that loop.

An HTTP client's pooled connections, a semaphore and a lock belong to the loop they were first
used on: a kept-alive connection opened on one loop fails on another ("Event loop is closed").
A backend outlives loops (``ponder serve`` probes its upstream in ``asyncio.run`` at startup,
then serves on uvicorn's loop; a script may call ``asyncio.run`` several times), so it keeps one
of each per running loop.

What a loop holds is closed on that loop: by the backend's ``aclose`` there, else when the loop
shuts down. ``asyncio.run`` (uvicorn's loop included) finalizes the async generators still
open on a loop before closing it; each value has one, suspended until then, whose ``finally``
closes the value. Left to the garbage collector on a later loop instead, a client's own
finalizer would try to close its connections there, and log the same "Event loop is closed".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerLoop(Generic[T]):
    """One value per running event loop, made by ``factory`` on the loop's first ask and, when
    ``close`` is given, closed on that loop (:meth:`aclose_current`, or the loop's shutdown).
    Code outside any running loop shares one more value, kept under None and never closed."""

    def __init__(self, factory: Callable[[], T],
                 close: Callable[[T], Awaitable[None]] | None = None) -> None:
        self._factory = factory
        self._close = close
        self._values: dict[asyncio.AbstractEventLoop | None, T] = {}
        self._closers: dict[asyncio.AbstractEventLoop, AsyncGenerator[None, None]] = {}

    def get(self) -> T:
        """The running loop's value, made now on its first ask."""
        loop = _running_loop()
        if loop in self._values:
            return self._values[loop]
        self.drop_closed()
        value = self._values[loop] = self._factory()
        if loop is not None and self._close is not None:
            self._closers[loop] = self._closer(loop)
        return value

    async def aclose_current(self) -> None:
        """Close the running loop's value (if it has one) and forget it."""
        loop = _running_loop()
        closer = self._closers.pop(loop, None) if loop is not None else None
        if closer is not None:
            await closer.aclose()  # its finally closes the value
        self._values.pop(loop, None)
        self.drop_closed()

    def drop_closed(self) -> None:
        """Forget the values of loops that have closed (they were closed at the loop's
        shutdown, or cannot be now)."""
        for loop in [k for k in self._values if k is not None and k.is_closed()]:
            del self._values[loop]
            self._closers.pop(loop, None)

    def __len__(self) -> int:
        return len(self._values)

    def _closer(self, loop: asyncio.AbstractEventLoop) -> AsyncGenerator[None, None]:
        """An async generator, started here on the running loop (which registers it for its
        shutdown) and suspended; closing it closes the loop's value, whatever it is then."""

        async def closer() -> AsyncGenerator[None, None]:
            try:
                yield
            finally:
                value = self._values.get(loop)
                if value is not None and self._close is not None:
                    await self._close(value)

        agen = closer()
        try:
            agen.asend(None).send(None)  # runs to the yield: nothing to await before it
        except StopIteration:
            pass
        return agen


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
