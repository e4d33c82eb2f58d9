"""``ponder eval``: accuracy against compute for strategies x budgets on a benchmark."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ponder.cli.endpoints import (
    add_deterministic_flag,
    add_endpoint_flags,
    models_of,
)
from ponder.cli.options import (
    add_sandbox_flag,
    apply_sandbox_flag,
    key_value,
    strategy_options,
)
from ponder.cli.render import fitted_table, stdout_console
from ponder.eval.datasets import FORMATS
from ponder.eval.evaluate import evaluate
from ponder.eval.harness import Status
from ponder.eval.report import PAIRED_HEADER, header, paired_rows, table_rows
from ponder.eval.session import STORE

OUTPUTS = ("report.md", "scaling.png", "report.html", "report.json")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="accuracy-vs-compute curves on a benchmark",
                       description="Evaluate strategies at several budgets; resumable.")
    p.add_argument("--dataset", required=True,
                   help="a JSONL file (GSM8K or MATH format, or any with --question-field/"
                   "--answer-field), 'humaneval', or hf:NAME[:CONFIG[:SPLIT]]")
    p.add_argument("--format", default="auto", choices=FORMATS)
    p.add_argument("--question-field", default=None)
    p.add_argument("--answer-field", default=None)
    p.add_argument("--limit", type=int, default=None, help="the first N problems")
    p.add_argument("--strategies", default="cot,self-consistency,best-of-n",
                   help="comma-separated; per-strategy options in brackets, e.g. "
                   "'self-consistency,program-of-thought,self-consistency[mode=mixed]'; "
                   "[budgets=4/16] gives one strategy its own budgets; preset:FILE runs a preset")
    p.add_argument("--budgets", default="1,2,4,8,16", help="increasing, e.g. 1,2,4,8,16")
    p.add_argument("-m", "--model", action="append", default=None, metavar="[ROLE=]MODEL",
                   help="the generator (a GGUF, hf:REPO/FILE or the served model's name); "
                   "repeat it with a role for the other models of a many-model strategy, e.g. "
                   "-m strong=big.gguf or -m strong=http://host:8000/v1#qwen-1.5b")
    add_endpoint_flags(p)
    p.add_argument("--api-key", default=None)
    p.add_argument("-B", "--backend-option", type=key_value, action="append", default=[],
                   metavar="KEY=VALUE", help="backend setting, e.g. -B n_ctx=16384 -B n_seq_max=16")
    p.add_argument("--verifier", default=None, help="for best-of-n (default: judge)")
    p.add_argument("--max-tokens", type=int, default=None, help="new tokens per generation")
    p.add_argument("-t", "--temperature", type=float, default=None)
    p.add_argument("-o", "--option", type=key_value, action="append", default=[],
                   metavar="KEY=VALUE", help="an option for every strategy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--draws", type=int, default=200, help="random subsets per smaller budget")
    p.add_argument("--concurrency", type=int, default=4, help="problems in flight at once")
    add_deterministic_flag(p)
    p.add_argument("--no-greedy", action="store_true", help="skip the greedy baseline")
    p.add_argument("--reference", default=None, metavar="LABEL[@BUDGET]",
                   help="compare every strategy with this one (paired, on the same problems); "
                   "without @BUDGET at each row's budget. Default: self-consistency at the same "
                   "budget and the greedy baseline")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="share the problems out over Ray workers, each with its own backend "
                   "(a cluster's address, or none for a local one; pip install 'ponder[ray]')")
    p.add_argument("--ray-workers", type=int, default=2, help="Ray workers (actors)")
    p.add_argument("--examples", default=None, metavar="FILE",
                   help="JSONL of worked exemplars for -o shots=K (never the evaluated problems)")
    p.add_argument("--out", required=True, type=Path, help="output folder (resumable)")
    p.add_argument("--fresh", action="store_true", help="discard what --out holds and start over")
    add_sandbox_flag(p)
    p.set_defaults(handler=run)


def _progress_fields(status: Status) -> dict[str, str]:
    seconds = max(1e-9, time.monotonic() - status.started)
    acc = status.accuracy
    return {
        "samples": f"{status.samples:,} sample{'' if status.samples == 1 else 's'}",
        "rate": f"{status.tokens / seconds:,.1f} tok/s",
        "acc": f"acc {100 * acc:.1f}%" if acc is not None else "acc —",
    }


def _progress_line(status: Status) -> str:
    f = _progress_fields(status)
    done, total = status.problems_done, status.problems_total
    elapsed = time.monotonic() - status.started
    eta = f"ETA {elapsed / done * (total - done) / 60:.0f} min" if done else "ETA —"
    return f"eval: {done}/{total} problems · {f['samples']} · {f['rate']} · {f['acc']} · {eta}"


def run(args: argparse.Namespace) -> int:
    apply_sandbox_flag(args)
    args.model, roles = models_of(args)
    err = Console(stderr=True)
    columns = (TextColumn("[bold]eval[/]"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[samples]}"), TextColumn("{task.fields[rate]}"),
               TextColumn("{task.fields[acc]}"), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=False, disable=not err.is_terminal) as bar:
        task = bar.add_task("eval", total=None, samples="", rate="", acc="")
        last_line = [0.0]

        def update(status: Status) -> None:
            bar.update(task, total=status.problems_total, completed=status.problems_done,
                       **_progress_fields(status))
            now = time.monotonic()
            if not err.is_terminal and (now - last_line[0] >= 30
                                        or status.problems_done == status.problems_total):
                last_line[0] = now  # piped or logged: a plain line every 30 s
                print(_progress_line(status), file=sys.stderr, flush=True)

        try:
            report = evaluate(
                args.dataset, args.strategies, args.budgets, out=args.out, model=args.model,
                models=roles, base_url=args.base_url, endpoints=args.endpoints,
                api_key=args.api_key, backend_options=dict(args.backend_option),
                options=strategy_options(args), examples=args.examples,
                verifier=args.verifier, reference=args.reference, format=args.format,
                question_field=args.question_field, answer_field=args.answer_field,
                limit=args.limit, seed=args.seed, draws=args.draws,
                concurrency=args.concurrency, deterministic=args.deterministic,
                greedy=not args.no_greedy, fresh=args.fresh, ray=args.ray,
                ray_workers=args.ray_workers, on_update=update)
        except KeyboardInterrupt:
            err.print(f"interrupted: what finished is stored in {Path(args.out) / STORE}; "
                      "rerun the same command to resume")
            return 130
    console = stdout_console()  # tables that fit its width, never cut with "…"
    columns = header(report)
    title = f"{report['config']['problems']} problems · {report['config']['model']}"
    console.print(fitted_table(console, title, columns, table_rows(report), right=columns[1:]))
    if report["paired"]:
        console.print(fitted_table(console, "paired comparisons", PAIRED_HEADER,
                                   paired_rows(report),
                                   right=("problems", "difference (points)", "paired 95% CI",
                                          "p-value")))
    console.print("wrote " + ", ".join(report["paths"]))
    return 0
