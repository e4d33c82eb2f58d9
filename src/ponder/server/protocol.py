"""The HTTP connection, guarded: what uvicorn's h11 protocol does, plus the limits a server open to
the network needs and uvicorn does not give.

- **A connection cap.** Past ``max_connections`` open connections a new one gets 503 at once
  and is closed (uvicorn's ``limit_concurrency`` only answers once a request has arrived, so
  idle connections would still pile up).
- **A cap per client.** Past ``max_connections_per_client`` open connections from one client
  address (:func:`client_key`: an IPv6 client's /64 counts as one) a new one from it gets 503
  the same way, so a client holding connections open (half-sent heads, slow bodies) fills its
  own share, not the server's. Every process on this host is one client (127.0.0.1).
- **A header timeout.** A client has ``header_timeout`` seconds to send the request line and
  headers, from the moment it connects (or sends the first byte of a later request on a
  kept-alive connection); then it gets 408 and is closed. uvicorn times out only idle kept-alive
  connections, so a client dribbling its headers could hold a connection forever.
- **A lingering close.** When the app answers before the request body ended (413 for a body
  over the limit, 408 for one too slow, 401...), the connection is half-closed after the answer
  and whatever the client still sends is read and dropped for up to ``LINGER_SECONDS``, then it
  is closed: the client reads the answer instead of a reset, and nothing it sends is kept.
- **JSON errors.** A malformed request or one whose headers are over ``max_header_bytes`` gets
  OpenAI's error object (400 / 431), not uvicorn's plain text.

The body timeout is the app's (:func:`ponder.server.limits.read_body`): it reads the body.

uvicorn internals this relies on (``uvicorn.protocols.http.h11_impl.H11Protocol``, checked on
uvicorn 0.55; pyproject pins ``uvicorn<0.56`` until the tests pass on a newer one): the
methods it overrides (``connection_made``, ``connection_lost``, ``data_received``,
``on_response_complete``, ``send_400_response``, ``eof_received``) and calls
(``_unset_keepalive_if_required``), and the attributes ``conn`` (the ``h11.Connection``,
``their_state`` and ``trailing_data``), ``connections`` (the server's set of open protocols),
``server_state.total_requests``, ``client``, ``transport``, ``loop`` and ``logger``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ponder.server.settings import Limits

LINGER_SECONDS = 5.0
_REASONS = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large",
            503: "Service Unavailable"}


def error_bytes(status: int, message: str, code: str, type_: str = "invalid_request_error",
                extra: tuple[str, ...] = ()) -> bytes:
    """A whole HTTP/1.1 response with OpenAI's error object, closing the connection."""
    body = json.dumps({"error": {"message": message, "type": type_, "param": None,
                                 "code": code}}).encode()
    head = [f"HTTP/1.1 {status} {_REASONS[status]}", "content-type: application/json",
            f"content-length: {len(body)}", "connection: close", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a connection cap, a header timeout and lingering close."""

    limits: ClassVar[Limits] = Limits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._lingering = False
        self._head_bytes = 0
        self._head_tail = b""
        self._client_key: str | None = None

    # -- connection --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limits = self.limits
        if len(self.connections) > limits.max_connections:
            self.logger.warning("refused a connection: %d open (the limit is %d)",
                                len(self.connections) - 1, limits.max_connections)
            self._refuse(error_bytes(
                503, f"the server has {limits.max_connections} connections open, its "
                "limit; retry shortly", "too_many_connections", "rate_limit_error",
                ("retry-after: 1",)), linger=1.0)
            return
        self._client_key = client_key(self.client[0] if self.client else None)
        mine = sum(1 for c in self.connections
                   if getattr(c, "_client_key", None) == self._client_key)
        if self._client_key is not None and mine > limits.max_connections_per_client:
            self.logger.warning("refused a connection from %s: %d open from it (the limit is "
                                "%d)", self._client_key, mine - 1,
                                limits.max_connections_per_client)
            self._refuse(error_bytes(
                503, f"this client address has {limits.max_connections_per_client} connections "
                "open, its limit; close some or retry shortly", "too_many_connections",
                "rate_limit_error", ("retry-after: 1",)), linger=1.0)
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._linger_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the answer is sent: what the client still sends is dropped
        if self.conn.their_state is h11.IDLE and self._head_too_large(data):
            self._refuse(error_bytes(431, f"the request line and headers are over "
                                     f"{self.limits.max_header_bytes} bytes",
                                     "headers_too_large"), linger=1.0)
            return
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:
            self._arm_head_timer()
        else:
            self._cancel_head_timer()
            self._head_bytes, self._head_tail = 0, b""

    def _head_too_large(self, data: bytes) -> bool:
        """Whether the request head, counted as it arrives, is over ``max_header_bytes`` (h11
        checks only a head that is still incomplete: one that arrives whole in a single read
        could be any size)."""
        seen = self._head_tail + data
        end = seen.find(b"\r\n\r\n")
        size = self._head_bytes + (end + 4 - len(self._head_tail) if end >= 0 else len(data))
        self._head_bytes += len(data)
        self._head_tail = seen[-3:]
        return size > self.limits.max_header_bytes

    def on_response_complete(self) -> None:
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            # answered before the body ended (413, 408...): never read the rest
            self.server_state.total_requests += 1
            self._linger(LINGER_SECONDS)
            return
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        buffered = len(self.conn.trailing_data[0])
        if buffered > self.limits.max_header_bytes:
            response = error_bytes(431, f"the request line and headers are over "
                                   f"{self.limits.max_header_bytes} bytes",
                                   "headers_too_large")
        else:
            response = error_bytes(400, "invalid HTTP request", "invalid_http")
        self._refuse(response, linger=1.0)

    # -- helpers -----------------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        if self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.limits.header_timeout,
                                                    self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self._head_bytes == 0:
            self.transport.close()  # connected and never said anything
            return
        self.logger.info("closed a connection that sent no request head in %g s",
                         self.limits.header_timeout)
        self._refuse(error_bytes(408, f"the request line and headers did not arrive within "
                                 f"{self.limits.header_timeout:g} s", "request_timeout"),
                     linger=1.0)

    def _refuse(self, response: bytes, linger: float) -> None:
        """Write ``response`` outside h11 and close the connection, lingering."""
        self._cancel_head_timer()
        self.connections.discard(self)
        self.transport.write(response)
        self._linger(linger)

    def _linger(self, seconds: float) -> None:
        """Half-close, drop what still arrives, close after ``seconds`` (or the client's EOF)."""
        self._lingering = True
        self._cancel_head_timer()
        self._unset_keepalive_if_required()
        try:
            if self.transport.can_write_eof():
                self.transport.write_eof()
        except OSError:  # pragma: no cover - the peer is gone already
            self.transport.close()
            return
        self.transport.resume_reading()
        self._linger_timer = self.loop.call_later(seconds, self.transport.close)

    def eof_received(self) -> bool | None:
        if self._lingering:
            self.transport.close()
        return None


def client_key(address: str | None) -> str | None:
    """What counts as one client for the per-client cap: its IP address, an IPv6 client's /64
    (one host usually holds a whole /64), an IPv4-mapped address as the IPv4 one; None when the
    peer has no IP address (a Unix socket)."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        if not ip.is_loopback:
            return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def protocol_for(limits: Limits) -> type[GuardedH11Protocol]:
    """The protocol class that enforces ``limits``."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})


def uvicorn_config(app: Any, limits: Limits, **settings: Any) -> uvicorn.Config:
    """uvicorn's configuration for ``app`` under ``limits`` (``settings``: host, port,
    log_level...): the guarded h11 protocol, no WebSockets, the keep-alive timeout and the
    header size limit."""
    return uvicorn.Config(app, http=protocol_for(limits), ws="none", lifespan="on",
                          timeout_keep_alive=limits.keep_alive_timeout,  # type: ignore[arg-type]
                          h11_max_incomplete_event_size=limits.max_header_bytes, **settings)
