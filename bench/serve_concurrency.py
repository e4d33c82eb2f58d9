"""ponder serve under concurrent clients: 8 ponder-self-consistency requests (n=4) sent at once
against the same 8 sent one after another, with the benchmark model in-process, through a real
HTTP server and the official openai client. Also the time to the first streamed chunk and to
the first generated token. Writes bench/results/serve_concurrency-DATE.md.

    python bench/serve_concurrency.py [--requests 8] [--n 4] [--max-tokens 640]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import openai
import uvicorn

from ponder.backends.llamacpp import LlamaCppBackend
from ponder.server.app import PonderServer

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "gsm8k_train.jsonl"


def questions(k: int) -> list[str]:
    with open(DATA) as f:
        return [json.loads(line)["question"] for line, _ in zip(f, range(k), strict=False)]


async def ask(client: openai.AsyncOpenAI, question: str, n: int, max_tokens: int, seed: int
              ) -> dict:
    started = time.monotonic()
    first_chunk = first_token = None
    content, usage = "", None
    stream = await client.chat.completions.create(
        model="ponder-self-consistency", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": question}], max_tokens=max_tokens, seed=seed,
        extra_body={"ponder": {"n": n}})
    async for chunk in stream:
        now = time.monotonic() - started
        first_chunk = first_chunk if first_chunk is not None else now
        if chunk.usage is not None:
            usage = chunk.usage
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        reasoning = (delta.model_extra or {}).get("reasoning_content") or ""
        if first_token is None and reasoning and not reasoning.startswith(("Thinking", "\n[")):
            first_token = now
        content += delta.content or ""
    return {"seconds": time.monotonic() - started, "first_chunk": first_chunk,
            "first_token": first_token, "answer": content,
            "completion_tokens": usage.completion_tokens if usage else 0}


async def run(url: str, qs: list[str], n: int, max_tokens: int, concurrent: bool) -> dict:
    client = openai.AsyncOpenAI(base_url=url, api_key="-", max_retries=0, timeout=3600)
    started = time.monotonic()
    if concurrent:
        results = await asyncio.gather(*(ask(client, q, n, max_tokens, i)
                                         for i, q in enumerate(qs)))
    else:
        results = []
        for i, q in enumerate(qs):
            results.append(await ask(client, q, n, max_tokens, i))
            print(f"  sequential {i + 1}/{len(qs)} done", flush=True)
    await client.close()
    return {"wall": time.monotonic() - started, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=640)
    parser.add_argument("--kv-unified", type=int, choices=(0, 1), default=0,
                        help="1: one KV cache all sequences attend over (shares long prompts); "
                        "0: a stream per sequence (attention stays short under load)")
    parser.add_argument("-B", "--backend-option", action="append", default=[],
                        metavar="KEY=INT", help="e.g. -B n_seq_max=32 (default: automatic)")
    args = parser.parse_args()
    options = {k: int(v) for k, v in (o.split("=", 1) for o in args.backend_option)}
    model = subprocess.run([sys.executable, str(ROOT / "bench" / "fetch_model.py")],
                           capture_output=True, text=True, check=True).stdout.strip()
    backend = LlamaCppBackend(model, kv_unified=bool(args.kv_unified), **options)
    server = uvicorn.Server(uvicorn.Config(PonderServer(backend, max_concurrent=16).app(),
                                           host="127.0.0.1", port=0, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/v1"
    qs = questions(args.requests)
    print("sequential...", flush=True)
    sequential = asyncio.run(run(url, qs, args.n, args.max_tokens, concurrent=False))
    print(f"  {sequential['wall']:.1f} s", flush=True)
    print("concurrent...", flush=True)
    concurrent = asyncio.run(run(url, qs, args.n, args.max_tokens, concurrent=True))
    print(f"  {concurrent['wall']:.1f} s", flush=True)
    server.should_exit = True

    def tokens(run_: dict) -> int:
        return sum(r["completion_tokens"] for r in run_["results"])

    def mean(run_: dict, key: str) -> float:
        values = [r[key] for r in run_["results"] if r[key] is not None]
        return sum(values) / len(values) if values else float("nan")

    ratio = concurrent["wall"] / sequential["wall"]
    lines = [
        f"# ponder serve: concurrent against sequential clients ({datetime.date.today()})",
        "",
        f"Model: {Path(model).name} in-process (n_ctx={backend.n_ctx}, "
        f"n_seq_max={backend.n_seq_max}, n_threads={backend.n_threads}, "
        f"kv_unified={bool(args.kv_unified)}); {args.requests} GSM8K questions, "
        f"`ponder-self-consistency` with n={args.n}, max_tokens={args.max_tokens}, streamed "
        "through the official openai client; same seeds in both runs.",
        "",
        "| run | wall s | completion tokens | tokens/s | mean first chunk s "
        "| mean first token s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in (("sequential", sequential), ("concurrent", concurrent)):
        lines.append(f"| {name} | {r['wall']:.1f} | {tokens(r)} | {tokens(r) / r['wall']:.1f} "
                     f"| {mean(r, 'first_chunk'):.3f} | {mean(r, 'first_token'):.2f} |")
    lines += [
        "",
        f"Concurrent wall time = **{ratio:.0%}** of sequential (target: at most 60%).",
        "",
        f"Command: `python bench/serve_concurrency.py --requests {args.requests} --n {args.n} "
        f"--max-tokens {args.max_tokens} --kv-unified {args.kv_unified}"
        f"{''.join(' -B ' + o for o in args.backend_option)}`",
    ]
    kind = "unified" if args.kv_unified else "split"
    out = ROOT / "bench" / "results" / f"serve_concurrency-kv{kind}-{datetime.date.today()}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
