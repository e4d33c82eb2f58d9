"""``ponder view``: one offline page that shows how a run thought — its answers, its search tree,
its rounds, programs, confidence and decisions — built from a result, a trace or an evaluation."""

from __future__ import annotations

from ponder.view.model import build_view, view_of_result
from ponder.view.page import embed_json, render_page

__all__ = ["build_view", "embed_json", "render_page", "view_of_result"]
