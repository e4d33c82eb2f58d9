"""Live pages of requests made with ``ponder.trace: true``: ``GET /ui/<id>`` shows the search as
it runs (the page polls ``/ui/<id>/data``) and the finished run afterwards.

The id is 128 random bits, given only to the client that made the request, so no client can
find another's page; when the server has an API key the page asks for it too (Bearer, or the
key as a Basic-auth password, which a browser prompts for). The store is bounded: at most
``max_views`` pages, each kept ``ttl`` seconds; the oldest go first. What a page shows passes
the same filter as the trace in a reply (the operator's own options are left out).
"""

from __future__ import annotations

import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from ponder.core.context import EventSink
from ponder.server.policy import public_config, public_trace
from ponder.trace import Trace
from ponder.types import Result
from ponder.view import build_view, view_of_result

VIEW_ID = re.compile(r"[0-9a-f]{32}")


class LiveView:
    """One request's page: its traces as they grow, its results once they are in."""

    def __init__(self, question: str, strategy: str, choices: int, model: str) -> None:
        self.id = secrets.token_hex(16)  # 128 bits: unguessable
        self.created = time.monotonic()
        self.question = question
        self.strategy = strategy
        self.model = model
        self.traces = [Trace() for _ in range(choices)]
        self.results: list[Result | None] = [None] * choices
        self.status = "running"
        self.phase = ""

    def sink(self, inner: EventSink | None) -> EventSink:
        """An event sink that notes the call in flight for the page, then passes the event on
        (called from backend threads: it only sets a string)."""
        def sink(event: str, details: dict[str, Any]) -> None:
            if event == "generate":
                n = details.get("samples", 1)
                self.phase = f"{details.get('label', 'sample')}" + (f" ×{n}" if n != 1 else "")
            elif event == "tokens":
                self.phase = self.phase.split(" · ")[0] + f" · {details.get('tokens', 0)} tokens"
            if inner is not None:
                inner(event, details)
        return sink

    def finish(self, index: int, result: Result) -> None:
        self.results[index] = result
        if all(r is not None for r in self.results):
            self.status = "done"

    def end(self, status: str) -> None:
        """The request ended without results: failed, cancelled, timed out."""
        if self.status == "running":
            self.status = status

    def views(self) -> list[dict[str, Any]]:
        """The page's views, one per choice, as a client may read them."""
        out = []
        multi = len(self.traces) > 1
        for i, (trace, result) in enumerate(zip(self.traces, self.results, strict=True)):
            label = f"choice {i + 1}" if multi else None
            if result is not None:
                data = result.to_dict()
                data["config"] = public_config(result.strategy, data["config"])
                if data.get("trace") is not None:
                    data["trace"] = public_trace(data["trace"])
                view = view_of_result(data, label=label, question=self.question)
            else:
                nodes = public_trace(trace.to_dict())["nodes"]
                view = build_view(nodes=nodes, strategy=self.strategy, label=label,
                                  question=self.question, model=self.model,
                                  status="running" if self.status == "running" else self.status)
                view["phase"] = self.phase
            out.append(view)
        return out


class ViewStore:
    """The recent live pages, bounded in number and age."""

    def __init__(self, max_views: int = 64, ttl: float = 3600.0) -> None:
        self.max_views = max(1, max_views)
        self.ttl = ttl
        self._views: OrderedDict[str, LiveView] = OrderedDict()

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, v in self._views.items() if now - v.created > self.ttl]:
            del self._views[key]
        while len(self._views) > self.max_views:
            self._views.popitem(last=False)

    def open(self, question: str, strategy: str, choices: int, model: str) -> LiveView:
        view = LiveView(question, strategy, choices, model)
        self._views[view.id] = view
        self._expire()
        return view

    def get(self, view_id: str) -> LiveView | None:
        """The page with this id, if it is still kept (ids not of the right form: None)."""
        if not VIEW_ID.fullmatch(view_id):
            return None
        self._expire()
        return self._views.get(view_id)

    def __len__(self) -> int:
        return len(self._views)


def traces_of(view: LiveView | None, choices: int) -> Sequence[Trace | None]:
    """Each choice's trace to run into (None: a fresh one)."""
    return view.traces if view is not None else [None] * choices
