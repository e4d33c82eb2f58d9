"""What an MCP client may ask of ``ponder mcp``, checked before anything runs or loads.

The rules are ``ponder serve``'s (:mod:`ponder.server.policy`), applied through the same code: a
client chooses a strategy among those the operator allows, an effort, and capped numeric knobs
(``n``, ``max_tokens``, ``options``); it never names a model, a scorer, a file or a URL (no
argument takes one, an option that would is refused by :func:`~ponder.server.policy.capped`,
and an argument the tool does not have is refused by name). Beyond the server's rules, a call's
text is bounded: the question's length, the number and size of the tests, the token budget and
the time. Tests are code for the jail: they are compiled here (a syntax error is the client's,
said at once) and run only in the server's jail.

A refusal is a :class:`Refused` naming the argument and saying why, in one line; the tool
returns it as an MCP tool error.
"""

from __future__ import annotations

import keyword
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ponder import registry
from ponder.errors import ConfigError
from ponder.runner import build_strategy
from ponder.server.errors import ApiError, clip
from ponder.server.plan import needs_roles, roles_of
from ponder.server.policy import capped
from ponder.server.settings import Caps
from ponder.strategies.base import Strategy
from ponder.types import Problem

EFFORTS = ("minimal", "low", "medium", "high")  # minimal: one chain of thought, as the server's
MAX_SEED = 2**31 - 1


class Refused(Exception):
    """A call the server will not run: ``param`` is the argument at fault."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param = message, param


@dataclass(frozen=True)
class McpLimits:
    """How much one call may ask of the server (the operator's ``ponder mcp`` flags)."""

    max_question_chars: int = 32_000
    max_tests: int = 64
    max_test_chars: int = 4_000
    max_request_tokens: int = 200_000  # prompt + completion tokens over all of a call's calls
    max_request_seconds: float = 600.0
    max_concurrent: int = 2  # calls searching at once; the others wait
    max_queue: int = 16  # calls waiting beyond those; more are refused
    max_runs: int = 64  # the runs whose traces are kept (the oldest go first)
    caps: Caps = field(default_factory=Caps)

    def __post_init__(self) -> None:
        for name in ("max_question_chars", "max_tests", "max_test_chars", "max_request_tokens",
                     "max_request_seconds", "max_concurrent", "max_runs"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got "
                                  f"{getattr(self, name)}")
        if self.max_queue < 0:
            raise ConfigError(f"--max-queue must be 0 or more, got {self.max_queue}")


@dataclass(frozen=True)
class CallPlan:
    """What a checked call will run."""

    problem: Problem
    strategy: Strategy
    verifier: str | None
    budget_tokens: int
    seed: int | None


def usable_strategies(allowed: Sequence[str] | None = None,
                      roles: Collection[str] = (),
                      operator: Mapping[str, Mapping[str, Any]] | None = None
                      ) -> tuple[str, ...]:
    """The strategies a client may choose: those the operator allowed (default: every
    registered one), less those needing a model by a role this server was not given
    (``roles``: the other models' roles, e.g. strong; a strategy's roles as the operator's
    options set them, e.g. ``strong_role``)."""
    names = registry.strategies.names()

    def needed(name: str) -> tuple[str, ...]:
        options = dict((operator or {}).get(name, {}))
        if options:
            try:
                return roles_of(build_strategy(name, **options))
            except (ConfigError, ValueError, TypeError):
                pass  # options the strategy does not take: its own check says so later
        return needs_roles(name)

    def missing(name: str) -> list[str]:
        return [role for role in needed(name) if role not in roles]

    if allowed:
        unknown = sorted(set(allowed) - set(names))
        if unknown:
            raise ConfigError(f"--allow-strategy: unknown strategy {', '.join(unknown)}; "
                              f"valid: {', '.join(names)}")
        lacking = [f"{name} (needs -m {missing(name)[0]}=MODEL)" for name in allowed
                   if missing(name)]
        if lacking:
            raise ConfigError(f"--allow-strategy: {', '.join(lacking)} needs a model this "
                              "server was not given")
        return tuple(name for name in names if name in allowed)
    return tuple(name for name in names if not missing(name))


@dataclass(frozen=True)
class CallRules:
    """The operator's choices a call is checked against."""

    limits: McpLimits = field(default_factory=McpLimits)
    strategies: tuple[str, ...] = field(default_factory=usable_strategies)
    default_strategy: str = "self-consistency"
    code_strategy: str = "self-debug"
    operator: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    roles: tuple[str, ...] = ()  # the other models' roles (strong, ...)

    def __post_init__(self) -> None:
        for which in ("default_strategy", "code_strategy"):
            name = getattr(self, which)
            if name not in self.strategies:
                raise ConfigError(f"the {which.replace('_', ' ')} {name!r} is not among the "
                                  f"allowed strategies ({', '.join(self.strategies)})")


def _text(value: str, param: str, most: int, flag: str) -> str:
    if not value.strip():
        raise Refused(f"'{param}' is empty", param)
    if len(value) > most:
        raise Refused(f"'{param}' is {len(value):,} characters, over this server's limit of "
                      f"{most:,} ({flag})", param)
    return value


def _tests(tests: Sequence[str] | None, limits: McpLimits) -> list[str]:
    tests = list(tests or [])
    if len(tests) > limits.max_tests:
        raise Refused(f"'tests' holds {len(tests)} tests, over this server's limit of "
                      f"{limits.max_tests}", "tests")
    for i, test in enumerate(tests):
        param = f"tests[{i}]"
        _text(test, param, limits.max_test_chars, "ponder mcp --max-test-chars")
        try:
            compile(test, "<test>", "exec")
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            why = getattr(exc, "msg", None) or type(exc).__name__
            raise Refused(f"'{param}' is not valid Python: {why}", param) from None
    return tests


def _entry_point(name: str | None) -> str | None:
    if name is None:
        return None
    if not name.isidentifier() or keyword.iskeyword(name) or len(name) > 100:
        raise Refused(f"'entry_point' must be a Python function name, got {clip(name)!r}",
                      "entry_point")
    return name


def plan_call(rules: CallRules, *, question: str, param: str = "question",
              strategy: str | None = None, effort: str | None = None, n: int | None = None,
              max_tokens: int | None = None, budget_tokens: int | None = None,
              verifier: str | None = None, tests: Sequence[str] | None = None,
              entry_point: str | None = None, options: Mapping[str, Any] | None = None,
              seed: int | None = None, code: bool = False) -> CallPlan:
    """What a call will run, every argument checked; :class:`Refused` for the first that may
    not be. ``code``: the question is a programming task (``solve_code``)."""
    limits = rules.limits
    _text(question, param, limits.max_question_chars, "ponder mcp --max-question-chars")
    if effort is not None and effort not in EFFORTS:
        raise Refused(f"unknown effort {clip(effort)!r}; valid: {', '.join(EFFORTS)}", "effort")
    if strategy is not None and strategy not in rules.strategies:
        raise Refused(f"unknown strategy {clip(strategy)!r}; this server offers: "
                      f"{', '.join(rules.strategies)}", "strategy")
    name = strategy or (rules.code_strategy if code else rules.default_strategy)
    if effort == "minimal" and strategy is None:
        name = "cot"
        if name not in rules.strategies:
            raise Refused("effort 'minimal' is one chain of thought (strategy cot), which this "
                          "server does not offer", "effort")
    if verifier is not None and verifier not in registry.verifiers.names():
        raise Refused(f"unknown verifier {clip(verifier)!r}; valid: "
                      f"{', '.join(registry.verifiers.names())}", "verifier")
    given = _tests(tests, limits)
    if code and not given:
        raise Refused("'tests' is empty: solve_code returns a program that passes the tests "
                      "given, e.g. [\"assert add(2, 3) == 5\"]", "tests")
    entry = _entry_point(entry_point)
    if budget_tokens is not None and budget_tokens > limits.max_request_tokens:
        raise Refused(f"'budget_tokens' is {budget_tokens:,}, over this server's limit of "
                      f"{limits.max_request_tokens:,} tokens per call", "budget_tokens")
    if budget_tokens is not None and budget_tokens < 1:
        raise Refused("'budget_tokens' must be at least 1", "budget_tokens")
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise Refused(f"'seed' must be between 0 and {MAX_SEED}", "seed")
    knobs: dict[str, tuple[str, Any]] = {}
    for key, value in (options or {}).items():
        knobs[key] = (f"options.{clip(key)}", value)
    if n is not None:
        knobs["n"] = ("n", n)
    if max_tokens is not None:
        knobs["max_tokens"] = ("max_tokens", max_tokens)
    preset = effort if effort in ("low", "medium", "high") else None
    try:
        chosen = capped(name, preset, knobs, dict(rules.operator.get(name, {})), limits.caps)
    except ApiError as exc:
        # the server's words, with the flag that sets what a client may not
        raise Refused(exc.message.replace("ponder serve --config", "ponder mcp --config"),
                      exc.param) from None
    except ConfigError as exc:
        raise Refused(str(exc), "options") from None
    missing = [role for role in roles_of(chosen) if role not in rules.roles]
    if missing:
        raise Refused(f"strategy {name!r} needs a {missing[0]!r} model besides the generator, "
                      "which this server does not have", "options")
    metadata: dict[str, Any] = {}
    if code or entry or given:
        metadata["domain"] = "code"
    if entry:
        metadata["entry_point"] = entry
    if given:
        metadata["tests"] = given
    return CallPlan(Problem(question, metadata=metadata), chosen, verifier,
                    budget_tokens or limits.max_request_tokens, seed)
