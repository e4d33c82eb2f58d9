"""Replay the committed GSM8K stores with the answer reading of e6d60d9 and today's: no model runs.

Every stored sample's answer is read again from its stored text (a chain: ``extract_answer``; a
program: ``printed_answer`` of its stored output) by the old rule (``domains/answers.py`` as it
was at the base commit, loaded from git) and by today's, and graded against the GSM8K gold
answer by each rule's own equivalence. Then every vote the store can replay (self-consistency
over each chain, program and mixed pool at each n, adaptive-consistency, the greedy chain) is
scored three ways on the same samples and the same random subsets:

- **old**: the base commit (old reading, cut chains vote);
- **read**: today's reading of answers, cut chains still voting (the extraction's effect);
- **new**: today's default (today's reading, chains cut at the token limit left out).

Each pair is compared per problem with ``ponder.eval.paired.compare``: the mean difference, a
paired bootstrap 95% interval, and the exact sign test (McNemar's exact test on 0/1 outcomes).

    python bench/extraction_replay.py

writes bench/results/extraction_replay-DATE.md and .json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import sqlite3
import statistics
import subprocess
import sys
import types
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ponder.backends.models import file_sha256
from ponder.domains import answers as new_rule
from ponder.domains.vote import cluster_ids
from ponder.eval.datasets import load_dataset
from ponder.eval.paired import compare
from ponder.eval.pools import Pool, counts, pick, pools_for, stratified_accuracy
from ponder.eval.store import SampleRow
from ponder.strategies.adaptive_consistency import AdaptiveConsistency
from ponder.strategies.samplers import printed_answer

ROOT = Path(__file__).resolve().parent.parent
BASE = "e6d60d9"
STORES = ("bench/runs/gsm8k-5-check", "bench/runs/gsm8k-tune", "bench/runs/distill-gsm8k-12")
DRAWS = 200  # random subsets per problem and budget when there are more (as ponder eval)
Equivalence = Callable[[str | None, str | None], bool]


def old_rule(commit: str) -> types.ModuleType:
    """``ponder.domains.answers`` as it was at ``commit``."""
    source = subprocess.run(["git", "-C", str(ROOT), "show",
                             f"{commit}:src/ponder/domains/answers.py"],
                            check=True, capture_output=True, text=True).stdout
    module = types.ModuleType(f"answers_{commit}")
    sys.modules[module.__name__] = module  # dataclasses and lru_cache look the module up
    exec(compile(source, f"{commit}:answers.py", "exec"), module.__dict__)
    return module


def printed(stdout: str, extract: Callable[[str], str | None]) -> str | None:
    """``samplers.printed_answer`` with the given extraction (the base commit's is the same
    code around its own ``extract_answer``)."""
    import re

    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if not lines:
        return None
    last = lines[-1][:200]
    answer = extract(last) or last
    numbers = re.findall(r"-?\d[\d,]*(?:\.\d+)?", answer)
    return numbers[0].replace(",", "") if len(numbers) == 1 else answer


def clusters(answers: Sequence[str | None], equivalent: Equivalence) -> list[int | None]:
    """``vote.cluster_ids`` with the given equivalence."""
    firsts: list[str] = []
    out: list[int | None] = []
    for answer in answers:
        if answer is None:
            out.append(None)
            continue
        label = next((k for k, f in enumerate(firsts) if equivalent(f, answer)), None)
        if label is None:
            label = len(firsts)
            firsts.append(answer)
        out.append(label)
    return out


@dataclass
class Sample:
    row: SampleRow
    old: str | None
    new: str | None
    old_ok: bool
    new_ok: bool

    @property
    def cut(self) -> bool:
        return self.row.finish_reason == "length"


@dataclass
class Store:
    path: Path
    db: sqlite3.Connection
    gold: dict[str, str]
    pools: dict[str, dict[str, list[Sample]]] = field(default_factory=dict)  # key -> pid -> ..
    checks: Counter[str] = field(default_factory=Counter)


def read_store(folder: Path, gold: dict[str, str], old: types.ModuleType) -> Store:
    db = sqlite3.connect(f"file:{folder / 'samples.sqlite'}?mode=ro&immutable=1", uri=True)
    store = Store(folder, db, gold)
    rows = db.execute("SELECT sample_key, problem_id, idx, text, answer, correct, prompt_tokens, "
                      "completion_tokens, calls, seconds, finish_reason, signature, meta "
                      "FROM samples ORDER BY sample_key, problem_id, idx").fetchall()
    for key, pid, *rest in rows:
        meta = None if rest[-1] is None else json.loads(rest[-1])
        row = SampleRow(rest[0], rest[1], rest[2], bool(rest[3]), *rest[4:10], meta)
        if row.mode == "program":  # the answer a program printed (None: it failed)
            output = (meta or {}).get("output") or ""
            before = None if row.answer is None else printed(output, old.extract_answer)
            after = None if row.answer is None else printed_answer(output)
        else:
            before, after = old.extract_answer(row.text), new_rule.extract_answer(row.text)
        store.checks["samples"] += 1
        store.checks["stored answer = old reading"] += before == row.answer
        old_ok = old.equivalent(before, gold[pid])
        store.checks["stored grade = old grade"] += old_ok == row.correct
        sample = Sample(row, before, after, old_ok, new_rule.equivalent(after, gold[pid]))
        store.pools.setdefault(key, {}).setdefault(pid, []).append(sample)
    return store


# -- what changed, sample by sample and cluster by cluster ------------------------------------

def cut_by_problem(store: Store, names: dict[str, str]) -> dict[str, list[str]]:
    """Each problem's samples cut at the token limit (every pool): the answer read from each,
    marked when it is right."""
    out: dict[str, list[str]] = {}
    for key, pool in store.pools.items():
        for pid, ss in pool.items():
            out.setdefault(pid, []).extend(
                f"{s.new} ({'right' if s.new_ok else 'wrong'}, {names.get(key, key)})"
                for s in ss if s.cut)
    return {pid: cut for pid, cut in out.items() if cut}


def answer_changes(store: Store, names: dict[str, str]) -> dict[str, Any]:
    changed = [(pid, s) for pool in store.pools.values() for pid, ss in pool.items()
               for s in ss if s.old != s.new]
    samples = [s for pool in store.pools.values() for ss in pool.values() for s in ss]
    return {
        "samples": len(samples),
        "chains": sum(s.row.mode == "chain" for s in samples),
        "programs": sum(s.row.mode == "program" for s in samples),
        "cut": sum(s.cut for s in samples),
        "cut_answered": sum(s.cut and s.new is not None for s in samples),
        "cut_right": sum(s.cut and s.new_ok for s in samples),
        "changed": len(changed),
        "wrong_to_right": sum(not s.old_ok and s.new_ok for _, s in changed),
        "right_to_wrong": sum(s.old_ok and not s.new_ok for _, s in changed),
        "cut_by_problem": cut_by_problem(store, names),
        "examples": [{"problem": pid, "gold": store.gold[pid], "old": s.old, "new": s.new,
                      "old_right": s.old_ok, "new_right": s.new_ok, "finish": s.row.finish_reason}
                     for pid, s in changed],
    }


# -- the votes the store can replay -----------------------------------------------------------

@dataclass(frozen=True)
class Config:
    label: str
    name: str
    pools: tuple[Pool, ...]
    vote: types.SimpleNamespace  # what pools.pick and the stopping rule read
    verifier: str | None = None  # best-of-n: whose stored scores it picks by

    def rows(self, store: Store, pid: str, budget: int) -> list[Sample]:
        """The problem's samples as ``ponder eval`` takes them for a largest budget: each
        pool's first as many as that budget uses (fewer where fewer are stored; best-of-n:
        only those its verifier scored)."""
        targets = counts(self.vote, list(self.pools), budget)
        out = [s for pool, target in zip(self.pools, targets, strict=True)
               for s in store.pools.get(pool.key, {}).get(pid, [])[:target]]
        if self.verifier is not None:
            scored = self.scores(store, pid)
            out = [s for s in out if s.row.idx in scored]
        return out

    def scores(self, store: Store, pid: str) -> dict[int, float | None]:
        if self.verifier is None:
            return {}
        return dict(store.db.execute(
            "SELECT idx, score FROM scores WHERE sample_key = ? AND verifier = ? AND "
            "problem_id = ?", (self.pools[0].key, self.verifier, pid)).fetchall())

    def strata(self, samples: Sequence[Sample]) -> list[range]:
        """Where each pool's samples lie (chains first, as ``ponder eval``)."""
        out, start = [], 0
        for pool in self.pools:
            size = sum(1 for s in samples[start:] if s.row.mode == pool.mode
                       or len(self.pools) == 1)
            out.append(range(start, start + size))
            start += size
        return out

    def fits(self, samples: Sequence[Sample], budget: int) -> bool:
        return all(n <= len(s) for n, s in zip(counts(self.vote, list(self.pools), budget),
                                               self.strata(samples), strict=True))


def configs(store: Store) -> tuple[list[Config], list[str]]:
    """The distinct plain votes among the store's registered strategies whose samples it holds
    (a selection rule's or a verifier's pick is a different rule: listed as skipped)."""
    out: dict[tuple[Any, ...], Config] = {}
    skipped: Counter[str] = Counter()
    for name, raw in store.db.execute("SELECT name, config FROM strategies"):
        config = json.loads(raw)
        if name == "cot":
            continue  # the greedy chain: replayed on its stored result (greedy())
        if name not in ("self-consistency", "program-of-thought", "adaptive-consistency",
                        "best-of-n"):
            skipped[f"{name} (not a vote)"] += 1
            continue
        if config.get("selector"):
            skipped["self-consistency with a selection rule (not a plain vote)"] += 1
            continue
        if config.get("examples"):  # the same exemplars, written from another checkout
            config["examples"] = str(ROOT / "bench" / "gsm8k_exemplars.jsonl")
        pools = tuple(pools_for(config))
        if not all(p.key in store.pools for p in pools):
            skipped[f"{name} (samples not in this store)"] += 1
            continue
        vote = types.SimpleNamespace(
            mode=config.get("mode", "chain"), program_share=config.get("program_share", 0.5),
            chain_weight=config.get("chain_weight", 1.0),
            program_weight=config.get("program_weight", 1.0),
            cross_mode_bonus=config.get("cross_mode_bonus", 0.0), selector=None,
            wave=config.get("wave"), threshold=config.get("threshold"))
        what = f"{vote.mode}, T={config.get('temperature')}, max_tokens={config['max_tokens']}"
        what += f", {config['shots']}-shot" if config.get("shots") else ""
        if name == "adaptive-consistency":
            what += f", threshold {vote.threshold}"
        if name == "best-of-n":
            what += f", verifier {config.get('verifier')}"
        key = (name, pools, tuple(sorted(vars(vote).items())))
        out.setdefault(key, Config(f"{name} ({what})", name, pools, vote,
                                   config.get("verifier") if name == "best-of-n" else None))
    return list(out.values()), [f"{n} × {k}" for k, n in sorted(skipped.items())]


CONDITIONS = ("old", "read", "new")  # (reading, cut chains vote)


def condition(samples: Sequence[Sample], which: str, old: types.ModuleType
              ) -> tuple[list[SampleRow], list[int | None], float]:
    """The rows (answers and grades of that reading), their groups and the cut weight."""
    if which == "old":
        rows = [replace(s.row, answer=s.old, correct=s.old_ok) for s in samples]
        return rows, clusters([s.old for s in samples], old.equivalent), 1.0
    rows = [replace(s.row, answer=s.new, correct=s.new_ok) for s in samples]
    return rows, cluster_ids([s.new for s in samples]), 1.0 if which == "read" else 0.0


def replay(store: Store, config: Config, old: types.ModuleType, seed: int
           ) -> dict[int, dict[str, dict[str, float]]]:
    """values[budget][condition][problem]: the expected accuracy of the vote at each budget
    (powers of 2 up to the most the stored samples allow), on the same subsets in every
    condition."""
    values: dict[int, dict[str, dict[str, float]]] = {}
    problems = sorted({pid for p in config.pools for pid in store.pools[p.key]}, key=int)
    most = [2 ** i for i in range(11)
            if any(config.fits(config.rows(store, pid, 2 ** i), 2 ** i) for pid in problems)]
    if not most:
        return values
    budgets = most[-1:] if config.name == "adaptive-consistency" else most
    for pid in problems:
        samples = config.rows(store, pid, most[-1])
        strata = config.strata(samples)
        for budget in budgets:
            if not config.fits(samples, budget):
                continue
            for which in CONDITIONS:
                rows, labels, cut_weight = condition(samples, which, old)
                vote = types.SimpleNamespace(**{**vars(config.vote), "cut_weight": cut_weight})
                if config.name == "adaptive-consistency":
                    used = AdaptiveConsistency.samples_used(
                        vote, labels, budget, [s.cut for s in samples])
                    chosen = pick("vote", vote, rows, [None] * len(rows), range(used), labels)
                    value = float(chosen is not None and rows[chosen].correct)
                else:
                    stored = config.scores(store, pid)
                    scores = [stored.get(r.idx) for r in rows]
                    mode = "vote" if config.verifier is None else "best-score"

                    def chooser(subset: Sequence[int], rows=rows, labels=labels, vote=vote,
                                scores=scores, mode=mode) -> int | None:
                        return pick(mode, vote, rows, scores, subset, labels)

                    rng = random.Random(f"{seed}:{config.label}:{pid}:{budget}")
                    value = stratified_accuracy(chooser, [r.correct for r in rows], strata,
                                                counts(vote, list(config.pools), budget),
                                                DRAWS, rng)
                values.setdefault(budget, {}).setdefault(which, {})[pid] = value
    return values


def group_changes(store: Store, config: Config, old: types.ModuleType) -> dict[str, Any]:
    """The answer groups of the vote at its largest budget, problem by problem, before and
    after (a mixed vote groups chains with programs: "$245" joins a program's "245"), and which
    old groups each new one joined."""
    problems = sorted({pid for p in config.pools for pid in store.pools[p.key]}, key=int)
    most = max((2 ** i for i in range(11) if any(
        config.fits(config.rows(store, pid, 2 ** i), 2 ** i) for pid in problems)), default=0)
    problems = [pid for pid in problems if config.fits(config.rows(store, pid, most), most)]
    before = after = 0
    merges = []
    for pid in problems:
        ss = config.rows(store, pid, most)
        a = clusters([s.old for s in ss], old.equivalent)
        b = cluster_ids([s.new for s in ss])
        na, nb = len({x for x in a if x is not None}), len({x for x in b if x is not None})
        before, after = before + na, after + nb
        joined: dict[int, dict[int, str]] = {}  # new group -> old group -> an old answer
        for s, x, y in zip(ss, a, b, strict=True):
            if x is not None and y is not None:
                joined.setdefault(y, {}).setdefault(x, str(s.old))
        merged = [sorted(g.values()) for g in joined.values() if len(g) > 1]
        if merged:
            merges.append({"problem": pid, "before": na, "after": nb, "joined": merged})
    return {"config": config.label, "n": most, "problems": len(problems),
            "groups_before": before, "groups_after": after, "merges": merges}


def greedy(store: Store, old: types.ModuleType) -> dict[int, dict[str, dict[str, float]]]:
    """The greedy chain of thought (``cot`` results): one answer each, read both ways."""
    values: dict[str, dict[str, float]] = {}
    for pid, raw in store.db.execute(
            "SELECT r.problem_id, r.candidates FROM results r JOIN strategies s "
            "ON r.strategy_key = s.strategy_key WHERE s.name = 'cot'"):
        [candidate] = json.loads(raw)
        text, gold = candidate["text"], store.gold[pid]
        before, after = old.extract_answer(text), new_rule.extract_answer(text)
        # one chain, no vote: it answers whether it was cut or not
        values.setdefault("old", {})[pid] = float(old.equivalent(before, gold))
        values.setdefault("read", {})[pid] = float(new_rule.equivalent(after, gold))
        values.setdefault("new", {})[pid] = float(new_rule.equivalent(after, gold))
    return {1: values} if values else {}


def comparisons(label: str, values: dict[int, dict[str, dict[str, float]]], seed: int
                ) -> list[dict[str, Any]]:
    out = []
    for budget, by in sorted(values.items()):
        row: dict[str, Any] = {"config": label, "n": budget, "problems": len(by["old"])}
        for which in CONDITIONS:
            row[which] = statistics.fmean(by[which].values())
        for a, b in (("read", "old"), ("new", "read"), ("new", "old")):
            c = compare((f"{label}:{a}", budget), (f"{label}:{b}", budget), by[a], by[b],
                        seed=seed)
            diffs = [by[a][p] - by[b][p] for p in by[a]]
            row[f"{a}-{b}"] = {"difference": c.difference, "ci": [c.ci_low, c.ci_high],
                               "p": c.p_value, "verdict": c.verdict,
                               "up": sum(d > 0 for d in diffs),
                               "down": sum(d < 0 for d in diffs),
                               "moved": {p: by[a][p] - by[b][p] for p in by[a]
                                         if by[a][p] != by[b][p]}}
        out.append(row)
    return out


# -- the report -------------------------------------------------------------------------------

def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def points(d: dict[str, Any]) -> str:
    if d["up"] == d["down"] == 0:
        return "0 (no problem moved)"
    return (f"{100 * d['difference']:+.2f} pts [{100 * d['ci'][0]:+.2f}, "
            f"{100 * d['ci'][1]:+.2f}], {d['up']}↑ {d['down']}↓, p = {d['p']:.3g}")


def markdown(report: dict[str, Any], command: str) -> str:
    lines = [f"# Answers read as a person reads them: the committed GSM8K stores replayed "
             f"({report['date']})", "", f"Command: `{command}`", "",
             f"No model runs: every stored sample's answer is read again from its stored text by "
             f"the rule of `{BASE}` (its `domains/answers.py`, loaded from git) and by today's, "
             f"and graded against the GSM8K gold answer ({report['dataset']}, sha256 "
             f"{'matches' if report['dataset_matches'] else 'DIFFERS FROM'} the stores') by "
             "each rule's own equivalence. Votes are replayed with ponder's own vote "
             "(`eval.pools.pick`) on the same samples and the same random subsets "
             f"(all subsets when there are at most {DRAWS}, else {DRAWS} drawn with a fixed "
             "seed) in three conditions:", "",
             f"- **old**: `{BASE}`: old reading, chains cut at the token limit vote;",
             "- **read**: today's reading, cut chains still voting (the extraction's effect "
             "alone);",
             "- **new**: today's default: today's reading, cut chains left out (`cut_weight=0`; "
             "they vote only when every answered chain was cut).", "",
             "Each difference is paired per problem (`ponder.eval.paired.compare`): mean "
             "difference in points, bootstrap 95% interval, how many problems went up (↑) and "
             "down (↓), and the exact two-sided sign test (McNemar's exact test where the "
             "values are 0/1). Accuracy at n < all samples is each problem's expected accuracy "
             "over subsets, so a problem can move by a fraction.", ""]
    lines += ["## What the new reading changed, sample by sample", "",
              "| store | samples (chains / programs) | answers changed | wrong → right | "
              "right → wrong | cut at the token limit (with an answer, right) |",
              "|---|---:|---:|---:|---:|---:|"]
    for s in report["stores"]:
        a = s["answers"]
        lines.append(
            f"| {s['store']} | {a['samples']} ({a['chains']} / {a['programs']}) | "
            f"{a['changed']} | {a['wrong_to_right']} | {a['right_to_wrong']} | {a['cut']} "
            f"({a['cut_answered']}, {a['cut_right']}) |")
    checks = []
    for s in report["stores"]:
        same, graded = (s["checks"]["stored answer = old reading"],
                        s["checks"]["stored grade = old grade"])
        checks.append(f"{s['store']}: the stored answer is the old reading for {same} of "
                      f"{s['checks']['samples']} samples, the stored grade the old grade for "
                      f"{graded}")
    lines += ["", "Checks: " + "; ".join(checks) + ".", ""]
    lines += ["Every answer the new reading changed:", "",
              "| store | problem | gold | old answer | new answer | right (old → new) |",
              "|---|---:|---:|---|---|---|"]
    for s in report["stores"]:
        for e in s["answers"]["examples"]:
            old = str(e["old"]).replace("|", "\\|")
            lines.append(f"| {s['store']} | {e['problem']} | {e['gold']} | `{old}` | "
                         f"`{e['new']}` | {'yes' if e['old_right'] else 'no'} → "
                         f"{'yes' if e['new_right'] else 'no'} |")
    lines += ["", "## Vote groups that merged", "",
              "Each vote at its largest n, problem by problem: the answer groups (clusters) "
              "before and after, and the problems where groups merged (the old answers now in "
              "one group).", "",
              "| store | vote | n | problems | groups before → after | problems with a merge "
              "| merged |", "|---|---|---:|---:|---:|---:|---|"]
    for s in report["stores"]:
        for g in s["groups"]:
            merged = "; ".join(
                f"problem {m['problem']}: " + "; ".join(" = ".join(f"`{a}`" for a in j)
                                                         for j in m["joined"])
                for m in g["merges"]) or "—"
            lines.append(f"| {s['store']} | {g['config']} | {g['n']} | {g['problems']} | "
                         f"{g['groups_before']} → {g['groups_after']} | {len(g['merges'])} | "
                         f"{merged.replace('|', '∣')} |")
    lines += ["", "## Accuracy, paired", ""]
    for s in report["stores"]:
        lines += [f"### {s['store']}", "",
                  "| vote | n | problems | old | read | new | read − old (extraction) | "
                  "new − read (cut chains out) | new − old |",
                  "|---|---:|---:|---:|---:|---:|---|---|---|"]
        for r in s["votes"]:
            lines.append(f"| {r['config']} | {r['n']} | {r['problems']} | {pct(r['old'])} | "
                         f"{pct(r['read'])} | {pct(r['new'])} | {points(r['read-old'])} | "
                         f"{points(r['new-read'])} | {points(r['new-old'])} |")
        if s["skipped"]:
            lines += ["", "Not replayed: " + "; ".join(s["skipped"]) + "."]
        lines.append("")
    lines += moved_problems(report)
    lines += report["summary"]
    return "\n".join(lines) + "\n"


PAIRS = {"read-old": "extraction", "new-read": "cut chains out"}


def moved_problems(report: dict[str, Any]) -> list[str]:
    """Every problem whose expected accuracy moved, with what moved it: its answers that the
    new reading changed, and its samples cut at the token limit."""
    lines = ["## Which problems moved, and why", "",
             "Every problem whose accuracy moved in some vote, with the votes (n: the change "
             "in points of that problem's expected accuracy) and its stored samples that "
             "explain it.", ""]
    for s in report["stores"]:
        facts: dict[str, list[str]] = {}
        for e in s["answers"]["examples"]:
            facts.setdefault(str(e["problem"]), []).append(
                f"`{e['old']}` read as `{e['new']}` "
                f"({'right' if e['new_right'] else 'wrong'})")
        for pid, cut in s["answers"]["cut_by_problem"].items():
            facts.setdefault(pid, []).append(
                "cut at the token limit: " + ", ".join(f"`{a}`" for a in cut))
        by_problem: dict[str, dict[str, list[str]]] = {}
        for r in s["votes"]:
            for pair, what in PAIRS.items():
                for pid, d in r[pair]["moved"].items():
                    by_problem.setdefault(pid, {}).setdefault(what, []).append(
                        f"{r['config']} n={r['n']}: {100 * d:+.1f}")
        for pid in sorted(by_problem, key=int):
            lines.append(f"- **{s['store']}, problem {pid}** (gold {s['gold'][pid]}): "
                         + "; ".join(facts.get(pid, [])) + ".")
            for what, moves in by_problem[pid].items():
                lines.append(f"  - {what}: " + "; ".join(moves))
    return lines + [""]


def summarize(report: dict[str, Any]) -> list[str]:
    rows = [r for s in report["stores"] for r in s["votes"]]
    significant = [(r, k) for r in rows for k in ("read-old", "new-read", "new-old")
                   if r[k]["verdict"] != "not significant at 5%"]
    moved = [r for r in rows if r["new-old"]["up"] or r["new-old"]["down"]]
    smallest = min((r["new-old"]["p"] for r in rows), default=1.0)
    changed = sum(s["answers"]["changed"] for s in report["stores"])
    samples = sum(s["answers"]["samples"] for s in report["stores"])
    gained = sum(s["answers"]["wrong_to_right"] for s in report["stores"])
    lost = sum(s["answers"]["right_to_wrong"] for s in report["stores"])
    cut = sum(s["answers"]["cut"] for s in report["stores"])
    cut_right = sum(s["answers"]["cut_right"] for s in report["stores"])
    merged = sum(g["groups_before"] - g["groups_after"] for s in report["stores"]
                 for g in s["groups"])
    merged_problems = sum(len(g["merges"]) for s in report["stores"] for g in s["groups"])
    out = ["## In words", "",
           f"- The new reading changed {changed} of {samples} stored answers "
           f"({changed / samples:.2%}); {gained} went from wrong to right and {lost} from right "
           f"to wrong. Over the {sum(len(s['groups']) for s in report['stores'])} votes at "
           f"their largest n, {merged} answer groups merged into others, in "
           f"{merged_problems} (vote, problem) pairs.",
           f"- {cut} samples were cut off at the token limit; {cut_right} of them had a right "
           "answer by the new reading."]
    for pair, what in PAIRS.items():
        ups = {(s["store"], p) for s in report["stores"] for r in s["votes"]
               for p, d in r[pair]["moved"].items() if d > 0}
        downs = {(s["store"], p) for s in report["stores"] for r in s["votes"]
                 for p, d in r[pair]["moved"].items() if d < 0}
        out.append(f"- {what}: {len(ups)} problems gained in some vote, {len(downs)} lost in "
                   "some vote (listed above with their samples).")
    out.append(f"- {len(moved)} of {len(rows)} (vote, n) rows moved at all between old and "
               f"new; the smallest p-value of new − old is {smallest:.3g}.")
    if significant:
        out.append("- Significant at 5%: " + "; ".join(
            f"{r['config']} n={r['n']} {k} ({r[k]['verdict']})" for r, k in significant) + ".")
    else:
        out.append("- No difference is significant at 5% by the exact sign test: on these "
                   "stores the changes are too few to measure an accuracy effect either way "
                   "(with every moved problem moving the same way it takes 6 of them to reach "
                   "p < 0.05). What they show is which answers and groups changed, and why "
                   "(above).")
    clear = [r for r in rows if r["new-old"]["ci"][0] > 0 or r["new-old"]["ci"][1] < 0]
    if clear:
        most = max(r["new-old"]["up"] + r["new-old"]["down"] for r in clear)
        out.append(f"- The bootstrap interval of new − old leaves out 0 in {len(clear)} rows, "
                   f"each with at most {most} problems moving, all the same way: an interval "
                   "resampled from so few moved problems is not evidence of an effect.")
    return out + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", nargs="+", default=list(STORES))
    parser.add_argument("--dataset", default=str(ROOT.parent / "shared/data/gsm8k_train.jsonl"))
    parser.add_argument("--base", default=BASE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--date", default=str(datetime.date.today()))
    args = parser.parse_args()
    old = old_rule(args.base)
    problems = load_dataset(args.dataset)
    gold = {p.id: p.answer or "" for p in problems}
    dataset_hash = file_sha256(Path(args.dataset))
    report: dict[str, Any] = {"date": args.date, "base": args.base,
                              "dataset": Path(args.dataset).name, "stores": []}
    matches = True
    for folder in args.stores:
        path = ROOT / folder
        store = read_store(path, gold, old)
        meta = dict(store.db.execute("SELECT key, value FROM meta"))
        matches &= meta.get("dataset_sha256") == dataset_hash
        found, skipped = configs(store)
        names = {c.pools[0].key: c.label.split(" (", 1)[1].rstrip(")") for c in found
                 if len(c.pools) == 1 and c.name != "adaptive-consistency"}
        votes = []
        for config in found:
            votes += comparisons(config.label, replay(store, config, old, args.seed), args.seed)
        votes += comparisons("greedy (cot, T=0)", greedy(store, old), args.seed)
        report["stores"].append({
            "store": Path(folder).name, "checks": dict(store.checks),
            "gold": {pid: gold[pid] for pool in store.pools.values() for pid in pool},
            "answers": answer_changes(store, names),
            "groups": [group_changes(store, config, old) for config in found],
            "votes": votes, "skipped": skipped})
        print(f"{folder}: {len(votes)} vote rows", file=sys.stderr)
    report["dataset_matches"] = matches
    report["summary"] = summarize(report)
    command = "python bench/extraction_replay.py" + (
        f" --date {args.date}" if args.date != str(datetime.date.today()) else "")
    out = ROOT / "bench" / "results" / f"extraction_replay-{args.date}"
    out.with_suffix(".md").write_text(markdown(report, command))
    out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(out.with_suffix(".md"))


if __name__ == "__main__":
    main()
