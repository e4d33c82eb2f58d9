"""What deterministic (batch-invariant) decoding costs, and whether it reproduces: the same
`ponder eval` command with `--deterministic` and `--no-deterministic`, alternating, in one run.

Each round runs both modes on the same GSM8K problems (greedy + self-consistency at 1 and 4
samples, 640 new tokens, the benchmark model, the default batch of an eval), each in a fresh
folder, and records wall time, generated tokens and the store's digest (`Store.fingerprint`).
Deterministic runs must all give one digest; plain runs may not.

    python bench/determinism.py [--problems 8] [--rounds 2] [--model bench/models/...gguf]

Writes bench/results/determinism-DATE.{md,json}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k_train.jsonl"


def run_eval(mode: str, data: Path, out: Path, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "ponder", "eval", "--dataset", str(data), "--model",
           args.model, "--strategies", "self-consistency", "--budgets", "1,4", "--max-tokens",
           str(args.max_tokens), "--seed", "0", "--concurrency", str(args.concurrency),
           f"--{mode}", "--fresh", "--out", str(out)]
    started = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.monotonic() - started
    with sqlite3.connect(out / "samples.sqlite") as db:
        tokens = db.execute("SELECT COALESCE(SUM(completion_tokens), 0) FROM samples").fetchone()[0]
        tokens += db.execute("SELECT COALESCE(SUM(completion_tokens), 0) FROM results "
                             "WHERE strategy_key NOT IN (SELECT sample_key FROM samples)"
                             ).fetchone()[0]
    config = json.loads((out / "report.json").read_text())["config"]
    return {"mode": mode, "wall_s": round(wall, 1), "tokens": tokens,
            "tokens_per_s": round(tokens / wall, 1), **config["determinism"]}


def probe_seconds(model: str) -> float:
    """Seconds a deterministic load spends on its batch-invariance check (load alone, minus a
    plain load), at an eval's batch size."""
    from ponder.backends.llamacpp import LlamaCppBackend, batch_sequences

    times = {}
    for det in (False, True):
        started = time.monotonic()
        LlamaCppBackend(model, n_seq_max=batch_sequences(), deterministic=det).close()
        times[det] = time.monotonic() - started
    return round(times[True] - times[False], 2)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=str(ROOT / "bench" / "models" /
                                          "qwen2.5-coder-0.5b-instruct.gguf"))
    p.add_argument("--dataset", type=Path, default=GSM8K)
    p.add_argument("--problems", type=int, default=8)
    p.add_argument("--offset", type=int, default=200, help="first problem (past the dev ones)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=640)
    p.add_argument("--concurrency", type=int, default=4)
    args = p.parse_args()
    lines = args.dataset.read_text().splitlines()[args.offset: args.offset + args.problems]
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "gsm8k.jsonl"
        data.write_text("\n".join(lines) + "\n")
        for r in range(args.rounds):
            order = ("deterministic", "no-deterministic") if r % 2 == 0 else \
                ("no-deterministic", "deterministic")
            for mode in order:
                result = run_eval(mode, data, Path(tmp) / f"{mode}-{r}", args)
                result["round"] = r
                runs.append(result)
                print(json.dumps(result), file=sys.stderr, flush=True)
        probe = probe_seconds(args.model)

    def rate(mode: str) -> float:
        return statistics.mean(x["tokens_per_s"] for x in runs if x["mode"] == mode)

    det, plain = rate("deterministic"), rate("no-deterministic")
    digests = {mode: sorted({x["samples_sha256"] for x in runs if x["mode"] == mode})
               for mode in ("deterministic", "no-deterministic")}
    ratios = []
    for r in range(args.rounds):
        d = next(x for x in runs if x["round"] == r and x["mode"] == "deterministic")
        n = next(x for x in runs if x["round"] == r and x["mode"] == "no-deterministic")
        ratios.append(d["tokens_per_s"] / n["tokens_per_s"])
    date = dt.date.today().isoformat()
    command = "python bench/determinism.py " + " ".join(sys.argv[1:])
    md = [f"# Deterministic decoding: cost and reproduction ({date})", "",
          f"`{command.strip()}`", "",
          f"{args.problems} GSM8K train problems from #{args.offset}, greedy + self-consistency "
          f"at 1 and 4 samples, {args.max_tokens} new tokens, `{Path(args.model).name}`, "
          f"concurrency {args.concurrency}, the eval's default batch; modes alternate, each run "
          "in a fresh folder, on this 2-core machine.", "",
          "| round | mode | wall s | tokens | tokens/s | samples sha256 |",
          "|---:|---|---:|---:|---:|---|"]
    md += [f"| {x['round']} | {x['mode']} | {x['wall_s']} | {x['tokens']} | "
           f"{x['tokens_per_s']} | {x['samples_sha256'][:16]} |" for x in runs]
    md += ["", "- Throughput, deterministic / plain, per round: "
           + ", ".join(f"{x:.1%}" for x in ratios)
           + f" (mean tokens/s {det:.1f} vs {plain:.1f}).",
           f"- Deterministic runs: {len(digests['deterministic'])} distinct digest(s) over "
           f"{args.rounds} runs; plain runs: {len(digests['no-deterministic'])}.",
           f"- The batch-invariance check at load: {probe} s.", ""]
    out = ROOT / "bench" / "results" / f"determinism-{date}"
    out.with_suffix(".md").write_text("\n".join(md))
    out.with_suffix(".json").write_text(json.dumps(
        {"command": command, "runs": runs, "ratios": ratios, "probe_s": probe,
         "digests": digests}, indent=1))
    print("\n".join(md))


if __name__ == "__main__":
    main()
