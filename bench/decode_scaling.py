"""Cost of one llama.cpp decode step by sequences in the batch, context length and KV layout.

Fills B sequences with L distinct tokens each (no sharing), then times decode steps of one token
per sequence. With a unified KV cache every token attends over all B*L cells (masked); with a
stream per sequence (kv_unified=False) over its own L. Prints a table and a JSON line.

    python bench/decode_scaling.py [--seqs 1,8,16] [--lengths 256,768] [--steps 8]
        [--layouts unified,split] [--flash] [--gaps]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ponder.backends.llamacpp import LlamaCppBackend

MODEL = Path(__file__).resolve().parent / "models" / "qwen2.5-coder-0.5b-instruct.gguf"


def step_ms(unified: bool, seqs: int, length: int, steps: int, threads: int | None,
            stride: int = 1, flash: bool = False) -> float:
    """ms per decode step; ``stride`` 2 puts the sequences on ids 0, 2, 4, ... (gaps);
    ``flash``: llama.cpp's flash attention."""
    n_seq_max = max(seqs, 1) * stride
    per_seq = length + steps + 16
    n_ctx = per_seq * n_seq_max
    kw = {"n_threads": threads} if threads else {}
    b = LlamaCppBackend(MODEL, n_ctx=max(n_ctx, 64), n_seq_max=n_seq_max, kv_unified=unified,
                        flash_attn=flash, **kw)
    try:
        ids = [s * stride for s in range(seqs)]
        for s in ids:  # distinct prompts: token ids differ by sequence
            b._decode([((1000 + 7 * s + p) % 20000, p, s, p == length - 1)
                       for p in range(length)])
        b._decode([(42, length, s, True) for s in ids])  # warm-up step
        t = time.perf_counter()
        for i in range(steps):
            b._decode([(43 + i, length + 1 + i, s, True) for s in ids])
        return 1000 * (time.perf_counter() - t) / steps
    finally:
        b.close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seqs", default="1,8,16")
    p.add_argument("--lengths", default="256,768")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--gaps", action="store_true",
                   help="also per-sequence streams on ids 0, 2, 4, ... (not consecutive)")
    p.add_argument("--layouts", default="unified,split", help="unified, split or both")
    p.add_argument("--flash", action="store_true",
                   help="also per-sequence streams with llama.cpp's flash attention")
    args = p.parse_args()
    rows = []
    print("| KV layout | sequences | context/seq | ms/step | tokens/s |\n|---|---:|---:|---:|---:|")
    for length in map(int, args.lengths.split(",")):
        for seqs in map(int, args.seqs.split(",")):
            layouts = args.layouts.split(",")
            for unified in [u for u, name in ((True, "unified"), (False, "split"))
                            if name in layouts]:
                if seqs == 1 and not unified and "unified" in layouts:
                    continue
                ms = step_ms(unified, seqs, length, args.steps, args.threads)
                rows.append({"unified": unified, "seqs": seqs, "length": length,
                             "ms_per_step": round(ms, 1),
                             "tokens_per_s": round(1000 * seqs / ms, 1)})
                print(f"| {'unified' if unified else 'per-sequence'} | {seqs} | {length} "
                      f"| {ms:.1f} | {1000 * seqs / ms:.1f} |", flush=True)
            if args.flash:
                ms = step_ms(False, seqs, length, args.steps, args.threads, flash=True)
                rows.append({"unified": False, "flash": True, "seqs": seqs, "length": length,
                             "ms_per_step": round(ms, 1),
                             "tokens_per_s": round(1000 * seqs / ms, 1)})
                print(f"| per-sequence, flash attention | {seqs} | {length} | {ms:.1f} "
                      f"| {1000 * seqs / ms:.1f} |", flush=True)
            if args.gaps and seqs > 1:
                ms = step_ms(False, seqs, length, args.steps, args.threads, stride=2)
                rows.append({"unified": False, "gaps": True, "seqs": seqs, "length": length,
                             "ms_per_step": round(ms, 1),
                             "tokens_per_s": round(1000 * seqs / ms, 1)})
                print(f"| per-sequence, ids 0,2,4,… | {seqs} | {length} | {ms:.1f} "
                      f"| {1000 * seqs / ms:.1f} |", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
