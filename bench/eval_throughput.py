"""`ponder eval`'s decode throughput, two code trees side by side in one run.

Runs the GSM8K workload of issue 20 (self-consistency + program-of-thought + mixed, greedy
baseline, 640 max tokens, benchmark model) once per code tree, each through
bench/throughput_profile.py (per-step numbers: sequences per step, ms per step, seconds in
llama_decode vs Python sampling vs elsewhere), then compares the stored samples.

    python bench/eval_throughput.py --base /work/main/src --base-flags "-B n_ctx=16384 \\
        -B n_seq_max=16" [--limit 4] [--budgets 1,2,4]

Writes bench/results/eval_throughput-DATE.{md,json}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(label: str, src: str, flags: list[str], args: argparse.Namespace, out: Path) -> dict:
    prof = out / "profile.jsonl"
    cmd = [sys.executable, str(ROOT / "bench" / "throughput_profile.py"), "eval", "--limit",
           str(args.limit), "--budgets", args.budgets, "--concurrency", str(args.concurrency),
           "--out", str(out), "--json", str(prof), "--label", label, *flags]
    env = {**os.environ, "PYTHONPATH": src}
    print(f"{label}: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    started = time.monotonic()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - started
    summary = json.loads(prof.read_text().splitlines()[-1])
    return {"label": label, "src": src, "flags": flags, "process_wall_s": round(wall, 1),
            **summary}


def samples(folder: Path) -> dict[tuple[str, str, int], tuple[str, int, int]]:
    with sqlite3.connect(folder / "samples.sqlite") as db:
        rows = db.execute("SELECT sample_key, problem_id, idx, text, correct, completion_tokens "
                          "FROM samples").fetchall()
    return {(k, p, i): (t, c, n) for k, p, i, t, c, n in rows}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--base", default="/work/main/src", help="the code tree to compare against")
    p.add_argument("--base-flags", default="-B n_ctx=16384 -B n_seq_max=16")
    p.add_argument("--flags", default="", help="flags for this tree (default: none)")
    p.add_argument("--limit", type=int, default=4)
    p.add_argument("--budgets", default="1,2,4")
    p.add_argument("--concurrency", type=int, default=4)
    args = p.parse_args()
    here = str(ROOT / "src")
    with tempfile.TemporaryDirectory() as tmp:
        base = run("main (issue flags)", args.base, shlex.split(args.base_flags), args,
                   Path(tmp) / "base")
        head = run("branch (defaults)", here, shlex.split(args.flags), args, Path(tmp) / "head")
        a, b = samples(Path(tmp) / "base"), samples(Path(tmp) / "head")
    common = sorted(set(a) & set(b))
    same = sum(a[k][0] == b[k][0] for k in common)
    acc = {name: round(sum(s[1] for s in d.values()) / len(d), 3) if d else None
           for name, d in (("base", a), ("head", b))}
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "limit": args.limit, "budgets": args.budgets, "concurrency": args.concurrency,
              "runs": [base, head], "samples": {"base": len(a), "head": len(b),
                                                "common": len(common), "identical": same},
              "sample_accuracy": acc,
              "wall_ratio": round(head["wall_s"] / base["wall_s"], 3)}
    stem = ROOT / "bench" / "results" / f"eval_throughput-{dt.date.today().isoformat()}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    keys = ["wall_s", "generated_tokens", "tokens_per_s", "mean_live_seqs", "mean_step_ms",
            "mean_max_pos", "decode_steps", "decode_step_s", "prefill_tokens", "prefill_s",
            "python_sampling_s", "other_s", "process_cpu_s"]
    lines = [f"# ponder eval decode throughput, {result['date']}", "",
             f"First {args.limit} GSM8K train problems; greedy + self-consistency + "
             f"program-of-thought + self-consistency[mode=mixed] at budgets {args.budgets}, "
             f"640 max tokens, qwen2.5-coder-0.5b-instruct, --concurrency {args.concurrency}; "
             "both code trees in one run, one after the other.", "",
             "| | " + " | ".join(r["label"] for r in (base, head)) + " |",
             "|---|---:|---:|"]
    lines += [f"| {k} | {base[k]} | {head[k]} |" for k in keys]
    lines += ["", f"Wall time: branch = **{result['wall_ratio']:.0%}** of main. "
              f"Stored samples: {len(a)} vs {len(b)}, {same} of {len(common)} common ones "
              f"identical; share correct {acc['base']} vs {acc['head']}.", "",
              f"Command: `python bench/eval_throughput.py --limit {args.limit} --budgets "
              f"{args.budgets}`"]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
