"""``ponder view``: one offline page showing how a run thought, opened in a browser when one is at
hand. From a ``ponder ask --json`` result, a ``--trace-out`` trace, a server reply with
``ponder.trace``, or an evaluation's folder and a problem id."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import webbrowser
from pathlib import Path
from typing import Any

from ponder.errors import ConfigError
from ponder.eval.traces import problem_page
from ponder.view import render_page
from ponder.view.sources import read_views


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("view", help="see the thinking: one offline page for a run",
                       description="Write one self-contained HTML page showing how a run "
                       "thought (answers, search tree, rounds, decisions, cost) and open it.")
    p.add_argument("result", metavar="RESULT",
                   help="a `ponder ask --json` file, a --trace-out JSONL file, a server reply "
                   "with ponder.trace, or an evaluation folder (with --problem)")
    p.add_argument("--problem", metavar="ID", default=None,
                   help="an evaluation folder's problem id")
    p.add_argument("--strategy", metavar="LABEL", default=None,
                   help="the evaluation's strategy shown first (default: the first)")
    add_page_flags(p)
    p.set_defaults(handler=run)


def add_page_flags(p: argparse.ArgumentParser, output: bool = True) -> None:
    if output:
        p.add_argument("-o", "--output", metavar="FILE", default=None,
                       help="where to write the page (default: beside RESULT, .html)")
    p.add_argument("--no-open", action="store_true", help="write the page, do not open it")


def browser_at_hand() -> bool:
    """Whether opening a page can show it to someone: a desktop session, or macOS / Windows."""
    if sys.platform in ("darwin", "win32"):
        return True
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        webbrowser.get()
    except webbrowser.Error:
        return False
    return True


def publish(page: str, path: Path, open_it: bool) -> Path:
    """Write the page; open it when asked and a browser is at hand. Says where it is."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    opened = open_it and browser_at_hand() and webbrowser.open(path.resolve().as_uri())
    print(f"view: {path}" + ("" if opened else "  (open it in a browser)"), file=sys.stderr)
    return path


def temp_page(stem: str) -> Path:
    """A new file for a page nobody named."""
    handle, name = tempfile.mkstemp(prefix=f"ponder-{stem}-", suffix=".html")
    os.close(handle)
    return Path(name)


def run(args: argparse.Namespace) -> int:
    source = Path(args.result)
    if source.is_dir():
        if not args.problem:
            raise ConfigError(f"{source} is an evaluation folder: name a problem with --problem ID")
        page, default = problem_page(source, args.problem, args.strategy)
    else:
        if args.problem or args.strategy:
            raise ConfigError("--problem and --strategy need an evaluation folder")
        views = read_views(source)
        page = render_page(views)
        default = source.with_suffix(".html")
        if default == source:
            default = source.with_name(source.name + ".html")
    target = Path(args.output) if args.output else default
    publish(page, target, not args.no_open)
    return 0


def view_result(result: Any, args: argparse.Namespace) -> None:
    """``ponder ask --view``: the page of the answer just given."""
    from ponder.view import view_of_result

    page = render_page([view_of_result(result.to_dict())])
    target = Path(args.view) if args.view else temp_page(result.strategy)
    publish(page, target, not args.no_open)
