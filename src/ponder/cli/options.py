"""The flags several commands share: ``KEY=VALUE`` options (``-o``, ``-B``), the strategy
options they add up to, and ``--sandbox``."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` as (key, value): the value read as JSON where it is JSON (``n=8``,
    ``hints=true``), else as text; dashes in the key become underscores."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value


def strategy_options(args: argparse.Namespace) -> dict[str, Any]:
    """-o KEY=VALUE options plus the --max-tokens / --temperature shortcuts."""
    options = dict(args.option)
    if args.max_tokens is not None:
        options["max_tokens"] = args.max_tokens
    if args.temperature is not None:
        options["temperature"] = args.temperature
    return options


def add_sandbox_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sandbox", choices=("jail", "none"), default=None,
                   help="where model-written code runs: the jail (default) or, at your own risk, "
                   "no isolation (also PONDER_SANDBOX=none)")


def apply_sandbox_flag(args: argparse.Namespace) -> None:
    """``--sandbox`` is the process's setting: every sandbox this run makes reads it."""
    if args.sandbox is not None:
        os.environ["PONDER_SANDBOX"] = args.sandbox
