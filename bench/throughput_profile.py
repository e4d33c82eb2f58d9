"""Where the in-process llama.cpp backend's time goes under real workloads.

Wraps the backend's decode and per-token steps (``_decode``, ``_advance``: present in every
version of ``ponder.backends.llamacpp``, so the same script profiles main and a branch via
PYTHONPATH) and records, per ``llama_decode`` call: tokens in the batch, sequences, the highest
position (context length attended by the longest sequence), seconds in ggml; and per decode
step, seconds spent in Python sampling. Then runs one workload:

    python bench/throughput_profile.py eval --limit 2 --out /tmp/prof   # ponder eval's workload
    python bench/throughput_profile.py serve --requests 4               # serve_concurrency's

and prints/writes a JSON summary (``--json PATH``). Extra ``-B key=value`` go to the backend.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path

from ponder.backends import llamacpp

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "bench" / "models" / "qwen2.5-coder-0.5b-instruct.gguf"
DATA = ROOT.parent / "shared" / "data" / "gsm8k_train.jsonl"


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int, int, float]] = []  # items, wanted, seqs, maxpos, s
        self.advance_s = 0.0
        self.advances = 0
        self.started = time.monotonic()
        self.cpu_started = time.process_time()

    def install(self) -> None:
        cls = llamacpp.LlamaCppBackend
        decode, advance = cls._decode, cls._advance
        rec = self

        def _decode(self, items, *a, **k):  # noqa: ANN001
            t = time.perf_counter()
            out = decode(self, items, *a, **k)
            seconds = time.perf_counter() - t
            rec.calls.append((len(items), sum(1 for i in items if i[3]),
                              len({i[2] for i in items}),
                              max((i[1] for i in items), default=0), seconds))
            return out

        def _advance(self, *a, **k):  # noqa: ANN001
            t = time.perf_counter()
            out = advance(self, *a, **k)
            rec.advance_s += time.perf_counter() - t
            rec.advances += 1
            return out

        cls._decode, cls._advance = _decode, _advance

    def summary(self) -> dict:
        wall = time.monotonic() - self.started
        steps = [c for c in self.calls if c[0] == c[1]]  # pure decode steps: one token/seq
        prefill = [c for c in self.calls if c[0] != c[1]]
        decode_s = sum(c[4] for c in self.calls)
        step_s = sum(c[4] for c in steps)
        live = sum(c[0] for c in steps)
        buckets: dict[str, list[float]] = {}
        for c in steps:
            b = "1" if c[0] == 1 else "2-4" if c[0] <= 4 else "5-8" if c[0] <= 8 else \
                "9-16" if c[0] <= 16 else "17-32" if c[0] <= 32 else ">32"
            buckets.setdefault(b, []).append(c[4])
        return {
            "wall_s": round(wall, 1),
            "process_cpu_s": round(time.process_time() - self.cpu_started, 1),
            "generated_tokens": self.advances,
            "tokens_per_s": round(self.advances / wall, 1) if wall else 0,
            "llama_decode_s": round(decode_s, 1),
            "decode_steps": len(steps),
            "decode_step_s": round(step_s, 1),
            "prefill_calls": len(prefill),
            "prefill_tokens": sum(c[0] for c in prefill),
            "prefill_s": round(decode_s - step_s, 1),
            "python_sampling_s": round(self.advance_s, 1),
            "other_s": round(wall - decode_s - self.advance_s, 1),
            "mean_live_seqs": round(live / len(steps), 2) if steps else 0,
            "mean_step_ms": round(1000 * step_s / len(steps), 1) if steps else 0,
            "mean_max_pos": round(sum(c[3] for c in steps) / len(steps)) if steps else 0,
            "step_ms_by_live": {k: [len(v), round(1000 * sum(v) / len(v), 1)]
                                for k, v in sorted(buckets.items())},
            "steps_by_live": {k: len(v) for k, v in sorted(buckets.items())},
        }


def run_eval(args: argparse.Namespace, extra: list[str]) -> None:
    from ponder.cli.main import main as cli

    argv = ["eval", "--dataset", str(DATA), "--limit", str(args.limit), "--strategies",
            "self-consistency,program-of-thought,self-consistency[mode=mixed]",
            "--budgets", args.budgets, "--max-tokens", str(args.max_tokens), "-m", str(MODEL),
            "--concurrency", str(args.concurrency), "--out", args.out, "--fresh", *extra]
    rc = cli(argv)
    if rc:
        raise SystemExit(rc)


def run_serve(args: argparse.Namespace, extra: list[str]) -> None:
    import openai
    import uvicorn

    from ponder.backends.loading import load_backend
    from ponder.server.app import PonderServer

    opts = dict(kv.split("=", 1) for kv in extra[1::2])
    opts = {k: (int(v) if v.lstrip("-").isdigit() else v) for k, v in opts.items()}
    backend = load_backend(str(MODEL), **opts)
    server = uvicorn.Server(uvicorn.Config(PonderServer(backend, max_concurrent=16).app(),
                                           host="127.0.0.1", port=0, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/v1"
    with open(DATA) as f:
        qs = [json.loads(line)["question"] for line, _ in zip(f, range(args.requests),
                                                              strict=False)]

    async def ask(client: openai.AsyncOpenAI, q: str, seed: int) -> None:
        stream = await client.chat.completions.create(
            model="ponder-self-consistency", stream=True,
            messages=[{"role": "user", "content": q}], max_tokens=args.max_tokens, seed=seed,
            extra_body={"ponder": {"n": args.n}})
        async for _ in stream:
            pass

    async def go() -> None:
        client = openai.AsyncOpenAI(base_url=url, api_key="-", max_retries=0, timeout=3600)
        await asyncio.gather(*(ask(client, q, i) for i, q in enumerate(qs)))
        await client.close()

    asyncio.run(go())
    server.should_exit = True


def run_micro(args: argparse.Namespace, extra: list[str]) -> None:
    """Python's share per token: NumPy sampling on one row of logits of the model's vocabulary
    (temperature 0.8, top-p 0.95 as the strategies use), from real logits of the model."""
    import numpy as np

    from ponder.backends.sampling import sample_token
    from ponder.types import SamplingParams

    b = llamacpp.LlamaCppBackend(MODEL, n_ctx=1024, n_seq_max=1)
    prompt = b.tokenize("Natalia sold clips to 48 of her friends in April. How many")
    [row] = b._decode([(t, i, 0, i == len(prompt) - 1) for i, t in enumerate(prompt)])
    b.close()
    params = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=8, seed=0)
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for _ in range(200):
        sample_token(row, params, rng)
    ms = 1000 * (time.perf_counter() - t) / 200
    t = time.perf_counter()
    for _ in range(200):
        row.copy()
    copy_ms = 1000 * (time.perf_counter() - t) / 200
    print(json.dumps({"vocab": row.size, "sample_token_ms": round(ms, 3),
                      "logits_copy_ms": round(copy_ms, 3)}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workload", choices=("eval", "serve", "micro"))
    parser.add_argument("--limit", type=int, default=2)
    parser.add_argument("--budgets", default="1,2,4,8")
    parser.add_argument("--max-tokens", type=int, default=640)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--out", default="/tmp/ponder-profile")
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--label", default="")
    args, extra = parser.parse_known_args()
    rec = Recorder()
    rec.install()
    if args.workload == "micro":
        run_micro(args, extra)
        return
    (run_eval if args.workload == "eval" else run_serve)(args, extra)
    out = {"label": args.label, "workload": args.workload, "code": llamacpp.__file__,
           "extra": extra, "threads": os.cpu_count(), **rec.summary()}
    print(json.dumps(out, indent=1), file=sys.stderr)
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
