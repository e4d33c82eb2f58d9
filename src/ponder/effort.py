"""reasoning_effort -> concrete knobs, per strategy.

Each strategy declares ``effort_presets`` ({"low": {...}, "medium": {...}, "high": {...}});
this module builds a strategy from a name, an effort level and explicit overrides (which win).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ponder import registry
from ponder.errors import ConfigError

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


def build_strategy(name: str, effort: str | None = None, **overrides: Any) -> Any:
    """Instantiate strategy ``name`` with its ``effort`` preset, then ``overrides``.

    >>> build_strategy("self-consistency", effort="high", temperature=0.5).config.n
    16
    """
    cls = registry.strategies.get(name)
    options: dict[str, Any] = {}
    if effort is not None:
        if effort not in EFFORTS:
            raise ConfigError(f"unknown effort {effort!r}; valid: {', '.join(EFFORTS)}")
        options.update(cls.effort_presets.get(effort, {}))
    options.update({k: v for k, v in overrides.items() if v is not None})
    if "n" in options and "n" not in cls.Config.model_fields:
        raise ConfigError(f"strategy {name!r} takes no n")
    try:
        config = cls.Config(**options)
    except ValidationError as exc:
        raise ConfigError(f"invalid options for {name}: {_describe(exc)}") from None
    return cls(config)


def effort_table() -> list[tuple[str, str, dict[str, dict[str, Any]]]]:
    """(name, description, presets) for every registered strategy."""
    return [(name, cls.description, cls.effort_presets) for name, cls in registry.strategies]
