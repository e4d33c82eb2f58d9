"""Why no mix beats the strong model in bench/many_minds.sh's run: replayed from its store, with
no model loaded and nothing generated.

- On the held-out problems, the 0.5B's self-consistency@8 (first 8 samples) against the 1.5B's
  greedy answer: where either is right alone.
- The 1.5B's verdicts (P("yes"), verify-by-strong's judge) on the 0.5B's samples: their mean on
  right and wrong answers, the share of wrong answers it trusts, and their AUROC.

    python bench/many_minds_why.py        # after bash bench/many_minds.sh
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from ponder.backends.fake import ScriptedBackend
from ponder.backends.gguf import read_gguf
from ponder.eval.datasets import load_dataset
from ponder.eval.store import Store
from ponder.tune.search import grid
from ponder.tune.strong import MixTuner

ROOT = Path(__file__).resolve().parent.parent
STORE = ROOT / "bench/runs/many-minds-gsm8k/samples.sqlite"
MODELS = ROOT / "bench/models"
STRONG_SHA = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"


def refuse(request, index):  # nothing is generated here
    raise SystemExit("the store lacks a sample the replay needs: run bash bench/many_minds.sh")


def main() -> None:
    data = sys.argv[1] if len(sys.argv) > 1 else str(ROOT.parent / "shared/data/gsm8k_train.jsonl")
    small = read_gguf(MODELS / "qwen2.5-coder-0.5b-instruct.gguf").parameters
    strong = read_gguf(MODELS / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf").parameters
    store = Store(STORE)
    tuner = MixTuner(ScriptedBackend(refuse, parameters=small), store,
                     load_dataset(data, limit=140), grid([0.7], ["chain"]), [1, 2, 4, 8],
                     ["ref@8", 5.5e12, 1.1e13],
                     strong=ScriptedBackend(refuse, parameters=strong),
                     strong_key=f"strong:{STRONG_SHA}", strong_sizes=[1, 4, 8], learned=False,
                     holdout=100, seed=0, draws=50, out=Path("/nonexistent"),
                     options={"max_tokens": 640})  # as bench/many_minds.sh asks
    chosen = tuner.choose()
    held = tuner.held_out_candidates(chosen)
    vote, greedy = (held[k].values for k in ("chain T0.7 · majority · n=8", "strong · greedy"))
    both = sorted(set(vote) & set(greedy))
    print(f"held-out problems: {len(both)} (0.5B self-consistency@8 / 1.5B greedy)")
    for a, b, what in ((1, 0, "0.5B right, 1.5B wrong"), (0, 1, "0.5B wrong, 1.5B right"),
                       (1, 1, "both right"), (0, 0, "both wrong")):
        print(f"  {what}: {sum(round(vote[p]) == a and round(greedy[p]) == b for p in both)}")
    rows = store.db.execute(
        "SELECT s.correct, sc.score FROM scores sc JOIN samples s ON s.sample_key = "
        "sc.sample_key AND s.problem_id = sc.problem_id AND s.idx = sc.idx WHERE sc.verifier = ?",
        (tuner.judge_key,)).fetchall()
    right = [score for ok, score in rows if ok]
    wrong = [score for ok, score in rows if not ok]
    pairs = [(r > w) + 0.5 * (r == w) for r in right for w in wrong]
    print(f"verdicts: {len(rows)}; mean P(yes) {statistics.fmean(right):.3f} on right answers "
          f"({len(right)}), {statistics.fmean(wrong):.3f} on wrong ones ({len(wrong)}); wrong "
          f"answers at P(yes) >= 0.8: {sum(w >= 0.8 for w in wrong) / len(wrong):.0%}; AUROC "
          f"{sum(pairs) / len(pairs):.3f}")


if __name__ == "__main__":
    main()
