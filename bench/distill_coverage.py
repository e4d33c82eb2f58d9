"""What distillation buys, from a stored `ponder eval` run (bench/distill_coverage.sh): how many
problems have at least one verified (gold-correct) trace when N = 1, 4, 8, 16 samples are drawn
per problem, i.e. how many problems rejection-sampling SFT data would cover, and what
`ponder distill` writes from the run. Reads the store only (costs nothing). Writes
bench/results/distill_coverage-DATE.md.

    python bench/distill_coverage.py bench/runs/distill-gsm8k-12
"""

from __future__ import annotations

import argparse
import datetime
import math
import tempfile
from pathlib import Path

from ponder.eval.distill import collect, coverage, distill, read_report, write
from ponder.eval.store import Store

SIZES = (1, 4, 8, 16)


def pass_at(n: int, c: int, k: int) -> float:
    """The chance that k of n samples (c correct), drawn without replacement, hold a correct one
    (the unbiased pass@k estimator)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    problems, strategies = read_report(args.folder)
    store = Store(args.folder / "samples.sqlite")
    items = collect(args.folder, store, problems, strategies)
    store.close()
    sizes = [k for k in SIZES if all(len(i.traces) >= k for i in items)]
    first = coverage(items, sizes)
    expected = {k: sum(pass_at(len(i.traces), sum(t.correct for t in i.traces), k)
                       for i in items) for k in sizes}
    with tempfile.TemporaryDirectory() as tmp:
        data = distill(items, pairs_per_problem=4)
        write(data, Path(tmp))
    s = data.summary
    correct = sum(t.correct for i in items for t in i.traces)
    total = sum(len(i.traces) for i in items)
    tokens = sum(t.tokens for i in items for t in i.traces)
    stamp = datetime.date.today().isoformat()
    name = args.folder.name
    lines = [f"# What distillation buys: verified traces per sample budget ({stamp})", "",
             f"Run: `{args.folder}` — {len(items)} GSM8K train problems (the first "
             f"{len(items)} of the file), Qwen2.5-Coder-0.5B-Instruct (GGUF) on 2 CPU cores, "
             f"self-consistency sampling at temperature 0.7 (ponder's default), 640 new tokens "
             f"at most; 16 samples per problem drawn once, {total} in all, "
             f"{correct} correct ({100 * correct / total:.1f}%), {tokens:,} generated tokens.", "",
             "| samples per problem N | problems with a verified trace (first N samples) | "
             "expected over all N-subsets of the 16 (pass@N) |", "|---:|---:|---:|"]
    lines += [f"| {k} | {first[k]}/{len(items)} | {expected[k]:.2f}/{len(items)} "
              f"({100 * expected[k] / len(items):.0f}%) |" for k in sizes]
    lines += ["", "Rejection-sampling SFT keeps one verified trace per covered problem, so this is "
              "how many problems a fine-tune on the model's own verified traces would see. One "
              f"sample per problem yields a trace for {first[1]} of {len(items)} problems; "
              f"{sizes[-1]} samples for {first[sizes[-1]]}: the problems added are the ones the "
              "model solves only sometimes, which are the ones worth learning from. The first-N "
              "column is one draw; the pass@N column averages over every subset of the 16 "
              "samples and is the steadier figure. With 12 problems one problem is 8 points, so "
              "the rise with N, not the exact values, is the finding.", "",
              f"`ponder distill {args.folder} --out data --pairs-per-problem 4` on the same "
              "run:", "", "```", *s.lines(), "```", "",
              f"Commands: `flock /tmp/ponder-cpu.lock bash bench/distill_coverage.sh` "
              f"(resumable; the store is committed under bench/runs/{name}/), then "
              f"`python bench/distill_coverage.py {args.folder}`."]
    out = Path(__file__).parent / "results" / f"distill_coverage-{stamp}.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
