"""An evaluation's traces and pages: each run strategy's result on each problem is kept with its
trace (``traces/<strategy key>/<problem>-<budget>.json.gz``), and ``view/<problem>.html`` shows
every strategy's work on one problem (``ponder view FOLDER --problem ID``, linked from
report.html).

A strategy scored by replaying its selection on stored samples (self-consistency, best-of-n,
adaptive-consistency...) never ran as a whole, so it has no trace: its page is built from what
the store holds — the samples, their answers, scores and the vote — and says so.
"""

from __future__ import annotations

import difflib
import gzip
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ponder.errors import ConfigError
from ponder.types import Problem
from ponder.view import build_view, render_page, view_of_result

TRACES = "traces"
VIEWS = "view"
REPLAYED = ("vote", "best-score", "sequential")


def slug(problem_id: str) -> str:
    """A file name for a problem id (any text): readable, and distinct per id."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", problem_id).strip("._")[:60] or "problem"
    return f"{readable}-{hashlib.sha256(problem_id.encode()).hexdigest()[:8]}"


def trace_path(folder: Path, key: str, problem_id: str, budget: int) -> Path:
    return Path(folder) / TRACES / key / f"{slug(problem_id)}-{budget}.json.gz"


def save_trace(folder: Path, key: str, problem: Problem, budget: int, result: Any) -> None:
    """Keep a run's whole result (its trace too) beside the store."""
    path = trace_path(folder, key, problem.id, budget)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = json.dumps({"problem_id": problem.id, "question": problem.question,
                       **result.to_dict()}, default=str).encode()
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(gzip.compress(blob, compresslevel=6))
    tmp.replace(path)


def load_trace(folder: Path, key: str, problem_id: str, budget: int) -> dict[str, Any] | None:
    path = trace_path(folder, key, problem_id, budget)
    try:
        data = json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, ValueError, EOFError, RecursionError):
        return None
    return data if isinstance(data, dict) and data.get("problem_id") == problem_id else None


def _stored_view(label: str, info: Mapping[str, Any], entry: Mapping[str, Any],
                 problem: Mapping[str, Any], note: str) -> dict[str, Any]:
    candidates = [{"text": c.get("text", ""), "answer": c.get("answer"), "score": c.get("score"),
                   "correct": c.get("correct"),
                   "usage": {"completion_tokens": c.get("tokens", 0)},
                   "metadata": {k: c[k] for k in ("mode", "output", "error") if c.get(k)}}
                  for c in entry.get("candidates", [])]
    tokens = sum(int(c.get("tokens") or 0) for c in entry.get("candidates", []))
    return build_view(
        nodes=None, candidates=candidates, strategy=str(info.get("name") or label), label=label,
        question=problem.get("question"), answer=entry.get("answer"),
        config=info.get("config") or {}, gold=problem.get("gold"),
        correct=entry.get("correct"), note=note,
        usage={"prompt_tokens": None, "completion_tokens": tokens, "total_tokens": tokens,
               "calls": None, "seconds": None})


def problem_views(folder: Path, problem: Mapping[str, Any], config: Mapping[str, Any]
                  ) -> list[dict[str, Any]]:
    """One view per strategy evaluated on ``problem`` (an entry of report.json's problems)."""
    views = []
    plans = config.get("strategies") or {}
    for label, entry in (problem.get("strategies") or {}).items():
        info = plans.get(label) or {}
        mode, n = info.get("mode"), len(entry.get("candidates", []))
        if mode in REPLAYED:
            how = ("its stopping rule replayed on the stored samples in order"
                   if mode == "sequential" else "its selection replayed on the stored samples")
            views.append(_stored_view(label, info, entry, problem, (
                f"No trace: {label} was scored with {how}, so it never ran as one search. "
                f"Shown: the {n} samples it chose among at budget {entry.get('budget')}, their "
                "answers and scores, and the vote.")))
            continue
        stored = load_trace(folder, str(info.get("key")), str(problem.get("id")),
                            int(entry.get("budget") or 1)) if info.get("key") else None
        if stored is None:
            views.append(_stored_view(label, info, entry, problem, (
                f"No trace was stored for {label} on this problem (a run made before ponder kept "
                "traces): shown are its candidates as the store holds them.")))
            continue
        views.append(view_of_result(stored, label=label, question=problem.get("question"),
                                    gold=problem.get("gold"), correct=entry.get("correct")))
    return views


def read_report_json(folder: Path) -> dict[str, Any]:
    """An evaluation folder's report.json, or one clear error."""
    path = Path(folder) / "report.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{folder} holds no report.json: is it a `ponder eval --out` folder "
                          "whose run finished?") from None
    except RecursionError:
        raise ConfigError(f"cannot read {path}: its JSON is nested too deeply") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("problems"), list):
        raise ConfigError(f"{path} is not a ponder eval report")
    return data


def unknown_problem(problem_id: str, folder: Path, ids: list[str]) -> str:
    """One line: the id is not the folder's, a likely one it meant (``gsm8k-12``: ``12``, the
    number a GSM8K file's problems go by), and a few of its ids."""
    tail = re.search(r"(\d+)$", problem_id)
    guess = tail.group(1) if tail and tail.group(1) in ids else None
    if guess is None:
        close = difflib.get_close_matches(problem_id, ids, n=1)
        guess = close[0] if close else None
    known = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
    return (f"no problem {problem_id!r} in {folder}"
            + (f"; did you mean {guess!r}?" if guess is not None else "")
            + f" (its {len(ids)} problem{'s' if len(ids) != 1 else ''}: {known})")


def problem_page(folder: Path, problem_id: str, strategy: str | None = None
                 ) -> tuple[str, Path]:
    """The page of one problem of an evaluation folder, and where it belongs."""
    report = read_report_json(folder)
    problems = {str(p.get("id")): p for p in report["problems"] if isinstance(p, dict)}
    problem = problems.get(problem_id)
    if problem is None:
        raise ConfigError(unknown_problem(problem_id, folder, list(problems)))
    views = problem_views(folder, problem, report.get("config") or {})
    if not views:
        raise ConfigError(f"no strategy has a result for problem {problem_id!r} yet")
    selected = 0
    if strategy is not None:
        labels = [v["label"] for v in views]
        if strategy not in labels:
            raise ConfigError(f"no strategy {strategy!r} on problem {problem_id!r}; "
                              f"evaluated: {', '.join(labels)}")
        selected = labels.index(strategy)
    title = f"problem {problem_id}"
    page = render_page(views, title=title, selected=selected)
    return page, Path(folder) / VIEWS / f"{slug(problem_id)}.html"


def write_problem_pages(out: Path, data: Mapping[str, Any], config: Mapping[str, Any]
                        ) -> dict[str, str]:
    """Every problem's page under ``out/view/``; returns each problem's link from report.html."""
    links: dict[str, str] = {}
    for problem in data.get("problems", []):
        views = problem_views(out, problem, config)
        if not views:
            continue
        name = f"{slug(str(problem['id']))}.html"
        path = Path(out) / VIEWS / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_page(views, title=f"problem {problem['id']}"), encoding="utf-8")
        links[str(problem["id"])] = f"{VIEWS}/{name}"
    return links
