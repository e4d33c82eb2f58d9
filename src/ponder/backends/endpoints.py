"""Endpoint specs: several OpenAI-compatible servers for one pool, from repeated ``--base-url``
flags or an endpoints file.

An endpoints file is YAML or JSON: a list of entries (or ``{"endpoints": [...]}``), each with
``url`` (required), ``model``, ``key`` or ``key_env`` (the name of an environment variable that
holds the key), ``weight`` (default 1), ``max_concurrent`` (samples in flight there;
default 64), for costs the model's ``parameters`` and ``price`` (dollars per million
input/output tokens, ``0.15/0.60`` or ``{input: 0.15, output: 0.60}``), and ``role`` for the
servers of a run's other models (``strong``: the entries of that role are the strong model's
pool; the entries without one are the generator's)::

    - url: http://gpu1:8000/v1
      model: qwen2.5-7b
      weight: 2
      max_concurrent: 32
    - {url: http://gpu2:8000/v1, key_env: GPU2_KEY}

A URL may carry secrets (``http://user:pass@host/v1?token=...``): it is used as written for the
requests, and shown everywhere else (metrics, logs, reports, errors) through :func:`redact_url`
or :func:`redact_urls`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ponder.backends.base import parameter_count, parse_prices
from ponder.errors import ConfigError, MissingDependency
from ponder.types import Prices

FIELDS = ("url", "model", "key", "key_env", "weight", "max_concurrent", "parameters", "price",
          "role")
ROLE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
DEFAULT_MAX_CONCURRENT = 64
USERINFO_MARK, QUERY_MARK, FRAGMENT_MARK = "***@", "?…", "#…"
# a URL inside free text (an error message, a log line): up to whitespace or a quote
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")


def _split_authority(rest: str) -> tuple[str, str]:
    """``user@host:port`` and what follows it (the path, query and fragment) in a URL without
    its ``scheme://``."""
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    return rest[:cut], rest[cut:]


def _port_is_valid(authority: str) -> bool:
    """Whether ``host[:port]`` has a numeric port or none (``[v6]:port`` included)."""
    _, sep, port = authority.rpartition("]")[2].partition(":")
    return not sep or port.isdigit() or port == ""


def redact_url(url: str) -> str:
    """``url`` fit to be shown: scheme, host, port and path kept (an endpoint is still told
    apart by them), its userinfo replaced by ``***@`` and its query and fragment by ``?…`` and
    ``#…``, so a reader knows something was there. A URL without those comes back unchanged (a
    stored run's identity stays the same). Where a user or password holds ``/``, ``?`` or ``#``
    unescaped, the authority is malformed (its "port" is not a number): then everything up to
    the last ``@`` counts as the userinfo, so the odd case shows less, never a secret."""
    scheme, sep, rest = url.partition("://")
    if not sep:  # no scheme ("user:pass@host/v1" mistyped): the rest as if it had one
        scheme, rest = "", url
    authority, tail = _split_authority(rest)
    userinfo = "@" in authority
    if not userinfo and "@" in rest and not _port_is_valid(authority):
        authority, tail = _split_authority(rest.rpartition("@")[2])
        userinfo = True
    authority = authority.rpartition("@")[2]
    tail, fragment, _ = tail.partition("#")
    path, query, _ = tail.partition("?")
    return (f"{scheme}{sep}{USERINFO_MARK if userinfo else ''}{authority}{path}"
            f"{QUERY_MARK if query else ''}{FRAGMENT_MARK if fragment else ''}")


def _redact_match(match: re.Match[str]) -> str:
    url = match.group(0)
    kept = url.rstrip(".,;:)]}!")  # sentence punctuation after a URL is not part of it
    return redact_url(kept) + url[len(kept):]


def shown_urls(urls: Sequence[str]) -> list[str]:
    """Each URL as it is shown (redacted); URLs that differ only in what is redacted (two keys
    in the query of one proxy) are told apart by a number, so that no two share a name (nor a
    /metrics series). Shown names given again come back the same."""
    names = [redact_url(u) for u in urls]
    return [f"{name} ({names[:i + 1].count(name)})" if names.count(name) > 1 else name
            for i, name in enumerate(names)]


def redact_urls(text: str) -> str:
    """``text`` with every URL in it redacted (:func:`redact_url`): for messages that quote a
    URL they were not built from (an exception's text, a client library's log line)."""
    return _URL_IN_TEXT.sub(_redact_match, text)


@dataclass(frozen=True)
class EndpointSpec:
    """One server of a pool."""

    url: str
    model: str | None = None
    api_key: str | None = None
    weight: float = 1.0
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    parameters: int | None = None  # the served model's size (FLOPs-equivalent costs)
    price: Prices | None = None  # dollars per million input and output tokens
    role: str | None = None  # the run's model this server serves (None: the generator)

    def __repr__(self) -> str:
        """Without secrets: a spec may end up in a traceback or a log line."""
        key = ", api_key='***'" if self.api_key else ""
        return (f"EndpointSpec(url={redact_url(self.url)!r}, model={self.model!r}{key}, "
                f"weight={self.weight!r}, max_concurrent={self.max_concurrent!r})")


def _entry(raw: Any, where: str) -> EndpointSpec:
    if isinstance(raw, str):
        raw = {"url": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: an endpoint must be a mapping with a url, got "
                          f"{redact_urls(repr(raw))}")
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; "
                          f"known: {', '.join(FIELDS)}")
    url = raw.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        shown = repr(redact_url(url)) if isinstance(url, str) else redact_urls(repr(url))
        raise ConfigError(f"{where}: url must be an http(s) URL, got {shown}")
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
    try:
        parameters, price = parameter_count(raw.get("parameters")), parse_prices(raw.get("price"))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    role = raw.get("role")
    if role is not None and (not isinstance(role, str) or not ROLE_NAME.fullmatch(role)
                             or role == "generator"):
        raise ConfigError(f"{where}: role must be a lower-case word other than 'generator' "
                          f"(e.g. strong), got {role!r}")
    return EndpointSpec(url, model, key, float(weight), limit, parameters, price, role)


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
        specs += [s for s in read_endpoints(endpoints) if s.role is None]
    elif endpoints:
        specs += [s for s in endpoints if s.role is None]
    if len({s.url.rstrip("/") for s in specs}) != len(specs):
        raise ConfigError("an endpoint is named twice (--base-url and the endpoints file)")
    return specs


ROLE_PREFIX = "endpoints:"


def endpoint_roles(path: str | Path | None) -> dict[str, str]:
    """The other models an endpoints file names by role, each as the spec
    :func:`~ponder.backends.loading.load_role` loads (``endpoints:FILE#ROLE``)."""
    if path is None:
        return {}
    roles = dict.fromkeys(s.role for s in read_endpoints(path) if s.role is not None)
    return {role: f"{ROLE_PREFIX}{path}#{role}" for role in roles}


def role_specs(spec: str) -> list[EndpointSpec]:
    """The servers of ``endpoints:FILE#ROLE``."""
    path, _, role = spec.removeprefix(ROLE_PREFIX).rpartition("#")
    found = [s for s in read_endpoints(path) if s.role == role]
    if not found:
        raise ConfigError(f"{path} names no server for the {role} model")
    return found
