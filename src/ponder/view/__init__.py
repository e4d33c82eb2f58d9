"""``ponder view``: one offline page that shows how a run thought — its answers, its search tree,
its rounds, programs, confidence and decisions — built from a result, a trace or an evaluation."""

from __future__ import annotations

from ponder.view.model import build_view, view_of_result
from ponder.view.page import embed_json, render_page

# -- public face (generated from what other packages import) --
# Other packages import these names (the architecture test checks that they import
# nothing else from this package); those not above are loaded on first use.

_LAZY = {
    "content_security_policy": "ponder.view.page",
    "read_views": "ponder.view.sources",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "build_view",
    "content_security_policy",
    "embed_json",
    "read_views",
    "render_page",
    "view_of_result",
]
