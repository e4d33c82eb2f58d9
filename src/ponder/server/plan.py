"""From a validated request to what runs: the problem, the strategy (or a pass-through), the
budget. The strategy: ``reasoning_effort: minimal`` (one chain of thought), else a
``ponder-<strategy>`` model name, else ``ponder.strategy``, else self-consistency. Its options
are built as everywhere else (:func:`ponder.runner.build_strategy`): the ``reasoning_effort``
preset, then the explicit knobs (``ponder.n``, ``ponder.options``, ``temperature``, ``top_p``,
``max_tokens``), which win."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ponder import registry
from ponder.errors import ConfigError
from ponder.runner import build_strategy
from ponder.server.errors import ApiError
from ponder.server.schemas import ChatCompletionRequest, ChatMessage
from ponder.types import Problem


@dataclass
class Plan:
    """What one request will run."""

    problem: Problem
    strategy: Any | None  # None: pass-through to the underlying model
    budget_tokens: int | None
    budget_seconds: float
    verifier: str | None
    seed: int | None
    request: ChatCompletionRequest


def problem_from(messages: Sequence[ChatMessage]) -> Problem:
    """The last user message is the question; system/developer messages the system prompt;
    earlier turns are given as context."""
    system = "\n\n".join(m.text() for m in messages if m.role in ("system", "developer"))
    turns = [m for m in messages if m.role not in ("system", "developer")]
    last = max(i for i, m in enumerate(turns) if m.role == "user" and m.text().strip())
    question = turns[last].text()
    if last > 0:
        history = "\n".join(f"{m.role}: {m.text()}" for m in turns[:last])
        question = f"Earlier in this conversation:\n{history}\n\nNow answer:\n{question}"
    return Problem(question, system=system or None)


def plan_request(req: ChatCompletionRequest, model_id: str, max_request_tokens: int | None,
                 max_request_seconds: float) -> Plan:
    """What a validated request will run; ApiError for what cannot run."""
    options = req.ponder
    name = None
    if req.model.startswith("ponder-"):
        name = req.model.removeprefix("ponder-")
        param = "model"
    elif req.model not in (model_id, "ponder"):
        raise ApiError(404, f"The model '{req.model}' does not exist; see GET /v1/models",
                       param="model", code="model_not_found")
    if name is None and options is not None and options.strategy:
        name, param = options.strategy, "ponder.strategy"
    if name is not None and name not in registry.strategies.names():
        valid = ", ".join(registry.strategies.names())
        raise ApiError(400, f"unknown strategy {name!r}; valid: {valid}", param=param,
                       code="unknown_strategy")
    effort = req.reasoning_effort
    if effort == "minimal":
        name = "cot"
    problem = problem_from(req.messages)
    budget_tokens = min((t for t in (req.max_completion_tokens,
                                     options.budget if options else None,
                                     max_request_tokens) if t is not None), default=None)
    seconds = min(max_request_seconds, (options.max_seconds if options and
                                              options.max_seconds else float("inf")))
    if name is None and effort is None and options is None:
        return Plan(problem, None, budget_tokens, seconds, None, req.seed, req)
    name = name or "self-consistency"
    knobs: dict[str, Any] = dict(options.options) if options else {}
    if options and options.n is not None:
        knobs["n"] = options.n
    for key in ("temperature", "top_p", "max_tokens"):
        if getattr(req, key) is not None:
            knobs[key] = getattr(req, key)
    preset = effort if effort in ("low", "medium", "high") else None
    verifier = options.verifier if options else None
    if verifier is not None and verifier not in registry.verifiers.names():
        raise ApiError(400, f"unknown verifier {verifier!r}; valid: "
                       f"{', '.join(registry.verifiers.names())}", param="ponder.verifier",
                       code="unknown_verifier")
    try:
        strategy = build_strategy(name, preset, **knobs)
    except ConfigError as exc:
        raise ApiError(400, str(exc), param="ponder", code="invalid_value") from None
    return Plan(problem, strategy, budget_tokens, seconds, verifier, req.seed, req)
