"""The Python API: ``solve`` and ``asolve``."""

from __future__ import annotations

import asyncio
from typing import Any

from ponder import registry
from ponder.backends.base import Backend
from ponder.backends.models import resolve_model
from ponder.budget import Budget
from ponder.domains import domain_for
from ponder.effort import build_strategy
from ponder.errors import ConfigError
from ponder.strategies.base import Context, EventSink
from ponder.types import Problem, Result
from ponder.verifiers.base import Verifier

_LOADED: dict[tuple[str, str], Backend] = {}


def load_backend(model: str | None = None, base_url: str | None = None, *,
                 api_key: str | None = None, **options: Any) -> Backend:
    """Resolve a model spec to a backend. In-process models are loaded once per process and
    reused (loading weights is the slow part); HTTP backends are created fresh."""
    spec = resolve_model(model, base_url)
    if spec.backend == "openai":
        factory = registry.backends.get("openai")
        return factory(model=spec.name, base_url=spec.base_url, api_key=api_key, **options)
    key = (str(spec.path), repr(sorted(options.items())))
    if key not in _LOADED:
        factory = registry.backends.get(spec.backend)
        _LOADED[key] = factory(model_path=spec.path, label=spec.name, **options)
    return _LOADED[key]


def make_verifier(verifier: str | Verifier | None, strategy: Any,
                  problem: Problem | None = None) -> Verifier | None:
    """The verifier named, else the strategy's default one, which for a problem of another
    domain is that domain's (code problems: ``code-tests``)."""
    name = verifier if verifier is not None else getattr(strategy, "default_verifier", None)
    if verifier is None and name is not None and problem is not None:
        name = domain_for(problem).default_verifier or name
    if name is None or not isinstance(name, str):
        return name
    return registry.verifiers.get(name)()


async def asolve(
    question: str | Problem,
    strategy: str = "self-consistency",
    *,
    n: int | None = None,
    effort: str | None = None,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    backend: Backend | None = None,
    backend_options: dict[str, Any] | None = None,
    verifier: str | Verifier | None = None,
    max_tokens_total: int | None = None,
    seed: int | None = None,
    events: EventSink | None = None,
    **options: Any,
) -> Result:
    """Solve one question with a strategy; returns a :class:`~ponder.types.Result`.

    >>> from ponder.backends.fake import ScriptedBackend
    >>> fake = ScriptedBackend(["The answer is 22.", "The answer is 22.", "The answer is 21."])
    >>> asyncio.run(asolve("17 + 5?", "self-consistency", n=3, backend=fake)).answer
    '22'
    """
    problem = question if isinstance(question, Problem) else Problem(question)
    if not problem.question or not problem.question.strip():
        raise ConfigError("the question is empty")
    chosen = build_strategy(strategy, effort=effort, n=n, **options)
    budget = Budget(max_tokens=max_tokens_total)
    owned = backend is None
    if backend is None:
        backend = load_backend(model, base_url, api_key=api_key, **(backend_options or {}))
    try:
        probe = getattr(backend, "probe", None)
        if probe is not None:
            await probe()  # fail early and clearly on a wrong URL or model, learn capabilities
        ctx = Context(backend=backend, budget=budget,
                      verifier=make_verifier(verifier, chosen, problem), seed=seed, events=events)
        return await chosen.run(problem, ctx)
    finally:
        if owned and backend.name != "llamacpp":
            await backend.aclose()


def solve(question: str | Problem, strategy: str = "self-consistency", **kwargs: Any) -> Result:
    """Synchronous :func:`asolve`.

    >>> import ponder
    >>> result = ponder.solve("17 sheep and 5 more: how many?", n=4)  # doctest: +SKIP
    """
    return asyncio.run(asolve(question, strategy, **kwargs))
