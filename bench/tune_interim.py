"""An interim look at a `ponder tune` run still in stage 1 (bench/gsm8k_tune.sh): the choice and
what each lever bought, on the tuning problems whose every setting is generated so far.

Store reads only (no model is loaded). This is a preview, not tune's protocol: `ponder tune`
chooses on the whole tuning part once stage 1 ends, then confirms on the held-out part; the
numbers here are on fewer problems, picked from many configurations on those same problems.

    python bench/tune_interim.py [--out bench/runs/gsm8k-tune]

Writes bench/results/gsm8k_tune-interim-DATE.md. With `--chain-temperatures 0.3` it adds zero-shot
chains at those temperatures to the settings (what `bash bench/gsm8k_tune.sh --temperatures
0.3,0.7 --modes chain --shots 0` draws on the tuning part), so the lever table has a temperature
row, and writes bench/results/gsm8k_tune-temperature-DATE.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from ponder.backends.fake import ScriptedBackend
from ponder.eval.datasets import load_dataset
from ponder.eval.paired import compare
from ponder.eval.pools import counts
from ponder.eval.store import Store
from ponder.tune.report import LEVER_NOTE
from ponder.tune.search import Tuner, grid, levers

ROOT = Path(__file__).resolve().parent.parent
SIZES = [1, 2, 4, 8, 16, 32]  # bench/gsm8k_tune.sh's --samples
DATA = ROOT.parent / "shared" / "data" / "gsm8k_train.jsonl"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "runs" / "gsm8k-tune")
    p.add_argument("--dataset", type=Path, default=DATA)
    p.add_argument("--chain-temperatures", default="",
                   help="zero-shot chains at these temperatures too, e.g. 0.3")
    args = p.parse_args()
    # the settings of bench/gsm8k_tune.sh
    settings = grid([0.7], ["chain", "program", "mixed"], shots=[0, 4],
                    examples=str((ROOT / "bench" / "gsm8k_exemplars.jsonl").resolve()))
    extra = [float(t) for t in args.chain_temperatures.split(",") if t.strip()]
    settings += [s for s in grid(extra, ["chain"])
                 if s.label not in {x.label for x in settings}]
    problems = load_dataset(str(args.dataset), limit=140)
    store = Store(args.out / "samples.sqlite")
    tuner = Tuner(ScriptedBackend([]), store, problems, settings, SIZES, ["ref@8"],
                  holdout=100, out=Path("/tmp/tune-interim"), seed=0,
                  options={"max_tokens": 640})
    total = len(tuner.tuning)
    sizes = {plan.label: max(tuner.sizes_of(plan)) for plan in tuner.harness.plans}
    tuner.tuning = [pr for pr in tuner.tuning
                    if all(store.sample_count(pool.key, pr.id) >= target
                           for plan in tuner.harness.plans
                           for pool, target in zip(plan.pools, counts(
                               plan.config, plan.pools, sizes[plan.label]), strict=True))]
    done = tuner.tuning
    if not done:
        raise SystemExit(f"no tuning problem has every setting generated yet (of {total})")
    chosen = tuner.choose()
    (choice,) = chosen.choices
    ref = choice.reference
    stage = ("stage 1 complete: the choice; held-out confirmation to come" if len(done) == total
             else "stage 1 not finished")
    title = (f"the tuning part with chains at T={args.chain_temperatures} too" if extra
             else f"interim ({stage})")
    lines = [f"# ponder tune, {title}, {dt.date.today().isoformat()}", "",
             f"`bench/gsm8k_tune.sh`'s store after {len(done)} of its {total} tuning problems "
             "(every setting generated on them); qwen2.5-coder-0.5b-instruct, GSM8K train "
             "(the first 140; 100 held out, untouched here). Budget ref@8 = "
             f"{choice.budget} tokens per problem.", "",
             f"Reference: {ref.label}: {100 * ref.accuracy:.1f}%, {ref.tokens:.0f} tokens.",
             "",
             "| lever | configuration | tokens | accuracy | difference (points) [95% CI] | p |",
             "|---|---|---:|---:|---|---:|"]
    for name, c in levers(chosen.candidates, ref, choice.budget):
        t = compare((c.label, choice.budget), (ref.label, choice.budget), c.values, ref.values)
        lines.append(f"| {name} | {c.label} | {c.tokens:.0f} | {100 * c.accuracy:.1f}% | "
                     f"{100 * t.difference:+.1f} [{100 * t.ci_low:+.1f}, {100 * t.ci_high:+.1f}]"
                     f" | {t.p_value:.3g} |")
    cover = [c for c in chosen.candidates if c.selector == "majority"]
    lines += ["", LEVER_NOTE, "", "Per setting, majority vote by sample count (accuracy):", "",
              "| setting | " + " | ".join(f"n={n}" for n in SIZES) + " | most n | its tokens |",
              "|---|" + "---:|" * (len(SIZES) + 2)]
    for s in settings:
        by_n = {c.n: c for c in cover if c.setting.label == s.label}
        if by_n:
            most = max(by_n)
            lines.append(f"| {s.label} | " + " | ".join(
                f"{100 * by_n[n].accuracy:.1f}%" if n in by_n else "—" for n in SIZES)
                + f" | {most} | {by_n[most].tokens:.0f} |")
    flag = f" --chain-temperatures {args.chain_temperatures}" if extra else ""
    lines += ["", f"Command: `python bench/tune_interim.py{flag}`"]
    store.close()
    name = "temperature" if extra else "interim"
    out = ROOT / "bench" / "results" / f"gsm8k_tune-{name}-{dt.date.today().isoformat()}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
