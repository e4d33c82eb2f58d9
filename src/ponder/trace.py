"""The trace: a tree of every generation and decision a strategy made.

Nodes are appended as the strategy runs; each points at its parent (or is a root). A node that
records a backend call carries that call's usage, so the trace's usage sums to the result's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ponder.types import Usage


@dataclass
class TraceNode:
    id: int
    kind: str  # "generate", "vote", "score", "critique", "revise", "decision", ...
    label: str
    parent: int | None = None
    usage: Usage | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "kind": self.kind, "label": self.label}
        out["parent"] = self.parent
        if self.usage is not None:
            out["usage"] = self.usage.to_dict()
        if self.data:
            out["data"] = self.data
        return out


class Trace:
    """An append-only tree of :class:`TraceNode`.

    >>> t = Trace()
    >>> root = t.add("strategy", "self-consistency")
    >>> t.add("generate", "sample 1", parent=root, text="... 22")
    1
    """

    def __init__(self) -> None:
        self.nodes: list[TraceNode] = []

    def add(
        self,
        kind: str,
        label: str,
        parent: int | None = None,
        usage: Usage | None = None,
        **data: Any,
    ) -> int:
        node = TraceNode(len(self.nodes), kind, label, parent, usage, data)
        self.nodes.append(node)
        return node.id

    def children(self, node_id: int | None) -> list[TraceNode]:
        return [n for n in self.nodes if n.parent == node_id]

    @property
    def usage(self) -> Usage:
        return Usage.sum(n.usage for n in self.nodes if n.usage is not None)

    def usage_by_model(self, default: str) -> dict[str, Usage]:
        """Usage summed per model: a node's ``model`` (tagged in a run with several models),
        else ``default``, the run's own model. The run's own model comes first."""
        out: dict[str, Usage] = {default: Usage()}
        for n in self.nodes:
            if n.usage is not None:
                name = str(n.data.get("model", default))
                out[name] = out.get(name, Usage()) + n.usage
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": [n.to_dict() for n in self.nodes]}

    def write_jsonl(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for node in self.nodes:
                f.write(json.dumps(node.to_dict()) + "\n")
