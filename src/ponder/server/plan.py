"""From a validated request to what runs: the problem, the strategy (or a pass-through), the
budget. The strategy: ``reasoning_effort: minimal`` (one chain of thought), else a
``ponder-<strategy>`` model name, else ``ponder.strategy``, else self-consistency. Its options
are built as everywhere else (:func:`ponder.runner.build_strategy`): the ``reasoning_effort``
preset, then the operator's options for the strategy, then the client's knobs (``ponder.n``,
``ponder.options``, ``temperature``, ``top_p``, ``max_tokens``), which win — within what a client
may set and the caps (:mod:`ponder.server.policy`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ponder import registry
from ponder.server.errors import ApiError, clip
from ponder.server.policy import above_cap, capped
from ponder.server.schemas import ChatCompletionRequest
from ponder.server.settings import Caps
from ponder.server.tools import check_request, problem_from
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


def plan_request(req: ChatCompletionRequest, model_id: str, max_request_tokens: int | None,
                 max_request_seconds: float, *,
                 strategies: Mapping[str, dict[str, Any]] | None = None,
                 caps: Caps | None = None) -> Plan:
    """What a validated request will run; ApiError for what cannot run. ``strategies`` holds
    the operator's options per strategy; ``caps`` the per-request caps (see
    :mod:`ponder.server.policy`: what a client may set)."""
    caps = caps or Caps()
    options = req.ponder
    name = None
    if req.model.startswith("ponder-"):
        name = req.model.removeprefix("ponder-")
        param = "model"
    elif req.model not in (model_id, "ponder"):
        raise ApiError(404, f"The model '{clip(req.model)}' does not exist; see GET /v1/models",
                       param="model", code="model_not_found")
    if name is None and options is not None and options.strategy:
        name, param = options.strategy, "ponder.strategy"
    if name is not None and name not in registry.strategies.names():
        valid = ", ".join(registry.strategies.names())
        raise ApiError(400, f"unknown strategy {clip(name)!r}; valid: {valid}", param=param,
                       code="unknown_strategy")
    effort = req.reasoning_effort
    if effort == "minimal":
        name = "cot"
    check_request(req)
    problem = problem_from(req)
    budget_tokens = min((t for t in (req.max_completion_tokens,
                                     options.budget if options else None,
                                     max_request_tokens) if t is not None), default=None)
    seconds = min(max_request_seconds, (options.max_seconds if options and
                                              options.max_seconds else float("inf")))
    if name is None and effort is None and options is None:
        for key in ("max_tokens", "max_completion_tokens"):
            value = getattr(req, key)
            if value is not None and value > caps.max_tokens:
                raise above_cap(key, value, caps.max_tokens)
            if value is not None:
                break  # the one a plain completion uses
        return Plan(problem, None, budget_tokens, seconds, None, req.seed, req)
    name = name or "self-consistency"
    knobs: dict[str, tuple[str, Any]] = {}  # option -> (the request parameter, value)
    if options:
        for key, value in options.options.items():
            knobs[key] = (f"ponder.options.{clip(key)}", value)
        if options.n is not None:
            knobs["n"] = ("ponder.n", options.n)
    for key in ("temperature", "top_p", "max_tokens"):
        if getattr(req, key) is not None:
            knobs[key] = (key, getattr(req, key))
    preset = effort if effort in ("low", "medium", "high") else None
    verifier = options.verifier if options else None
    if verifier is not None and verifier not in registry.verifiers.names():
        raise ApiError(400, f"unknown verifier {clip(verifier)!r}; valid: "
                       f"{', '.join(registry.verifiers.names())}", param="ponder.verifier",
                       code="unknown_verifier")
    strategy = capped(name, preset, knobs, dict((strategies or {}).get(name, {})), caps)
    return Plan(problem, strategy, budget_tokens, seconds, verifier, req.seed, req)


