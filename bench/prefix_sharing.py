"""Shared-prefix reuse in the llamacpp backend: the beams of one step-search depth in one call.

On the benchmark model (bench/fetch_model.py): ``--beams`` requests with the same GSM8K question
and the same partial solution (``--shared`` tokens of it), each with its own short last step,
asking for one new token, so the time is prompt evaluation. Run with prefix sharing on (the
default) and off (every prompt evaluated whole), alternately, ``--rounds`` times each, in one run.

    python bench/prefix_sharing.py [--beams 8] [--rounds 3]

Writes bench/results/prefix_sharing-DATE.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from batched_sampling import question  # noqa: E402
from fetch_model import fetch  # noqa: E402

import ponder.backends.llamacpp as llamacpp  # noqa: E402
from ponder.strategies.base import DEFAULT_SYSTEM  # noqa: E402
from ponder.types import GenerationRequest, Message, SamplingParams  # noqa: E402

PARTIAL = ("Let's solve this step by step.\n\n1. **April sales**: Natalia sold 48 clips to her "
           "friends in April.\n\n2. **May sales**: In May she sold half as many clips as in "
           "April, so we divide the April number by two:\n   \\[\n   \\text{May} = "
           "\\frac{48}{2} = 24\n   \\]\n\n3. **Total**: To find how many clips she sold in April "
           "and May together, we add the two months:\n   \\[\n   \\text{Total} = 48 + 24\n"
           "   \\]\n\n")


def requests(beams: int) -> list[GenerationRequest]:
    messages = (Message("system", DEFAULT_SYSTEM), Message("user", question()))
    params = SamplingParams(temperature=0.0, max_tokens=1)
    return [GenerationRequest(messages, params, prefill=PARTIAL + f"4. Beam {k} checks: 48 + 24 = ")
            for k in range(beams)]


def timed(backend: llamacpp.LlamaCppBackend, batch: list[GenerationRequest]) -> tuple[float, int]:
    started = time.perf_counter()
    rows = asyncio.run(backend.generate(batch))
    return time.perf_counter() - started, sum(c.usage.prompt_tokens for row in rows for c in row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--beams", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    backend = llamacpp.LlamaCppBackend(args.model or fetch(), n_ctx=16384, n_seq_max=16)
    batch = requests(args.beams)
    prompt = len(backend.prompt_tokens(batch[0]))
    timed(backend, batch[:1])  # warm-up
    seconds: dict[str, list[float]] = {"shared": [], "whole": []}
    evaluated: dict[str, int] = {}
    default = llamacpp.MIN_SHARED_PREFIX
    for _ in range(args.rounds):
        for mode in ("shared", "whole"):
            llamacpp.MIN_SHARED_PREFIX = default if mode == "shared" else 10**9
            s, tokens = timed(backend, batch)
            seconds[mode].append(s)
            evaluated[mode] = tokens
    llamacpp.MIN_SHARED_PREFIX = default
    backend.close()
    shared, whole = statistics.median(seconds["shared"]), statistics.median(seconds["whole"])
    lines = [
        f"# Shared-prefix reuse, {dt.date.today()}",
        "",
        f"Model `{Path(args.model or fetch()).name}`, {args.beams} requests of {prompt} prompt "
        f"tokens each sharing all but their last step, 1 new token each, {args.rounds} rounds "
        "alternating (median seconds).",
        "",
        "| prefix | prompt tokens evaluated | seconds (median) | runs |",
        "|---|---:|---:|---|",
        f"| shared | {evaluated['shared']} | {shared:.2f} | "
        + ", ".join(f"{s:.2f}" for s in seconds["shared"]) + " |",
        f"| each prompt whole | {evaluated['whole']} | {whole:.2f} | "
        + ", ".join(f"{s:.2f}" for s in seconds["whole"]) + " |",
        "",
        f"Speed-up: **{whole / shared:.2f}x**; tokens evaluated: "
        f"{evaluated['shared'] / evaluated['whole']:.0%} of whole.",
        "",
        "Command: `python bench/prefix_sharing.py`",
    ]
    out = HERE / "results" / f"prefix_sharing-{dt.date.today()}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
