"""What the operator of ``ponder serve`` decides, and nobody else: the server's limits and the
operator's options per strategy (judge and scorer models, reward-model URLs, anything that names
a model, a file or a URL or loads code). Clients choose only among what is set here
(:mod:`ponder.server.policy`).

The config file (``ponder serve --config serve.json``) is one JSON object; every key is optional
and an unknown one is an error::

    {
      "strategies": {
        "beam-search": {"scorer": "prm-http", "n": 4,
                        "scorer_options": {"url": "http://prm:8000",
                                           "model": "Qwen/Qwen2.5-Math-PRM-7B"}}
      },
      "limits": {"max_body_bytes": 1048576, "header_timeout": 10, "caps": {"n": 32}},
      "access": {"origins": ["http://localhost:3000"], "hosts": ["ponder.lan"]}
    }

``strategies`` maps a strategy to options, exactly as ``ponder ask -s NAME -o KEY=VALUE`` takes
them; they are validated when the file is read and count as explicit options (they win over the
``reasoning_effort`` preset). A client may change the numeric ones (within the caps) but never a
``scorer``, ``scorer_options`` or any other option the operator set that clients may not set.
``limits`` holds :class:`Limits`; ``ponder serve`` flags override the file. ``access`` holds
:class:`Access`: the web origins and host names a server without an API key answers besides its
own (``--allow-origin`` and ``--allow-host`` add to them).

Credentials: the server's key for its upstream (``--upstream-api-key`` or ``$OPENAI_API_KEY``)
goes to ``--base-url`` only. A judge at another ``base_url`` gets the ``api_key`` its
``scorer_options`` name, or none (:func:`own_keys_only`); a reward server likewise.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from ponder import registry
from ponder.errors import ConfigError, PonderError
from ponder.runner import build_strategy
from ponder.verifiers.steps import load_step_scorer

MiB = 1024 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Caps(_Strict):
    """The largest value a request may give a strategy option (``ponder.n``, ``ponder.options``,
    ``max_tokens``). A larger value a client sends is refused (400, naming the option and the
    cap); a larger value from an effort preset, a strategy default or the operator's options is
    lowered to the cap. ``max_tokens`` also caps every other ``*_tokens`` option."""

    n: int = Field(64, ge=1, description="samples, candidates, beams (ponder.n)")
    m: int = Field(16, ge=1, description="expansions per beam")
    simulations: int = Field(64, ge=1, description="MCTS simulations")
    parallel: int = Field(16, ge=1, description="MCTS leaves per round")
    max_n: int = Field(64, ge=1, description="most samples of an adaptive strategy")
    probe_n: int = Field(16, ge=1, description="the router's probe samples")
    warmup: int = Field(64, ge=1, description="DeepConf warm-up samples")
    wave: int = Field(64, ge=1, description="samples per wave")
    rounds: int = Field(8, ge=1, description="refinement / debugging rounds")
    max_steps: int = Field(64, ge=1, description="steps per search path")
    agents: int = Field(8, ge=1, description="debate agents")
    layers: int = Field(4, ge=1, description="mixture-of-agents layers")
    n_per_proposer: int = Field(16, ge=1, description="mixture-of-agents responses per proposer")
    strong_n: int = Field(16, ge=1, description="the cascade's strong-model samples")
    max_tokens: int = Field(32768, ge=1, description="tokens per generation (every *_tokens)")

    def cap_for(self, option: str) -> int | None:
        """The cap on strategy option ``option`` (None: not capped)."""
        if option in type(self).model_fields:
            return int(getattr(self, option))
        if option.endswith("_tokens"):
            return self.max_tokens
        return None


class Limits(_Strict):
    """How much one client may ask of the server, and how long it may take to ask."""

    max_body_bytes: int = Field(MiB, ge=1024, description="request body (413 beyond)")
    max_header_bytes: int = Field(16 * 1024, ge=1024,
                                  description="request line and headers (431 beyond)")
    max_json_depth: int = Field(64, ge=4, le=10_000, description="nesting of the JSON body")
    max_number_length: int = Field(40, ge=8, le=4000,
                                   description="characters of one JSON number literal")
    header_timeout: float = Field(10.0, gt=0, description="seconds to send the request head")
    body_timeout: float = Field(30.0, gt=0, description="seconds to send the request body")
    keep_alive_timeout: float = Field(5.0, gt=0, description="idle seconds between requests")
    max_connections: int = Field(256, ge=1, description="open connections (503 beyond)")
    max_connections_per_client: int = Field(
        64, ge=1, description="open connections from one client address (an IPv6 /64 counts "
        "as one; 503 beyond)")
    caps: Caps = Field(default_factory=Caps)


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class Access(_Strict):
    """Which web origins and ``Host`` names a server without an API key answers, beyond its
    own. Such a server has no other way to tell its user's programs from a page on any site the
    user visits: a page can make the browser send requests to it (``Origin`` says whose page
    it is) or, by pointing a name of its own at 127.0.0.1 (DNS rebinding), read its answers
    (``Host`` then carries that name). A server with a key needs neither: a page cannot send the
    key without a preflight, which the server never answers.

    ``origins``: ``scheme://host[:port]`` whose pages may call the server, or ``*`` for any.
    ``hosts``: ``name`` (any port) or ``name:port`` the server also answers to on loopback, or
    ``*`` for any."""

    origins: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()

    @field_validator("origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            scheme, sep, rest = origin.partition("://")
            if origin != "*" and (not sep or scheme.lower() not in ("http", "https") or not rest
                                  or "/" in rest):
                raise ValueError(f"{origin!r} is not an origin: scheme://host[:port] or *")
        return value

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for host in value:
            if not host or any(c in host for c in "/ @"):
                raise ValueError(f"{host!r} is not a host: name, name:port or *")
        return value

    def allows_origin(self, origin: str, host: str | None) -> bool:
        """Whether a page of ``origin`` may call the server: its own origin (``http://`` and
        the request's ``Host``), or one the operator allowed."""
        origin = origin.strip().lower().rstrip("/")
        if "*" in self.origins or origin in {o.lower().rstrip("/") for o in self.origins}:
            return True
        return host is not None and origin == f"http://{host.strip().lower()}"

    def allows_host(self, host: str, local: str, port: int) -> bool:
        """Whether ``Host: host`` names this server on loopback: localhost, 127.0.0.1, [::1]
        or ``local`` (the address the connection came in on) with the server's ``port``, or a
        name the operator allowed."""
        if "*" in self.hosts:
            return True
        name, named_port = split_host(host)
        if name is None:
            return False
        if named_port == port and name in LOOPBACK_NAMES | {local.lower()}:
            return True
        for allowed in self.hosts:
            allowed_name, allowed_port = split_host(allowed, default=None)
            if allowed_name == name and allowed_port in (None, named_port):
                return True
        return False


def make_access(origins: Sequence[str] = (), hosts: Sequence[str] = ()) -> Access:
    """:class:`Access` for these origins and hosts; a ConfigError names a bad one."""
    try:
        return Access(origins=tuple(origins), hosts=tuple(hosts))
    except ValidationError as exc:
        raise ConfigError(f"access: {_describe(exc)}") from None


def split_host(host: str, default: int | None = 80) -> tuple[str | None, int | None]:
    """A ``Host`` value as (name, port): lower case, an IPv6 address without its brackets, the
    port ``default`` when none is given; (None, None) for what is not a host."""
    host = host.strip().lower()
    if host.startswith("["):
        name, sep, rest = host[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None, None
        port_text = rest[1:] if rest else None
    else:
        name, sep, port_text = host.partition(":")
        port_text = port_text if sep else None
        if ":" in (port_text or ""):
            return None, None
    if not name:
        return None, None
    if port_text is None:
        return name, default
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None, None
    return name, int(port_text)


class ServeConfig(_Strict):
    """The operator's config file."""

    strategies: dict[str, dict[str, Any]] = Field(default_factory=dict)
    limits: Limits = Field(default_factory=Limits)
    access: Access = Field(default_factory=Access)
    # the other models by role, for the strategies that use several: {"strong": "big.gguf"}
    # or {"strong": "http://host:8000/v1#qwen-1.5b"} (--model ROLE=... overrides one)
    models: dict[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")],
                 Annotated[str, StringConstraints(min_length=1)]] = Field(default_factory=dict)


def _describe(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"]) or "config"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        parts.append(f"{where}: {msg.removeprefix('Value error, ')}")
    return "; ".join(parts)


def check_strategies(strategies: dict[str, dict[str, Any]]) -> None:
    """Refuse operator options that name no strategy, or that the strategy refuses."""
    for name, options in strategies.items():
        if name not in registry.strategies:
            raise ConfigError(f"strategies: unknown strategy {name!r}; valid: "
                              f"{', '.join(registry.strategies.names())}")
        try:
            strategy = build_strategy(name, None, **options)
        except ConfigError as exc:
            raise ConfigError(f"strategies.{name}: {exc}") from None
        scorer = getattr(strategy.config, "scorer", None)
        if scorer is not None and scorer not in registry.step_scorers:
            raise ConfigError(f"strategies.{name}.scorer: unknown step scorer {scorer!r}; "
                              f"valid: {', '.join(registry.step_scorers.names())}")


def load_config(path: str | Path) -> ServeConfig:
    """The config file at ``path``, validated; one ConfigError line for anything wrong."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"the config file {path} is not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"the config file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"the config file {path} must hold a JSON object")
    try:
        config = ServeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"the config file {path}: {_describe(exc)}") from None
    try:
        check_strategies(config.strategies)
    except ConfigError as exc:
        raise ConfigError(f"the config file {path}: {exc}") from None
    return config


def with_limits(limits: Limits, **changes: Any) -> Limits:
    """``limits`` with ``changes`` (None values are not given; ``caps`` may be a partial dict),
    validated; a ConfigError names the bad one."""
    data = limits.model_dump()
    for key, value in changes.items():
        if value is None:
            continue
        if key == "caps":
            unknown = sorted(set(value) - set(Caps.model_fields))
            if unknown:  # the --cap flag's names, checked here for every command that has it
                raise ConfigError(f"--cap: unknown option {', '.join(unknown)}; valid: "
                                  f"{', '.join(Caps.model_fields)}")
            data["caps"].update(value)
        else:
            data[key] = value
    try:
        return Limits.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"limits: {_describe(exc)}") from None


NO_KEY = "not-needed"  # what the openai backend sends when it has no key


def own_keys_only(strategies: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The operator's options with every judge given only the key its own options name: a
    ``scorer_options`` with a ``base_url`` and no ``api_key`` gets a placeholder key, so the
    openai backend does not fall back to ``$OPENAI_API_KEY`` (the server's key for its own
    upstream) and send it to the judge's server."""
    sealed = {}
    for name, options in strategies.items():
        scorer_options = options.get("scorer_options")
        if isinstance(scorer_options, dict) and scorer_options.get("base_url") \
                and not scorer_options.get("api_key"):
            options = {**options, "scorer_options": {**scorer_options, "api_key": NO_KEY}}
        sealed[name] = dict(options)
    return sealed


def prepare_scorers(strategies: dict[str, dict[str, Any]]) -> None:
    """Build every step scorer the operator configured, now (a reward model loads here, once
    per process; requests then reuse it and never load one on the event loop)."""
    for name, options in strategies.items():
        scorer = options.get("scorer")
        if scorer is None and not options.get("scorer_options"):
            continue
        config = build_strategy(name, None, **options).config
        try:
            load_step_scorer(config.scorer, config.scorer_options)  # type: ignore[attr-defined]
        except PonderError as exc:
            raise ConfigError(f"strategies.{name}: cannot build the step scorer "
                              f"{config.scorer!r}: {exc}") from None  # type: ignore[attr-defined]
