"""ponder: inference-time scaling for any LLM."""

from __future__ import annotations

import typing

from ponder.api import asolve, load_backend, solve
from ponder.backends.base import Backend, Capabilities
from ponder.backends.fake import ScriptedBackend
from ponder.budget import Budget
from ponder.core.context import Context, Verifier
from ponder.domains.answers import equivalent, extract_answer
from ponder.errors import (
    BackendError,
    BackendUnavailable,
    BudgetExhausted,
    ConfigError,
    MissingDependency,
    ModelError,
    ModelNotServed,
    PonderError,
)
from ponder.strategies.base import Strategy, StrategyConfig
from ponder.trace import Trace, TraceNode
from ponder.types import (
    Candidate,
    Completion,
    GenerationRequest,
    Message,
    Problem,
    Result,
    SamplingParams,
    TokenLogprob,
    Usage,
)
from ponder.version import __version__

if typing.TYPE_CHECKING:
    from ponder.eval.evaluate import evaluate

_LAZY = ("evaluate",)  # imported on first use: the harness is not loaded with ponder


def __getattr__(name: str) -> object:
    if name == "evaluate":
        from ponder.eval.evaluate import evaluate

        return evaluate
    raise AttributeError(f"module 'ponder' has no attribute {name!r}")

__all__ = [
    "Backend",
    "BackendError",
    "BackendUnavailable",
    "Budget",
    "BudgetExhausted",
    "Candidate",
    "Capabilities",
    "Completion",
    "ConfigError",
    "Context",
    "GenerationRequest",
    "Message",
    "MissingDependency",
    "ModelError",
    "ModelNotServed",
    "PonderError",
    "Problem",
    "Result",
    "SamplingParams",
    "ScriptedBackend",
    "Strategy",
    "StrategyConfig",
    "TokenLogprob",
    "Trace",
    "TraceNode",
    "Usage",
    "Verifier",
    "__version__",
    "asolve",
    "equivalent",
    "evaluate",
    "extract_answer",
    "load_backend",
    "solve",
]
