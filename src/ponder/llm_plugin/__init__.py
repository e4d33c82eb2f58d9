"""The ``llm`` plugin: ``llm -m ponder-<strategy> "question"`` runs ponder's search in-process
(:mod:`ponder.llm_plugin.model`), on a GGUF, a server or another ``llm`` model
(:mod:`ponder.llm_plugin.backend`). ``llm`` finds it through the ``llm`` entry point in
pyproject.toml; registering the models loads nothing."""

from __future__ import annotations

import sys
from typing import Any

import llm


@llm.hookimpl
def register_models(register: Any) -> None:
    """One model per strategy that runs on one model; ``ponder`` is self-consistency."""
    try:
        from ponder.llm_plugin.model import Ponder, single_model_strategies
    except ImportError as exc:  # an older llm: say so, and leave the user's llm working
        print(f"ponder: the llm plugin needs llm 0.36 or newer ({exc}); its models are not "
              "registered", file=sys.stderr)
        return
    for name in single_model_strategies():
        register(Ponder(name), aliases=("ponder",) if name == "self-consistency" else ())


# -- public face (generated from what other packages import) --
# Other packages import these names (the architecture test checks that they import
# nothing else from this package); those not above are loaded on first use.


__all__ = [
    "register_models",
]
