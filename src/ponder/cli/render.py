"""Terminal rendering: the live progress display, results, and the trace as a tree."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Collection, Sequence
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.status import Status
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from ponder.trace import Trace
from ponder.types import Result


def stdout_console() -> Console:
    """A console for results: the terminal's width, or a wide page when piped (no truncation)."""
    console = Console()
    if console.is_terminal or os.environ.get("COLUMNS"):
        return console
    return Console(width=200)


def _widest_word(text: str) -> int:
    return max((cell_len(word) for word in text.split()), default=0)


def _widest_line(text: str) -> int:
    return max((cell_len(line) for line in text.splitlines()), default=0)


# Where a table's text may break, tried in turn while it does not fit: after a "/"
# ("tokens/problem"), before a "[" ("self-consistency[mode=mixed]"), before an "@" ("cot@4").
_BREAKS = (re.compile(r"(?<=/)(?=\S)"), re.compile(r"(?<=\S)(?=\[)"), re.compile(r"(?<=\S)(?=@)"))
# (breaks used, padding either side of a cell), from the roomiest layout to the most compact
_LAYOUTS = ((0, 1), (1, 1), (2, 1), (3, 1), (3, 0))


def _broken(text: str, breaks: int) -> str:
    for pattern in _BREAKS[:breaks]:
        text = pattern.sub("\n", text)
    return text


def _widths(least: list[int], most: list[int], room: int) -> list[int]:
    """Column widths between each column's least (its widest word) and most (its widest line)
    in ``room``: what is left after the least goes, a character at a time, to the column that
    lacks the most."""
    widths = list(least)
    spare = room - sum(widths)
    while spare > 0:
        lack, i = max((m - w, i) for i, (w, m) in enumerate(zip(widths, most, strict=True)))
        if lack <= 0:
            break
        widths[i] += 1
        spare -= 1
    return widths


def fitted_table(console: Console, title: str, header: Sequence[str],
                 rows: Sequence[Sequence[str]], *, right: Collection[str] = ()) -> RenderableType:
    """``rows`` under ``header``, shown whole at ``console``'s width, never cut with "…": a
    compact table whose cells wrap at their spaces, and where that is not enough, after a "/"
    and before a "[" or "@", with less padding; when even its widest words cannot stand side by
    side, one block per row ("header: value" lines under the row's first cell). ``right``: the
    headers whose columns are right-aligned. Cells are plain text, not markup."""
    for breaks, pad in _LAYOUTS:
        shown = [_broken(h, breaks) for h in header]
        cells = [[_broken(cell, breaks) for cell in row] for row in rows]
        columns = [[h, *(r[i] for r in cells)] for i, h in enumerate(shown)]
        least = [max(_widest_word(text) for text in column) for column in columns]
        room = console.width - 2 * pad * len(columns) - (len(columns) - 1)
        if sum(least) > room:
            continue
        most = [max(_widest_line(" ".join(text.split()) if i else text) for i, text
                    in enumerate(column)) for column in columns]  # a header keeps its breaks
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                      padding=(0, pad))
        for h, name, width in zip(shown, header, _widths(least, most, room), strict=True):
            table.add_column(Text(h), justify="right" if name in right else "left",
                             overflow="fold", width=width)
        for row in cells:
            table.add_row(*(Text(cell) for cell in row))
        return table
    blocks: list[RenderableType] = [Text(title, style="italic")]
    for row in rows:
        lines = Text(row[0], style="bold")
        for h, cell in zip(header[1:], row[1:], strict=True):
            lines.append(f"\n  {h}: {cell}")
        blocks.append(lines)
    return Group(*blocks)


class Progress:
    """A live status line on stderr while a strategy thinks: phase, tokens, tokens/s, seconds."""

    def __init__(self, console: Console, strategy: str) -> None:
        self.console = console
        self.strategy = strategy
        self.started = time.monotonic()
        self.phase = "starting"
        self.done_tokens = 0  # tokens of finished calls
        self.call_tokens = 0  # tokens of the call in flight
        self.calls = 0
        self.status: Status | None = None

    def __enter__(self) -> Progress:
        self.status = self.console.status(self._text(), spinner="dots")
        self.status.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.status is not None:
            self.status.__exit__(*exc)

    def _text(self) -> str:
        seconds = time.monotonic() - self.started
        tokens = self.done_tokens + self.call_tokens
        rate = tokens / seconds if seconds > 0 else 0.0
        return (f"[bold]{self.strategy}[/]: {self.phase} · {tokens:,} tokens · "
                f"{rate:.1f} tok/s · {self.calls} calls · {seconds:.1f}s")

    def __call__(self, event: str, details: dict[str, Any]) -> None:
        if event == "generate":
            n = details.get("samples", 1)
            self.phase = f"{details.get('label', 'sample')} ×{n}" if n > 1 else \
                str(details.get("label", "sample"))
            self.call_tokens = 0
        elif event == "tokens":
            self.call_tokens = int(details.get("tokens", 0))
        elif event == "generated":
            self.done_tokens += int(details.get("tokens", 0))
            self.call_tokens = 0
            self.calls += 1
        if self.status is not None:
            self.status.update(self._text())


def _preview(text: str, width: int = 90) -> str:
    flat = " ".join(text.split())
    return escape(flat if len(flat) <= width else flat[: width - 1] + "…")


def print_result(console: Console, result: Result, tests: str | None = None) -> None:
    """The candidates, the answer (and ``tests``: how it fares on the given tests), the cost."""
    table = Table(title=f"{result.strategy}: {len(result.candidates)} candidate(s)",
                  title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("answer")
    table.add_column("votes", justify="right")
    table.add_column("score", justify="right")
    table.add_column("tokens", justify="right")
    table.add_column("end")
    several = len(result.models) > 1
    if several:  # which model wrote each candidate
        table.add_column("model")
    table.add_column("text")
    for i, c in enumerate(result.candidates, 1):
        by = [_preview(str(c.metadata.get("model", result.model)), 24)] if several else []
        table.add_row(
            str(i),
            _preview(c.answer, 40) if c.answer is not None else "—",
            f"{c.votes:g}",
            "—" if c.score is None else f"{c.score:.3f}",
            str(c.usage.completion_tokens),
            c.finish_reason,
            *by,
            _preview(c.text, 60),
            style="bold green" if c.votes and result.answer is not None
            and c.answer == result.answer else None,
        )
    console.print(table)
    u = result.usage
    answer = escape(result.answer) if result.answer is not None else "(none)"
    if "\n" in answer:  # a program: on its own lines
        answer = "\n" + answer.rstrip()
    console.print(f"[bold]Answer:[/] {answer}")
    if tests is not None:
        console.print(tests, markup=False, highlight=False)
    note = "  [yellow](stopped by the token budget)[/]" if result.stop_reason == "budget" else ""
    several = len(result.models) > 1
    # FLOPs-equivalent cost where models of different sizes are mixed (--json: always)
    flops = f" · {result.flops:.3g} FLOPs" if several and result.flops is not None else ""
    if result.dollars is not None:  # the operator priced every model
        flops += f" · ${result.dollars:.6f}"
    console.print(
        f"cost: {u.calls} call(s) · {u.prompt_tokens:,} prompt + {u.completion_tokens:,} "
        f"completion tokens{flops} · {u.seconds:.2f}s · model {result.model}{note}"
    )
    if several:  # a run of several models: what each spent
        for name, cost in result.models.items():
            spent = f" · {cost.flops:.3g} FLOPs" if cost.flops is not None else ""
            spent += f" · ${cost.dollars:.6f}" if cost.dollars is not None else ""
            console.print(f"  {escape(name)}: {cost.usage.calls} call(s) · "
                          f"{cost.usage.prompt_tokens:,} prompt + "
                          f"{cost.usage.completion_tokens:,} completion tokens{spent}")


STATUS_STYLE = {"kept": "green", "answer": "bold green", "pruned": "red", "expanded": "green",
                "rollout": "magenta"}


def trace_tree(trace: Trace, title: str = "trace") -> Tree:
    """The trace as a tree. Search nodes show how they fared (kept, pruned, answer, ...) and
    their score next to their label, and why they were pruned under it."""
    root = Tree(f"[bold]{title}[/]")
    branches: dict[int | None, Tree] = {None: root}
    for node in trace.nodes:
        parent = branches.get(node.parent, root)
        data = node.data
        label = f"[cyan]{node.kind}[/] {node.label}"
        status = data.get("status")
        if status:
            label += f" [{STATUS_STYLE.get(status, 'white')}]{status}[/]"
        if isinstance(data.get("score"), (int, float)):
            label += f" score {data['score']:.3f}"
        if node.usage is not None:
            label += f" [dim]({node.usage.prompt_tokens}+{node.usage.completion_tokens} tok)[/]"
        if node.label.startswith("judge"):  # a verdict: its score says it all
            branches[node.id] = parent.add(label)
            continue
        if "text" in data:
            label += f"\n[dim]{_preview(str(data['text']))}[/]"
        if status == "pruned" and data.get("why"):
            label += f"\n[red dim]{escape(str(data['why']))}[/]"
        shown = ("text", "config", "prefill", "reasoning", "status", "why", "score")
        extra = {k: v for k, v in data.items() if k not in shown}
        if extra:
            label += f"\n[dim]{_preview(', '.join(f'{k}={v}' for k, v in extra.items()), 120)}[/]"
        branches[node.id] = parent.add(label)
    return root
