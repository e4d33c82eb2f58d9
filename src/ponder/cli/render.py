"""Terminal rendering: the live progress display, results, and the trace as a tree."""

from __future__ import annotations

import os
import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.status import Status
from rich.table import Table
from rich.tree import Tree

from ponder.trace import Trace
from ponder.types import Result


def stdout_console() -> Console:
    """A console for results: the terminal's width, or a wide page when piped (no truncation)."""
    console = Console()
    if console.is_terminal or os.environ.get("COLUMNS"):
        return console
    return Console(width=200)


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


def print_result(console: Console, result: Result) -> None:
    table = Table(title=f"{result.strategy}: {len(result.candidates)} candidate(s)",
                  title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("answer")
    table.add_column("votes", justify="right")
    table.add_column("score", justify="right")
    table.add_column("tokens", justify="right")
    table.add_column("end")
    table.add_column("text")
    for i, c in enumerate(result.candidates, 1):
        table.add_row(
            str(i),
            _preview(c.answer, 40) if c.answer is not None else "—",
            f"{c.votes:g}",
            "—" if c.score is None else f"{c.score:.3f}",
            str(c.usage.completion_tokens),
            c.finish_reason,
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
    note = "  [yellow](stopped by the token budget)[/]" if result.stop_reason == "budget" else ""
    console.print(
        f"cost: {u.calls} call(s) · {u.prompt_tokens:,} prompt + {u.completion_tokens:,} "
        f"completion tokens · {u.seconds:.2f}s · model {result.model}{note}"
    )


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
