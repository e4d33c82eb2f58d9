"""Sandbox throughput: candidate-test runs per second on HumanEval, in the jail and without one.

Runs every HumanEval canonical solution against its visible (docstring) tests and its hidden
``check`` tests, all at once through one Sandbox (workers = CPU count), and a deliberately
broken variant of each, so failures cost what they cost: once with ``isolation="none"`` (the
process-and-audit-hook sandbox ponder had before the jail) and once with ``isolation="jail"``,
alternating in the same run so both see the same machine. Writes
bench/results/sandbox_throughput-DATE.md.

``--compare REF`` measures this tree against another commit's sandbox side by side instead:
each pass runs in a child process whose ``PYTHONPATH`` is this tree's ``src`` or a temporary
git worktree of REF, the two alternating per round and isolation, and the report gives each
version's median and the ratio (writes bench/results/sandbox_throughput-compare-DATE.md).

    python bench/sandbox_throughput.py [--rounds 2] [--compare REF]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ponder.domains.code_problems import assemble_program, hidden_tests, visible_tests
from ponder.eval.datasets import load_humaneval
from ponder.sandbox import Sandbox

try:  # the task's entry point, exposed to the tests (absent before the checker's name rule)
    from ponder.domains.code_problems import task_names
except ImportError:
    task_names = None


def jobs_for(problems):
    jobs = []
    for p in problems:
        setup, hidden = hidden_tests(p)
        expose = {"expose": task_names(p)} if task_names else {}
        for broken, body in ((False, p.answer), (True, "    return None\n")):
            program = assemble_program(p, p.question + body)
            jobs.append((program, visible_tests(p), "", ("visible", broken), expose))
            jobs.append((program, hidden, setup, ("hidden", broken), expose))
    return jobs


async def one_pass(isolation: str, jobs):
    sandbox = Sandbox(isolation=isolation)  # type: ignore[arg-type]
    started = time.monotonic()
    done = 0

    async def one(job):
        nonlocal done
        result = await sandbox.run(job[0], job[1], setup=job[2], **job[4])
        done += 1
        if done % 200 == 0:
            print(f"{isolation}: {done}/{len(jobs)} executions", flush=True)
        return result

    results = await asyncio.gather(*(one(j) for j in jobs))
    return results, time.monotonic() - started, sandbox.workers


def passed(results, jobs, kind: str, broken: bool) -> int:
    return sum(r.ok for r, j in zip(results, jobs, strict=True) if j[3] == (kind, broken))


def child_pass(isolation: str) -> None:
    """One pass of this interpreter's ponder, as one JSON line (for --compare)."""
    problems = load_humaneval()
    jobs = jobs_for(problems)
    results, took, workers = asyncio.run(one_pass(isolation, jobs))
    print(json.dumps({
        "seconds": took, "executions": len(jobs), "workers": workers,
        "tests": sum(len(r.tests) for r in results),
        "hidden_reference": passed(results, jobs, "hidden", False),
        "hidden_broken": passed(results, jobs, "hidden", True),
        "visible_reference": passed(results, jobs, "visible", False)}))


def compare(ref: str, rounds: int) -> None:
    """This tree against ``ref``, alternating child processes so both see the same machine."""
    root = Path(__file__).resolve().parent.parent
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", ref], check=True,
                            capture_output=True, text=True).stdout.strip()
    here = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="ponder-baseline-") as tmp:
        subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", "-q", tmp,
                        commit], check=True)
        try:
            versions = {f"{commit} (baseline)": Path(tmp) / "src", f"{here} (this tree)":
                        root / "src"}
            runs: dict[tuple[str, str], list[dict]] = {}
            for r in range(rounds):
                for isolation in ("jail", "none"):
                    for name, src in versions.items():
                        env = {**os.environ, "PYTHONPATH": str(src)}
                        began = time.monotonic()
                        out = subprocess.run(
                            [sys.executable, __file__, "--child", isolation], env=env,
                            check=True, capture_output=True, text=True).stdout
                        record = json.loads(out.strip().splitlines()[-1])
                        runs.setdefault((name, isolation), []).append(record)
                        print(f"round {r + 1}/{rounds} {isolation:4} {name}: "
                              f"{record['seconds']:.1f} s (the process: "
                              f"{time.monotonic() - began:.1f} s)", flush=True)
        finally:
            subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", tmp],
                           check=False)
    first = next(iter(runs.values()))[0]
    lines = [
        f"# Sandbox throughput: this tree against {commit} ({datetime.date.today()})",
        "",
        f"Machine: {os.cpu_count()} CPUs; workers = {first['workers']}; "
        f"{first['executions']} executions per pass (HumanEval's canonical and broken programs "
        f"against their visible and hidden tests); {rounds} passes per version and isolation, "
        "each in its own process, alternating; the median pass is shown.",
        "",
        "| isolation | version | seconds | executions/s | hidden: reference | hidden: broken "
        "| visible: reference |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    ratios = {}
    for isolation in ("jail", "none"):
        rates = []
        for name in versions:
            records = runs[(name, isolation)]
            took = statistics.median(r["seconds"] for r in records)
            rates.append(first["executions"] / took)
            last = records[-1]
            lines.append(f"| {isolation} | {name} | {took:.1f} | {rates[-1]:.1f} "
                         f"| {last['hidden_reference']}/164 | {last['hidden_broken']}/164 "
                         f"| {last['visible_reference']}/164 |")
        ratios[isolation] = rates[1] / rates[0]
    lines += ["", "This tree keeps " + ", ".join(
        f"{ratios[i]:.0%} of the baseline's executions per second {w}"
        for i, w in (("jail", "in the jail"), ("none", "without one"))) + ".", "",
        f"Command: `python bench/sandbox_throughput.py --compare {ref} --rounds {rounds}`"]
    out = (Path(__file__).parent / "results"
           / f"sandbox_throughput-compare-{datetime.date.today()}.md")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    logging.getLogger("ponder.sandbox").setLevel(logging.ERROR)  # the no-jail pass warns per run
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2, help="passes per isolation, alternating")
    parser.add_argument("--compare", metavar="REF", default=None,
                        help="measure this tree against commit REF, side by side")
    parser.add_argument("--child", metavar="ISOLATION", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_pass(args.child)
        return
    if args.compare:
        compare(args.compare, args.rounds)
        return
    problems = load_humaneval()
    jobs = jobs_for(problems)
    seconds: dict[str, list[float]] = {"none": [], "jail": []}
    last = {}
    for _ in range(args.rounds):
        for isolation in ("none", "jail"):
            results, took, workers = asyncio.run(one_pass(isolation, jobs))
            seconds[isolation].append(took)
            last[isolation] = results

    tests = sum(len(r.tests) for r in last["jail"])
    lines = [
        f"# Sandbox throughput ({datetime.date.today()})",
        "",
        f"Machine: {os.cpu_count()} CPUs; workers = {workers}; {len(jobs)} executions "
        f"({tests} test runs) per pass, {args.rounds} passes per isolation, alternating; "
        "the median pass is shown.",
        "",
        "| isolation | what isolates | seconds | executions/s | test runs/s | hidden: reference "
        "| hidden: broken | visible: reference |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    rates = {}
    for isolation in ("none", "jail"):
        took = statistics.median(seconds[isolation])
        rates[isolation] = len(jobs) / took
        results = last[isolation]
        lines.append(
            f"| {isolation} | {', '.join(results[0].isolation)} | {took:.1f} "
            f"| {rates[isolation]:.1f} | {tests / took:.1f} "
            f"| {passed(results, jobs, 'hidden', False)}/{len(problems)} "
            f"| {passed(results, jobs, 'hidden', True)}/{len(problems)} "
            f"| {passed(results, jobs, 'visible', False)}/{len(problems)} |")
    lines += [
        "",
        f"The jail keeps {rates['jail'] / rates['none']:.0%} of the executions per second of "
        "the sandbox without one. A problem without docstring examples counts as passing its "
        "visible tests; 4 HumanEval docstrings disagree with their reference.",
        "",
        "Command: `python bench/sandbox_throughput.py`",
    ]
    out = Path(__file__).parent / "results" / f"sandbox_throughput-{datetime.date.today()}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
