"""From a model spec to a ready backend, and who closes it.

In-process models are loaded once per process and shared (loading weights is the slow part):
they stay open for the next run. HTTP backends are created per use and closed after it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ponder import registry
from ponder.backends.base import Backend
from ponder.backends.models import resolve_model

_LOADED: dict[tuple[str, str], Backend] = {}


def load_backend(model: str | None = None, base_url: str | None = None, *,
                 api_key: str | None = None, **options: Any) -> Backend:
    """Resolve a model spec to a backend (see :func:`~ponder.backends.models.resolve_model`):
    an in-process model is loaded once per process and reused; an HTTP backend is new."""
    spec = resolve_model(model, base_url)
    if spec.backend == "openai":
        factory = registry.backends.get("openai")
        return factory(model=spec.name, base_url=spec.base_url, api_key=api_key, **options)
    key = (str(spec.path), repr(sorted(options.items())))
    if key not in _LOADED:
        factory = registry.backends.get(spec.backend)
        _LOADED[key] = factory(model_path=spec.path, label=spec.name, **options)
    return _LOADED[key]


def is_shared(backend: Backend) -> bool:
    """Whether ``backend`` is one of the process's shared in-process models."""
    return any(backend is loaded for loaded in _LOADED.values())


async def release(backend: Backend) -> None:
    """Close a backend :func:`load_backend` gave for one use; a shared in-process model stays
    loaded for the next run."""
    if not is_shared(backend):
        await backend.aclose()


@asynccontextmanager
async def opened_backend(backend: Backend | None = None, *, model: str | None = None,
                         base_url: str | None = None, api_key: str | None = None,
                         options: dict[str, Any] | None = None) -> AsyncIterator[Backend]:
    """``backend``, or the one the model spec names, probed (a wrong URL or model fails here,
    clearly). On exit a backend opened here is closed, unless it is a shared in-process model;
    a backend passed in belongs to the caller and stays open."""
    owned = backend is None
    if backend is None:
        backend = load_backend(model, base_url, api_key=api_key, **(options or {}))
    try:
        await backend.probe()
        yield backend
    finally:
        if owned:
            await release(backend)
