"""``ponder strategies``: every strategy, what it does, and what --effort sets."""

from __future__ import annotations

import argparse

from rich.table import Table

from ponder.cli.render import stdout_console
from ponder.runner import EFFORTS, effort_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("strategies", help="list strategies and their --effort mapping")
    p.set_defaults(handler=run)


def _knobs(preset: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in preset.items()) or "—"


def run(args: argparse.Namespace) -> int:
    table = Table(title="strategies", title_justify="left")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("what it does")
    for effort in EFFORTS:
        table.add_column(f"--effort {effort}")
    for name, description, presets in effort_table():
        table.add_row(name, description, *(_knobs(presets.get(e, {})) for e in EFFORTS))
    stdout_console().print(table)
    return 0
