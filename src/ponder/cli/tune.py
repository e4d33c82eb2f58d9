"""``ponder tune``: the best strategy, sampling setting and selection rule per token budget, on a
dev set with gold answers, confirmed on its held-out part, written as presets. With a strong
model (``-m strong=BIG``) also the strong model alone and cascades to it, per FLOPs budget."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ponder.backends.base import Backend
from ponder.backends.endpoints import shown_urls
from ponder.backends.loading import load_role, release, role_identity, scoped_options
from ponder.backends.runs import determinism_of, shown_model
from ponder.cli.endpoints import (
    add_deterministic_flag,
    add_endpoint_flags,
    batch_options,
    load_from_args,
    models_of,
)
from ponder.cli.options import (
    add_sandbox_flag,
    apply_sandbox_flag,
    key_value,
    strategy_options,
)
from ponder.cli.render import fitted_table, stdout_console
from ponder.domains.selector import RULES
from ponder.errors import ConfigError
from ponder.eval.datasets import FORMATS, load_dataset
from ponder.eval.plans import parse_budgets
from ponder.eval.session import STORE, RunFolder, identify
from ponder.tune.learn import require_sklearn
from ponder.tune.mixes import STRONG_SIZES, THRESHOLDS
from ponder.tune.report import (
    choice_rows,
    cut_line,
    flops_cell,
    header,
    single_lines,
    verdict_lines,
    write_reports,
)
from ponder.tune.search import (
    Tuner,
    TuneStatus,
    check_budgets,
    grid,
    parse_reference_budget,
    run_tune,
    split,
)
from ponder.tune.strong import MixTuner, check_strong_sizes, check_thresholds
from ponder.version import __version__

# what a run writes from its store (--fresh removes them with it)
OUTPUTS = ("tune.md", "tune.html", "tune.json", "pareto.png", "selectors", "selector.json")


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"expected comma-separated integers, got {text!r}") from None


def _holdout(text: str) -> float:
    """``--holdout``: a share (0.5) or a count of problems (100)."""
    try:
        value = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a share (0.5) or a count of problems (100), got {text!r}") from None
    if value <= 0 or (isinstance(value, float) and value >= 1):
        raise argparse.ArgumentTypeError(
            f"expected a share between 0 and 1 or a count of problems, got {text!r}")
    return value


def _budgets(text: str, flops: bool = False) -> list[int | float | str]:
    """Token counts (with a strong model: FLOPs, e.g. 2e12) and ``ref@N`` (the reference's
    tokens, or FLOPs, at N samples)."""
    out: list[int | float | str] = []
    what = "FLOPs per problem (e.g. 2e12)" if flops else "positive token counts"
    for part in _names(text):
        if part.startswith("ref@"):
            parse_reference_budget(part)
            out.append(part)
        elif flops and _positive(part):
            out.append(float(part))
        elif not flops and part.isdigit() and int(part) > 0:
            out.append(int(part))
        else:
            raise ConfigError(f"--budget must be {what} or ref@N, got {text!r}")
    if not out:
        raise ConfigError(f"--budget must be {what} or ref@N, got {text!r}")
    return out


def _positive(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return math.isfinite(value) and value > 0


def _strong_sizes(text: str) -> list[int]:
    try:
        sizes = _ints(text)
    except ConfigError:
        sizes = []
    check_strong_sizes(sizes)
    return sizes


def _thresholds(text: str) -> list[float]:
    try:
        values = _floats(text)
    except ConfigError:
        values = [math.nan]
    check_thresholds(values)
    return values


def budget_name(budget: int | float) -> str:
    """A budget in a preset's file name: ``1500``, or FLOPs as ``2e12``."""
    return flops_cell(budget) if isinstance(budget, float) else str(budget)


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="find the best configuration per token budget on a dev set",
                       description="Sweep sampling settings x selection rules x sample counts on "
                       "a dev set (generated once, resumable), choose the best per budget on one "
                       "part, confirm it on the held-out part, write presets.")
    p.add_argument("--dataset", required=True, help="the dev set (JSONL with gold answers, ...)")
    p.add_argument("--format", default="auto", choices=FORMATS)
    p.add_argument("--question-field", default=None)
    p.add_argument("--answer-field", default=None)
    p.add_argument("--limit", type=int, default=None, help="the first N problems")
    p.add_argument("--budget", required=True, metavar="TOKENS[,TOKENS...]",
                   help="generated tokens per problem, e.g. 1500,3000 (with a strong model: "
                   "FLOPs-equivalent per problem, e.g. 2e12); ref@N: what the reference "
                   "spends at N samples")
    p.add_argument("--samples", default="1,2,4,8", help="sample counts to try (increasing)")
    p.add_argument("--temperatures", default="0.7", help="e.g. 0.3,0.7,1.0")
    p.add_argument("--top-p", default="1.0", help="e.g. 0.9,1.0")
    p.add_argument("--min-p", default="0.0", help="e.g. 0.0,0.05")
    p.add_argument("--modes", default="chain", help="chain, program, mixed (comma-separated)")
    p.add_argument("--shots", default="0", help="few-shot counts to try, e.g. 0,4 (--examples)")
    p.add_argument("--examples", default=None, metavar="FILE",
                   help="JSONL of worked exemplars (question, answer, program); never the "
                   "dev problems")
    p.add_argument("--templates", default="default", help="prompt templates to try")
    p.add_argument("--selectors", default=",".join(RULES),
                   help=f"selection rules to try (of {', '.join(RULES)})")
    p.add_argument("--no-learn", action="store_true", help="skip the learned selector")
    p.add_argument("--reference-temperature", type=float, default=0.7,
                   help="the reference: self-consistency by majority at this temperature")
    p.add_argument("--holdout", type=_holdout, default=0.5, metavar="SHARE|COUNT",
                   help="the held-out part of --dataset: a share (0.5) or a count of problems "
                   "(100); only the chosen configurations and their references are generated "
                   "there")
    p.add_argument("-m", "--model", action="append", default=None, metavar="[strong=]MODEL",
                   help="the model to tune (the small one); repeat it as -m strong=BIG.gguf "
                   "(or strong=URL#NAME) to search the strong model alone and cascades from "
                   "the small one to it too, by FLOPs")
    p.add_argument("--strong-sizes", default=None, metavar="K[,K...]",
                   help="with a strong model: its majority votes to try, besides its greedy "
                   f"answer (default {','.join(map(str, STRONG_SIZES))})")
    p.add_argument("--thresholds", default=None, metavar="T[,T...]",
                   help="with a strong model: a cascade escalates when the small model's "
                   "agreement is below one of these (default "
                   f"{','.join(f'{t:g}' for t in THRESHOLDS)})")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="with a strong model: leave verify-by-strong (the strong model judging "
                   "the small one's answer groups) out of the search")
    add_endpoint_flags(p)
    p.add_argument("--api-key", default=None, help="for --base-url (default: $OPENAI_API_KEY)")
    p.add_argument("-B", "--backend-option", type=key_value, action="append", default=[],
                   metavar="KEY=VALUE")
    p.add_argument("--max-tokens", type=int, default=None, help="new tokens per generation")
    p.add_argument("-o", "--option", type=key_value, action="append", default=[],
                   metavar="KEY=VALUE", help="an option for every configuration")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--draws", type=int, default=50, help="random subsets per sample count")
    p.add_argument("--concurrency", type=int, default=4, help="problems in flight at once")
    add_deterministic_flag(p)
    p.add_argument("--out", required=True, type=Path, help="output folder (resumable)")
    p.add_argument("--fresh", action="store_true", help="discard what --out holds")
    add_sandbox_flag(p)
    p.set_defaults(handler=run, temperature=None)


def _roles(args: argparse.Namespace) -> str | None:
    """The strong model's spec (``-m strong=...``), the generator left in ``args.model``; the
    mix flags without a strong model, or another role, are refused."""
    args.model, roles = models_of(args)
    other = sorted(set(roles) - {"strong"})
    if other:
        raise ConfigError(f"ponder tune mixes the model with a strong one only: --model "
                          f"{other[0]}=... is not a role it uses (give -m strong=BIG)")
    strong = roles.get("strong")
    if strong is None and (args.strong_sizes is not None or args.thresholds is not None
                           or not args.verify):
        raise ConfigError("--strong-sizes, --thresholds and --no-verify need a strong model: "
                          "-m strong=BIG.gguf")
    return strong


def run(args: argparse.Namespace) -> int:
    apply_sandbox_flag(args)
    strong_spec = _roles(args)
    budgets = _budgets(args.budget, flops=strong_spec is not None)
    strong_sizes = _strong_sizes(args.strong_sizes or ",".join(map(str, STRONG_SIZES)))
    thresholds = _thresholds(args.thresholds or ",".join(map(str, THRESHOLDS)))
    sizes = parse_budgets(args.samples)
    if args.draws < 1 or args.concurrency < 1:
        raise ConfigError("--draws and --concurrency must be positive")
    settings = grid(_floats(args.temperatures), _names(args.modes), top_ps=_floats(args.top_p),
                    min_ps=_floats(args.min_p), shots=_ints(args.shots),
                    templates=_names(args.templates),
                    examples=str(Path(args.examples).resolve()) if args.examples else None,
                    reference_temperature=args.reference_temperature)
    problems = load_dataset(args.dataset, args.format, question_field=args.question_field,
                            answer_field=args.answer_field, limit=args.limit)
    identity = identify(args.model, args.base_url, args.endpoints, args.dataset,
                        {"strong": strong_spec} if strong_spec else None)
    spec, out = identity.spec, Path(args.out)
    check_budgets(budgets, sizes)  # bad input fails before a store or a model is opened
    split(problems, args.holdout, args.seed)
    err = Console(stderr=True)
    strong: Backend | None = None
    with RunFolder(out, identity, seed=args.seed, deterministic=args.deterministic,
                   fresh=args.fresh, outputs=OUTPUTS) as folder:
        store = folder.store
        strong_id = role_identity(strong_spec) if strong_spec else None
        options = batch_options(spec, dict(args.backend_option), args.deterministic)
        backend = load_from_args(args, args.api_key, options)
        common: dict[str, Any] = dict(
            selectors=_names(args.selectors), learned=not args.no_learn, seed=args.seed,
            holdout=args.holdout, draws=args.draws, out=out, options=strategy_options(args),
            concurrency=args.concurrency)
        if strong_spec is None:
            tuner: Tuner = Tuner(backend, store, problems, settings, sizes, budgets, **common)
        else:
            strong = load_role(strong_spec, api_key=args.api_key,
                               **scoped_options(options, "strong"))
            tuner = MixTuner(backend, store, problems, settings, sizes, budgets, strong=strong,
                             strong_key=f"strong:{strong_id}", strong_sizes=strong_sizes,
                             thresholds=thresholds, verify=args.verify, **common)
        if tuner.learned:
            require_sklearn()  # a missing extra fails now, not after the generation
        columns = (TextColumn("[bold]tune[/] {task.fields[stage]}"), BarColumn(),
                   MofNCompleteColumn(), TextColumn("{task.fields[samples]} samples"),
                   TimeRemainingColumn())
        with Progress(*columns, console=err, disable=not err.is_terminal) as bar:
            task = bar.add_task("tune", total=len(tuner.tuning), samples=0, stage="")
            last: list = [0.0, ""]

            def update(status: TuneStatus) -> None:
                bar.update(task, total=status.total, completed=status.done,
                           samples=status.samples, stage=escape(status.text))
                now = time.monotonic()
                if not err.is_terminal and (now - last[0] >= 30 or status.text != last[1]
                                            or status.done == status.total):
                    last[0], last[1] = now, status.text
                    print(f"tune: {status.text}: {status.done}/{status.total} problems · "
                          f"{status.samples} sample{'' if status.samples == 1 else 's'} · "
                          f"{status.tokens} tokens",
                          file=sys.stderr, flush=True)

            tuner.on_update = update

            async def work() -> dict:
                try:
                    await folder.probe(backend)  # a served model: what its server reports
                    return await run_tune(tuner)
                finally:
                    await release(backend)
                    if strong is not None:
                        await release(strong)

            config: dict[str, Any] = {
                "dataset": identity.dataset, "dataset_sha256": identity.dataset_hash,
                "model": spec.name, "model_sha256": identity.model_hash, "seed": args.seed,
                "draws": args.draws,
                "holdout": args.holdout, "ponder_version": __version__,
                "determinism": determinism_of(
                    backend, {"strong": strong} if strong is not None else {},
                    args.deterministic)}
            if isinstance(tuner, MixTuner) and strong_spec is not None:
                config.update(strong_model=shown_model(strong_spec), strong_sha256=strong_id,
                              parameters={"small": tuner.sizes_by_model[0],
                                          "strong": tuner.sizes_by_model[1]})
            try:
                data = asyncio.run(work())
            except KeyboardInterrupt:
                err.print(f"interrupted: what finished is stored in {out / STORE}; rerun the "
                          "same command to resume")
                if tuner.chosen is not None:  # in stage 2: the choice and what is confirmed
                    data = tuner.confirm(tuner.chosen)
                    data["partial"] = True
                    for choice in data["choices"]:
                        choice.pop("preset", None)  # presets once the confirmation is whole
                    paths = write_reports(out, data, {**config, "presets": []})
                    err.print("wrote the choice and the held-out confirmation so far: "
                              + ", ".join(str(p) for p in paths))
                return 130
        presets = []
        for choice in data["choices"]:
            preset = choice.pop("preset", None)
            if preset is None:
                continue
            path = out / f"preset-{budget_name(choice['budget'])}.json"
            tuned = {k: choice.get(k) for k in ("budget", "chosen", "tuning", "held_out")}
            run_with = _run_with(choice["chosen"], args, strong_spec)
            if run_with:  # a mix's preset runs with other models than the tuned one
                choice["run_with"] = tuned["run_with"] = run_with
            preset.save(path, tuned=tuned)
            choice["preset_file"] = str(path)
            presets.append(str(path))
        paths = write_reports(out, data, {**config, "presets": presets})
    console = stdout_console()
    title = f"{len(problems)} dev problems · {spec.name}" + (
        f" · strong {shown_model(strong_spec)}" if strong_spec else "")
    console.print(fitted_table(console, title, header(data), choice_rows(data)))
    for line in verdict_lines(data) + single_lines(data):
        console.print(line, markup=False, highlight=False)
    console.print("wrote " + ", ".join(str(p) for p in [*paths, *presets]))
    warning = cut_line(data)
    if warning:
        print(f"ponder: warning: {warning}", file=sys.stderr)
    if not presets:
        print(json.dumps({"note": "no configuration fit the budgets"}), file=sys.stderr)
    return 0


def _run_with(chosen: dict[str, Any], args: argparse.Namespace, strong: str | None
              ) -> str | None:
    """The models a chosen mix's preset runs with: the strong model as the generator for the
    strong model alone, ``-m SMALL -m strong=BIG`` for a cascade (None: the tuned model, as
    always). Servers' URLs redacted: a preset is shared."""
    if strong is None or chosen.get("kind", "small") == "small":
        return None
    if chosen["kind"] == "strong":
        if re.match(r"https?://", strong):
            url, _, name = strong.rpartition("#")
            return f"--base-url {shown_urls([url])[0]} -m {name}"
        return f"-m {strong}"
    small = f"-m {args.model}" if args.model else ""
    if args.base_url:
        small = f"--base-url {shown_urls(args.base_url)[0]} {small}".strip()
    return f"{small} -m strong={shown_model(strong)}"
