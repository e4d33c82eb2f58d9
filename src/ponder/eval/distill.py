"""Training data from what the searches found (``ponder distill``): SFT traces, preference
pairs and step labels, in the formats TRL reads.

The input is an evaluation's store (``samples.sqlite`` with its traces), read without
generating anything: every stored sample of a sampling strategy and every candidate of a
strategy that ran whole is a *trace* of its problem, graded as the evaluation graded it (against
the gold answer, or the hidden tests). Then, per problem:

- **SFT** (rejection sampling, STaR): the best verified trace, as chat messages. Verified: correct
  by the gold answer where the problem has one; else (no gold) in the winning answer's cluster
  when that answer holds at least ``min_confidence`` of the traces. Best: the fewest tokens,
  then the first (scores of different strategies are not comparable, lengths are).
- **Preference pairs** (DPO, ORPO): a verified trace (chosen) against a trace that is not
  (rejected), up to ``pairs_per_problem`` distinct pairs, the best chosen and the strongest
  rejected first (a rejected trace that states a wrong answer before one that states none).
- **Step labels** (PRM training, the Math-Shepherd idea): from the search trees of the step-level
  searches (beam-search, dvts, mcts, kept in ``traces/``), every finished path as its steps, each
  step labelled by whether any finished path through it reached a correct answer. TRL's
  stepwise-supervision format: ``{"prompt", "completions", "labels"}``.

Deduplicated: problems with the same prompt and gold answer (a dataset that repeats a question)
are one, and a trace or path that appears twice counts once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ponder.domains.vote import cluster_ids
from ponder.errors import ConfigError
from ponder.eval.store import Store
from ponder.eval.traces import load_trace, read_report_json
from ponder.strategies.base import problem_messages
from ponder.types import Problem

STEP_SEARCHES = ("beam-search", "dvts", "mcts", "particle-filtering")


@dataclass(frozen=True)
class Trace:
    """One solution a strategy produced for a problem, graded."""

    text: str
    answer: str | None
    correct: bool
    tokens: int
    source: str = ""


@dataclass(frozen=True)
class StepPath:
    """A finished path of a step search: its steps and each step's label."""

    steps: tuple[str, ...]
    labels: tuple[bool, ...]


@dataclass
class Item:
    """One problem and everything found for it."""

    id: str
    question: str
    gold: str | None
    messages: list[dict[str, str]]
    traces: list[Trace] = field(default_factory=list)
    paths: list[StepPath] = field(default_factory=list)


@dataclass(frozen=True)
class StrategyInfo:
    """What the reader needs of an evaluated strategy (report.json's ``config.strategies``)."""

    label: str
    name: str
    key: str
    mode: str
    budgets: tuple[int, ...]
    pools: tuple[str, ...]
    system: str | None


@dataclass
class Summary:
    problems: int = 0
    prompts: int = 0  # distinct prompts (a repeated question is one)
    traces: int = 0
    verified: int = 0  # prompts with at least one verified trace
    sft: int = 0
    pairs: int = 0
    prm: int = 0
    sft_tokens: int = 0
    duplicates: int = 0

    def lines(self) -> list[str]:
        return [
            f"problems  {self.problems} ({self.prompts} distinct prompts, {self.traces} traces; "
            f"{self.verified} prompts with a verified trace)",
            f"sft       {self.sft} rows kept, {self.sft_tokens:,} completion tokens",
            f"pairs     {self.pairs} preference pairs",
            f"prm       {self.prm} step-labelled paths",
            f"dropped   {self.duplicates} duplicate traces and paths (same text)",
        ]


# -- reading an evaluation -----------------------------------------------------------------

def strategies_of(config: Mapping[str, Any]) -> list[StrategyInfo]:
    out = []
    for label, info in (config.get("strategies") or {}).items():
        if not isinstance(info, Mapping) or not info.get("key"):
            continue
        cfg = info.get("config") or {}
        out.append(StrategyInfo(label, str(info.get("name") or label), str(info["key"]),
                                str(info.get("mode") or ""),
                                tuple(int(b) for b in info.get("budgets") or [1]),
                                tuple(str(p) for p in info.get("pools") or []),
                                cfg.get("system") if isinstance(cfg, Mapping) else None))
    return out


def read_report(folder: Path) -> tuple[list[Problem], list[StrategyInfo]]:
    """An evaluation folder's problems (id, question, gold) and strategies."""
    data = read_report_json(folder)
    problems = [Problem(str(p.get("question") or ""),
                        None if p.get("gold") is None else str(p["gold"]), id=str(p["id"]))
                for p in data["problems"] if isinstance(p, dict) and "id" in p]
    return problems, strategies_of(data.get("config") or {})


def collect(folder: Path, store: Store, problems: Sequence[Problem],
            strategies: Sequence[StrategyInfo],
            on_problem: Callable[[], None] | None = None) -> list[Item]:
    """Every problem's graded traces (and step-search paths) from the store and its traces.
    The prompt is the problem posed as its domain poses it, with the strategies' system prompt
    (the first one set), as the traces were generated."""
    items = []
    system = next((s.system for s in strategies if s.system), None) or ""
    for problem in problems:
        pid = problem.id
        messages = [{"role": m.role, "content": m.content}
                    for m in problem_messages(problem, system)]
        item = Item(pid, problem.question, problem.answer, messages)
        seen_pools: set[str] = set()
        for s in strategies:
            for pool in s.pools:  # sampling strategies sharing a pool share its samples
                if pool in seen_pools:
                    continue
                seen_pools.add(pool)
                item.traces += [Trace(r.text, r.answer, r.correct, r.completion_tokens,
                                      s.label)
                                for r in store.samples(pool, pid)]
            if s.pools:
                continue
            for budget in s.budgets:
                row = store.result(s.key, pid, budget)
                if row is None:
                    continue
                item.traces += [Trace(str(c.get("text") or ""), c.get("answer"),
                                      bool(c.get("correct")), _tokens(c), s.label)
                                for c in row.candidates if c.get("text")]
                if s.name in STEP_SEARCHES:
                    stored = load_trace(folder, s.key, pid, budget)
                    if stored is not None:
                        item.paths += step_paths(stored, row.candidates)
        items.append(item)
        if on_problem is not None:
            on_problem()
    return items


def _tokens(candidate: Mapping[str, Any]) -> int:
    usage = candidate.get("usage") or {}
    return int(usage.get("completion_tokens") or candidate.get("tokens") or 0)


def step_paths(stored: Mapping[str, Any], candidates: Sequence[Mapping[str, Any]]
               ) -> list[StepPath]:
    """The finished paths of a step search's tree, each step labelled (Math-Shepherd): true when
    a finished path through it reached a correct answer. ``candidates``: the graded candidates,
    each naming its leaf (``metadata.node``) in the stored trace."""
    nodes = {n["id"]: n for n in ((stored.get("trace") or {}).get("nodes") or [])
             if isinstance(n, Mapping) and "id" in n}
    leaves: list[tuple[list[int], bool]] = []
    for c in candidates:
        leaf = (c.get("metadata") or {}).get("node")
        if leaf not in nodes:
            continue
        path = []
        node = nodes.get(leaf)
        while node is not None and node.get("kind") == "generate":
            path.append(node["id"])
            node = nodes.get(node.get("parent"))
        if path:
            leaves.append((path[::-1], bool(c.get("correct"))))
    good = {i for path, ok in leaves if ok for i in path}
    out = []
    for path, _ in leaves:
        steps = tuple(str((nodes[i].get("data") or {}).get("text") or "").strip() for i in path)
        out.append(StepPath(steps, tuple(i in good for i in path)))
    return out


# -- choosing ------------------------------------------------------------------------------

def verified(item: Item, min_confidence: float) -> list[bool] | None:
    """Which traces are verified: correct by the gold answer; without one, in the winning
    answer's cluster when it holds ``min_confidence`` of the traces. None: cannot tell."""
    if not item.traces:
        return None
    if item.gold is not None:
        return [t.correct for t in item.traces]
    clusters = cluster_ids([t.answer for t in item.traces])
    counts: dict[int, int] = {}
    for c in clusters:
        if c is not None:
            counts[c] = counts.get(c, 0) + 1
    if not counts:
        return None
    winner = max(counts, key=lambda c: (counts[c], -c))  # a tie: the answer seen first
    if counts[winner] / len(item.traces) < min_confidence:
        return None
    return [c == winner for c in clusters]


def _best_first(traces: Sequence[Trace], indices: Iterable[int]) -> list[int]:
    """Shortest first (fewest completion tokens), then in order."""
    return sorted(indices, key=lambda i: (traces[i].tokens, i))


def _strongest_first(traces: Sequence[Trace], indices: Iterable[int]) -> list[int]:
    """Traces that state a (wrong) answer before those that state none, then in order."""
    return sorted(indices, key=lambda i: (traces[i].answer is None, i))


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


@dataclass
class Distilled:
    sft: list[dict[str, Any]] = field(default_factory=list)
    pairs: list[dict[str, Any]] = field(default_factory=list)
    prm: list[dict[str, Any]] = field(default_factory=list)
    summary: Summary = field(default_factory=Summary)


def merged(items: Sequence[Item], summary: Summary) -> list[Item]:
    """One item per distinct prompt and gold answer (a dataset that repeats a question), with
    all its traces (they all vote) and its paths, a path seen twice kept once."""
    out: dict[str, Item] = {}
    for item in items:
        key = json.dumps([item.messages, item.gold])
        if key not in out:
            out[key] = Item(item.id, item.question, item.gold, item.messages)
        into = out[key]
        into.traces += item.traces
        steps = {p.steps for p in into.paths}
        for path in item.paths:
            if path.steps in steps:
                summary.duplicates += 1
                continue
            steps.add(path.steps)
            into.paths.append(path)
    return list(out.values())


def distinct(traces: Sequence[Trace], indices: Iterable[int], summary: Summary) -> list[int]:
    """The indices whose trace text was not seen before among ``indices``."""
    seen: set[str] = set()
    out = []
    for i in indices:
        if traces[i].text in seen:
            summary.duplicates += 1
            continue
        seen.add(traces[i].text)
        out.append(i)
    return out


def distill(items: Sequence[Item], *, min_confidence: float = 0.5, pairs_per_problem: int = 1
            ) -> Distilled:
    """The SFT rows, preference pairs and step-labelled paths of ``items``, deduplicated."""
    if not 0.0 < min_confidence <= 1.0:
        raise ConfigError(f"min confidence must be in (0, 1], got {min_confidence}")
    if pairs_per_problem < 0:
        raise ConfigError(f"pairs per problem must be >= 0, got {pairs_per_problem}")
    out = Distilled()
    s = out.summary
    s.problems = len(items)
    s.traces = sum(len(item.traces) for item in items)
    for item in merged(items, s):
        s.prompts += 1
        ok = verified(item, min_confidence)
        if ok is not None and any(ok):
            s.verified += 1
            traces = item.traces
            good = _best_first(traces, distinct(traces, (i for i, v in enumerate(ok) if v), s))
            bad = _strongest_first(traces,
                                   distinct(traces, (i for i, v in enumerate(ok) if not v), s))
            best = traces[good[0]]
            out.sft.append({"messages": [*item.messages, assistant(best.text)]})
            s.sft += 1
            s.sft_tokens += best.tokens
            pairs = [(i, j) for i in good for j in bad][:pairs_per_problem]
            out.pairs += [{"prompt": item.messages, "chosen": [assistant(traces[i].text)],
                           "rejected": [assistant(traces[j].text)]} for i, j in pairs]
            s.pairs += len(pairs)
        if item.gold is None:
            continue  # step labels need the gold answer: a vote's winner is not enough
        for path in item.paths:
            if path.steps:
                out.prm.append({"prompt": item.question, "completions": list(path.steps),
                                "labels": list(path.labels)})
                s.prm += 1
    return out


SFT_FILE, PAIRS_FILE, PRM_FILE = "sft.jsonl", "preference.jsonl", "prm.jsonl"


def write(out: Distilled, folder: Path) -> list[Path]:
    """The three JSONL files (each written whole, then moved into place)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, rows in ((SFT_FILE, out.sft), (PAIRS_FILE, out.pairs), (PRM_FILE, out.prm)):
        path = folder / name
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        tmp.replace(path)
        paths.append(path)
    (folder / "summary.json").write_text(json.dumps(out.summary.__dict__, indent=1) + "\n",
                                         encoding="utf-8")
    return paths + [folder / "summary.json"]


def coverage(items: Sequence[Item], sizes: Sequence[int]) -> dict[int, int]:
    """Problems with at least one correct trace among their first ``n`` traces, per ``n`` (the
    data rejection sampling would keep at that many samples per problem)."""
    return {n: sum(any(t.correct for t in item.traces[:n]) for item in items) for n in sizes}
