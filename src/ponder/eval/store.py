"""The sample store: one SQLite file per evaluation folder, written as results arrive.

Every row is committed as soon as its generation returns (WAL journal), so a run killed even with
``kill -9`` loses only the generations in flight, and a rerun resumes. Rows are keyed by a
hash of what produced them: samples by their sampling configuration (so self-consistency and
best-of-n with the same sampling share one pool of samples), verifier scores by sample and
verifier, results by the strategy's name and configuration. Changing a configuration never
mixes its rows with another's. The folder itself belongs to one model and one dataset
(``meta``): a different one is refused unless the run starts fresh.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ponder.errors import ConfigError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS strategies (
    strategy_key TEXT PRIMARY KEY, name TEXT NOT NULL, config TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS samples (
    sample_key TEXT NOT NULL, problem_id TEXT NOT NULL, idx INTEGER NOT NULL,
    text TEXT NOT NULL, answer TEXT, correct INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    calls REAL NOT NULL, seconds REAL NOT NULL, finish_reason TEXT NOT NULL,
    signature TEXT, meta TEXT,
    PRIMARY KEY (sample_key, problem_id, idx));
CREATE TABLE IF NOT EXISTS scores (
    sample_key TEXT NOT NULL, verifier TEXT NOT NULL, problem_id TEXT NOT NULL,
    idx INTEGER NOT NULL, score REAL, completion_tokens REAL NOT NULL,
    prompt_tokens REAL NOT NULL, calls REAL NOT NULL, seconds REAL NOT NULL,
    PRIMARY KEY (sample_key, verifier, problem_id, idx));
CREATE TABLE IF NOT EXISTS results (
    strategy_key TEXT NOT NULL, problem_id TEXT NOT NULL, budget INTEGER NOT NULL,
    answer TEXT, correct INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    calls INTEGER NOT NULL, seconds REAL NOT NULL, candidates TEXT NOT NULL,
    PRIMARY KEY (strategy_key, problem_id, budget));
"""


def _timeless_column(text: str | None) -> Any:
    """A JSON column's text (or None) parsed, without its ``seconds`` entries at any depth."""
    return None if text is None else _timeless(json.loads(text))


def _timeless(value: Any) -> Any:
    """``value`` (parsed JSON) without its ``seconds`` entries, at any depth; strings inside
    it are values, never parsed again."""
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


def strategy_key(name: str, config: dict[str, Any]) -> str:
    blob = json.dumps({"name": name, "config": config}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SampleRow:
    """One stored sample of a sampling strategy (self-consistency, best-of-n)."""

    idx: int
    text: str
    answer: str | None
    correct: bool
    prompt_tokens: int
    completion_tokens: int
    calls: float  # the sample's share of its call
    seconds: float  # the sample's share of its call's wall time
    finish_reason: str = "stop"
    signature: str | None = None  # code: what the program does (execution-based voting)
    meta: dict[str, Any] | None = None  # e.g. mode (chain/program), the program, its output

    @property
    def mode(self) -> str:
        return (self.meta or {}).get("mode", "chain")


@dataclass(frozen=True)
class ScoreRow:
    """A verifier's score of one stored sample, with the sample's share of what it cost."""

    idx: int
    score: float | None
    completion_tokens: float
    prompt_tokens: float
    calls: float
    seconds: float


@dataclass(frozen=True)
class ResultRow:
    """One stored strategy run on one problem at one budget."""

    budget: int
    answer: str | None
    correct: bool
    prompt_tokens: int
    completion_tokens: int
    calls: int
    seconds: float
    candidates: list[dict[str, Any]]
    # what each model spent, by model name ({name: usage with parameters and flops}); None in
    # a store written before it was kept
    models: dict[str, dict[str, Any]] | None = None

    @property
    def flops(self) -> float | None:
        """FLOPs-equivalent cost over every model of the run, None where a size is unknown."""
        costs = [m.get("flops") for m in (self.models or {}).values()]
        if not costs or any(c is None for c in costs):
            return None
        return float(sum(costs))

    @property
    def dollars(self) -> float | None:
        """Dollars over every model of the run, None where a model has no prices."""
        costs = [m.get("dollars") for m in (self.models or {}).values()]
        if not costs or any(c is None for c in costs):
            return None
        return float(sum(costs))


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(self.path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        columns = {r[1] for r in self.db.execute("PRAGMA table_info(samples)")}
        for column in ("signature", "meta"):  # a store written before they existed
            if column not in columns:
                self.db.execute(f"ALTER TABLE samples ADD COLUMN {column} TEXT")
        # a store written before results kept their cost per model: the column is added on the
        # first result written, so reading a committed store (distill, a report) never changes it
        self._models_column = "models" in {
            r[1] for r in self.db.execute("PRAGMA table_info(results)")}
        self.db.commit()

    def close(self) -> None:
        self.db.close()

    # -- the run this folder belongs to ----------------------------------------------------

    def claim(self, identity: dict[str, str]) -> None:
        """Record which model and dataset this store holds; refuse a different one."""
        stored = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        clashes = [k for k, v in identity.items() if k in stored and stored[k] != v]
        if clashes:
            what = ", ".join(f"{k} {stored[k]!r} (now {identity[k]!r})" for k in clashes)
            raise ConfigError(f"{self.path.parent} holds a different run: {what}; "
                              "use --fresh to start over or another --out")
        with self.db:
            self.db.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)", identity.items())

    def fingerprint(self) -> str:
        """A digest of what the store holds, wall times left out: every sample's text, answer,
        grade, tokens and finish reason, every verifier score and every early-stopped result,
        in key order. Two runs that produced the same samples have the same fingerprint
        (``ponder eval --deterministic`` promises it for an in-process model)."""
        digest = hashlib.sha256()
        queries = (
            "SELECT sample_key, problem_id, idx, text, answer, correct, prompt_tokens, "
            "completion_tokens, calls, finish_reason, signature, meta FROM samples "
            "ORDER BY sample_key, problem_id, idx",
            "SELECT sample_key, verifier, problem_id, idx, score, completion_tokens, "
            "prompt_tokens, calls FROM scores ORDER BY sample_key, verifier, problem_id, idx",
            "SELECT strategy_key, problem_id, budget, answer, correct, prompt_tokens, "
            "completion_tokens, calls, candidates FROM results "
            "ORDER BY strategy_key, problem_id, budget",
        )
        for query, json_column in zip(queries, (11, None, 8), strict=True):
            for row in self.db.execute(query):
                # a JSON column (a sample's meta, a result's candidates) carries wall times too
                row = [_timeless_column(v) if k == json_column else v for k, v in enumerate(row)]
                digest.update(json.dumps(row, sort_keys=True, default=str).encode())
                digest.update(b"\n")
        return digest.hexdigest()

    def register_strategy(self, key: str, name: str, config: dict[str, Any]) -> None:
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO strategies VALUES (?, ?, ?)",
                            (key, name, json.dumps(config, sort_keys=True, default=str)))

    # -- samples ---------------------------------------------------------------------------

    def add_samples(self, key: str, problem_id: str, rows: Iterable[SampleRow]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(key, problem_id, r.idx, r.text, r.answer, int(r.correct), r.prompt_tokens,
                  r.completion_tokens, r.calls, r.seconds, r.finish_reason, r.signature,
                  None if r.meta is None else json.dumps(r.meta)) for r in rows],
            )

    def samples(self, key: str, problem_id: str) -> list[SampleRow]:
        rows = self.db.execute(
            "SELECT idx, text, answer, correct, prompt_tokens, completion_tokens, calls, "
            "seconds, finish_reason, signature, meta FROM samples "
            "WHERE sample_key = ? AND problem_id = ? ORDER BY idx", (key, problem_id),
        ).fetchall()
        return [SampleRow(r[0], r[1], r[2], bool(r[3]), *r[4:10],
                          None if r[10] is None else json.loads(r[10])) for r in rows]

    def sample_count(self, key: str, problem_id: str) -> int:
        return self.db.execute(
            "SELECT COUNT(*) FROM samples WHERE sample_key = ? AND problem_id = ?",
            (key, problem_id),
        ).fetchone()[0]

    def add_scores(self, key: str, verifier: str, problem_id: str, rows: Iterable[ScoreRow]
                   ) -> None:
        with self.db:
            self.db.executemany(
                "INSERT INTO scores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(key, verifier, problem_id, r.idx, r.score, r.completion_tokens,
                  r.prompt_tokens, r.calls, r.seconds) for r in rows],
            )

    def scores(self, key: str, verifier: str, problem_id: str) -> dict[int, ScoreRow]:
        rows = self.db.execute(
            "SELECT idx, score, completion_tokens, prompt_tokens, calls, seconds FROM scores "
            "WHERE sample_key = ? AND verifier = ? AND problem_id = ?",
            (key, verifier, problem_id),
        ).fetchall()
        return {r[0]: ScoreRow(*r) for r in rows}

    # -- results ---------------------------------------------------------------------------

    def with_models_column(self) -> None:
        """Add the results' ``models`` column if this store was written before it existed
        (done on the first result written, never on a read)."""
        if not self._models_column:
            with self.db:
                self.db.execute("ALTER TABLE results ADD COLUMN models TEXT")
            self._models_column = True

    @property
    def result_columns(self) -> int:
        """How many columns the results table has (10 before ``models``, 11 with it)."""
        return 11 if self._models_column else 10

    def add_result(self, key: str, problem_id: str, row: ResultRow) -> None:
        self.with_models_column()
        with self.db:
            self.db.execute(
                "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, problem_id, row.budget, row.answer, int(row.correct), row.prompt_tokens,
                 row.completion_tokens, row.calls, row.seconds, json.dumps(row.candidates),
                 None if row.models is None else json.dumps(row.models)),
            )

    def result(self, key: str, problem_id: str, budget: int) -> ResultRow | None:
        r = self.db.execute(
            "SELECT budget, answer, correct, prompt_tokens, completion_tokens, calls, seconds, "
            f"candidates, {'models' if self._models_column else 'NULL'} FROM results "
            "WHERE strategy_key = ? AND problem_id = ? AND budget = ?",
            (key, problem_id, budget),
        ).fetchone()
        if r is None:
            return None
        return ResultRow(r[0], r[1], bool(r[2]), r[3], r[4], r[5], r[6], json.loads(r[7]),
                         None if r[8] is None else json.loads(r[8]))

    def counts(self, key: str, problem_ids: Sequence[str]) -> dict[str, int]:
        """Stored samples per problem (for progress and checks)."""
        rows = self.db.execute(
            "SELECT problem_id, COUNT(*) FROM samples WHERE sample_key = ? GROUP BY problem_id",
            (key,),
        ).fetchall()
        found = dict(rows)
        return {pid: found.get(pid, 0) for pid in problem_ids}
