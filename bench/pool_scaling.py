"""Endpoint pool benchmark on simulated GPU replicas (bench/sim_replica.py).

1. Scaling: ``ponder eval``'s harness (self-consistency, 8 samples per problem) over a pool of
   1, 2, 4 and 8 replicas; samples per second and the speed-up over one replica.
2. Routing: beam search (3 steps per path) over 4 replicas with a prefix cache, routed by
   affinity and by plain least-loaded (power of two choices); the share of prompt tokens the
   replicas found in their cache, and the wall time.

Each replica: ``--slots`` sequences at once, a fixed time to first token, a per-token delay, and
(part 2) a per-uncached-prompt-token prefill cost. Everything is sleeps: the client is what is
measured. Run under the CPU lock:

    flock /tmp/ponder-cpu.lock python bench/pool_scaling.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ponder.backends.endpoints import EndpointSpec
from ponder.backends.pool import EndpointPool
from ponder.eval.harness import Harness
from ponder.eval.store import Store
from ponder.types import Problem

HERE = Path(__file__).resolve().parent
SIM = HERE / "sim_replica.py"
DATE = "2026-11-29"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(n: int, *flags: str) -> tuple[list[subprocess.Popen], list[str]]:
    procs, urls = [], []
    for i in range(n):
        port = free_port()
        procs.append(subprocess.Popen([sys.executable, str(SIM), "--port", str(port),
                                       "--name", f"r{i}", *flags],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        urls.append(f"http://127.0.0.1:{port}/v1")
    for url in urls:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/models", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url} did not start") from None
                time.sleep(0.1)
    return procs, urls


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
        p.wait()


def stats(urls: list[str]) -> list[dict]:
    return [json.loads(urllib.request.urlopen(u.removesuffix("/v1") + "/stats").read())
            for u in urls]


def problems(count: int) -> list[Problem]:
    return [Problem(f"What is {a} + {3 * a % 17}?", str(a + 3 * a % 17), id=f"p{a}")
            for a in range(count)]


async def eval_seconds(urls: list[str], strategy: str, budget: int, count: int,
                       concurrency: int, slots: int, routing: str = "affinity") -> float:
    pool = EndpointPool("sim", [EndpointSpec(u, max_concurrent=slots) for u in urls],
                        routing=routing)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "samples.sqlite")
        try:
            harness = Harness(pool, store, problems(count), [strategy], [budget], greedy=False,
                              concurrency=concurrency,
                              options={"max_tokens": 64} if strategy == "self-consistency"
                              else {"max_tokens": 192, "step_tokens": 64})
            await pool.probe()
            started = time.monotonic()
            await harness.run()
            return time.monotonic() - started
        finally:
            store.close()
            await pool.aclose()


def scaling(args: argparse.Namespace) -> list[dict]:
    rows = []
    for n in args.replicas:
        procs, urls = start(n, "--slots", str(args.slots), "--ttft", "0.05",
                            "--per-token", str(args.per_token), "--tokens", "64")
        try:
            seconds = asyncio.run(eval_seconds(urls, "self-consistency", 8, args.problems,
                                               args.problems, args.slots))
            served = [s["samples"] for s in stats(urls)]
        finally:
            stop(procs)
        samples = 8 * args.problems
        rows.append({"replicas": n, "seconds": seconds, "samples_per_s": samples / seconds,
                     "served": served})
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["samples_per_s"]
    for r in rows:
        r["speedup"] = r["samples_per_s"] / base
    return rows


def routing(args: argparse.Namespace) -> list[dict]:
    rows = []
    for mode in ("affinity", "least-loaded"):
        procs, urls = start(4, "--slots", "4", "--ttft", "0.02", "--per-token", "0.002",
                            "--tokens", "48", "--cache", "32", "--prefill-ms", "0.5",
                            "--steps", "3")
        try:
            seconds = asyncio.run(eval_seconds(urls, "beam-search", 4, args.beam_problems,
                                               8, 4, routing=mode))
            got = stats(urls)
        finally:
            stop(procs)
        prompt = sum(s["prompt_tokens"] for s in got)
        cached = sum(s["cached_tokens"] for s in got)
        rows.append({"routing": mode, "seconds": seconds, "requests": sum(
            s["requests"] for s in got), "prompt_tokens": prompt, "cached_tokens": cached,
            "cache_hit": cached / prompt})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def pool_factory(urls: list[str], slots: int) -> EndpointPool:
    return EndpointPool("sim", [EndpointSpec(u, max_concurrent=slots) for u in urls])


def ray_overhead(args: argparse.Namespace) -> list[dict]:
    """The same eval on 4 replicas: in-process, then over 2 Ray workers each owning a pool."""
    import functools

    from ponder.eval.ray_eval import RayEval, start_ray

    start_ray(None, 2)
    rows = []
    procs, urls = start(4, "--slots", str(args.slots), "--ttft", "0.05",
                        "--per-token", str(args.per_token), "--tokens", "64")
    try:
        for repeat in range(2):
            inproc = asyncio.run(eval_seconds(urls, "self-consistency", 8, args.problems,
                                              args.problems, args.slots))
            with tempfile.TemporaryDirectory() as tmp:
                store = Store(Path(tmp) / "samples.sqlite")
                harness = Harness(None, store, problems(args.problems),  # type: ignore[arg-type]
                                  ["self-consistency"], [8], greedy=False,
                                  options={"max_tokens": 64})
                workers = RayEval(harness, functools.partial(pool_factory, urls, args.slots),
                                  workers=2, per_worker=args.problems // 2)
                workers.pids()  # the actors are up before the clock starts
                started = time.monotonic()
                workers.run()
                on_ray = time.monotonic() - started
                workers.close()
                store.close()
            rows.append({"repeat": repeat, "in_process_s": inproc, "ray_s": on_ray,
                         "overhead": on_ray / inproc - 1})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        stop(procs)
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    ns = [r["replicas"] for r in rows]
    ax.plot(ns, [r["speedup"] for r in rows], "o-", label="endpoint pool")
    ax.plot(ns, ns, "--", color="grey", label="ideal")
    ax.plot(ns, [0.8 * n for n in ns], ":", color="grey", label="0.8 x N target")
    ax.set_xlabel("simulated replicas")
    ax.set_ylabel("eval throughput vs 1 replica")
    ax.set_xticks(ns)
    ax.legend()
    ax.set_title("ponder eval over simulated replicas")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--problems", type=int, default=64)
    p.add_argument("--beam-problems", type=int, default=24)
    p.add_argument("--slots", type=int, default=8)
    p.add_argument("--per-token", type=float, default=0.008)
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--no-ray", action="store_true")
    args = p.parse_args()
    scale = scaling(args)
    route, overhead = [], []
    try:
        route = routing(args)
    except Exception as exc:  # noqa: BLE001 - keep the other parts' numbers
        print(f"routing failed: {exc!r}", flush=True)
    try:
        overhead = ray_overhead(args) if not args.no_ray else []
    except Exception as exc:  # noqa: BLE001
        print(f"ray failed: {exc!r}", flush=True)
    png = args.out / f"pool_scaling-{DATE}.png"
    plot(scale, png)
    lines = [
        "# Endpoint pool on simulated replicas",
        "",
        "`flock /tmp/ponder-cpu.lock python bench/pool_scaling.py` (replicas: "
        "bench/sim_replica.py; sleeps, so the client is what is measured).",
        "",
        f"## Eval throughput: self-consistency, 8 samples x {args.problems} problems",
        "",
        f"Each replica: {args.slots} slots, 0.05 s to first token, {args.per_token} s per token, "
        "64 tokens per sample. All problems in flight at once.",
        "",
        "| replicas | seconds | samples/s | speed-up | samples per replica |",
        "|---:|---:|---:|---:|---|",
        *(f"| {r['replicas']} | {r['seconds']:.2f} | {r['samples_per_s']:.1f} | "
          f"{r['speedup']:.2f}x | {', '.join(map(str, r['served']))} |" for r in scale),
        "",
        f"![scaling](pool_scaling-{DATE}.png)",
        "",
        f"## Routing: beam search ({args.beam_problems} problems, 4 beams, 3 steps per path) "
        "over 4 replicas",
        "",
        "Each replica: 4 slots, a prefix cache of its 32 latest prompts, 0.5 ms per uncached "
        "prompt token. Cache hit: the share of prompt tokens a replica found cached.",
        "",
        "| routing | seconds | requests | prompt tokens | cached tokens | cache hit |",
        "|---|---:|---:|---:|---:|---:|",
        *(f"| {r['routing']} | {r['seconds']:.2f} | {r['requests']} | {r['prompt_tokens']} | "
          f"{r['cached_tokens']} | {100 * r['cache_hit']:.1f}% |" for r in route),
        "",
        "## Ray: the scaling eval on 4 replicas, in-process against 2 Ray workers "
        "(`--ray`, each owning a pool of the 4)",
        "",
        "Ray's start and the actors' creation are not timed; the driver commits every "
        "problem's rows to the store as they arrive.",
        "",
        "| repeat | in-process s | Ray s | Ray overhead |",
        "|---:|---:|---:|---:|",
        *(f"| {r['repeat']} | {r['in_process_s']:.2f} | {r['ray_s']:.2f} | "
          f"{100 * r['overhead']:+.1f}% |" for r in overhead),
        "",
    ]
    md = args.out / f"pool_scaling-{DATE}.md"
    md.write_text("\n".join(lines), encoding="utf-8")
    (args.out / f"pool_scaling-{DATE}.json").write_text(
        json.dumps({"scaling": scale, "routing": route, "ray": overhead}, indent=2),
        encoding="utf-8")
    print(md.read_text())


if __name__ == "__main__":
    main()
