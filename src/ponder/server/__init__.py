"""The OpenAI-compatible reasoning server (``ponder serve``)."""

from ponder.server.app import PonderServer, create_app

# -- public face (generated from what other packages import) --
# Other packages import these names (the architecture test checks that they import
# nothing else from this package); those not above are loaded on first use.

_LAZY = {
    "ApiError": "ponder.server.errors",
    "Caps": "ponder.server.settings",
    "Narrator": "ponder.server.narrator",
    "ServeConfig": "ponder.server.settings",
    "capped": "ponder.server.policy",
    "check_operator_caps": "ponder.server.policy",
    "check_strategies": "ponder.server.settings",
    "clip": "ponder.server.errors",
    "load_config": "ponder.server.settings",
    "make_access": "ponder.server.settings",
    "needs_roles": "ponder.server.plan",
    "own_keys_only": "ponder.server.settings",
    "prepare_scorers": "ponder.server.settings",
    "public_config": "ponder.server.policy",
    "public_trace": "ponder.server.policy",
    "roles_of": "ponder.server.plan",
    "search_summary": "ponder.server.narrator",
    "uvicorn_config": "ponder.server.protocol",
    "with_limits": "ponder.server.settings",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ApiError",
    "Caps",
    "Narrator",
    "PonderServer",
    "ServeConfig",
    "capped",
    "check_operator_caps",
    "check_strategies",
    "clip",
    "create_app",
    "load_config",
    "make_access",
    "needs_roles",
    "own_keys_only",
    "prepare_scorers",
    "public_config",
    "public_trace",
    "roles_of",
    "search_summary",
    "uvicorn_config",
    "with_limits",
]
