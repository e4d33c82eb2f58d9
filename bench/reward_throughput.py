"""Reward throughput: completions graded per second by ponder's RL rewards on this machine.

- math: GSM8K train solutions as completions (the reference reasoning ending "The answer is X",
  and the same with X + 1: half right, half wrong), graded by ``MathReward`` against the
  dataset's ``answer`` column (GSM8K's full solution, "#### X" read by ponder), as plain strings
  and as chat messages; ``FormatReward`` on the same.
- code: HumanEval's 164 problems, each answered by its canonical solution and by a broken one
  (``return None``), plus one program that loops forever per 41 problems (4), graded by
  ``CodeReward`` (the hidden ``check`` tests, in the jail, workers = CPU count).

Each timing is the median of ``--rounds`` passes. Writes
bench/results/reward_throughput-DATE.md.

    python bench/reward_throughput.py [--math 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import time
from pathlib import Path

from ponder.eval.datasets import load_humaneval
from ponder.rewards import CodeReward, FormatReward, MathReward

GSM8K = Path(os.environ.get("DATASET", "/work/shared/data/gsm8k_train.jsonl"))


def math_batch(limit: int) -> tuple[list[str], list[str], list[float]]:
    completions, answers, expected = [], [], []
    with open(GSM8K, encoding="utf-8") as f:
        for line in f:
            if len(answers) >= limit:
                break
            row = json.loads(line)
            reasoning, gold = row["answer"].split("####")
            gold = gold.strip().replace(",", "")
            reasoning = re.sub(r"<<[^>]*>>", "", reasoning).strip()
            wrong = str(int(gold) + 1) if gold.lstrip("-").isdigit() else gold + "1"
            for answer, ok in ((gold, 1.0), (wrong, 0.0)):
                completions.append(f"{reasoning}\nThe answer is {answer}.")
                answers.append(row["answer"])
                expected.append(ok)
    return completions[:limit], answers[:limit], expected[:limit]


def timed(fn, rounds: int):
    seconds, values = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        values = fn()
        seconds.append(time.perf_counter() - started)
    return values, statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--math", type=int, default=2000, help="math completions")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows = []

    completions, answers, expected = math_batch(args.math)
    chats = [[{"role": "assistant", "content": c}] for c in completions]
    n = len(completions)
    for label, reward, batch in (("math_correctness (strings)", MathReward(), completions),
                                 ("math_correctness (messages)", MathReward(), chats),
                                 ("answer_format (strings)", FormatReward(), completions)):
        values, seconds = timed(lambda r=reward, b=batch: r(prompts=[""] * n, completions=b,
                                                             answer=answers), args.rounds)
        agree = sum(v == e for v, e in zip(values, expected, strict=True)) \
            if "correctness" in label else sum(v == 1.0 for v in values)
        rows.append((label, n, seconds, n / seconds, f"{agree}/{n}"))
        print(rows[-1], flush=True)

    problems = load_humaneval()
    prompts, codes, entries, tests, want = [], [], [], [], []
    loop = "```python\ndef {e}(*args, **kwargs):\n    while True:\n        pass\n```"
    for i, p in enumerate(problems):
        answers_for = [(f"```python\n{p.question}{p.answer}```", 1.0),
                       (f"```python\n{p.question}    return None\n```", 0.0)]
        if i % 41 == 0:
            answers_for.append((loop.format(e=p.metadata["entry_point"]), 0.0))
        for code, ok in answers_for:
            prompts.append(p.question)
            codes.append(code)
            entries.append(p.metadata["entry_point"])
            tests.append(p.metadata["test"])
            want.append(ok)
    reward = CodeReward()
    m = len(codes)
    values, seconds = timed(lambda: reward(prompts=prompts, completions=codes,
                                           entry_point=entries, test=tests), args.rounds)
    agree = sum(v == w for v, w in zip(values, want, strict=True))
    rows.append((f"code_correctness (jail, workers={reward.sandbox.workers})", m, seconds,
                 m / seconds, f"{agree}/{m}"))
    print(rows[-1], flush=True)

    stamp = datetime.date.today().isoformat()
    out = Path(__file__).parent / "results" / f"reward_throughput-{stamp}.md"
    lines = [f"# Reward throughput ({stamp})", "",
             f"Machine: {os.cpu_count()} CPUs, shared (run under the CPU lock). Median of "
             f"{args.rounds} passes over the whole batch, one process.", "",
             "| reward | completions | seconds | completions/s | as expected |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:,.0f} | {r[4]} |" for r in rows]
    lines += ["", "Math: GSM8K train reference solutions ending \"The answer is X\", half with X "
              "off by one, graded against GSM8K's full answer text (\"#### X\"); \"as expected\" "
              "counts rewards equal to the known right/wrong (format: completions stating their "
              "answer). Code: HumanEval canonical solutions (expected 1.0), the same functions "
              "returning None (0.0) and 4 programs that loop forever (0.0, each stopped at the "
              "2 s test limit); every program runs in the bubblewrap jail.", "",
              f"Command: `python bench/reward_throughput.py --math {args.math} "
              f"--rounds {args.rounds}`"]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
