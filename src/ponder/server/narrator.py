"""What a streaming client reads while the search runs: strategy events as reasoning text.

The first sample of each call is streamed as it is written; every finished sample is announced
with its answer, and the votes so far are tallied by the problem's own equivalence.
"""

from __future__ import annotations

from typing import Any

from ponder.domains import domain_for
from ponder.domains.vote import majority_vote
from ponder.types import Problem

VOTING_LABELS = {"chain", "candidate", "sample", "solution", "draft"}


class Narrator:
    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.answers: list[str | None] = []
        self.cut: list[bool] = []  # cut off at the token limit: no vote (as the strategy's)
        self.streamed = 0  # characters of the current call's first sample already sent

    def __call__(self, event: str, details: dict[str, Any]) -> str:
        if event == "generate":
            self.streamed = 0
            n = details.get("samples", 1)
            what = details.get("label", "sample")
            return f"\n[{what}: {n} sample{'s' if n != 1 else ''}]\n"
        if event == "text":
            text = str(details.get("text", ""))
            delta, self.streamed = text[self.streamed:], max(self.streamed, len(text))
            return delta
        if event == "sample":
            return self._finished(details)
        return ""

    def _finished(self, details: dict[str, Any]) -> str:
        label = str(details.get("label", "sample"))
        line = (f"\n✓ {label} {int(details.get('index', 0)) + 1}/{details.get('n', 1)} finished"
                f" · {details.get('tokens', 0)} tokens")
        if label not in VOTING_LABELS:
            return line + "\n"
        answer = domain_for(self.problem).extract(self.problem, str(details.get("text", "")))
        self.answers.append(answer)
        self.cut.append(details.get("finish_reason") == "length")
        shown = "none" if answer is None else " ".join(answer.split())[:60]
        line += f" · answer: {shown}" + (" (cut off: no vote)" if self.cut[-1] else "")
        groups = (majority_vote(self.answers, cut=self.cut)[1]
                  if domain_for(self.problem).name == "math" else [])
        if len(self.answers) > 1 and groups:
            tally = ", ".join(f"{g.answer} ×{len(g.members)}" for g in
                              sorted(groups, key=lambda g: -len(g.members))[:4])
            line += f" · votes so far: {tally}"
        return line + "\n"


def search_summary(result: Any) -> str:
    """A short account of the search, appended to the winning chain in reasoning_content."""
    lines = [f"[{result.strategy}: {len(result.candidates)} candidate(s), "
             f"{result.usage.calls} call(s), {result.usage.completion_tokens} completion tokens]"]
    for i, c in enumerate(result.candidates[:16], 1):
        answer = "none" if c.answer is None else " ".join(c.answer.split())[:60]
        extra = f", score {c.score:.3f}" if c.score is not None else ""
        lines.append(f"  {i}. answer {answer} (votes {c.votes:g}{extra}, "
                     f"{c.usage.completion_tokens} tokens)")
    if result.stop_reason == "budget":
        lines.append("  stopped by the request's budget")
    lines.append(f"chosen: {result.answer}")
    return "\n".join(lines)
