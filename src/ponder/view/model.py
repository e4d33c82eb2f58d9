"""What a page shows, worked out from a result, a trace alone, or an evaluation's stored samples.

A *view* is one run made plain for the page: the question, the answer, the cost and the
configuration; the candidates grouped by answer, the winner marked; and, where the trace holds
them, the search tree (with the chosen path and each node's judge calls), the rounds of a
self-refine or self-debug run, the programs and their runs, deepconf's confidence curves,
adaptive-consistency's waves and every decision. The page's script only draws what is here; every
rule of what belongs where lives in this module, where it is tested without a browser.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Strategies whose run reads as rounds (draft, critique, revision; code, tests, fix).
ROUNDS = frozenset({"self-refine", "self-debug", "budget-forcing", "cot"})
# Generate nodes that are nodes of a step search's tree (by their label's first word).
SEARCH_STEPS = frozenset({"step", "complete", "rollout"})
_WAVE_P = re.compile(r"P\(leader stays\) = ([0-9.]+)")


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


def _first_word(label: Any) -> str:
    return str(label).split(" ", 1)[0]


def _usage(nodes: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The usage summed over the nodes (a trace alone: seconds are the calls', not wall time)."""
    total = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "calls": 0,
             "seconds": 0.0}
    for node in nodes:
        usage = node.get("usage")
        if isinstance(usage, Mapping):
            for key in total:
                total[key] += _num(usage.get(key)) or 0
    total["seconds"] = round(float(total["seconds"]), 4)
    for key in ("prompt_tokens", "completion_tokens", "total_tokens", "calls"):
        total[key] = int(total[key])
    return total


def check_nodes(nodes: Any) -> list[dict[str, Any]]:
    """The trace's nodes, each checked to be a node: ``ValueError`` for anything else."""
    if not isinstance(nodes, list):
        raise ValueError("the trace's nodes are not a list")
    out = []
    for i, node in enumerate(nodes):
        if not isinstance(node, Mapping) or not isinstance(node.get("kind"), str) \
                or not isinstance(node.get("id"), int) or isinstance(node.get("id"), bool):
            raise ValueError(f"trace entry {i + 1} is not a trace node (id, kind, label, parent)")
        parent = node.get("parent")
        if parent is not None and (not isinstance(parent, int) or isinstance(parent, bool)):
            raise ValueError(f"trace node {node['id']} has a parent that is not a node id")
        data = node.get("data")
        clean = {"id": node["id"], "kind": node["kind"], "label": str(node.get("label", "")),
                 "parent": parent}
        if isinstance(node.get("usage"), Mapping):
            clean["usage"] = dict(node["usage"])
        if isinstance(data, Mapping):
            clean["data"] = dict(data)
        out.append(clean)
    return out


class _Trace:
    """The nodes by id, their children, and the root."""

    def __init__(self, nodes: Sequence[dict[str, Any]]) -> None:
        self.nodes = list(nodes)
        self.by_id = {n["id"]: n for n in self.nodes}
        self.children: dict[int | None, list[dict[str, Any]]] = {}
        for n in self.nodes:
            self.children.setdefault(n["parent"], []).append(n)
        roots = [n for n in self.nodes if n["parent"] is None and n["kind"] == "strategy"]
        self.root = roots[0] if roots else None

    def data(self, node_id: Any) -> dict[str, Any]:
        node = self.by_id.get(node_id)
        return node.get("data", {}) if node else {}

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [n for n in self.nodes if n["kind"] == kind]

    def judges(self) -> dict[int, list[int]]:
        """Judge calls by the node (step or candidate) they judged."""
        out: dict[int, list[int]] = {}
        for n in self.nodes:
            judged = n.get("data", {}).get("judged")
            if isinstance(judged, int) and judged in self.by_id:
                out.setdefault(judged, []).append(n["id"])
        return out


# -- candidates and answer groups ---------------------------------------------------------------

def _answer_key(answer: Any) -> str | None:
    return None if answer is None else " ".join(str(answer).split())


def _candidate(i: int, raw: Mapping[str, Any], trace: _Trace) -> dict[str, Any]:
    meta = raw.get("metadata") if isinstance(raw.get("metadata"), Mapping) else {}
    usage = raw.get("usage") if isinstance(raw.get("usage"), Mapping) else {}
    node = meta.get("node") if isinstance(meta.get("node"), int) else raw.get("node")
    node = node if isinstance(node, int) and node in trace.by_id else None
    text = str(raw.get("text") or "")
    out: dict[str, Any] = {
        "index": i, "answer": None if raw.get("answer") is None else str(raw["answer"]),
        "score": _num(raw.get("score")), "votes": _num(raw.get("votes")) or 0.0,
        "tokens": int(_num(usage.get("completion_tokens")) or _num(raw.get("tokens")) or 0),
        "finish_reason": str(raw.get("finish_reason") or "stop"), "node": node,
        "mode": str(meta.get("mode") or raw.get("mode") or "chain"), "voted": True,
    }
    if node is not None and trace.data(node).get("text") == text:
        out["text_node"] = node  # the text is the node's: not repeated
    else:
        out["text"] = text
    for key in ("program", "output", "error", "repairs", "round", "steps", "step_scores",
                "confidence", "stopped", "first_dip", "thinking_tokens", "waits", "capped"):
        value = meta.get(key, raw.get(key))
        if value is not None:
            out[key] = value
    if isinstance(raw.get("correct"), bool):
        out["correct"] = raw["correct"]
    return out


def _winner(candidates: Sequence[dict[str, Any]], answer: Any, text: Any,
            trace: _Trace) -> int | None:
    """The candidate the result stands on: its text and answer; else the best-voted one with
    the answer."""
    def text_of(c: dict[str, Any]) -> str:
        return c["text"] if "text" in c else str(trace.data(c["text_node"]).get("text", ""))

    if answer is None and not text:
        return None
    for c in candidates:
        if c["answer"] == answer and text and text_of(c) == text:
            return c["index"]
    same = [c for c in candidates if answer is not None and c["answer"] == answer]
    if same:
        return max(same, key=lambda c: (c["votes"], -c["index"]))["index"]
    return None


def _vote_node(trace: _Trace) -> dict[str, Any] | None:
    votes = trace.of_kind("vote")
    return votes[-1] if votes else None


def _groups(candidates: list[dict[str, Any]], vote: dict[str, Any] | None,
            winner: int | None, weighted: bool) -> list[dict[str, Any]]:
    """Candidates grouped by equivalent answer: the vote's own groups when the trace has the
    vote, else by the answer's text. Candidates that did not vote form their own groups."""
    groups: list[dict[str, Any]] = []
    placed: set[int] = set()
    records = vote.get("data", {}).get("groups") if vote else None
    if isinstance(records, list) and all(
            isinstance(g, Mapping) and isinstance(g.get("members"), list) for g in records):
        voters = vote.get("data", {}).get("voters") if vote else None
        if isinstance(voters, list):
            for c in candidates:
                c["voted"] = c["index"] in voters
        for g in records:
            members = [m for m in g["members"] if isinstance(m, int) and 0 <= m < len(candidates)]
            placed.update(members)
            groups.append({"answer": None if g.get("answer") is None else str(g["answer"]),
                           "members": members, "weight": _num(g.get("weight")),
                           "modes": g.get("modes")})
    by_key: dict[str | None, dict[str, Any]] = {}
    for c in candidates:
        if c["index"] in placed:
            continue
        key = _answer_key(c["answer"])
        if records is not None:
            c["voted"] = False  # left out of the vote: no answer, or filtered
        group = by_key.get(key)
        if group is None:
            group = by_key[key] = {"answer": c["answer"], "members": [], "weight": None}
            groups.append(group)
        group["members"].append(c["index"])
    for g in groups:
        members = [candidates[m] for m in g["members"]]
        scores = [c["score"] for c in members if c["score"] is not None]
        g["count"] = len(members)
        g["best_score"] = max(scores) if scores else None
        g["mean_score"] = round(sum(scores) / len(scores), 6) if scores else None
        g["voted"] = any(c["voted"] for c in members)
        if g["weight"] is None and weighted and g["voted"]:
            g["weight"] = max(c["votes"] for c in members)
        if g["weight"] is None and g["voted"] and g["answer"] is not None:
            g["weight"] = float(len(members))
        correct = {c.get("correct") for c in members} - {None}
        if len(correct) == 1:
            g["correct"] = correct.pop()
        g["winner"] = winner is not None and winner in g["members"]
    total = sum(g["weight"] or 0.0 for g in groups if g["voted"])
    for g in groups:
        g["share"] = round((g["weight"] or 0.0) / total, 6) if total > 0 and g["voted"] else None
    order = sorted(range(len(groups)), key=lambda k: (not groups[k]["winner"],
                                                      not groups[k]["voted"],
                                                      -(groups[k]["weight"] or 0.0),
                                                      -groups[k]["count"], k))
    ranked = [groups[k] for k in order]
    for rank, g in enumerate(ranked):
        for m in g["members"]:
            candidates[m]["group"] = rank
    return ranked


# -- the search tree ----------------------------------------------------------------------------

def _tree(trace: _Trace, strategy: str) -> dict[str, Any] | None:
    """A step search's tree: the root, subtrees and every step node (rollouts included), with
    how each fared, its scores, its judge calls and the chosen path."""
    if trace.root is None:
        return None
    judges = trace.judges()
    out: list[dict[str, Any]] = []
    depth: dict[int, int] = {}

    def visit(node: dict[str, Any], level: int) -> None:
        data = node.get("data", {})
        usage = node.get("usage") or {}
        entry: dict[str, Any] = {"id": node["id"], "parent": node["parent"],
                                 "depth": level, "kind": node["kind"], "label": node["label"]}
        for key in ("status", "why", "answer"):
            if data.get(key) is not None:
                entry[key] = data[key] if key != "answer" else str(data[key])
        for key in ("score", "step_score", "value"):
            if _num(data.get(key)) is not None:
                entry[key] = _num(data[key])
        if isinstance(data.get("visits"), int):
            entry["visits"] = data["visits"]
        if usage:
            entry["tokens"] = int(_num(usage.get("completion_tokens")) or 0)
        if node["id"] in judges:
            entry["judges"] = judges[node["id"]]
        depth[node["id"]] = level
        out.append(entry)
        for child in trace.children.get(node["id"], []):
            if child["kind"] == "subtree" or (child["kind"] == "generate"
                                              and _first_word(child["label"]) in SEARCH_STEPS):
                visit(child, level + 1)

    visit(trace.root, 0)
    if len(out) <= 1:
        return None
    chosen_id = None
    for n in trace.of_kind("decision"):
        if str(n["label"]).startswith("pick") and isinstance(n.get("data", {}).get("chosen"), int):
            chosen_id = n["data"]["chosen"]
    path: list[int] = []
    walk = chosen_id if chosen_id in depth else None
    while walk is not None:
        path.append(walk)
        walk = trace.by_id[walk]["parent"] if walk != trace.root["id"] else None
    for entry in out:
        entry["chosen"] = entry["id"] in path
    return {"nodes": out, "chosen": chosen_id if path else None, "path": path[::-1],
            "subtrees": len(trace.of_kind("subtree"))}


# -- rounds, programs, confidence, waves --------------------------------------------------------

def _timeline(trace: _Trace) -> list[dict[str, Any]]:
    """Every node under the root in the order it happened (judge calls with what they judged):
    draft, critique, revision; solution, tests, revision; think, 'Wait', answer."""
    items = []
    for n in trace.nodes:
        if trace.root is not None and n["id"] == trace.root["id"]:
            continue
        data = n.get("data", {})
        item: dict[str, Any] = {"node": n["id"], "kind": n["kind"],
                                "role": _first_word(n["label"]).lower()}
        if n["kind"] == "execute":
            for key in ("status", "passed", "tests", "failures", "output", "message"):
                if data.get(key) is not None:
                    item[key] = data[key]
        items.append(item)
    return items


def _programs(trace: _Trace, candidates: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each program with its runs and repairs, in order: written, run, shown the error, fixed."""
    by_node = {c["node"]: c["index"] for c in candidates if c["node"] is not None}
    out = []
    for n in trace.of_kind("generate"):
        if _first_word(n["label"]) != "program":
            continue
        attempts, walk = [], n
        final = n["id"]
        while walk is not None:
            runs = [c for c in trace.children.get(walk["id"], []) if c["kind"] == "execute"]
            run = runs[-1].get("data", {}) if runs else {}
            attempts.append({"node": walk["id"], "execute": runs[-1]["id"] if runs else None,
                             "status": run.get("status"), "output": run.get("output"),
                             "message": run.get("message")})
            final = walk["id"]
            repairs = [c for c in trace.children.get(walk["id"], [])
                       if c["kind"] == "generate" and _first_word(c["label"]) == "repair"]
            walk = repairs[0] if repairs else None
        out.append({"candidate": by_node.get(final, by_node.get(n["id"])),
                    "attempts": attempts})
    return out


def _confidence(trace: _Trace, candidates: Sequence[dict[str, Any]],
                config: Mapping[str, Any]) -> dict[str, Any] | None:
    nodes = trace.of_kind("confidence")
    if not nodes:
        return None
    threshold = None
    for n in trace.of_kind("decision"):
        if _num(n.get("data", {}).get("threshold")) is not None:
            threshold = _num(n["data"]["threshold"])
    by_node = {c["node"]: c for c in candidates if c["node"] is not None}
    traces = []
    for n in nodes:
        data, parent = n.get("data", {}), trace.by_id.get(n["parent"])
        if parent is None:
            continue
        candidate = by_node.get(parent["id"])
        curve = data.get("curve") if isinstance(data.get("curve"), list) else []
        traces.append({
            "node": parent["id"], "confidence_node": n["id"],
            "confidence": _num(data.get("confidence")), "stopped": bool(data.get("stopped")),
            "first_dip": data.get("first_dip"),
            "curve": [p for p in curve if isinstance(p, list) and len(p) == 2
                      and all(_num(x) is not None for x in p)],
            "tokens": int(_num((parent.get("usage") or {}).get("completion_tokens")) or 0),
            "answer": candidate["answer"] if candidate else None,
            "candidate": candidate["index"] if candidate else None,
            "voted": candidate["voted"] if candidate else None,
            "wave": parent["label"].split(" ", 1)[0],
        })
    return {"threshold": threshold, "group_size": config.get("group_size"),
            "mode": config.get("mode"), "traces": traces}


def _waves(trace: _Trace, config: Mapping[str, Any]) -> dict[str, Any] | None:
    """adaptive-consistency: after each wave, the samples so far and P(the leader stays)."""
    points = []
    for n in trace.of_kind("decision"):
        data, label = n.get("data", {}), str(n["label"])
        if not label.startswith("after wave"):
            continue
        p = _num(data.get("p"))
        if p is None and (m := _WAVE_P.search(label)):
            p = float(m.group(1))
        points.append({"node": n["id"], "wave": len(points) + 1, "p": p,
                       "samples": data.get("samples"), "leader": data.get("leader"),
                       "runner_up": data.get("runner_up"), "stop": bool(data.get("stop"))})
    if not points:
        return None
    return {"threshold": _num(config.get("threshold")), "points": points}


# -- a whole view -------------------------------------------------------------------------------

def _sections(strategy: str, view: dict[str, Any], trace: _Trace) -> list[str]:
    sections = []
    if view["tree"]:
        sections.append("tree")
    rounds = strategy in ROUNDS or (not view["tree"] and len(view["candidates"]) <= 1
                                    and len(trace.nodes) > 1)
    if rounds and trace.nodes:
        sections.append("timeline")
    if view["candidates"] and not (rounds and strategy in ROUNDS):
        sections.insert(0, "answers")
    for name in ("programs", "confidence", "waves"):
        if view[name]:
            sections.append(name)
    if trace.of_kind("decision") and "timeline" not in sections:
        sections.append("decisions")
    if trace.nodes:
        sections.append("calls")
    return sections


def build_view(*, nodes: Sequence[Mapping[str, Any]] | None, candidates: Sequence[Any] = (),
               strategy: str | None = None, label: str | None = None,
               question: str | None = None, answer: Any = None, text: str | None = None,
               config: Mapping[str, Any] | None = None, usage: Mapping[str, Any] | None = None,
               model: str | None = None, stop_reason: str | None = None,
               gold: str | None = None, correct: bool | None = None,
               note: str | None = None, status: str = "done") -> dict[str, Any]:
    """One view from whatever is known; what is missing is read from the trace's root (the
    question, the configuration, the answer, why it stopped) or left out."""
    checked = check_nodes(list(nodes or []))
    trace = _Trace(checked)
    root = trace.root.get("data", {}) if trace.root else {}
    strategy = strategy or (trace.root["label"] if trace.root else "") or "run"
    config = dict(config if config is not None else root.get("config") or {})
    if answer is None and "answer" in root:
        answer = root["answer"]
    if candidates:
        cands = [_candidate(i, c, trace) for i, c in enumerate(candidates)
                 if isinstance(c, Mapping)]
    else:
        cands = _candidates_from_trace(trace)
    winner = _winner(cands, None if answer is None else str(answer), text, trace)
    weighted = config.get("pick") == "weighted-vote"
    view: dict[str, Any] = {
        "label": label or strategy, "strategy": strategy, "model": model or "",
        "question": question if question is not None else root.get("question"),
        "gold": gold, "answer": None if answer is None else str(answer), "text": text,
        "correct": correct, "stop_reason": stop_reason or root.get("stop_reason") or "",
        "status": status, "note": note, "config": config,
        "usage": dict(usage) if usage is not None else _usage(checked),
        "usage_from_trace": usage is None,
        "nodes": checked, "candidates": cands, "winner": winner,
    }
    view["groups"] = _groups(cands, _vote_node(trace), winner, weighted)
    for c in cands:
        c["winner"] = c["index"] == winner
    judges = trace.judges()
    for c in cands:
        if c["node"] in judges:
            c["judges"] = judges[c["node"]]
    view["tree"] = _tree(trace, strategy)
    view["programs"] = _programs(trace, cands) or None
    view["confidence"] = _confidence(trace, cands, config)
    view["waves"] = _waves(trace, config)
    view["decisions"] = [n["id"] for n in trace.of_kind("decision")]
    view["timeline"] = _timeline(trace)
    view["sections"] = _sections(strategy, view, trace)
    return view


def _candidates_from_trace(trace: _Trace) -> list[dict[str, Any]]:
    """A trace alone: the vote's candidates (its nodes), else a search's finished paths."""
    vote = _vote_node(trace)
    raw: list[dict[str, Any]] = []
    if vote and isinstance(vote.get("data", {}).get("nodes"), list):
        answers: dict[int, Any] = {}
        weights: dict[int, float] = {}
        for g in vote["data"].get("groups") or []:
            for m in g.get("members", []) if isinstance(g, Mapping) else []:
                answers[m], weights[m] = g.get("answer"), _num(g.get("weight")) or 0.0
        for i, node_id in enumerate(vote["data"]["nodes"]):
            data = trace.data(node_id)
            usage = (trace.by_id.get(node_id) or {}).get("usage") or {}
            raw.append({"text": data.get("text", ""), "answer": answers.get(i),
                        "votes": weights.get(i, 0.0), "usage": usage,
                        "finish_reason": data.get("finish_reason"),
                        "metadata": {"node": node_id}})
    else:
        for n in trace.of_kind("generate"):
            data = n.get("data", {})
            if "answer" in data and _first_word(n["label"]) in SEARCH_STEPS:
                raw.append({"text": data.get("text", ""), "answer": data["answer"],
                            "score": data.get("score"), "usage": n.get("usage") or {},
                            "metadata": {"node": n["id"]}})
    return [_candidate(i, c, trace) for i, c in enumerate(raw)]


def view_of_result(result: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """A view of ``Result.to_dict()`` (``ponder ask --json``, a stored run)."""
    trace = result.get("trace")
    nodes = trace.get("nodes") if isinstance(trace, Mapping) else None
    return build_view(nodes=nodes, candidates=result.get("candidates") or (),
                      strategy=result.get("strategy"), answer=result.get("answer"),
                      text=result.get("text"), config=result.get("config"),
                      usage=result.get("usage"), model=result.get("model"),
                      stop_reason=result.get("stop_reason"), **extra)
