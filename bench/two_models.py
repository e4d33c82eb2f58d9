"""Two in-process models on one machine: decoding both at once must not be slower than one after
the other.

Loads the benchmark model (Qwen2.5-Coder-0.5B, ``python bench/fetch_model.py``) and the bundled
SmolLM2-135M, and has each generate the same workload (``--samples`` samples of
``--tokens`` new tokens) three ways, alternating, in one run:

- ``sequential``: one model's call, then the other's;
- ``together``: both calls at once (ponder's way: each model's decoding thread runs freely);
- ``together-turns``: both at once, taking turns at ``llama_decode`` through one process-wide
  lock (``backends.llamacpp.DECODE_TURNS``), the alternative this bench decided against.

    python bench/two_models.py --rounds 2      # writes bench/results/two-models-DATE.{md,json}
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fetch_model import fetch  # noqa: E402

from ponder.backends import llamacpp  # noqa: E402
from ponder.backends.llamacpp import LlamaCppBackend  # noqa: E402
from ponder.backends.models import bundled_model_path  # noqa: E402
from ponder.types import GenerationRequest, Message, SamplingParams  # noqa: E402

PROMPT = "Write a long story about a farmer who counts his sheep every morning."
RESULTS = Path(__file__).parent / "results"


def request(samples: int, tokens: int, seed: int) -> GenerationRequest:
    return GenerationRequest((Message("user", PROMPT),),
                             SamplingParams(temperature=0.8, max_tokens=tokens, seed=seed),
                             n=samples)


async def one(backend: LlamaCppBackend, samples: int, tokens: int, seed: int) -> int:
    [completions] = await backend.generate([request(samples, tokens, seed)])
    return sum(c.usage.completion_tokens for c in completions)


async def measure(mode: str, models: list[LlamaCppBackend], samples: int, tokens: int,
                  seed: int) -> dict:
    turns = llamacpp.DECODE_TURNS
    if mode == "together-turns":
        llamacpp.DECODE_TURNS = threading.Lock()
    started = time.monotonic()
    try:
        if mode == "sequential":
            made = [await one(m, samples, tokens, seed) for m in models]
        else:
            made = list(await asyncio.gather(*(one(m, samples, tokens, seed) for m in models)))
    finally:
        llamacpp.DECODE_TURNS = turns
    wall = time.monotonic() - started
    return {"mode": mode, "wall_s": round(wall, 2), "tokens": sum(made),
            "tokens_per_s": round(sum(made) / wall, 1), "per_model": made}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=128)
    args = ap.parse_args()
    paths = [fetch(), bundled_model_path()]
    models = [LlamaCppBackend(p, n_seq_max=args.samples, n_ctx=args.samples * 512)
              for p in paths]
    print(f"models: {', '.join(p.name for p in paths)}", file=sys.stderr)
    asyncio.run(one(models[0], 1, 8, 0))  # warm both
    asyncio.run(one(models[1], 1, 8, 0))
    modes = ["sequential", "together", "together-turns"]
    rows = []
    for r in range(args.rounds):
        order = modes if r % 2 == 0 else modes[::-1]
        for mode in order:
            row = asyncio.run(measure(mode, models, args.samples, args.tokens, seed=r))
            row["round"] = r
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    for m in models:
        m.close()
    mean = {mode: sum(x["tokens_per_s"] for x in rows if x["mode"] == mode) / args.rounds
            for mode in modes}
    day = datetime.date.today().isoformat()
    command = f"python bench/two_models.py --rounds {args.rounds}"
    lines = [f"# Two in-process models at once ({day})", "", f"`{command}`", "",
             f"{' and '.join(p.name for p in paths)}: each generates {args.samples} samples of "
             f"up to {args.tokens} tokens; modes alternate in one run on this machine.", "",
             "| round | mode | wall s | tokens | tokens/s |", "|---:|---|---:|---:|---:|"]
    lines += [f"| {x['round']} | {x['mode']} | {x['wall_s']} | {x['tokens']} | "
              f"{x['tokens_per_s']} |" for x in rows]
    lines += ["", "Mean tokens/s: " + ", ".join(f"{m} {v:.1f}" for m, v in mean.items()) + ".",
              f"Together / sequential: {mean['together'] / mean['sequential']:.1%}"
              f"; taking turns / sequential: "
              f"{mean['together-turns'] / mean['sequential']:.1%}."]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"two-models-{day}.md").write_text("\n".join(lines) + "\n")
    (RESULTS / f"two-models-{day}.json").write_text(json.dumps(
        {"command": command, "rows": rows, "mean_tokens_per_s": mean}, indent=2) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
