"""From a model spec to a ready backend, and who closes it.

In-process models are loaded once per process and shared (loading weights is the slow part):
they stay open for the next run. HTTP backends are created per use and closed after it. Several
servers (``base_url`` a list, or an endpoints file) make one endpoint pool (``pool.py``).

A backend may be probed on one event loop and used on another (``ponder serve`` probes in
``asyncio.run`` before uvicorn starts its own loop): an HTTP backend keeps its client per loop
(``loops.py``), so nothing opened by the probe is reused where it cannot work.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ponder import registry
from ponder.backends.base import Backend, parse_prices
from ponder.backends.endpoints import (
    ROLE_PREFIX,
    EndpointSpec,
    endpoint_specs,
    redact_url,
    role_specs,
)
from ponder.backends.models import file_sha256, resolve_model
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
    URLs, or an endpoints file, give an :class:`~ponder.backends.pool.EndpointPool`.
    ``price=IN/OUT`` (dollars per million tokens) prices the model's tokens, for any backend;
    an option scoped to a role (``strong.price``) is not the generator's."""
    options = scoped_options(options, None)
    price = parse_prices(options.pop("price", None))
    backend = _load(model, base_url, api_key, endpoints, options)
    if price is not None or not getattr(backend, "priced_by_endpoints", False):
        backend.prices = price  # type: ignore[attr-defined]
    return backend


def scoped_options(options: Mapping[str, Any], role: str | None) -> dict[str, Any]:
    """The backend options of the generator (``role`` None: those not scoped to a role) or of
    the model in ``role``: the unscoped ones, overridden by those written ``ROLE.KEY``.

    >>> scoped_options({"n_ctx": 4096, "price": "0.1/0.4", "strong.price": "2/8"}, "strong")
    {'n_ctx': 4096, 'price': '2/8'}
    >>> scoped_options({"n_ctx": 4096, "price": "0.1/0.4"}, "strong")
    {'n_ctx': 4096}
    """
    out = {k: v for k, v in options.items() if "." not in k}
    if role is not None:  # a price is one model's: never inherited from the generator
        out.pop("price", None)
        out.update({k.partition(".")[2]: v for k, v in options.items()
                    if k.partition(".")[0] == role})
    return out


def _load(model: str | None, base_url: BaseURL, api_key: str | None, endpoints: Endpoints,
          options: dict[str, Any]) -> Backend:
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
    # an in-process model knows its own size: ``parameters`` is for served models (one -B
    # option can then serve a run that mixes both)
    options = {k: v for k, v in options.items() if k != "parameters"}
    key = (str(spec.path), repr(sorted(options.items())))
    if key not in _LOADED:
        factory = registry.backends.get(spec.backend)
        _LOADED[key] = factory(model_path=spec.path, label=spec.name, **options)
    return _LOADED[key]


ROLE = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def split_role(text: str) -> tuple[str | None, str]:
    """``ROLE=SPEC`` as (role, spec); a spec without a role (``small.gguf``) as (None, spec).
    Roles are lower-case words (``strong``, ``judge``, ``proposer2``).

    >>> split_role("strong=models/qwen-1.5b.gguf")
    ('strong', 'models/qwen-1.5b.gguf')
    >>> split_role("hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/q4.gguf")
    (None, 'hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/q4.gguf')
    """
    role, sep, spec = text.partition("=")
    if sep and ROLE.fullmatch(role):
        if not spec.strip():
            raise ConfigError(f"--model {text}: the {role} model names nothing")
        return role, spec
    return None, text


def load_role(spec: str, *, api_key: str | None = None, **options: Any) -> Backend:
    """A model by role: a GGUF (path or ``hf:``; ``options`` are its backend options, shared
    and reused like the generator's) or a served one, ``URL#NAME`` (an OpenAI-compatible
    server; of the options only ``parameters`` applies)."""
    if spec.startswith(ROLE_PREFIX):  # a role's servers in an endpoints file
        specs = role_specs(spec)
        served = {k: v for k, v in options.items() if k in ("parameters", "price")}
        return load_backend(pool_model(None, specs), None, api_key=api_key, endpoints=[
            EndpointSpec(**{**s.__dict__, "role": None}) for s in specs], **served)
    if re.match(r"https?://", spec):
        url, sep, name = spec.rpartition("#")
        if not sep or not name or not url:
            raise ConfigError(f"a served model is URL#NAME (e.g. http://localhost:8000/v1#"
                              f"qwen-1.5b), got {spec!r}")
        served = {k: v for k, v in options.items() if k in ("parameters", "price")}
        return load_backend(name, url, api_key=api_key, **served)
    return load_backend(spec, None, **options)


def role_identity(spec: str) -> str:
    """What a store records of a model named by role, so a resumed run with another model in
    that role is refused: a GGUF's sha256, or a served model's redacted ``URL#NAME``."""
    if spec.startswith(ROLE_PREFIX):  # its servers, redacted, and what they serve
        specs = role_specs(spec)
        return ",".join(sorted(redact_url(s.url) for s in specs)) + "#" + pool_model(None, specs)
    if re.match(r"https?://", spec):
        url, _, name = spec.rpartition("#")
        return f"{redact_url(url)}#{name}"
    path = resolve_model(spec, None).path
    return file_sha256(path) if path is not None else spec


def loaded_backends() -> list[Backend]:
    """The process's shared in-process models."""
    return list(_LOADED.values())


def is_shared(backend: Backend) -> bool:
    """Whether ``backend`` is one of the process's shared in-process models."""
    return any(backend is loaded for loaded in _LOADED.values())


async def release(backend: Backend) -> None:
    """Close a backend :func:`load_backend` gave for one use; a shared in-process model stays
    loaded for the next run."""
    if not is_shared(backend):
        await backend.aclose()


@asynccontextmanager
async def opened_models(models: Mapping[str, str | Backend] | None, *,
                        api_key: str | None = None, options: dict[str, Any] | None = None
                        ) -> AsyncIterator[dict[str, Backend]]:
    """The models of a run by role, loaded (a spec) or as given (a backend), probed; those
    loaded here are released on exit."""
    ready: dict[str, Backend] = {}
    owned: list[Backend] = []
    try:
        for role, model in (models or {}).items():
            if not ROLE.fullmatch(role) or role == "generator":
                raise ConfigError(f"a model role is a lower-case word other than 'generator' "
                                  f"(e.g. strong), got {role!r}")
            if isinstance(model, str):
                model = load_role(model, api_key=api_key, **scoped_options(options or {}, role))
                owned.append(model)
            await model.probe()
            ready[role] = model
        yield ready
    finally:
        for backend in owned:
            await release(backend)


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
