"""Sandbox throughput: candidate-test runs per second on HumanEval, in the jail and without one.

Runs every HumanEval canonical solution against its visible (docstring) tests and its hidden
``check`` tests, all at once through one Sandbox (workers = CPU count), and a deliberately
broken variant of each, so failures cost what they cost: once with ``isolation="none"`` (the
process-and-audit-hook sandbox ponder had before the jail) and once with ``isolation="jail"``,
alternating in the same run so both see the same machine. Writes
bench/results/sandbox_throughput-DATE.md.

    python bench/sandbox_throughput.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import os
import statistics
import time
from pathlib import Path

from ponder.domains.code_problems import assemble_program, hidden_tests, visible_tests
from ponder.eval.datasets import load_humaneval
from ponder.sandbox import Sandbox


def jobs_for(problems):
    jobs = []
    for p in problems:
        setup, hidden = hidden_tests(p)
        for broken, body in ((False, p.answer), (True, "    return None\n")):
            program = assemble_program(p, p.question + body)
            jobs.append((program, visible_tests(p), "", ("visible", broken)))
            jobs.append((program, hidden, setup, ("hidden", broken)))
    return jobs


async def one_pass(isolation: str, jobs):
    sandbox = Sandbox(isolation=isolation)  # type: ignore[arg-type]
    started = time.monotonic()
    done = 0

    async def one(job):
        nonlocal done
        result = await sandbox.run(job[0], job[1], setup=job[2])
        done += 1
        if done % 200 == 0:
            print(f"{isolation}: {done}/{len(jobs)} executions", flush=True)
        return result

    results = await asyncio.gather(*(one(j) for j in jobs))
    return results, time.monotonic() - started, sandbox.workers


def main() -> None:
    logging.getLogger("ponder.sandbox").setLevel(logging.ERROR)  # the no-jail pass warns per run
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2, help="passes per isolation, alternating")
    args = parser.parse_args()
    problems = load_humaneval()
    jobs = jobs_for(problems)
    seconds: dict[str, list[float]] = {"none": [], "jail": []}
    last = {}
    for _ in range(args.rounds):
        for isolation in ("none", "jail"):
            results, took, workers = asyncio.run(one_pass(isolation, jobs))
            seconds[isolation].append(took)
            last[isolation] = results

    def passed(results, kind: str, broken: bool) -> int:
        return sum(r.ok for r, j in zip(results, jobs, strict=True) if j[3] == (kind, broken))

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
            f"| {passed(results, 'hidden', False)}/{len(problems)} "
            f"| {passed(results, 'hidden', True)}/{len(problems)} "
            f"| {passed(results, 'visible', False)}/{len(problems)} |")
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
