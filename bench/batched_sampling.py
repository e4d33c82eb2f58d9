"""Batched sampling throughput: ponder's llamacpp backend against sequential llama-cpp calls.

On the benchmark model (bench/fetch_model.py), generate 16 samples of 128 new tokens for one
GSM8K prompt (a) with ponder's batched backend (one call, prompt evaluated once) and (b) with 16
sequential ``Llama.create_completion`` calls on the same formatted prompt, in the same run.
Target: (a) reaches at least 2.5x the tokens per second of (b).

    python bench/batched_sampling.py [--model PATH] [--samples 16] [--tokens 128]

Writes bench/results/batched_sampling-DATE.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from fetch_model import fetch  # noqa: E402

from ponder.backends.llamacpp import LlamaCppBackend  # noqa: E402
from ponder.strategies.base import DEFAULT_SYSTEM  # noqa: E402
from ponder.types import GenerationRequest, Message, SamplingParams  # noqa: E402

GSM8K = HERE.parent.parent / "shared" / "data" / "gsm8k_train.jsonl"


def question() -> str:
    if GSM8K.is_file():
        with open(GSM8K) as f:
            return json.loads(f.readline())["question"]
    return ("Natalia sold clips to 48 of her friends in April, and then she sold half as many "
            "clips in May. How many clips did Natalia sell altogether in April and May?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    model = args.model or fetch()
    messages = (Message("system", DEFAULT_SYSTEM), Message("user", question()))
    params = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=args.tokens, seed=0)

    # (a) ponder: one batched call.
    backend = LlamaCppBackend(model, n_ctx=4096, n_seq_max=args.samples, n_threads=args.threads)
    request = GenerationRequest(messages, params, n=args.samples)
    prompt = backend.template.render(messages)
    asyncio.run(backend.generate([request.replace(n=1, params=params.replace(max_tokens=4))]))
    print(f"(a) ponder batched: {args.samples} x {args.tokens} tokens ...", file=sys.stderr)
    started = time.perf_counter()
    [samples] = asyncio.run(backend.generate([request]))
    a_seconds = time.perf_counter() - started
    a_tokens = sum(c.usage.completion_tokens for c in samples)
    backend.close()

    # (b) llama-cpp-python, one create_completion per sample.
    from llama_cpp import Llama

    llm = Llama(str(model), n_ctx=2048, n_threads=args.threads, verbose=False)
    llm.create_completion(prompt, max_tokens=4)  # warm-up, as for (a)
    b_tokens = 0
    started = time.perf_counter()
    for i in range(args.samples):
        print(f"(b) sequential: sample {i + 1}/{args.samples}", file=sys.stderr, end="\r")
        out = llm.create_completion(prompt, max_tokens=args.tokens, temperature=0.8, top_p=0.95,
                                    seed=i)
        b_tokens += out["usage"]["completion_tokens"]
    b_seconds = time.perf_counter() - started
    print(file=sys.stderr)

    a_rate, b_rate = a_tokens / a_seconds, b_tokens / b_seconds
    result = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": model.name,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {args.threads} threads",
        "samples": args.samples,
        "max_new_tokens": args.tokens,
        "batched": {"tokens": a_tokens, "seconds": round(a_seconds, 2),
                    "tokens_per_s": round(a_rate, 1)},
        "sequential": {"tokens": b_tokens, "seconds": round(b_seconds, 2),
                       "tokens_per_s": round(b_rate, 1)},
        "speedup": round(a_rate / b_rate, 2),
        "target": 2.5,
    }
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    stem = out_dir / f"batched_sampling-{dt.date.today().isoformat()}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    md = (
        f"# Batched sampling, {result['date']}\n\n"
        f"{model.name}, {result['machine']}; {args.samples} samples x {args.tokens} new tokens, "
        "one GSM8K prompt, temperature 0.8, top-p 0.95.\n\n"
        "| run | tokens | seconds | tokens/s |\n|---|---:|---:|---:|\n"
        f"| (a) ponder llamacpp, one batched call | {a_tokens} | {a_seconds:.1f} | {a_rate:.1f} |\n"
        f"| (b) {args.samples} sequential `Llama.create_completion` | {b_tokens} | {b_seconds:.1f} "
        f"| {b_rate:.1f} |\n\n"
        f"Speed-up: **{result['speedup']}x** (target: at least 2.5x).\n"
    )
    stem.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
