"""From a validated request to what runs: the problem, the strategy (or a pass-through), the
budget. The strategy: ``reasoning_effort: minimal`` (one chain of thought), else a
``ponder-<strategy>`` model name, else ``ponder.strategy``, else self-consistency. Its options
are built as everywhere else (:func:`ponder.runner.build_strategy`): the ``reasoning_effort``
preset, then the operator's options for the strategy, then the client's knobs (``ponder.n``,
``ponder.options``, ``temperature``, ``top_p``, ``max_tokens``), which win — within what a client
may set and the caps (:mod:`ponder.server.policy`).

How a search spends a token cap. ``max_completion_tokens`` (the Responses API's
``max_output_tokens``) bounds the tokens the whole search generates, over every call: OpenAI
counts a reasoning model's reasoning tokens in it, and every chain, vote and judgement of the
search is ponder's reasoning. Calls made one after another never exceed it; calls of one search
made at once (mixed mode's chains and programs, parallel repairs) each plan from what is left
when they start, so together they can overrun it (two at once: up to twice what was left; reserving
each call's worst case would leave a concurrent call nothing: not done).
Prompts are not counted in it (a long conversation does not eat the cap); ``ponder.budget`` and
the operator's ``--max-request-tokens`` still bound prompt and completion tokens together.
A search plans within the cap: a strategy that samples independent chains (self-consistency,
best-of-n, adaptive-consistency) samples no more chains than the cap pays for at each chain's
full length (its ``max_tokens``, 512 unless set), so that it runs fewer complete chains rather
than many cut ones; below one chain's length it runs one chain, cut at the cap. A chain count
the client set itself (``ponder.n``, ``ponder.options``) is kept: its chains share the cap.
A strategy of another shape (a tree search, refinement rounds) runs as planned and stops where
the cap stops it. Either way an answer whose chain was cut says ``finish_reason: length``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from ponder import registry
from ponder.budget import Budget
from ponder.errors import ConfigError
from ponder.server.errors import ApiError, clip
from ponder.server.policy import above_cap, capped
from ponder.server.schemas import ChatCompletionRequest
from ponder.server.settings import Caps
from ponder.server.tools import check_request, problem_from
from ponder.strategies.base import Strategy
from ponder.types import Problem

# The options that count a strategy's independent chains, which a token cap lowers (the first
# is the count; the others may not exceed it).
CHAIN_COUNTS: dict[str, tuple[str, ...]] = {
    "self-consistency": ("n",),
    "best-of-n": ("n",),
    "adaptive-consistency": ("max_n", "wave"),
}


@dataclass
class RequestBudget(Budget):
    """A request's budget: ``max_tokens`` over every call's prompt and completion tokens, and
    ``max_output_tokens`` over their completion tokens alone (what OpenAI's
    ``max_completion_tokens`` / ``max_output_tokens`` count)."""

    max_output_tokens: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_output_tokens is not None and self.max_output_tokens <= 0:
            raise ConfigError(f"budget max-output-tokens must be positive, got "
                              f"{self.max_output_tokens}")

    def spent_limit(self) -> str | None:
        if self.max_output_tokens is not None \
                and self.spent.completion_tokens >= self.max_output_tokens:
            return "tokens"
        return super().spent_limit()

    def completion_cap(self, n_samples: int, prompt_tokens: int) -> int | None:
        caps = [super().completion_cap(n_samples, prompt_tokens)]
        if self.max_output_tokens is not None:
            left = self.max_output_tokens - self.spent.completion_tokens
            caps.append(left // max(1, n_samples))
        return min((c for c in caps if c is not None), default=None)


@dataclass
class Plan:
    """What one request will run: ``budget_tokens`` bounds prompt and completion tokens
    together, ``output_tokens`` the completion tokens alone."""

    problem: Problem
    strategy: Any | None  # None: pass-through to the underlying model
    budget_tokens: int | None
    budget_seconds: float
    verifier: str | None
    seed: int | None
    request: ChatCompletionRequest
    output_tokens: int | None = None

    def budget(self) -> RequestBudget:
        """A fresh budget for one run of the plan."""
        return RequestBudget(max_tokens=self.budget_tokens, max_seconds=self.budget_seconds,
                             max_output_tokens=self.output_tokens)


def needs_roles(name: str) -> tuple[str, ...]:
    """The models besides the generator that strategy ``name`` needs by default."""
    return roles_of(registry.strategies.get(name)())


def roles_of(strategy: Strategy) -> tuple[str, ...]:
    """The models besides the generator that ``strategy``, as configured, needs."""
    return tuple(getattr(strategy, "required_roles", lambda: ())())


def lacks_roles(needed: Collection[str], roles: Collection[str], name: str, param: str
                ) -> ApiError | None:
    """The error for a strategy that needs models by role this server was not given."""
    missing = [role for role in needed if role not in roles]
    if not missing:
        return None
    return ApiError(400, f"strategy {name!r} needs a {' and a '.join(missing)} model besides "
                    "the generator, which this server does not have (the operator starts it "
                    f"with --model {missing[0]}=...)", param=param, code="unknown_strategy")


def plan_request(req: ChatCompletionRequest, model_id: str, max_request_tokens: int | None,
                 max_request_seconds: float, *,
                 strategies: Mapping[str, dict[str, Any]] | None = None,
                 caps: Caps | None = None, roles: Collection[str] = ()) -> Plan:
    """What a validated request will run; ApiError for what cannot run. ``strategies`` holds
    the operator's options per strategy; ``caps`` the per-request caps (see
    :mod:`ponder.server.policy`: what a client may set); ``roles`` the server's models besides
    the generator (``strong``, ...)."""
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
    if name is not None and (error := lacks_roles(needs_roles(name), roles, name, param)):
        raise error
    effort = req.reasoning_effort
    if effort == "minimal":
        name = "cot"
    check_request(req)
    problem = problem_from(req)
    budget_tokens = min((t for t in (options.budget if options else None,
                                     max_request_tokens) if t is not None), default=None)
    output_tokens = req.max_completion_tokens
    seconds = min(max_request_seconds, (options.max_seconds if options and
                                              options.max_seconds else float("inf")))
    if name is None and effort is None and options is None:
        for key in ("max_tokens", "max_completion_tokens"):
            value = getattr(req, key)
            if value is not None and value > caps.max_tokens:
                raise above_cap(key, value, caps.max_tokens)
            if value is not None:
                break  # the one a plain completion uses
        return Plan(problem, None, budget_tokens, seconds, None, req.seed, req, output_tokens)
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
    operator = dict((strategies or {}).get(name, {}))
    strategy = capped(name, preset, knobs, operator, caps)
    if (error := lacks_roles(roles_of(strategy), roles, name, "model")):
        raise error  # the operator's options name a role the server was not given
    if output_tokens is not None:
        fewer = fewer_chains(strategy, output_tokens, knobs)
        if fewer:
            strategy = capped(name, preset, {**knobs, **fewer}, operator, caps)
    return Plan(problem, strategy, budget_tokens, seconds, verifier, req.seed, req, output_tokens)


def fewer_chains(strategy: Strategy, output_tokens: int, knobs: Mapping[str, Any]
                 ) -> dict[str, tuple[str, int]]:
    """The chain counts to lower so that a strategy's chains fit ``output_tokens`` at their full
    length (at least one chain), as knobs (option -> (the parameter that set it, value)); none
    when the chains fit, the strategy does not sample independent chains, or the client set the
    count itself."""
    counts = CHAIN_COUNTS.get(strategy.name, ())
    if not counts or counts[0] in knobs:
        return {}
    config = strategy.config
    fits = max(1, output_tokens // max(1, config.max_tokens))
    return {option: ("max_completion_tokens", fits) for option in counts
            if option not in knobs and getattr(config, option) > fits}


