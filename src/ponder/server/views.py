"""Live pages of requests made with ``ponder.trace: true``: ``GET /ui/<id>`` shows the search as
it runs (the page polls ``/ui/<id>/data``) and the finished run afterwards. While it runs, a
sampling strategy's candidates show as each one finishes (from the context's "sample" events),
before the call that draws them returns and long before the vote.

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
from ponder.domains import domain_for
from ponder.server.policy import public_config, public_trace
from ponder.trace import Trace
from ponder.types import Problem, Result
from ponder.view import build_view, view_of_result

VIEW_ID = re.compile(r"[0-9a-f]{32}")
# The calls whose samples are candidates (by their label's first word): a sampling strategy's
# samples, best-of-n's candidates, adaptive-consistency's waves, deepconf's traces, a chain,
# a program, a self-debug solution; not a step of a search, a judge's verdict or a repair.
CANDIDATE_CALLS = frozenset({"sample", "candidate", "wave", "trace", "warm-up", "chain",
                             "program", "solution", "probe"})
LIVE_NOTE = ("Candidates as each one finished; the vote, the scores and the answer come when "
             "the search ends.")


class LiveView:
    """One request's page: its traces as they grow, its results once they are in."""

    def __init__(self, question: str, strategy: str, choices: int, model: str, *,
                 problem: Problem | None = None) -> None:
        self.id = secrets.token_hex(16)  # 128 bits: unguessable
        self.created = time.monotonic()
        self.question = question
        self.strategy = strategy
        self.model = model
        # what the answers are read from (its domain); the question alone reads as math
        self.problem = problem if problem is not None else Problem(question)
        self.traces = [Trace() for _ in range(choices)]
        self.results: list[Result | None] = [None] * choices
        self.samples: list[list[dict[str, Any]]] = [[] for _ in range(choices)]
        self.status = "running"
        self.phase = ""
        self._sinks = 0  # sinks made so far: the choice of one made without an index

    def sink(self, inner: EventSink | None, index: int | None = None) -> EventSink:
        """An event sink for choice ``index`` (None: the choices in the order their sinks are
        made) that notes the call in flight and each finished candidate for the page, then
        passes the event on. Called from backend threads: it only sets a string and appends
        to a list."""
        if index is None:
            index = self._sinks
        self._sinks += 1
        found = self.samples[min(max(index, 0), len(self.samples) - 1)]

        def sink(event: str, details: dict[str, Any]) -> None:
            if event == "generate":
                n = details.get("samples", 1)
                self.phase = f"{details.get('label', 'sample')}" + (f" ×{n}" if n != 1 else "")
            elif event == "tokens":
                self.phase = self.phase.split(" · ")[0] + f" · {details.get('tokens', 0)} tokens"
            elif event == "sample":
                label = str(details.get("label", "sample"))
                if label.split(" ", 1)[0] in CANDIDATE_CALLS:
                    found.append(self._candidate(details))
            if inner is not None:
                inner(event, details)
        return sink

    def _candidate(self, details: dict[str, Any]) -> dict[str, Any]:
        """A finished sample as the page shows a candidate: its text and the answer read from
        it as the problem's domain reads answers."""
        text = str(details.get("text", ""))
        try:
            answer = domain_for(self.problem).extract(self.problem, text)
        except Exception:  # noqa: BLE001 - a text no reader makes sense of: no answer yet
            answer = None
        return {"text": text, "answer": answer,
                "finish_reason": str(details.get("finish_reason") or "stop"),
                "usage": {"completion_tokens": int(details.get("tokens") or 0)}}

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
                status = "running" if self.status == "running" else self.status
                view = build_view(nodes=nodes, strategy=self.strategy, label=label,
                                  question=self.question, model=self.model, status=status)
                found = list(self.samples[i])
                if not view["candidates"] and found:  # none in the trace yet: as they finish
                    view = build_view(nodes=nodes, candidates=found, strategy=self.strategy,
                                      label=label, question=self.question, model=self.model,
                                      status=status, note=LIVE_NOTE)
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

    def open(self, question: str, strategy: str, choices: int, model: str, *,
             problem: Problem | None = None) -> LiveView:
        view = LiveView(question, strategy, choices, model, problem=problem)
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
