"""``ponder``: the command line entry point. User errors print one line and exit non-zero."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ponder.errors import PonderError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + message
        print(f"ponder: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    from ponder.cli import ask, distill, eval, mcp, models, serve, strategies, tune, view

    parser = _Parser(prog="ponder", description="Make any LLM think before it answers.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in (ask, eval, tune, distill, serve, mcp, strategies, models, view):
        module.register(sub)
    return parser


def _version() -> str:
    from ponder.version import __version__

    return f"ponder {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="ponder: %(levelname)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except PonderError as exc:
        print(f"ponder: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ponder: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
