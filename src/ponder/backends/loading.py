"""From a model spec to a ready backend, and who closes it.

In-process models are loaded once per process and shared (loading weights is the slow part):
they stay open for the next run. HTTP backends are created per use and closed after it. Several
servers (``base_url`` a list, or an endpoints file) make one endpoint pool (``pool.py``).

A backend may be probed on one event loop and used on another (``ponder serve`` probes in
``asyncio.run`` before uvicorn starts its own loop): an HTTP backend keeps its client per loop
(``loops.py``), so nothing opened by the probe is reused where it cannot work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ponder import registry
from ponder.backends.base import Backend
from ponder.backends.endpoints import EndpointSpec, endpoint_specs
from ponder.backends.models import resolve_model
from ponder.errors import ConfigError

BaseURL = str | Sequence[str] | None
Endpoints = str | Path | Sequence[EndpointSpec] | None

_LOADED: dict[tuple[str, str], Backend] = {}


def pool_model(model: str | None, specs: Sequence[EndpointSpec]) -> str:
    """The model a pool serves: ``model``, else the one its endpoints file names."""
    model = model or next((s.model for s in specs if s.model), None)
    if not model:
        raise ConfigError("several endpoints need --model NAME (or a model in the endpoints file)")
    return model


def load_backend(model: str | None = None, base_url: BaseURL = None, *,
                 api_key: str | None = None, endpoints: Endpoints = None,
                 **options: Any) -> Backend:
    """Resolve a model spec to a backend (see :func:`~ponder.backends.models.resolve_model`):
    an in-process model is loaded once per process and reused; an HTTP backend is new. Several
    URLs, or an endpoints file, give an :class:`~ponder.backends.pool.EndpointPool`."""
    if endpoints or (base_url is not None and not isinstance(base_url, str)):
        specs = endpoint_specs(base_url, endpoints, api_key=api_key)
        if len(specs) == 1 and not endpoints:
            base_url = specs[0].url
        elif specs:
            from ponder.backends.pool import EndpointPool

            return EndpointPool(pool_model(model, specs), specs, api_key=api_key, **options)
        else:
            base_url = None
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
                         base_url: BaseURL = None, api_key: str | None = None,
                         options: dict[str, Any] | None = None,
                         endpoints: Endpoints = None) -> AsyncIterator[Backend]:
    """``backend``, or the one the model spec names, probed (a wrong URL or model fails here,
    clearly). On exit a backend opened here is closed, unless it is a shared in-process model;
    a backend passed in belongs to the caller and stays open."""
    owned = backend is None
    if backend is None:
        backend = load_backend(model, base_url, api_key=api_key, endpoints=endpoints,
                               **(options or {}))
    try:
        await backend.probe()
        yield backend
    finally:
        if owned:
            await release(backend)
