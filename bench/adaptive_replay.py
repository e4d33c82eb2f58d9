"""Replay adaptive-consistency's stopping rule at several thresholds on the self-consistency
samples an evaluation folder already holds (no generation): accuracy against the tokens actually
spent, next to plain self-consistency. Writes bench/results/adaptive_replay-DATE.md.

    python bench/adaptive_replay.py --out bench/runs/gsm8k-qwen05 --limit 26
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

from ponder.backends.fake import ScriptedBackend
from ponder.eval.datasets import load_dataset
from ponder.eval.harness import Harness
from ponder.eval.store import Store

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench/runs/gsm8k-qwen05")
    parser.add_argument("--dataset", default=str(ROOT.parent / "shared/data/gsm8k_train.jsonl"))
    parser.add_argument("--limit", type=int, default=26)
    parser.add_argument("--max-tokens", type=int, default=640)
    args = parser.parse_args()
    problems = load_dataset(args.dataset, limit=args.limit)
    store = Store(Path(args.out) / "samples.sqlite")
    thresholds = (0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
    specs = ["self-consistency"] + [f"adaptive-consistency[threshold={t},budgets=16]"
                                    for t in thresholds]
    harness = Harness(ScriptedBackend(), store, problems, specs, [1, 2, 4, 8, 16],
                      options={"max_tokens": args.max_tokens}, greedy=False)
    curves = harness.curves()
    reference = next(p for p in curves["points"]
                     if p["strategy"] == "self-consistency" and p["budget"] == 16)
    lines = [f"# adaptive-consistency replayed on stored samples ({datetime.date.today()})", "",
             f"{reference['problems']} problems of {Path(args.dataset).name}, the samples in "
             f"`{args.out}`; wave 4, at most 16 samples. Reference: self-consistency@16 "
             f"{reference['accuracy']:.1%} at {reference['tokens']:.0f} tokens/problem.", "",
             "| rule | accuracy | 95% CI | tokens/problem | share of SC@16 tokens | mean samples "
             "| stopped early |", "|---|---:|---:|---:|---:|---:|---:|"]
    spent = {d["strategy"]: d for d in curves["spent"]}
    for p in curves["points"]:
        if p["strategy"] == "self-consistency":
            lines.append(f"| self-consistency@{p['budget']} | {p['accuracy']:.1%} | "
                         f"{p['ci_low']:.1%} – {p['ci_high']:.1%} | {p['tokens']:.0f} | "
                         f"{p['tokens'] / reference['tokens']:.0%} | {p['budget']} | — |")
        else:
            d = spent[p["strategy"]]
            threshold = p["strategy"].split("threshold=")[1].split(",")[0]
            lines.append(f"| adaptive, threshold {threshold} | {p['accuracy']:.1%} | "
                         f"{p['ci_low']:.1%} – {p['ci_high']:.1%} | {p['tokens']:.0f} | "
                         f"{p['tokens'] / reference['tokens']:.0%} | {d['samples_mean']:.1f} | "
                         f"{d['stopped_early']:.0%} |")
    lines += ["", f"Command: `python bench/adaptive_replay.py --out {args.out} "
              f"--limit {args.limit}`"]
    out = ROOT / "bench" / "results" / f"adaptive_replay-{datetime.date.today()}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    store.close()


if __name__ == "__main__":
    main()
