"""Reading a request body without trusting it: declared as JSON, bounded in size and time,
parsed with guards.

- :func:`check_json_type`: refuse a body declared as anything but ``application/json`` (415)
  before reading it: that is what a page on another site can make a browser send without a
  preflight.
- :func:`read_body`: refuse a ``Content-Length`` over the limit before reading a byte (413),
  count the bytes while reading a body without one (413 as soon as it passes the limit, the rest
  never read), and give up on a body that does not arrive within the body timeout (408). The
  connection then closes (:mod:`ponder.server.protocol`: what the client still sends is dropped).
- :func:`parse_json`: refuse nesting deeper than the limit (checked without recursion, before
  the parser runs), number literals longer than the limit (a 10,000-digit integer), numbers that
  overflow to infinity (``1e400``) and ``NaN``/``Infinity``; all 400, never a 500.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from itertools import accumulate
from typing import Any

from starlette.requests import ClientDisconnect, Request

from ponder.server.errors import ApiError, clip

# A JSON string literal (unrolled, so it runs in linear time even when unterminated).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class _Refused(ValueError):
    """A literal the parser hooks refuse."""


def check_json_type(content_type: str | None) -> None:
    """415 unless the body is declared as JSON (``application/json``, parameters such as
    ``charset`` allowed) or not declared at all. A page on another site can make a browser POST
    ``text/plain``, a form or a multipart body to this server without asking first (CORS
    "simple" requests); it cannot send ``application/json`` without a preflight, which this
    server never answers. A body with no type is read as JSON (``requests.post(data=...)``
    sends none): a browser can send one too, but never without an ``Origin``, which a server
    without a key checks (:meth:`ponder.server.app.PonderServer.refusal`)."""
    if content_type is None:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise ApiError(415, f"the body must be JSON sent with 'Content-Type: application/json' "
                       f"(got {clip(content_type)!r})", code="unsupported_media_type")




async def read_body(request: Request, max_bytes: int, timeout: float) -> bytes:
    """The request body, at most ``max_bytes`` of it, within ``timeout`` seconds."""
    length = request.headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > max_bytes:
        raise too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0

    async def receive_all() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise too_large(max_bytes)
            chunks.append(chunk)

    try:
        await asyncio.wait_for(receive_all(), timeout)
    except asyncio.TimeoutError:  # not TimeoutError before Python 3.11
        raise ApiError(408, f"the request body did not arrive within {timeout:g} s",
                       code="request_timeout") from None
    except ClientDisconnect:
        raise ApiError(499, "client closed the request", code="cancelled") from None
    return b"".join(chunks)


def too_large(max_bytes: int) -> ApiError:
    return ApiError(413, f"the request body is larger than this server's limit of "
                    f"{max_bytes} bytes", code="request_too_large")


def json_depth(text: str) -> int:
    """How deep arrays and objects nest in the JSON ``text`` (strings skipped), without
    recursion: a running sum over the brackets, computed in C."""
    skeleton = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, skeleton)), default=0)


def parse_json(body: bytes, max_depth: int, max_number_length: int) -> Any:
    """The JSON value of ``body``; ApiError 400 for what is not JSON or is beyond the limits."""

    def number(kind: type) -> Any:
        def parse(literal: str) -> Any:
            if len(literal) > max_number_length:
                raise _Refused(f"a number literal of {len(literal)} characters (the limit is "
                               f"{max_number_length})")
            value = kind(literal)
            if isinstance(value, float) and not math.isfinite(value):
                raise _Refused(f"the number {literal[:20]} is out of range")
            return value
        return parse

    def constant(literal: str) -> Any:
        raise _Refused(f"{literal} is not a JSON number")

    try:
        text = body.decode(json.detect_encoding(body))
    except (UnicodeDecodeError, LookupError):
        raise invalid_json("it is not UTF-8 text") from None
    depth = json_depth(text)
    if depth > max_depth:
        raise invalid_json(f"it nests {depth} levels deep (the limit is {max_depth})")
    try:
        return json.loads(text, parse_int=number(int), parse_float=number(float),
                          parse_constant=constant)
    except _Refused as exc:
        raise invalid_json(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise invalid_json(str(exc)) from None
    except (ValueError, RecursionError):
        raise invalid_json("it cannot be parsed") from None


def invalid_json(why: str) -> ApiError:
    return ApiError(400, f"the body is not valid JSON: {why}", code="invalid_json")
