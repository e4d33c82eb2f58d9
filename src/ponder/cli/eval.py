"""``ponder eval``: accuracy against compute for strategies x budgets on a benchmark."""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ponder import registry
from ponder.backends.base import Backend
from ponder.backends.endpoints import shown_urls
from ponder.backends.loading import opened_models, release, role_identity
from ponder.cli.ask import _option, add_sandbox_flag, apply_sandbox_flag, strategy_options
from ponder.cli.endpoints import (
    add_deterministic_flag,
    add_endpoint_flags,
    batch_options,
    determinism,
    endpoint_stats,
    load_from_args,
    split_models,
)
from ponder.cli.render import fitted_table, stdout_console
from ponder.errors import ConfigError
from ponder.eval.comparisons import Reference, check_reference, paired_table, parse_reference
from ponder.eval.datasets import FORMATS, load_dataset
from ponder.eval.harness import Harness, Status
from ponder.eval.plans import GREEDY, parse_budgets
from ponder.eval.pools import split_specs
from ponder.eval.ray_eval import RayEval, check_ray_plans
from ponder.eval.report import PAIRED_HEADER, header, paired_rows, table_rows, write_reports
from ponder.eval.session import STORE, RunFolder, identify
from ponder.eval.store import Store
from ponder.runner import check_roles
from ponder.types import Problem
from ponder.version import __version__

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
    p.add_argument("-B", "--backend-option", type=_option, action="append", default=[],
                   metavar="KEY=VALUE", help="backend setting, e.g. -B n_ctx=16384 -B n_seq_max=16")
    p.add_argument("--verifier", default=None, help="for best-of-n (default: judge)")
    p.add_argument("--max-tokens", type=int, default=None, help="new tokens per generation")
    p.add_argument("-t", "--temperature", type=float, default=None)
    p.add_argument("-o", "--option", type=_option, action="append", default=[],
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


def check_plans(args: argparse.Namespace, problems: Sequence[Problem], strategies: Sequence[str],
                budgets: Sequence[int], options: dict[str, Any],
                reference: Reference | None, roles: Sequence[str] = ()) -> None:
    """Every strategy, option, verifier, model role and the reference checked on a store in
    memory, so a bad one is refused before --out is touched (no folder, no empty store, nothing
    discarded)."""
    if args.verifier is not None:
        registry.verifiers.get(args.verifier)
    store = Store(":memory:")
    try:
        harness = Harness(None, store, problems, strategies, budgets,  # type: ignore[arg-type]
                          options=options, verifier=args.verifier, seed=args.seed,
                          greedy=not args.no_greedy)
        if reference is not None:
            check_reference(reference, {plan.label: plan.budgets for plan in harness.plans})
        for plan in harness.plans:
            check_roles(plan.build(), roles)
        if args.ray is not None:
            check_ray_plans(harness.plans)
            if roles:
                raise ConfigError("--ray runs one model per worker: a run with --model "
                                  f"{roles[0]}=... runs without --ray")
    finally:
        store.close()


def run(args: argparse.Namespace) -> int:
    apply_sandbox_flag(args)
    budgets = parse_budgets(args.budgets)
    strategies = split_specs(args.strategies)
    if not strategies:
        raise ConfigError("--strategies is empty")
    if args.draws < 1 or args.concurrency < 1:
        raise ConfigError("--draws and --concurrency must be positive")
    labels = ([] if args.no_greedy else [GREEDY]) + strategies
    reference = parse_reference(args.reference, labels) if args.reference is not None else None
    args.model, roles = split_models(args.model)
    options = strategy_options(args)
    if args.examples:
        options["examples"] = str(Path(args.examples).resolve())
    problems = load_dataset(args.dataset, args.format, question_field=args.question_field,
                            answer_field=args.answer_field, limit=args.limit)
    check_plans(args, problems, strategies, budgets, options, reference, list(roles))
    identity = identify(args.model, args.base_url, args.endpoints, args.dataset, roles)
    spec, out = identity.spec, Path(args.out)
    # the kept traces and their pages go with the run
    with RunFolder(out, identity, seed=args.seed, deterministic=args.deterministic,
                   fresh=args.fresh, outputs=(*OUTPUTS, "traces", "view")) as folder:
        store = folder.store
        backend_options = batch_options(spec, dict(args.backend_option), args.deterministic)
        factory = functools.partial(load_from_args, args, args.api_key, backend_options)
        backend = None if args.ray is not None else factory()
        harness = Harness(
            backend, store, problems,  # type: ignore[arg-type]
            strategies, budgets, options=options, verifier=args.verifier, seed=args.seed,
            greedy=not args.no_greedy, concurrency=args.concurrency, traces=out,
        )
        if reference is not None:
            check_reference(reference, {plan.label: plan.budgets for plan in harness.plans})
        err = Console(stderr=True)
        columns = (TextColumn("[bold]eval[/]"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[samples]}"), TextColumn("{task.fields[rate]}"),
                   TextColumn("{task.fields[acc]}"), TimeRemainingColumn())
        with Progress(*columns, console=err, transient=False,
                      disable=not err.is_terminal) as bar:
            task = bar.add_task("eval", total=len(problems), **_progress_fields(harness.status))
            last_line = [0.0]

            def update(status: Status) -> None:
                bar.update(task, completed=status.problems_done, **_progress_fields(status))
                now = time.monotonic()
                if not err.is_terminal and (now - last_line[0] >= 30
                                            or status.problems_done == status.problems_total):
                    last_line[0] = now  # piped or logged: a plain line every 30 s
                    print(_progress_line(status), file=sys.stderr, flush=True)

            harness.on_update = update
            endpoints: list[dict] = []
            run_determinism: list[dict[str, Any]] = []  # every model's, once they ran

            def on_ray() -> None:
                workers = RayEval(harness, factory, address=args.ray or None,
                                  workers=args.ray_workers, per_worker=args.concurrency)
                try:
                    if spec.backend == "openai":
                        folder.claim_served(workers.identity())
                    workers.run()
                finally:
                    workers.close()

            async def evaluate() -> None:
                try:
                    await folder.probe(harness.backend)  # a served model: what it reports
                    async with opened_models(roles, api_key=args.api_key,
                                             options=backend_options) as opened:
                        harness.models = opened
                        await harness.run()
                        run_determinism.append(determinism_of(backend, opened,
                                                              args.deterministic))
                finally:
                    endpoints[:] = endpoint_stats(harness.backend) or []
                    await release(harness.backend)

            try:
                on_ray() if args.ray is not None else asyncio.run(evaluate())
            except KeyboardInterrupt:
                err.print(f"interrupted: what finished is stored in {out / STORE}; "
                          "rerun the same command to resume")
                return 130
        data = harness.curves(draws=args.draws)
        data["paired"] = paired_table(data["per_problem"],
                                      {plan.label: plan.name for plan in harness.plans},
                                      reference, seed=args.seed)
        config = {
            "dataset": identity.dataset, "dataset_sha256": identity.dataset_hash,
            "problems": len(problems), "model": spec.name, "model_id": identity.model_id,
            "model_sha256": identity.model_hash,
            "strategies": {p.label: {"name": p.name, "key": p.key, "mode": p.mode,
                                     "budgets": p.budgets, "pools": [pool.key for pool in p.pools],
                                     "verifier": p.verifier,
                                     "config": p.build().config.model_dump()}
                           for p in harness.plans},
            "budgets": budgets, "seed": args.seed, "draws": args.draws,
            "verifier": args.verifier, "ponder_version": __version__,
            "reference": args.reference,
            "determinism": {**(run_determinism[0] if run_determinism
                               else determinism(backend, args.deterministic)),
                            "samples_sha256": store.fingerprint()},
        }
        if roles:  # the other models by role: what they are (their costs are in the points)
            config["roles"] = {role: {"model": shown_model(named), "sha256": None if
                                      named.startswith(("http://", "https://"))
                                      else role_identity(named)}
                               for role, named in roles.items()}
        if endpoints:
            config["endpoints"] = endpoints
        paths = write_reports(out, data, config)
    console = stdout_console()  # tables that fit its width, never cut with "…"
    columns = header(data)
    console.print(fitted_table(console, f"{len(problems)} problems · {spec.name}", columns,
                               table_rows(data), right=columns[1:]))
    if data["paired"]:
        console.print(fitted_table(console, "paired comparisons", PAIRED_HEADER,
                                   paired_rows(data),
                                   right=("problems", "difference (points)", "paired 95% CI",
                                          "p-value")))
    console.print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def determinism_of(backend: Backend | None, others: dict[str, Backend], deterministic: bool
                   ) -> dict[str, Any]:
    """Whether a run's samples are reproducible: every model of it must be."""
    first = determinism(backend, deterministic)
    for role, model in others.items():
        theirs = determinism(model, deterministic)
        if first["deterministic"] and not theirs["deterministic"]:
            return {"deterministic": False, "why": f"the {role} model: {theirs['why']}"}
    return first


def shown_model(named: str) -> str:
    """A role's model as a report shows it: a file's name, a served model's redacted URL."""
    if named.startswith(("http://", "https://")):
        url, _, name = named.rpartition("#")
        return f"{shown_urls([url])[0]}#{name}"
    return named
