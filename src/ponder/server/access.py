"""Who may ask this server: the API key (a Bearer token; a page's Basic-auth password), and,
for a server without one, the ``Host`` and ``Origin`` of each request (:class:`Gate`, ASGI
middleware that answers 403 before any route)."""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ponder.server.errors import ApiError, clip
from ponder.server.metrics import Metrics
from ponder.server.settings import Access


class AccessChecks:
    """The access checks of :class:`~ponder.server.app.PonderServer`."""

    api_key: str | None
    access: Access
    metrics: Metrics

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


class Gate:
    """ASGI middleware: a request the server refuses (:meth:`PonderServer.refusal`) is answered
    403 before it reaches a route."""

    def __init__(self, app: ASGIApp, server: AccessChecks) -> None:
        self.app, self.server = app, server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self.server.refusal(scope)
            if refusal is not None:
                self.server.metrics.observe(refusal.status)
                await refusal.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


def is_loopback(address: str) -> bool:
    """Whether an IP address is a loopback one (an IPv4-mapped IPv6 address counts as its
    IPv4 address); a name is not."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    ip = getattr(ip, "ipv4_mapped", None) or ip
    return ip.is_loopback
