"""What a page shows, worked out from a result, a trace alone, or an evaluation's stored samples.

A *view* is one run made plain for the page: the question, the answer, the cost and the
configuration; the candidates grouped by answer, the winner marked; and, where the trace holds
them, the search tree (with the chosen path and each node's judge calls), the rounds of a
self-refine or self-debug run, the programs and their runs, deepconf's confidence curves,
adaptive-consistency's waves and every decision. A run of several models adds what each model
spent and wrote, and the shape of its strategy: a cascade's escalation, the strong model's
verdicts (pointwise or a tournament), a debate's rounds by agent, a mixture-of-agents' layers and
its aggregator. A particle filter's population is drawn step by step: weights, resampling and
the effective sample size. The page's script only draws what is here; every rule of what belongs
where lives in this module, where it is tested without a browser.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Strategies whose run reads as rounds (draft, critique, revision; code, tests, fix).
ROUNDS = frozenset({"self-refine", "self-debug", "budget-forcing", "cot"})
# Generate nodes that are nodes of a step search's tree (by their label's first word).
SEARCH_STEPS = frozenset({"step", "complete", "rollout"})
_WAVE_P = re.compile(r"P\(leader stays\) = ([0-9.]+)")
# verify-by-strong's match label: two answers as Python writes a string ('72', "it's")
_QUOTED = r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""
_MATCH = re.compile(rf"^match: {_QUOTED} vs {_QUOTED}$", re.DOTALL)
_LETTER = re.compile(r"\b([AB])\b")
# What a candidate of a run of several models says about who wrote it (besides ``model``).
_WHO = ("role", "agent", "round", "layer", "proposer", "aggregator")
# The sections that draw the runs of several models, in the order they come.
MANY = ("cascade", "verdicts", "debate", "layers")


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
    # who wrote it, in a run of several models: the candidate's tags, else its trace node's
    written = trace.data(node) if node is not None else {}
    for key in ("model", *_WHO):
        value = meta.get(key, written.get(key))
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            out[key] = value
        elif key == "aggregator" and value is True:
            out[key] = True
    if isinstance(raw.get("correct"), bool):
        out["correct"] = raw["correct"]
    return out


def _winner(candidates: Sequence[dict[str, Any]], answer: Any, text: Any,
            trace: _Trace) -> int | None:
    """The candidate the result stands on: its text and answer; else the best-voted one with
    the answer, one the last vote chose first (a cascade's strong model's over the small
    model's same answer)."""
    def text_of(c: dict[str, Any]) -> str:
        return c["text"] if "text" in c else str(trace.data(c["text_node"]).get("text", ""))

    if answer is None and not text:
        return None
    for c in candidates:
        if c["answer"] == answer and text and text_of(c) == text:
            return c["index"]
    same = [c for c in candidates if answer is not None and c["answer"] == answer]
    if same:
        chosen = _last_choice(trace, candidates)
        return max(same, key=lambda c: (c["index"] in chosen, c["votes"], -c["index"]))["index"]
    return None


def _last_choice(trace: _Trace, candidates: Sequence[dict[str, Any]]) -> set[int]:
    """The candidates in the winning group of the run's last vote."""
    vote = _vote_node(trace)
    records = _records(vote)
    if vote is None or records is None:
        return set()
    index = _vote_index(vote, _by_node(candidates), len(candidates),
                        len(trace.of_kind("vote")) == 1) or []
    won = vote.get("data", {}).get("winner")
    return {index[m] for g in records if won is not None and g.get("answer") == won
            for m in g["members"] if isinstance(m, int) and 0 <= m < len(index)
            and index[m] is not None}


def _vote_node(trace: _Trace) -> dict[str, Any] | None:
    votes = trace.of_kind("vote")
    return votes[-1] if votes else None


def _votes(trace: _Trace) -> list[dict[str, Any]]:
    """The votes the answer groups show, in order: the last one, and any earlier vote over
    candidates no later vote counted (a cascade's small vote, then the strong model's)."""
    out: list[dict[str, Any]] = []
    seen: set[Any] = set()
    for vote in reversed(trace.of_kind("vote")):
        nodes = vote.get("data", {}).get("nodes")
        ids = {x for x in nodes if isinstance(x, int)} if isinstance(nodes, list) else set()
        if out and (not ids or ids & seen):
            continue  # a vote a later one replaced (a router's probe), or one it cannot place
        out.append(vote)
        seen |= ids
    return out[::-1]


def _records(vote: Mapping[str, Any] | None) -> list[Mapping[str, Any]] | None:
    """A vote node's answer groups, when they are answer groups."""
    records = vote.get("data", {}).get("groups") if vote else None
    if isinstance(records, list) and all(
            isinstance(g, Mapping) and isinstance(g.get("members"), list) for g in records):
        return records
    return None


def _vote_index(vote: Mapping[str, Any], by_node: Mapping[int, int], count: int,
                alone: bool) -> list[int | None] | None:
    """Which candidate each of the vote's members is: by the trace nodes the vote records
    (a vote counts its own list of candidates), else, for the run's only vote, by position."""
    data = vote.get("data", {})
    nodes = data.get("nodes")
    records = _records(vote) or []
    used = {m for g in records for m in g["members"] if isinstance(m, int)}
    if isinstance(nodes, list):
        index = [by_node.get(x) if isinstance(x, int) else None for x in nodes]
        if all(0 <= m < len(index) and index[m] is not None for m in used):
            return index
    return list(range(count)) if alone else None


def _by_node(candidates: Sequence[Mapping[str, Any]]) -> dict[int, int]:
    return {c["node"]: c["index"] for c in candidates if c["node"] is not None}


def _groups(candidates: list[dict[str, Any]], votes: Sequence[dict[str, Any]],
            winner: int | None, weighted: bool) -> list[dict[str, Any]]:
    """Candidates grouped by equivalent answer: the votes' own groups when the trace has them
    (each group named by its vote where there are several), else by the answer's text.
    Candidates that did not vote form their own groups."""
    groups: list[dict[str, Any]] = []
    placed: set[int] = set()
    voting: set[int] = set()
    by_node = _by_node(candidates)
    recorded = False
    for vote in votes:
        records = _records(vote)
        index = _vote_index(vote, by_node, len(candidates), len(votes) == 1) \
            if records is not None else None
        if records is None or index is None:
            continue
        recorded = True

        def at(m: Any, index: list[int | None] = index) -> int | None:
            return index[m] if isinstance(m, int) and 0 <= m < len(index) else None

        voters = vote.get("data", {}).get("voters")
        name = str(vote["label"]) if len(votes) > 1 else None
        for g in records:
            members = [i for i in map(at, g["members"]) if i is not None and i not in placed]
            placed.update(members)
            if not isinstance(voters, list):
                voting.update(members)
            groups.append({"answer": None if g.get("answer") is None else str(g["answer"]),
                           "members": members, "weight": _num(g.get("weight")),
                           "modes": g.get("modes"), "vote": name})
        if isinstance(voters, list):
            voting.update(i for i in map(at, voters) if i is not None)
    if recorded:
        for c in candidates:
            c["voted"] = c["index"] in voting  # left out of the vote: no answer, or filtered
    by_key: dict[tuple[str | None, bool], dict[str, Any]] = {}
    for c in candidates:
        if c["index"] in placed:
            continue
        # a mixture-of-agents' aggregator is not one of the proposers it read
        key = (_answer_key(c["answer"]), c.get("aggregator") is True)
        group = by_key.get(key)
        if group is None:
            group = by_key[key] = {"answer": c["answer"], "members": [], "weight": None,
                                   "vote": "the aggregator's answer" if key[1] else None}
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
        by_model: dict[str, int] = {}
        for c in members:
            if "model" in c:
                by_model[c["model"]] = by_model.get(c["model"], 0) + 1
        g["models"] = [[name, k] for name, k in by_model.items()]
    totals: dict[str | None, float] = {}  # each vote's own: a share is of the vote it is in
    for g in groups:
        if g["voted"]:
            totals[g["vote"]] = totals.get(g["vote"], 0.0) + (g["weight"] or 0.0)
    for g in groups:
        total = totals.get(g["vote"], 0.0)
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


# -- several models: what each spent, and the shape of the strategies that use them -----------

def _models(trace: _Trace, given: Any, own: str, config: Mapping[str, Any]
            ) -> dict[str, Any]:
    """Each model of the run: its roles, calls, tokens, parameters and FLOPs-equivalent (the
    result's ``models``; a trace alone: its nodes' usage by model, sizes unknown), and each
    one's share of the run's FLOPs (of its tokens where a size is unknown)."""
    rows: dict[str, dict[str, Any]] = {}
    keys = ("calls", "prompt_tokens", "completion_tokens", "total_tokens")
    if isinstance(given, Mapping) and given:
        for name, cost in given.items():
            if isinstance(cost, Mapping):
                row = {"name": str(name), "roles": []}
                row.update({k: int(_num(cost.get(k)) or 0) for k in keys})
                row["seconds"] = _num(cost.get("seconds"))
                parameters = _num(cost.get("parameters"))
                row["parameters"] = int(parameters) if parameters is not None else None
                row["flops"] = _num(cost.get("flops"))
                rows[row["name"]] = row
    else:
        for n in trace.nodes:
            usage = n.get("usage")
            if not isinstance(usage, Mapping):
                continue
            name = str(n.get("data", {}).get("model") or own or "the run's model")
            row = rows.setdefault(name, {"name": name, "roles": [], "seconds": 0.0,
                                         "parameters": None, "flops": None,
                                         **{k: 0 for k in keys}})
            for k in keys:
                row[k] += int(_num(usage.get(k)) or 0)
            row["seconds"] = round(row["seconds"] + (_num(usage.get("seconds")) or 0.0), 4)

    def role(model: Any, name: Any) -> None:
        if model in rows and isinstance(name, str) and name not in rows[model]["roles"]:
            rows[model]["roles"].append(name)

    role(own, "generator")
    strong = str(config.get("strong_role") or "strong")
    for n in trace.nodes:
        data = n.get("data", {})
        role(data.get("model"), data.get("role"))
        if isinstance(data.get("escalated"), bool):  # a cascade's decision names its model
            role(data.get("strong_model"), strong)
        parent = trace.by_id.get(n["parent"]) if n["parent"] is not None else None
        if n["kind"] == "generate" and parent and parent["kind"] == "score" \
                and parent.get("data", {}).get("method") in ("pointwise", "tournament"):
            role(data.get("model"), strong)  # verify-by-strong's judge
        for p in data.get("proposers") or [] if n["kind"] == "layer" else []:
            if isinstance(p, Mapping):
                role(p.get("model"), p.get("role"))
    out = list(rows.values())
    flops = [r["flops"] for r in out]
    by_flops = bool(out) and all(f is not None for f in flops) and sum(flops) > 0
    total = sum(flops) if by_flops else sum(r["total_tokens"] for r in out)
    for r in out:
        part = r["flops"] if by_flops else r["total_tokens"]
        r["share"] = round(part / total, 6) if total else None
    return {"rows": out, "share_of": "FLOPs" if by_flops else "tokens",
            "flops": sum(flops) if by_flops else None}


def _vote_summary(vote: Mapping[str, Any] | None, candidates: Sequence[Mapping[str, Any]]
                  ) -> dict[str, Any] | None:
    """One vote as the many-model sections draw it: its groups (answer, weight, share, the
    candidates in it) and what won."""
    records = _records(vote)
    if vote is None or records is None:
        return None
    index = _vote_index(vote, _by_node(candidates), len(candidates), False) or []
    total = sum(_num(g.get("weight")) or 0.0 for g in records)
    winner = vote.get("data", {}).get("winner")
    groups = []
    for g in records:
        weight = _num(g.get("weight")) or 0.0
        groups.append({"answer": None if g.get("answer") is None else str(g["answer"]),
                       "weight": weight, "share": round(weight / total, 6) if total else None,
                       "members": [index[m] for m in g["members"] if isinstance(m, int)
                                   and 0 <= m < len(index) and index[m] is not None],
                       "winner": winner is not None and g.get("answer") == winner})
    nodes = vote.get("data", {}).get("nodes")
    return {"node": vote["id"], "label": vote["label"],
            "winner": None if winner is None else str(winner), "groups": groups,
            "candidates": [i for i in index if i is not None] if isinstance(nodes, list)
            else []}


def _cascade(trace: _Trace, candidates: Sequence[Mapping[str, Any]], answer: str | None
             ) -> dict[str, Any] | None:
    """cascade: the small model's vote, the evidence against the threshold, whether it
    escalated, and the strong model's answer(s)."""
    decision = next((n for n in trace.of_kind("decision")
                     if isinstance(n.get("data", {}).get("escalated"), bool)), None)
    if decision is None:
        return None
    data = decision["data"]
    votes = trace.of_kind("vote")
    small = _vote_summary(votes[0] if votes else None, candidates)
    strong = _vote_summary(votes[1], candidates) if data["escalated"] and len(votes) > 1 \
        else None
    small_model = next((candidates[i]["model"] for i in (small or {}).get("candidates", [])
                        if "model" in candidates[i]), "")
    strong_answered = strong is not None and strong["winner"] is not None
    return {"decision": decision["id"], "label": decision["label"],
            "signal": str(data.get("signal") or "agreement"),
            "evidence": _num(data.get("evidence")), "threshold": _num(data.get("threshold")),
            "escalated": data["escalated"], "strong_model": str(data.get("strong_model") or ""),
            "small_model": small_model, "small": small, "strong": strong,
            "taken": "strong" if strong_answered else "small", "answer": answer}


def _verdicts(trace: _Trace, candidates: Sequence[Mapping[str, Any]],
              config: Mapping[str, Any], strategy: str) -> dict[str, Any] | None:
    """verify-by-strong: the strong model's P(yes) per answer group, or its tournament's
    matches (both orders' verdicts) and champion."""
    scores = [n for n in trace.of_kind("score")
              if n.get("data", {}).get("method") in ("pointwise", "tournament")]
    decisions = trace.of_kind("decision")
    if not scores:
        if strategy != "verify-by-strong" or not decisions:
            return None
        last = decisions[-1]
        return {"method": str(config.get("method") or "pointwise"), "asked": False,
                "why": last["label"], "decision": last["id"], "judge_model": "",
                "answer": _str(last.get("data", {}).get("answer"))}
    by_node = _by_node(candidates)
    method = scores[0]["data"]["method"]
    judged = [k for s in scores for k in trace.children.get(s["id"], [])
              if k["kind"] == "generate"]
    judge_model = next((str(k["data"]["model"]) for k in judged
                        if k.get("data", {}).get("model")), "")
    out: dict[str, Any] = {"method": method, "asked": True, "judge_model": judge_model,
                           "nodes": [s["id"] for s in scores]}
    if method == "pointwise":
        decision = next((n for n in decisions
                         if isinstance(n.get("data", {}).get("scores"), list)), None)
        told = decision["data"]["scores"] if decision else []
        rows = []
        for k, j in enumerate(judged):
            data = j.get("data", {})
            index = by_node.get(data.get("judged"))
            said = told[k] if k < len(told) and isinstance(told[k], Mapping) else {}
            rows.append({"node": j["id"], "candidate": index,
                         "answer": _str(said.get("answer", candidates[index]["answer"]
                                                 if index is not None else None)),
                         "score": _num(data.get("score", said.get("score"))),
                         "votes": _num(said.get("votes")) if said else
                         (candidates[index]["votes"] if index is not None else None),
                         "winner": False})
        winner = _str(decision["data"].get("answer")) if decision else None
        for r in rows:
            if winner is not None and r["answer"] == winner:
                r["winner"] = True
                break
        out.update(groups=rows, answer=winner, decision=decision["id"] if decision else None)
        return out
    matches = []
    champion: str | None = None
    for s in scores:
        data = s.get("data", {})
        found = _MATCH.match(str(s["label"]))
        a, b = ([ast.literal_eval(x) for x in found.groups()] if found
                else [champion, None])
        verdicts = []
        for k, c in enumerate(k for k in trace.children.get(s["id"], [])
                              if k["kind"] == "generate"):
            first, second = (a, b) if k == 0 else (b, a)
            letter = _LETTER.search(str(c.get("data", {}).get("text", "")))
            said = letter.group(1) if letter else None
            verdicts.append({"node": c["id"], "a": first, "b": second, "said": said,
                             "for": first if said == "A" else second if said == "B" else None})
        winner = _str(data.get("winner"))
        chose = {v["for"] for v in verdicts}
        matches.append({"node": s["id"], "champion": a, "challenger": b,
                        "p_champion": _num(data.get("p_first")), "winner": winner,
                        "kept": winner is not None and winner == a,
                        "split": len(chose) > 1 or None in chose, "verdicts": verdicts})
        champion = winner if winner is not None else champion
    decision = next((n for n in decisions if isinstance(n.get("data", {}).get("wins"), list)),
                    None)
    wins = [{"answer": _str(w.get("answer")), "wins": int(_num(w.get("wins")) or 0),
             "votes": _num(w.get("votes"))}
            for w in (decision["data"]["wins"] if decision else []) if isinstance(w, Mapping)]
    final = _str(decision["data"].get("answer")) if decision else champion
    for w in wins:
        w["champion"] = final is not None and w["answer"] == final
    out.update(matches=matches, wins=wins, answer=final,
               decision=decision["id"] if decision else None)
    return out


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _decision(trace: _Trace, prefix: str) -> dict[str, Any] | None:
    found = [n for n in trace.of_kind("decision") if str(n["label"]).startswith(prefix)]
    return found[-1] if found else None


def _debate(trace: _Trace, candidates: Sequence[Mapping[str, Any]],
            config: Mapping[str, Any]) -> dict[str, Any] | None:
    """debate: rounds as columns, agents as rows, each cell the agent's answer in that round
    (changed: it changed its mind, by the strategy's own decision), the early stop or the
    budget's, and the final vote."""
    rounds = sorted((n for n in trace.of_kind("round")
                     if isinstance(n.get("data", {}).get("round"), int)),
                    key=lambda n: n["data"]["round"])
    if not rounds:
        return None
    by_node = _by_node(candidates)
    said = {n["data"]["round"]: n for n in trace.of_kind("decision")
            if isinstance(n.get("data", {}).get("changes"), list)
            and isinstance(n["data"].get("round"), int)}
    agents: dict[int, dict[str, Any]] = {}
    cells: dict[tuple[int, int], dict[str, Any]] = {}
    for r in rounds:
        for g in trace.children.get(r["id"], []):
            data = g.get("data", {})
            agent = data.get("agent")
            if g["kind"] != "generate" or not isinstance(agent, int):
                continue
            agents.setdefault(agent, {"agent": agent, "model": _str(data.get("model")),
                                      "role": _str(data.get("role"))})
            index = by_node.get(g["id"])
            cells[agent, r["data"]["round"]] = {
                "node": g["id"], "candidate": index, "answer": _str(data.get("answer")),
                "model": _str(data.get("model")), "changed": False, "from": None,
                "finish_reason": str(data.get("finish_reason") or "stop"),
                "voted": bool(candidates[index]["voted"]) if index is not None else False}
    for number, n in said.items():
        for change in n["data"]["changes"]:
            if isinstance(change, Mapping) and (change.get("agent"), number) in cells:
                cell = cells[change["agent"], number]
                cell["changed"], cell["from"] = True, _str(change.get("from"))
    played = [r["data"]["round"] for r in rounds]
    planned = config.get("rounds")
    last = max(played[-1], planned if isinstance(planned, int) else -1)
    stop = _decision(trace, "all ")
    stop = stop if stop and stop.get("data", {}).get("stopped_early") else None
    budget = _decision(trace, "the budget ran out in round")
    columns = []
    for number in range(last + 1):
        node = next((r for r in rounds if r["data"]["round"] == number), None)
        decision = said.get(number)
        columns.append({"round": number, "played": node is not None,
                        "node": node["id"] if node else None,
                        "decision": decision["id"] if decision else None,
                        "label": decision["label"] if decision else None,
                        "unanimous": bool(decision["data"].get("unanimous")) if decision
                        else False,
                        "changes": sum(1 for a in agents if cells.get((a, number), {})
                                       .get("changed"))})
    grid = [{**agents[a], "cells": [cells.get((a, c["round"])) for c in columns]}
            for a in sorted(agents)]
    return {"columns": columns, "agents": grid,
            "stopped_early": None if stop is None else {
                "round": stop["data"].get("round"), "node": stop["id"], "label": stop["label"],
                "answer": _str(stop["data"].get("answer"))},
            "budget": None if budget is None else {
                "round": budget.get("data", {}).get("round"), "node": budget["id"],
                "label": budget["label"]},
            "vote": _vote_summary(_vote_node(trace), candidates)}


def _particles(trace: _Trace) -> dict[str, Any] | None:
    """particle-filtering: steps as columns, the population's slots as rows. A cell is the
    particle a slot held once the step extended it: its step's score, its share of the weight,
    how many slots of the next population the resampling drew from it (none: dropped), the
    slot of the previous population it grew from, and whether the picked answer descends from
    it (by slot: a finished particle stays put and may fill several slots). A column: the
    effective sample size and whether (and why not) it resampled."""
    steps = [n for n in trace.of_kind("decision") if str(n["label"]).startswith("particles step")
             and all(isinstance(n.get("data", {}).get(k), list)
                     for k in ("particles", "weights", "scores", "ancestors"))]
    if not steps:
        return None

    def ids(values: Sequence[Any]) -> list[int | None]:  # a stored trace is untrusted
        return [x if isinstance(x, int) and not isinstance(x, bool) else None for x in values]

    n = max(len(s["data"]["particles"]) for s in steps)
    columns: list[dict[str, Any]] = []
    rows: list[list[dict[str, Any] | None]] = [[] for _ in range(n)]
    before: list[int | None] | None = None  # the previous step's draws: each slot's source
    for number, step in enumerate(steps, 1):
        data = step["data"]
        weights, scores, particles = data["weights"], data["scores"], ids(data["particles"])
        ancestors = ids(data["ancestors"])
        resampled = bool(data.get("resampled"))
        drawn = Counter(ancestors)
        copies = [drawn[slot] for slot in range(n)]  # linear in a long (untrusted) list
        columns.append({"step": number, "node": step["id"], "label": step["label"],
                        "ess": _num(data.get("ess")), "resampled": resampled,
                        "why": _str(data.get("why")) or "", "finished": data.get("finished")})
        for slot in range(n):
            node = particles[slot] if slot < len(particles) else None
            if node is None:
                rows[slot].append(None)
                continue
            found = trace.by_id.get(node, {}).get("data", {})
            source = before[slot] if before is not None and slot < len(before) else None
            rows[slot].append({
                "node": node, "score": _num(scores[slot]) if slot < len(scores) else None,
                "weight": _num(weights[slot]) if slot < len(weights) else None,
                "copies": copies[slot], "dropped": resampled and not copies[slot],
                "from": source + 1 if source is not None and 0 <= source < n else None,
                "answer": _str(found.get("answer")), "model": _str(found.get("model")),
                "chosen": False})
        before = ancestors
    pick = _decision(trace, "pick")
    chosen = (pick or {}).get("data", {}).get("chosen")
    chosen = chosen if isinstance(chosen, int) and not isinstance(chosen, bool) else None
    # the picked line, back from the last step's slots that hold the picked particle
    line = {k for k in range(n) if rows[k][-1] is not None and rows[k][-1]["node"] == chosen}
    for column in range(len(steps) - 1, -1, -1):
        for k in line:
            rows[k][column]["chosen"] = True  # type: ignore[index]
        line = {cell["from"] - 1 for k in line
                if (cell := rows[k][column]) is not None and cell["from"] is not None
                and rows[cell["from"] - 1][column - 1] is not None} if column else set()
    return {"n": n, "columns": columns,
            "rows": [{"slot": k + 1, "cells": cells} for k, cells in enumerate(rows)],
            "pick": None if pick is None else {
                "node": pick["id"], "label": pick["label"],
                "chosen": chosen if any(c and c["chosen"] for r in rows for c in r) else None,
                "answer": _str((pick.get("data") or {}).get("answer"))}}


def _layers(trace: _Trace, candidates: Sequence[Mapping[str, Any]],
            config: Mapping[str, Any], answer: str | None) -> dict[str, Any] | None:
    """mixture-of-agents: layers as columns of the proposers' responses (by model), then the
    aggregator's answer and whether it agreed with the last layer's majority."""
    layers = sorted((n for n in trace.of_kind("layer")
                     if isinstance(n.get("data", {}).get("layer"), int)),
                    key=lambda n: n["data"]["layer"])
    if not layers:
        return None
    by_node = _by_node(candidates)
    final = _answer_key(answer)
    proposers = [{"proposer": p + 1, "role": _str(x.get("role")), "model": _str(x.get("model")),
                  "n": x.get("n")}
                 for p, x in enumerate(layers[0]["data"].get("proposers") or [])
                 if isinstance(x, Mapping)]

    def response(g: Mapping[str, Any]) -> dict[str, Any]:
        data = g.get("data", {})
        index = by_node.get(g["id"])
        return {"node": g["id"], "candidate": index, "label": g["label"],
                "answer": _str(data.get("answer")), "model": _str(data.get("model")),
                "final": final is not None and _answer_key(data.get("answer")) == final,
                "finish_reason": str(data.get("finish_reason") or "stop"),
                "voted": bool(candidates[index]["voted"]) if index is not None else False}

    columns = []
    for layer in layers:
        found = [g for g in trace.children.get(layer["id"], [])
                 if g["kind"] == "generate" and isinstance(g.get("data", {}).get("proposer"), int)]
        columns.append({"layer": layer["data"]["layer"], "node": layer["id"], "cells": [
            [response(g) for g in found if g["data"]["proposer"] == p["proposer"]]
            for p in proposers]})
    planned = config.get("layers")
    for number in range(columns[-1]["layer"] + 1, planned + 1 if isinstance(planned, int)
                        else 0):
        columns.append({"layer": number, "node": None, "cells": None})
    made = next((g for g in trace.of_kind("generate")
                 if g.get("data", {}).get("aggregator") is True), None)
    decision = next((n for n in trace.of_kind("decision")
                     if n.get("data", {}).get("chosen") in ("aggregator", "vote")), None)
    data = decision["data"] if decision else {}
    aggregator = {"node": made["id"] if made else None,
                  "candidate": by_node.get(made["id"]) if made else None,
                  "answer": _str(made["data"].get("answer")) if made else None,
                  "model": _str(data.get("aggregator") or (made or {}).get("data", {})
                                .get("model")),
                  "role": _str(data.get("role") or config.get("aggregator")),
                  "agrees": data.get("agrees") if isinstance(data.get("agrees"), bool)
                  else None,
                  "chosen": _str(data.get("chosen")), "majority": _str(data.get("majority")),
                  "decision": decision["id"] if decision else None,
                  "label": decision["label"] if decision else None} \
        if made or decision else None
    budget = _decision(trace, "the budget ran out in layer")
    return {"proposers": proposers, "columns": columns, "aggregator": aggregator,
            "budget": None if budget is None else {
                "layer": budget.get("data", {}).get("layer"), "node": budget["id"],
                "label": budget["label"]},
            "vote": _vote_summary(_vote_node(trace), candidates), "answer": answer}


# -- a whole view -------------------------------------------------------------------------------

def _sections(strategy: str, view: dict[str, Any], trace: _Trace) -> list[str]:
    sections = []
    if view["tree"]:
        sections.append("tree")
    many = [name for name in MANY if view[name]]  # a run of several models' own shape
    rounds = not many and (strategy in ROUNDS or (not view["tree"] and len(view["candidates"])
                                                  <= 1 and len(trace.nodes) > 1))
    if rounds and trace.nodes:
        sections.append("timeline")
    if view["candidates"] and not (rounds and strategy in ROUNDS):
        sections.insert(0, "answers")
    sections[:0] = many  # before the answers: it says how they were reached
    if view["particles"]:  # as the many-model sections: how the answers were reached first
        sections.insert(0, "particles")
    if len(view["models"]["rows"]) > 1:
        sections.insert(0, "models")
    for name in ("programs", "confidence", "waves"):
        if view[name]:
            sections.append(name)
    if trace.of_kind("decision") and "timeline" not in sections and not many:
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
               note: str | None = None, status: str = "done",
               models: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One view from whatever is known; what is missing is read from the trace's root (the
    question, the configuration, the answer, why it stopped) or left out. ``models``: the
    result's cost per model (``Result.models``); without it, the trace's usage by model."""
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
    view["groups"] = _groups(cands, _votes(trace), winner, weighted)
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
    view["models"] = _models(trace, models, view["model"], config)
    view["cascade"] = _cascade(trace, cands, view["answer"])
    view["verdicts"] = _verdicts(trace, cands, config, strategy)
    view["debate"] = _debate(trace, cands, config)
    view["layers"] = _layers(trace, cands, config, view["answer"])
    view["particles"] = _particles(trace)
    view["timeline"] = _timeline(trace)
    view["sections"] = _sections(strategy, view, trace)
    return view


def _candidates_from_trace(trace: _Trace) -> list[dict[str, Any]]:
    """A trace alone: the votes' candidates (their nodes), else a search's finished paths."""
    votes = [v for v in _votes(trace) if isinstance(v.get("data", {}).get("nodes"), list)]
    raw: list[dict[str, Any]] = []
    seen: set[Any] = set()
    for vote in votes:
        answers: dict[int, Any] = {}
        weights: dict[int, float] = {}
        for g in vote["data"].get("groups") or []:
            for m in g.get("members", []) if isinstance(g, Mapping) else []:
                if isinstance(m, int):
                    answers[m], weights[m] = g.get("answer"), _num(g.get("weight")) or 0.0
        for i, node_id in enumerate(vote["data"]["nodes"]):
            if node_id in seen:
                continue
            seen.add(node_id)
            data = trace.data(node_id)
            usage = (trace.by_id.get(node_id) or {}).get("usage") or {}
            answer = answers.get(i, data.get("answer"))
            raw.append({"text": data.get("text", ""), "answer": answer,
                        "votes": weights.get(i, 0.0), "usage": usage,
                        "finish_reason": data.get("finish_reason"),
                        "metadata": {"node": node_id}})
    if not votes:
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
                      stop_reason=result.get("stop_reason"),
                      models=result.get("models") if isinstance(result.get("models"), Mapping)
                      else None, **extra)
