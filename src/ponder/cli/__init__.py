"""The ``ponder`` command line: one module per command."""


# -- public face (generated from what other packages import) --
# Other packages import these names (the architecture test checks that they import
# nothing else from this package); those not above are loaded on first use.

_LAZY = {
    "main": "ponder.cli.main",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "main",
]
