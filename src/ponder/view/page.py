"""One self-contained HTML page for one or more views: the script and the style inline, the data
in a ``<script type="application/json">`` block, nothing fetched (a server's live page fetches
only its own updates).

The page's Content-Security-Policy allows exactly this page's script and style (by their
hashes) and no network at all offline, so even a string that slipped past the escaping could
not run or load anything.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

from ponder.version import __version__

# Inside <script type="application/json"> the HTML parser only looks for "</script" (and "<!--"
# changes how it looks); JSON never needs a raw "<", ">" or "&", and U+2028/9 break old parsers.
_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
            "\u2029": "\\u2029"}


def embed_json(data: Any) -> str:
    """``data`` as JSON that is safe inside ``<script type="application/json">``: no ``</``,
    no ``<!--``, nothing the HTML parser reads; ``JSON.parse`` gives ``data`` back."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                      default=str)
    return "".join(_ESCAPES.get(ch, ch) for ch in text)


@cache
def asset(name: str) -> str:
    """The page's hand-written script or style (``view.js``, ``view.css``)."""
    return resources.files("ponder.view").joinpath("assets", name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def content_security_policy(live: bool = False) -> str:
    """This page's policy: its own script and style only; no connection at all, or (a live
    page) only to the server that served it."""
    connect = "'self'" if live else "'none'"
    return ("default-src 'none'; "
            f"script-src {_sha256(asset('view.js'))}; style-src {_sha256(asset('view.css'))}; "
            f"img-src data:; connect-src {connect}; base-uri 'none'; form-action 'none'")


def page_data(views: Sequence[Mapping[str, Any]], *, title: str | None = None,
              selected: int = 0, live: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the page's script reads: the views, the one shown first, a live page's updates."""
    return {"views": list(views), "selected": max(0, min(selected, len(views) - 1)),
            "title": title, "live": dict(live) if live else None,
            "generator": f"written by ponder {__version__} · everything on this page came from "
                         "the trace; nothing was loaded"}


def render_page(views: Sequence[Mapping[str, Any]], *, title: str | None = None,
                selected: int = 0, live: Mapping[str, Any] | None = None) -> str:
    """The whole page. ``live``: ``{"data": URL, "interval": ms}`` for a server's page that
    follows a running search."""
    if not views:
        raise ValueError("a page needs at least one view")
    data = page_data(views, title=title, selected=selected, live=live)
    first = views[max(0, min(selected, len(views) - 1))]
    heading = str(first.get("question") or first.get("label") or "a run")
    heading = " ".join(heading.split())[:80]
    csp = content_security_policy(live=live is not None)
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{html.escape(csp)}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<meta name=\"referrer\" content=\"no-referrer\">\n"
        f"<title>ponder · {html.escape(heading)}</title>\n"
        f"<style>{asset('view.css')}</style>\n</head>\n<body>\n"
        "<div id=\"app\"><noscript>This page draws the trace with JavaScript; the data is in "
        "the page (script#ponder-data).</noscript></div>\n"
        f"<script type=\"application/json\" id=\"ponder-data\">{embed_json(data)}</script>\n"
        f"<script>{asset('view.js')}</script>\n</body></html>\n"
    )
