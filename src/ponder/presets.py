"""Presets: a strategy, its options and an effort, in one file (``ponder tune`` writes them).

A preset file is JSON (or YAML, with PyYAML installed)::

    {"strategy": "self-consistency", "effort": null,
     "options": {"n": 6, "temperature": 0.5, "selector": "selector.json"}}

Options that name files (``selector``, ``examples``, a template file) are read relative to the
preset's folder. The same file runs everywhere: ``ponder ask --preset FILE``, ``ponder eval
--strategies preset:FILE`` and ``ponder serve --preset NAME=FILE`` (the model ``ponder-NAME``:
registered as a strategy whose defaults are the preset's options).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import create_model
from pydantic.fields import FieldInfo

from ponder import registry
from ponder.domains.selector import RULES
from ponder.errors import ConfigError
from ponder.runner import EFFORTS, build_strategy

KEYS = {"strategy", "options", "effort", "tuned"}
_NAME = re.compile(r"^[A-Za-z0-9][\w.-]{0,63}$")


@dataclass(frozen=True)
class Preset:
    strategy: str
    options: dict[str, Any] = field(default_factory=dict)
    effort: str | None = None
    path: str = ""

    def to_json(self, base: Path | None = None, **extra: Any) -> dict[str, Any]:
        """The preset as a file in folder ``base`` writes it (file options relative to it)."""
        options = dict(self.options)
        for key, value in options.items():
            if base is not None and _is_file(key, value) and Path(value).is_absolute():
                try:
                    options[key] = str(Path(value).relative_to(base.resolve()))
                except ValueError:
                    pass
        return {"strategy": self.strategy, "effort": self.effort, "options": options, **extra}

    def save(self, path: str | Path, **extra: Any) -> None:
        path = Path(path)
        path.write_text(json.dumps(self.to_json(path.parent, **extra), indent=2) + "\n")


def _is_file(key: str, value: Any) -> bool:
    if not isinstance(value, str):
        return False
    if key == "examples":
        return True
    if key == "template":  # a template is a name, unless it is a file
        return value.endswith(".json") or "/" in value
    return key == "selector" and value not in RULES


def _read(path: Path) -> Any:
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"preset {path}: reading YAML needs PyYAML (pip install pyyaml); "
                              "or write it as JSON") from None
        return yaml.safe_load(text)
    return json.loads(text)


def load_preset(path: str | Path) -> Preset:
    """Read and check a preset file: the strategy exists and takes these options."""
    path = Path(path)
    try:
        data = _read(path)
    except OSError as exc:
        raise ConfigError(f"cannot read preset {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"preset {path} is not valid: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("strategy"), str):
        raise ConfigError(f"preset {path}: expected an object with a 'strategy'")
    unknown = sorted(set(data) - KEYS)
    if unknown:
        raise ConfigError(f"preset {path}: unknown key {', '.join(unknown)}; valid: "
                          f"{', '.join(sorted(KEYS))}")
    options = data.get("options") or {}
    effort = data.get("effort")
    if not isinstance(options, dict) or (effort is not None and effort not in EFFORTS):
        raise ConfigError(f"preset {path}: 'options' must be an object and 'effort' one of "
                          f"{', '.join(EFFORTS)}")
    options = {k: str((path.parent / v).resolve()) if _is_file(k, v) else v
               for k, v in options.items()}
    preset = Preset(data["strategy"], options, effort, str(path))
    build_strategy(preset.strategy, preset.effort, **preset.options)  # refuses bad options
    return preset


def register_preset(name: str, preset: Preset) -> str:
    """Register ``preset`` as the strategy ``name`` (its options are the defaults, which a
    request's own options still override); returns the name."""
    if not _NAME.match(name):
        raise ConfigError(f"preset name {name!r}: use letters, digits, '.', '_' or '-'")
    if name in registry.strategies:
        raise ConfigError(f"preset name {name!r} is already a strategy; choose another")
    base = registry.strategies.get(preset.strategy)
    defaults = build_strategy(preset.strategy, preset.effort, **preset.options).config
    fields = {k: (f.annotation, FieldInfo.merge_field_infos(f, default=getattr(defaults, k)))
              for k, f in base.Config.model_fields.items()}  # the same checks, new defaults
    config = create_model(f"{base.Config.__name__}_{name}", __base__=base.Config,
                          **fields)  # type: ignore[call-overload]
    cls = type(f"Preset_{name}", (base,), {
        "name": name, "Config": config, "effort_presets": {},
        "description": f"preset {Path(preset.path).name}: {preset.strategy} "
                       + ", ".join(f"{k}={v}" for k, v in preset.options.items()
                                   if not _is_file(k, v))})
    registry.strategies.register(name, cls)
    return name
