"""Setting up a run, in one place: the Python API, the server and the evaluation harness all come
through here, so the same request runs the same way everywhere.

- :func:`build_strategy`: a strategy from its name, an effort preset and explicit options, with
  ONE precedence — explicit options win over the preset (``reasoning_effort`` = ``--effort``).
- :func:`choose_verifier`: the verifier named, else the problem's domain's, else the strategy's.
- :func:`check_backend`: the capabilities the strategy needs (prefill, logprobs, early stop),
  checked before anything runs, with one error naming the strategy and what is missing.
- :func:`new_context`: the run context (budget, seed, events, sandbox).
- :func:`run_strategy`: all of it, on a backend that :func:`~ponder.backends.loading.opened_backend`
  loaded, probed and will close.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from pydantic import ValidationError

from ponder import registry
from ponder.backends.base import Backend
from ponder.budget import Budget
from ponder.core.context import DEFAULT_SANDBOX, Context, EventSink, Verifier
from ponder.domains import domain_for
from ponder.errors import ConfigError
from ponder.sandbox import Sandbox
from ponder.strategies.base import Strategy
from ponder.trace import Trace
from ponder.types import Problem, Result

EFFORTS = ("low", "medium", "high")


def _describe(error: ValidationError) -> str:
    parts = []
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"]) or "config"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown option"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


def strategy_options(name: str, effort: str | None = None, /, **options: Any) -> dict[str, Any]:
    """The options strategy ``name`` runs with: its ``effort`` preset, then the explicit
    ``options`` (None values are not given), which win.

    >>> strategy_options("self-consistency", "high", n=2)
    {'n': 2}
    """
    cls = registry.strategies.get(name)
    merged: dict[str, Any] = {}
    if effort is not None:
        if effort not in EFFORTS:
            raise ConfigError(f"unknown effort {effort!r}; valid: {', '.join(EFFORTS)}")
        merged.update(cls.effort_presets.get(effort, {}))
    merged.update({k: v for k, v in options.items() if v is not None})
    return merged


def build_strategy(name: str, effort: str | None = None, /, **options: Any) -> Strategy:
    """Instantiate strategy ``name`` with :func:`strategy_options`, validated.

    >>> build_strategy("self-consistency", "high", temperature=0.5).config.n
    16
    """
    cls = registry.strategies.get(name)
    merged = strategy_options(name, effort, **options)
    if "n" in merged and "n" not in cls.Config.model_fields:
        raise ConfigError(f"strategy {name!r} takes no n")
    try:
        config = cls.Config(**merged)
    except ValidationError as exc:
        raise ConfigError(f"invalid options for {name}: {_describe(exc)}") from None
    return cls(config)


def effort_table() -> list[tuple[str, str, dict[str, dict[str, Any]]]]:
    """(name, description, presets) for every registered strategy."""
    return [(name, cls.description, cls.effort_presets) for name, cls in registry.strategies]


def choose_verifier(verifier: str | Verifier | None, strategy: Any,
                    problem: Problem | None = None) -> Verifier | None:
    """The verifier named, else the strategy's default one, which for a problem of another
    domain is that domain's (code problems: ``code-tests``)."""
    name = verifier if verifier is not None else getattr(strategy, "default_verifier", None)
    if verifier is None and name is not None and problem is not None:
        name = domain_for(problem).default_verifier or name
    if name is None or not isinstance(name, str):
        return name
    return registry.verifiers.get(name)()


def check_backend(strategy: Strategy, backend: Backend) -> None:
    """Refuse a strategy whose configuration needs a capability the (probed) backend lacks."""
    capabilities = backend.capabilities
    missing = [c for c in strategy.required_capabilities() if not getattr(capabilities, c)]
    if missing:
        what = " and ".join(c.replace("_", " ") for c in missing)
        raise ConfigError(f"strategy {strategy.name!r} needs {what}, which the {backend.name} "
                          f"backend (model {backend.model!r}) does not offer")


def check_roles(strategy: Strategy, models: Collection[str]) -> None:
    """Refuse a strategy that needs a model by role (``strong``, ...) the run was not given
    (``models``: the roles given, or the models by role)."""
    needed = getattr(strategy, "required_roles", lambda: ())()
    missing = [role for role in needed if role not in models]
    if missing:
        given = ", ".join(sorted(models)) or "only the generator"
        flags = " ".join(f"--model {role}=PATH.gguf" for role in missing)
        raise ConfigError(f"strategy {strategy.name!r} needs a {' and a '.join(missing)} model "
                          f"besides the generator (given: {given}); add {flags} (or ROLE=URL#NAME"
                          " for a served one)")


def new_context(backend: Backend, *, verifier: Verifier | None = None,
                budget: Budget | None = None, seed: int | None = None,
                events: EventSink | None = None, sandbox: Sandbox | None = None,
                stream_text: bool = False, trace: Trace | None = None,
                models: Mapping[str, Backend] | None = None, grammar: bool = True) -> Context:
    """The context of one run: a fresh trace (or ``trace``, to watch it grow), the budget
    (default: unlimited), the other models by role; ``grammar``: replies decode under the
    problem's grammar (tool calls, a JSON format) where the backend can."""
    return Context(backend=backend, budget=budget or Budget(), verifier=verifier, seed=seed,
                   events=events, sandbox=sandbox or DEFAULT_SANDBOX, stream_text=stream_text,
                   trace=trace if trace is not None else Trace(), models=dict(models or {}),
                   grammar=grammar)


async def run_strategy(strategy: Strategy, problem: Problem, backend: Backend, *,
                       verifier: str | Verifier | None = None, budget: Budget | None = None,
                       seed: int | None = None, events: EventSink | None = None,
                       sandbox: Sandbox | None = None, stream_text: bool = False,
                       trace: Trace | None = None,
                       models: Mapping[str, Backend] | None = None,
                       grammar: bool = True) -> Result:
    """Run ``strategy`` on ``problem``: the backend probed and checked, the verifier chosen,
    a new context (its trace ``trace`` when given: a live page reads it as it grows; the other
    models ``models`` by role, each probed; ``grammar``: see :func:`new_context`)."""
    await backend.probe()
    check_backend(strategy, backend)
    models = dict(models or {})
    check_roles(strategy, models)
    for other in models.values():
        await other.probe()
    ctx = new_context(backend, verifier=choose_verifier(verifier, strategy, problem),
                      budget=budget, seed=seed, events=events, sandbox=sandbox,
                      stream_text=stream_text, trace=trace, models=models, grammar=grammar)
    return await strategy.run(problem, ctx)
