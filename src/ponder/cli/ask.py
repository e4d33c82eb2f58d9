"""``ponder ask``: solve one question and show the answer, the candidates and the cost."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from ponder.api import asolve, check_given_tests
from ponder.backends.loading import loaded_backends, release
from ponder.cli.endpoints import (
    add_endpoint_flags,
    endpoint_stats,
    is_pool,
    load_from_args,
    models_of,
)
from ponder.cli.options import add_sandbox_flag, apply_sandbox_flag, key_value, strategy_options
from ponder.cli.render import Progress, print_result, stdout_console, trace_tree
from ponder.cli.view import view_result
from ponder.errors import ConfigError
from ponder.presets import load_preset
from ponder.runner import EFFORTS
from ponder.types import Problem


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ask", help="solve one question", description="Solve one question.")
    p.add_argument("question", help="the question, or @FILE to read it from a file")
    p.add_argument("-s", "--strategy", default="self-consistency",
                   help="see `ponder strategies` (default: self-consistency)")
    p.add_argument("-n", type=int, default=None, help="samples / candidates, for strategies "
                   "that take n")
    p.add_argument("--effort", choices=EFFORTS, default=None, help="preset knobs per strategy")
    p.add_argument("-m", "--model", action="append", default=None, metavar="[ROLE=]MODEL",
                   help="PATH.gguf, hf:OWNER/REPO/FILE.gguf, or the server's model name "
                   "(default: the bundled SmolLM2-135M-Instruct); repeat it with ROLE=MODEL "
                   "for the other models of a many-model strategy, e.g. -m strong=big.gguf "
                   "or -m strong=http://host:8000/v1#NAME (cascade, verify-by-strong; "
                   "mixture-of-agents and debate name theirs in -o)")
    add_endpoint_flags(p)
    p.add_argument("--api-key", default=None, help="for --base-url (default: $OPENAI_API_KEY)")
    p.add_argument("-B", "--backend-option", type=key_value, action="append", default=[],
                   metavar="KEY=VALUE", help="backend setting, e.g. -B n_ctx=16384 -B n_seq_max=16")
    p.add_argument("--verifier", default=None, help="judge, logprob or code-tests "
                   "(best-of-n: judge; on code: code-tests)")
    p.add_argument("--max-tokens-total", type=int, default=None,
                   help="token budget over all calls (prompt + completion)")
    p.add_argument("--max-tokens", type=int, default=None, help="new tokens per generation")
    p.add_argument("-t", "--temperature", type=float, default=None)
    p.add_argument("--seed", type=int, default=None, help="make sampling reproducible")
    p.add_argument("-o", "--option", type=key_value, action="append", default=[],
                   metavar="KEY=VALUE", help="any strategy option, e.g. -o weighting=logprob")
    code = p.add_argument_group("code problems (answers are programs, run in the sandbox)")
    code.add_argument("--code", action="store_true", help="treat the question as a coding task")
    code.add_argument("--entry-point", default=None, metavar="NAME",
                      help="the function to write (its examples become visible tests)")
    code.add_argument("--test", action="append", default=[], metavar="STATEMENT",
                      help="a visible test, e.g. --test 'assert add(1, 2) == 3' (repeatable)")
    code.add_argument("--tests-file", default=None, metavar="FILE",
                      help="visible tests, one Python statement per line")
    p.add_argument("--json", action="store_true", help="print the whole Result as JSON")
    p.add_argument("--show-trace", action="store_true", help="print the trace as a tree")
    p.add_argument("--trace-out", default=None, metavar="FILE", help="write the trace as JSONL")
    p.add_argument("--view", nargs="?", const="", default=None, metavar="FILE",
                   help="write the answer's page (see `ponder view`) and open it")
    p.add_argument("--no-open", action="store_true", help="with --view: write, do not open")
    p.add_argument("--no-progress", action="store_true", help="no live progress display")
    p.add_argument("--preset", default=None, metavar="FILE",
                   help="a strategy, options and effort from a preset file (ponder tune writes "
                   "them); -o, -n and --effort still win")
    p.add_argument("--examples", default=None, metavar="FILE",
                   help="JSONL of worked exemplars for -o shots=K")
    add_sandbox_flag(p)
    p.set_defaults(handler=run)


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None


def build_problem(args: argparse.Namespace) -> Problem:
    """The question, with code metadata when a coding flag is given."""
    question = args.question
    if question.startswith("@") and len(question) > 1:
        question = _read(question[1:], "the question file")
    if not question.strip():
        raise ConfigError("the question is empty")
    tests = list(args.test)
    if args.tests_file:
        tests += [line for line in _read(args.tests_file, "--tests-file").splitlines()
                  if line.strip() and not line.lstrip().startswith("#")]
    for test in tests:
        try:
            compile(test, "<test>", "exec")
        except SyntaxError as exc:
            raise ConfigError(f"test {test!r} is not valid Python: {exc.msg}") from None
    metadata: dict[str, Any] = {}
    if args.code or args.entry_point or tests:
        metadata["domain"] = "code"
    if args.entry_point:
        metadata["entry_point"] = args.entry_point
    if tests:
        metadata["tests"] = tests
    return Problem(question, metadata=metadata)


def run(args: argparse.Namespace) -> int:
    apply_sandbox_flag(args)
    problem = build_problem(args)
    options = strategy_options(args)
    if args.examples:
        options["examples"] = args.examples
    if args.preset:
        preset = load_preset(args.preset)
        args.strategy, args.effort = preset.strategy, args.effort or preset.effort
        options = {**preset.options, **options}
        preset_n = options.pop("n", None)  # -n wins over the preset's n
        args.n = preset_n if args.n is None else args.n
    args.model, roles = models_of(args)
    out = stdout_console()
    err = Console(stderr=True)
    progress = Progress(err, args.strategy)
    show_progress = not args.no_progress and err.is_terminal

    # a pool is opened here, so that its per-endpoint figures can be read after the run
    pool = load_from_args(args, args.api_key, dict(args.backend_option)) \
        if is_pool(args) else None
    endpoints: list[dict[str, Any]] | None = None

    async def go():
        nonlocal endpoints
        try:
            return await asolve(
                problem, args.strategy, n=args.n, effort=args.effort, model=args.model,
                base_url=args.base_url, api_key=args.api_key, backend=pool,
                verifier=args.verifier, backend_options=dict(args.backend_option),
                max_tokens_total=args.max_tokens_total, seed=args.seed,
                events=progress if show_progress else None, models=roles, **options,
            )
        finally:
            if pool is not None:
                endpoints = endpoint_stats(pool)
                await release(pool)

    if show_progress:
        with progress:
            result = asyncio.run(go())
    else:
        result = asyncio.run(go())
    if args.trace_out:
        result.trace.write_jsonl(args.trace_out)
    if args.view is not None:
        view_result(result, args)
    given = asyncio.run(check_given_tests(problem, result))
    if args.json:
        data = result.to_dict()
        if endpoints is not None:
            data["usage"]["endpoints"] = endpoints
        if given is not None:
            data["given_tests"] = given.to_dict()
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        if args.show_trace:
            out.print(trace_tree(result.trace, f"trace of {result.strategy}"))
        print_result(out, result, given.line() if given is not None else None)
    hint = engine_hint(args)
    if hint:
        err.print(hint, style="dim", markup=False, highlight=False, soft_wrap=True)
    if given is not None and not given.ok:
        print(given.failure(), file=sys.stderr)
        return 1
    return 0


def engine_hint(args: argparse.Namespace) -> str | None:
    """The first run of an in-process model on the prebuilt engine, on a CPU where the native
    one is faster, says so (once: see ``engines.hint_once``)."""
    if args.json or args.base_url or not any(
            getattr(b, "engine", None) == "prebuilt" for b in loaded_backends()):
        return None
    from ponder.backends.engines import engine_report, hint_once

    return hint_once(engine_report("prebuilt"))
