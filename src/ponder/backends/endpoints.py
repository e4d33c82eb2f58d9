"""Endpoint specs: several OpenAI-compatible servers for one pool, from repeated ``--base-url``
flags or an endpoints file.

An endpoints file is YAML or JSON: a list of entries (or ``{"endpoints": [...]}``), each with
``url`` (required), ``model``, ``key`` or ``key_env`` (the name of an environment variable that
holds the key), ``weight`` (default 1) and ``max_concurrent`` (samples in flight there;
default 64)::

    - url: http://gpu1:8000/v1
      model: qwen2.5-7b
      weight: 2
      max_concurrent: 32
    - {url: http://gpu2:8000/v1, key_env: GPU2_KEY}
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ponder.errors import ConfigError, MissingDependency

FIELDS = ("url", "model", "key", "key_env", "weight", "max_concurrent")
DEFAULT_MAX_CONCURRENT = 64


@dataclass(frozen=True)
class EndpointSpec:
    """One server of a pool."""

    url: str
    model: str | None = None
    api_key: str | None = None
    weight: float = 1.0
    max_concurrent: int = DEFAULT_MAX_CONCURRENT


def _entry(raw: Any, where: str) -> EndpointSpec:
    if isinstance(raw, str):
        raw = {"url": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: an endpoint must be a mapping with a url, got {raw!r}")
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; "
                          f"known: {', '.join(FIELDS)}")
    url = raw.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: url must be an http(s) URL, got {url!r}")
    key = raw.get("key")
    if raw.get("key_env"):
        if key:
            raise ConfigError(f"{where}: give key or key_env, not both")
        key = os.environ.get(str(raw["key_env"]))
        if not key:
            raise ConfigError(f"{where}: the environment variable {raw['key_env']} is not set")
    weight, limit = raw.get("weight", 1.0), raw.get("max_concurrent", DEFAULT_MAX_CONCURRENT)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
        raise ConfigError(f"{where}: weight must be a positive number, got {weight!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"{where}: max_concurrent must be a positive integer, got {limit!r}")
    model = raw.get("model")
    if model is not None and not isinstance(model, str):
        raise ConfigError(f"{where}: model must be a string, got {model!r}")
    return EndpointSpec(url, model, key, float(weight), limit)


def parse_endpoints(data: Any, where: str = "endpoints") -> list[EndpointSpec]:
    """Endpoint specs from parsed YAML/JSON: a list, or a mapping with an ``endpoints`` list."""
    if isinstance(data, dict) and "endpoints" in data:
        data = data["endpoints"]
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{where}: expected a non-empty list of endpoints")
    specs = [_entry(raw, f"{where}, entry {i + 1}") for i, raw in enumerate(data)]
    urls = [s.url.rstrip("/") for s in specs]
    if len(set(urls)) != len(urls):
        raise ConfigError(f"{where}: an endpoint is listed twice")
    return specs


def read_endpoints(path: str | Path) -> list[EndpointSpec]:
    """Endpoint specs from a YAML (``.yaml``/``.yml``) or JSON file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the endpoints file {path}: {exc.strerror}") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:  # pragma: no cover - pyyaml ships with most installs
            raise MissingDependency("pyyaml", "pool") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    return parse_endpoints(data, str(path))


def endpoint_specs(base_url: str | Sequence[str] | None = None,
                   endpoints: str | Path | Sequence[EndpointSpec] | None = None,
                   *, api_key: str | None = None) -> list[EndpointSpec]:
    """Every endpoint named by ``base_url`` (one URL or several) and an endpoints file (or
    specs); ``api_key`` is the key of the URLs given directly."""
    urls = [base_url] if isinstance(base_url, str) else list(base_url or [])
    specs = [EndpointSpec(u, api_key=api_key) for u in urls]
    if isinstance(endpoints, str | Path):
        specs += read_endpoints(endpoints)
    elif endpoints:
        specs += list(endpoints)
    if len({s.url.rstrip("/") for s in specs}) != len(specs):
        raise ConfigError("an endpoint is named twice (--base-url and the endpoints file)")
    return specs
