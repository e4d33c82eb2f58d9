"""``ponder distill``: training data (SFT, preference pairs, PRM step labels) from what the
searches found — read from a ``ponder eval`` folder (costing nothing), or from a strategy run
over a dataset here."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ponder.backends.loading import release
from ponder.cli.endpoints import (
    add_deterministic_flag,
    add_endpoint_flags,
    batch_options,
    load_from_args,
)
from ponder.cli.options import (
    add_sandbox_flag,
    apply_sandbox_flag,
    key_value,
    strategy_options,
)
from ponder.cli.render import stdout_console
from ponder.errors import ConfigError
from ponder.eval.datasets import FORMATS, load_dataset
from ponder.eval.distill import StrategyInfo, collect, coverage, distill, read_report, write
from ponder.eval.harness import Harness, Status
from ponder.eval.plans import parse_budgets
from ponder.eval.pools import split_specs
from ponder.eval.session import STORE, RunFolder, identify
from ponder.eval.store import Store
from ponder.types import Problem

RUN = "run"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distill", help="training data from search: SFT traces, preference pairs, PRM labels",
        description="Write TRL-ready training data from an evaluation folder (costs nothing) "
        "or from a strategy run over --dataset: sft.jsonl (chat messages), preference.jsonl "
        "(prompt/chosen/rejected) and prm.jsonl (prompt/completions/labels).")
    p.add_argument("source", nargs="?", type=Path, default=None, metavar="EVAL_FOLDER",
                   help="a `ponder eval --out` folder to read (omit with --dataset)")
    p.add_argument("--out", required=True, type=Path, help="where the JSONL files go")
    p.add_argument("--pairs-per-problem", type=int, default=1,
                   help="preference pairs per problem, at most (default 1)")
    p.add_argument("--min-confidence", type=float, default=0.5,
                   help="without a gold answer: the share of traces the winning answer needs "
                   "for its traces to count as verified (default 0.5)")
    p.add_argument("--coverage", default=None, metavar="N,N,...",
                   help="also report the problems with a verified trace among their first N "
                   "traces, e.g. 1,4,8,16")
    run = p.add_argument_group("running a strategy (instead of EVAL_FOLDER)")
    run.add_argument("--dataset", default=None,
                     help="as `ponder eval --dataset`; the run is kept (resumable) in OUT/run")
    run.add_argument("--format", default="auto", choices=FORMATS)
    run.add_argument("--question-field", default=None)
    run.add_argument("--answer-field", default=None)
    run.add_argument("--limit", type=int, default=None, help="the first N problems")
    run.add_argument("--strategies", default="self-consistency",
                     help="comma-separated, as `ponder eval` (default: self-consistency)")
    run.add_argument("-n", "--budget", type=int, default=8,
                     help="samples (the budget) per problem (default 8)")
    run.add_argument("-m", "--model", default=None)
    add_endpoint_flags(run)
    run.add_argument("--api-key", default=None,
                     help="for --base-url (default: $OPENAI_API_KEY)")
    run.add_argument("-B", "--backend-option", type=key_value, action="append", default=[],
                     metavar="KEY=VALUE")
    run.add_argument("--verifier", default=None)
    run.add_argument("--max-tokens", type=int, default=None)
    run.add_argument("-t", "--temperature", type=float, default=None)
    run.add_argument("-o", "--option", type=key_value, action="append", default=[],
                     metavar="KEY=VALUE")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--concurrency", type=int, default=4)
    add_deterministic_flag(run)
    add_sandbox_flag(run)
    p.set_defaults(handler=run_command)


def _bar(console: Console, what: str) -> Progress:
    return Progress(TextColumn(f"[bold]{what}[/]"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=console, transient=True,
                    disable=not console.is_terminal)


def _generate(args: argparse.Namespace, folder: Path, err: Console
              ) -> tuple[list[Problem], list[StrategyInfo]]:
    """Run the strategies over the dataset into ``folder`` (a resumable eval store)."""
    if args.budget < 1 or args.concurrency < 1:
        raise ConfigError("--budget and --concurrency must be positive")
    strategies = split_specs(args.strategies)
    if not strategies:
        raise ConfigError("--strategies is empty")
    parse_budgets(str(args.budget))
    problems = load_dataset(args.dataset, args.format, question_field=args.question_field,
                            answer_field=args.answer_field, limit=args.limit)
    identity = identify(args.model, args.base_url, args.endpoints, args.dataset)
    spec = identity.spec
    with RunFolder(folder, identity, seed=args.seed, deterministic=args.deterministic) as opened:
        store = opened.store
        harness = Harness(
            load_from_args(args, args.api_key,
                           batch_options(spec, dict(args.backend_option), args.deterministic)),
            store, problems, strategies,
            [args.budget], options=strategy_options(args), verifier=args.verifier,
            seed=args.seed, greedy=False, concurrency=args.concurrency, traces=folder)
        with _bar(err, "sample") as bar:
            task = bar.add_task("sample", total=len(problems))

            def update(status: Status) -> None:
                bar.update(task, completed=status.problems_done)

            harness.on_update = update

            async def go() -> None:
                try:
                    await opened.probe(harness.backend)  # a served model: what it reports
                    await harness.run()
                finally:
                    await release(harness.backend)

            asyncio.run(go())
        infos = [StrategyInfo(plan.label, plan.name, plan.key, plan.mode, tuple(plan.budgets),
                              tuple(pool.key for pool in plan.pools),
                              getattr(plan.config, "system", None))
                 for plan in harness.plans]
    return problems, infos


def run_command(args: argparse.Namespace) -> int:
    apply_sandbox_flag(args)
    sizes = parse_budgets(args.coverage) if args.coverage else []
    err = Console(stderr=True)
    if (args.source is None) == (args.dataset is None):
        raise ConfigError("give either an evaluation folder or --dataset (to run a strategy)")
    if args.source is not None:
        folder = args.source
        if not (folder / STORE).is_file():
            raise ConfigError(f"{folder} holds no {STORE}: is it a `ponder eval --out` folder?")
        problems, strategies = read_report(folder)
    else:
        folder = args.out / RUN
        problems, strategies = _generate(args, folder, err)
    store = Store(folder / STORE)
    try:
        with _bar(err, "read") as bar:
            task = bar.add_task("read", total=len(problems))
            items = collect(folder, store, problems, strategies,
                            on_problem=lambda: bar.advance(task))
    finally:
        store.close()
    data = distill(items, min_confidence=args.min_confidence,
                   pairs_per_problem=args.pairs_per_problem)
    paths = write(data, args.out)
    console = stdout_console()
    for line in data.summary.lines():
        console.print(line, highlight=False)
    if sizes:
        found = coverage(items, sizes)
        console.print("verified  " + " · ".join(
            f"N={n}: {k}/{len(items)}" for n, k in found.items())
            + " problems with a correct trace among their first N", highlight=False)
    console.print("wrote " + ", ".join(str(p) for p in paths), highlight=False)
    return 0
