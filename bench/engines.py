"""Tokens/s of the two llama.cpp engines, side by side, by live sequences.

Loads the bundled model (or ``--model``) on the native engine (llama-cpp-python) and on the
prebuilt one (xllamacpp), then for each count of live sequences asks each engine, in turn, for
that many samples of one long-answer prompt (temperature 0.8, fixed seeds, ``--tokens`` each)
and times the call: tokens/s = completion tokens / wall seconds. The engines alternate within
each round so both see the same machine load; the 1-minute load average is printed with each
row (on a shared machine it is part of the result).

    python bench/engines.py [--seqs 1,4,8,16] [--tokens 64] [--rounds 3] [--quick]
        [--model PATH] [--out bench/results/engines-DATE.md]
    python bench/engines.py --eval 4 --model PATH [--dataset FILE] [--out ...]

``--quick``: one round of 32 tokens. ``--eval N``: instead, the eval workload (issue 20's:
self-consistency at 8 samples, 640 new tokens, the first N GSM8K problems, 4 in flight) through
``ponder eval`` once per engine (``-B engine=``), each in its own process, timed whole: wall
seconds and completion tokens per second of wall time, from the run's store.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ponder import GenerationRequest, Message, SamplingParams
from ponder.backends.engines import engine_report, installed
from ponder.backends.models import bundled_model_path

PROMPT = (Message("user", "Write a long story about a dragon who learns to count."),)


def load(engine: str, model: Path, seqs: int):
    if engine == "native":
        from ponder.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(model, n_ctx=512 * seqs, n_seq_max=seqs)
    from ponder.backends.xllamacpp import XLlamaCppBackend

    return XLlamaCppBackend(model, n_ctx=512 * seqs, n_seq_max=seqs)


def tokens_per_second(backend, seqs: int, tokens: int, seed: int) -> float:
    request = GenerationRequest(PROMPT, SamplingParams(temperature=0.8, max_tokens=tokens,
                                                       seed=seed), n=seqs)
    start = time.perf_counter()
    [samples] = asyncio.run(backend.generate([request]))
    seconds = time.perf_counter() - start
    return sum(c.usage.completion_tokens for c in samples) / seconds


def eval_workload(engine: str, model: Path, dataset: Path, limit: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "ponder", "eval", "--dataset", str(dataset), "--limit",
           str(limit), "--strategies", "self-consistency", "--budgets", "8", "--no-greedy",
           "--max-tokens", "640", "--concurrency", "4", "--model", str(model),
           "-B", f"engine={engine}", "-B", "n_seq_max=32", "-B", "n_ctx=32768",
           "--no-deterministic", "--out", str(out), "--fresh"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    with sqlite3.connect(out / "samples.sqlite") as db:
        tokens, samples, right = db.execute(
            "SELECT SUM(completion_tokens), COUNT(*), SUM(correct) FROM samples").fetchone()
    return {"wall": wall, "tokens": tokens, "samples": samples, "right": right,
            "tps": tokens / wall}


def main_eval(args: argparse.Namespace) -> None:
    model = args.model or bundled_model_path()
    engines = [e for e in ("native", "prebuilt") if installed(e)]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for e in engines:
            results[e] = eval_workload(e, model, args.dataset, args.eval, Path(tmp) / e)
            print(e, {k: round(v, 1) for k, v in results[e].items()},
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    lines = [f"model: {model.name}; `ponder eval` on the first {args.eval} problems of "
             f"{args.dataset.name}, self-consistency at 8 samples, 640 new tokens, 4 problems "
             "in flight, -B n_seq_max=32, --no-deterministic; one process per engine", ""]
    lines += [f"- {engine_report(e).line()}" for e in engines]
    lines += ["", "| engine | wall s | completion tokens | tok/s (wall) | samples right |",
              "|---|---|---|---|---|"]
    for e, r in results.items():
        lines.append(f"| {e} | {r['wall']:.0f} | {r['tokens']} | {r['tps']:.1f} "
                     f"| {r['right']} of {r['samples']} |")
    if len(results) == 2:
        ratio = results["native"]["tps"] / results["prebuilt"]["tps"]
        lines.append(f"\nnative / prebuilt: {ratio:.2f}x")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seqs", default="1,4,8,16")
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="one round of 32 tokens")
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None, help="write the table here (markdown)")
    p.add_argument("--eval", type=int, default=0, metavar="N",
                   help="time the eval workload on the first N problems instead")
    p.add_argument("--dataset", type=Path,
                   default=Path(__file__).resolve().parents[2] / "shared/data/gsm8k_train.jsonl")
    args = p.parse_args()
    if args.eval:
        main_eval(args)
        return
    if args.quick:
        args.tokens, args.rounds = 32, 1
    seqs = [int(s) for s in args.seqs.split(",")]
    model = args.model or bundled_model_path()
    engines = [e for e in ("native", "prebuilt") if installed(e)]
    backends = {e: load(e, model, max(seqs)) for e in engines}
    for backend in backends.values():  # warm-up: first decode calls are slow
        tokens_per_second(backend, 2, 4, seed=0)
    rows = []
    for n in seqs:
        runs: dict[str, list[float]] = {e: [] for e in engines}
        for r in range(args.rounds):
            for e in engines:
                runs[e].append(tokens_per_second(backends[e], n, args.tokens, seed=r))
        rows.append((n, {e: statistics.median(v) for e, v in runs.items()},
                     os.getloadavg()[0]))
        print(n, {e: round(v, 1) for e, v in rows[-1][1].items()}, f"load {rows[-1][2]:.1f}",
              flush=True)
    for backend in backends.values():
        backend.close()
    lines = [f"model: {model.name}; {args.tokens} tokens per sample, median of {args.rounds} "
             f"round(s); threads: every core ({os.cpu_count()})", ""]
    lines += [f"- {engine_report(e).line()}" for e in engines]
    head = " | ".join(f"{e} tok/s" for e in engines)
    lines += ["", f"| live sequences | {head} | ratio | 1-min load |",
              "|---|" + "---|" * len(engines) + "---|---|"]
    for n, by, loadavg in rows:
        ratio = (f"{by['native'] / by['prebuilt']:.2f}x" if len(engines) == 2 and by["prebuilt"]
                 else "—")
        cells = " | ".join(f"{by[e]:.1f}" for e in engines)
        lines.append(f"| {n} | {cells} | {ratio} | {loadavg:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
