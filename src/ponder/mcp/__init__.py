"""``ponder mcp``: ponder's search as tools for agents and editors, over the Model Context Protocol
(:mod:`ponder.mcp.tools`: ``think``, ``solve_code``, the traces as resources)."""


# -- public face (generated from what other packages import) --
# Other packages import these names (the architecture test checks that they import
# nothing else from this package); those not above are loaded on first use.

_LAZY = {
    "CallRules": "ponder.mcp.checks",
    "McpLimits": "ponder.mcp.checks",
    "PonderMCP": "ponder.mcp.tools",
    "usable_strategies": "ponder.mcp.checks",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CallRules",
    "McpLimits",
    "PonderMCP",
    "usable_strategies",
]
