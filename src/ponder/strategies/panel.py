"""What the strategies in which models read each other's answers share (mixture-of-agents,
debate): the roles they are configured with, asking several models at once through the run's
context, and showing one model's reply to another, fenced and cut to its end.

Every call goes through ``ctx.generate`` (metered, traced, each node marked with its model). The
asks of one model go in one call, so a batching backend decodes them together; different models
are asked at once, except under a token budget: then one after the other, so that each call is
capped by what the ones before it spent and the budget holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from pydantic import BeforeValidator, StringConstraints

from ponder.core.context import Context, Traced
from ponder.errors import BudgetExhausted
from ponder.strategies.base import to_candidate
from ponder.types import Candidate, GenerationRequest, Message, Problem, SamplingParams
from ponder.verifiers.judge import solution_marker

GENERATOR = "generator"
# A role names a model of the run: "generator" (the run's own) or one given as -m ROLE=...
Role = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]


def split_roles(value: object) -> object:
    """A list of roles as written on the command line: ``-o proposers=generator,strong`` (or
    JSON, ``["generator", "strong"]``)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# A list of roles; on the command line also comma-separated
Roles = Annotated[list[Role], BeforeValidator(split_roles)]


def other_roles(roles: Sequence[str]) -> tuple[str, ...]:
    """The roles besides the generator, each once, in order of first mention."""
    return tuple(dict.fromkeys(r for r in roles if r != GENERATOR))


@dataclass(frozen=True)
class Ask:
    """One request to the model playing ``role``: ``n`` samples of ``messages``, traced under
    ``parent``."""

    role: str
    messages: Sequence[Message]
    params: SamplingParams
    parent: int | None
    n: int = 1


async def ask_all(ctx: Context, asks: Sequence[Ask], label: str) -> list[list[Traced] | None]:
    """Each ask's samples, in the order asked; None for an ask the budget could not pay for
    (``ctx.stop_reason`` says so). One call per model, every model's call made even when an
    earlier one ran out (a later model may be cheaper)."""
    by_role: dict[str, list[int]] = {}
    for i, ask in enumerate(asks):
        by_role.setdefault(ask.role, []).append(i)
    out: list[list[Traced] | None] = [None] * len(asks)

    async def call(role: str, indices: list[int]) -> None:
        requests = [GenerationRequest(tuple(asks[i].messages), asks[i].params, n=asks[i].n)
                    for i in indices]
        try:
            rows = await ctx.generate(requests, label=label, backend=ctx.model(role),
                                      parents=[asks[i].parent for i in indices])
        except BudgetExhausted:
            return
        for i, row in zip(indices, rows, strict=True):
            out[i] = row

    if ctx.budget.completion_cap(1, 0) is None:  # no token limit: every model at once
        await asyncio.gather(*(call(role, indices) for role, indices in by_role.items()))
    else:
        for role, indices in by_role.items():
            await call(role, indices)
    return out


def written(ctx: Context, traced: Traced, problem: Problem, role: str, label: str,
            **metadata: object) -> Candidate:
    """The completion as a candidate marked with the model that wrote it, its role and
    ``metadata``; its trace node is relabelled ``label`` and records the same and the answer."""
    model = ctx.model(role).model
    candidate = to_candidate(traced, problem)
    tags = {"model": model, "role": role, **metadata}
    node = ctx.trace.nodes[traced.node]
    node.label = label
    node.data.update(model=model, role=role, answer=candidate.answer, **metadata)
    return candidate.replace(metadata={**candidate.metadata, **tags})


def one_line(answer: str | None) -> str:
    """An answer on one line of at most 200 characters (it cannot write the prompt's next
    lines)."""
    return " ".join(answer.split())[:200] if answer is not None else "(none given)"


def tail(text: str, chars: int) -> str:
    """The last ``chars`` characters of a reply (its conclusion and answer), marked when the
    start was cut."""
    text = text.strip()
    return text if len(text) <= chars else "[... the start is cut ...]\n" + text[-chars:]


def fenced(candidate: Candidate, chars: int) -> str:
    """A reply as another model reads it: its end, fenced by a marker line derived from it (no
    reply can close its own fence and write instructions after it), then its final answer."""
    shown = tail(candidate.text, chars)
    marker = solution_marker(shown)
    return f"{marker}\n{shown}\n{marker}\nIts final answer: {one_line(candidate.answer)}"


def with_turn(messages: Sequence[Message], text: str) -> list[Message]:
    """The conversation with ``text`` added to its last user turn."""
    out = list(messages)
    last = max(i for i, m in enumerate(out) if m.role == "user")
    out[last] = Message("user", f"{out[last].content}\n\n{text}")
    return out

