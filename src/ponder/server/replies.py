"""What a client reads back: results as Chat Completions messages, usage and ponder's details."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from ponder.server.narrator import search_summary
from ponder.server.plan import Plan
from ponder.server.policy import public_config, public_trace
from ponder.server.tools import calls_of
from ponder.types import Candidate, Result


def content(result: Result) -> str:
    """The message content: the answer (a strategy without one: its text)."""
    if result.strategy == "pass-through":
        return result.answer or ""
    return result.answer if result.answer is not None else result.text


def reasoning(result: Result) -> str | None:
    """The winning chain and an account of the search (pass-through: the model's own)."""
    if result.strategy == "pass-through":
        return result.text or None
    return f"{result.text.strip()}\n\n{search_summary(result)}".strip()


def chosen(result: Result) -> Candidate | None:
    """The candidate the answer came from: the first whose text is the winning chain, whether
    or not an answer could be read from it (None: the strategy built its text from several)."""
    return next((c for c in result.candidates if c.text == result.text), None)


def finish_reason(result: Result) -> str:
    """``length`` when a token cap cut the answer short: the request's budget stopped the search,
    or the chain the answer came from ran out of its own ``max_tokens``; else ``stop``."""
    if result.stop_reason == "budget":
        return "length"
    winner = chosen(result)
    return "length" if winner is not None and winner.finish_reason == "length" else "stop"


def message_of(plan: Plan, result: Result) -> tuple[dict[str, Any], str]:
    """The assistant message a result answers with, and its finish reason: the winning calls
    as ``tool_calls`` (finish reason ``tool_calls``), else the content."""
    calls = calls_of(plan.problem, result.answer)
    if calls:
        return {"role": "assistant", "content": None, "tool_calls": calls}, "tool_calls"
    return {"role": "assistant", "content": content(result)}, finish_reason(result)


def usage_of(results: Sequence[Result]) -> dict[str, Any]:
    """Usage summed over every internal call; a strategy's completion tokens are reasoning."""
    prompt = sum(r.usage.prompt_tokens for r in results)
    completion = sum(r.usage.completion_tokens for r in results)
    reasoning_tokens = sum(r.usage.completion_tokens for r in results
                           if r.strategy != "pass-through")
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "completion_tokens_details": {"reasoning_tokens": reasoning_tokens}}


def completion_body(plan: Plan, results: Sequence[Result], view_url: str | None = None
                    ) -> dict[str, Any]:
    """A ``chat.completion`` object with one choice per result (``view_url``: the traced
    request's page, in each choice's ``ponder`` details)."""
    choices = []
    for i, r in enumerate(results):
        message, finish = message_of(plan, r)
        thought = reasoning(r)
        if thought:
            message["reasoning_content"] = message["reasoning"] = thought
        choices.append({"index": i, "message": message, "logprobs": None,
                        "finish_reason": finish})
    with_trace = bool(plan.request.ponder and plan.request.ponder.trace)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
        "created": int(time.time()), "model": plan.request.model,
        "choices": choices, "usage": usage_of(results),
        "ponder": [{**details(r, trace=with_trace), **({"view_url": view_url} if view_url
                                                         else {})} for r in results],
    }


def details(result: Result, trace: bool = False) -> dict[str, Any]:
    """ponder's account of one result: strategy, configuration, stop reason, candidates (the
    configuration and the trace without the operator's own options: URLs, models, keys)."""
    extra = ({"trace": public_trace(result.trace.to_dict())}
             if trace and result.trace is not None else {})
    return {**extra, "strategy": result.strategy,
            "config": public_config(result.strategy, result.config),
            "stop_reason": result.stop_reason, "calls": result.usage.calls,
            "seconds": round(result.usage.seconds, 3),
            "candidates": [{"answer": c.answer, "votes": c.votes, "score": c.score,
                            "completion_tokens": c.usage.completion_tokens}
                           for c in result.candidates]}
