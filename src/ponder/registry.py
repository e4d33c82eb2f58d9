"""Name -> implementation, for strategies, verifiers, step scorers and backends.

Built-ins and plugins register the same way: through :meth:`Registry.register`. Plugins are
found through the entry-point groups ``ponder.strategies``, ``ponder.verifiers``,
``ponder.step_scorers``, ``ponder.backends`` and ``ponder.templates``; an entry point names
either the object to register (registered under the entry point's name) or a module whose import
registers its objects itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from importlib import import_module
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any, Generic, TypeVar

from ponder.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, group: str, builtins: str) -> None:
        self.kind = kind
        self.group = group
        self._builtins = builtins
        self._items: dict[str, T] = {}
        self._loaded = False  # loading has begun (a re-entrant call while loading returns)
        self._complete = False  # loading has ended
        self._lock = threading.RLock()

    def register(self, name: str, obj: T) -> T:
        if name in self._items and self._items[name] is not obj:
            raise ConfigError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj
        return obj

    def _load(self) -> None:
        """Import the built-ins and the plugins, once. Another thread asking meanwhile waits
        for the whole load (a server plans requests on threads: one saw an empty registry);
        the loading thread's own nested calls return at once."""
        if self._complete:
            return
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            try:
                import_module(self._builtins)
                for ep in entry_points(group=self.group):
                    obj = ep.load()
                    if not isinstance(obj, ModuleType):
                        self.register(ep.name, obj)
            finally:
                self._complete = True

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._items[name]
        except KeyError:
            valid = ", ".join(sorted(self._items))
            raise ConfigError(f"unknown {self.kind} {name!r}; valid: {valid}") from None

    def names(self) -> list[str]:
        self._load()
        return list(self._items)

    def __iter__(self) -> Iterator[tuple[str, T]]:
        self._load()
        return iter(list(self._items.items()))

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items


strategies: Registry[Any] = Registry("strategy", "ponder.strategies", "ponder.builtins")
verifiers: Registry[Any] = Registry("verifier", "ponder.verifiers", "ponder.builtins")
backends: Registry[Callable[..., Any]] = Registry("backend", "ponder.backends", "ponder.builtins")
step_scorers: Registry[Any] = Registry("step scorer", "ponder.step_scorers", "ponder.builtins")
templates: Registry[Any] = Registry("template", "ponder.templates", "ponder.builtins")
