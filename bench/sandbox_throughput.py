"""Sandbox throughput: candidate-test runs per second on HumanEval.

Runs every HumanEval canonical solution against its visible (docstring) tests and its hidden
``check`` tests, all at once through one Sandbox (workers = CPU count), and a deliberately
broken variant of each, so failures cost what they cost. Writes
bench/results/sandbox_throughput-DATE.md.

    python bench/sandbox_throughput.py
"""

from __future__ import annotations

import asyncio
import datetime
import os
import time
from pathlib import Path

from ponder.eval.datasets import load_humaneval
from ponder.sandbox import Sandbox
from ponder.domains.code_problems import assemble_program, hidden_tests, visible_tests


async def main() -> None:
    problems = load_humaneval()
    sandbox = Sandbox()
    jobs = []
    for p in problems:
        setup, hidden = hidden_tests(p)
        for broken, body in ((False, p.answer), (True, "    return None\n")):
            program = assemble_program(p, p.question + body)
            jobs.append((program, visible_tests(p), "", ("visible", broken)))
            jobs.append((program, hidden, setup, ("hidden", broken)))
    started = time.monotonic()
    done = 0

    async def one(job):
        nonlocal done
        result = await sandbox.run(job[0], job[1], setup=job[2])
        done += 1
        if done % 100 == 0:
            print(f"{done}/{len(jobs)} executions", flush=True)
        return result

    results = await asyncio.gather(*(one(j) for j in jobs))
    seconds = time.monotonic() - started
    tests = sum(len(r.tests) for r in results)
    def passed(kind: str, broken: bool) -> int:
        return sum(r.ok for r, j in zip(results, jobs, strict=True) if j[3] == (kind, broken))

    lines = [
        f"# Sandbox throughput ({datetime.date.today()})",
        "",
        f"Machine: {os.cpu_count()} CPUs; workers = {sandbox.workers}; "
        f"isolation: {', '.join(results[0].isolation)}.",
        "",
        "| executions | test runs | seconds | executions/s | test runs/s |",
        "|---:|---:|---:|---:|---:|",
        f"| {len(results)} | {tests} | {seconds:.1f} | {len(results) / seconds:.1f} "
        f"| {tests / seconds:.1f} |",
        "",
        f"Reference solutions passing: hidden tests {passed('hidden', False)}/{len(problems)}, "
        f"visible (docstring) tests {passed('visible', False)}/{len(problems)} (a problem "
        "without examples counts as passing; 4 HumanEval docstrings disagree with their "
        "reference). Broken solutions passing hidden tests: "
        f"{passed('hidden', True)}/{len(problems)}.",
        "",
        "Command: `python bench/sandbox_throughput.py`",
    ]
    out = Path(__file__).parent / "results" / f"sandbox_throughput-{datetime.date.today()}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
