"""Every error ponder raises on purpose.

The tree::

    PonderError
     ├── ConfigError            bad user input: empty question, unknown strategy, n < 1, ...
     ├── ModelError             a model cannot be resolved or loaded (missing/corrupt, offline)
     ├── BackendError           a backend failed while generating
     │    ├── BackendUnavailable     the server cannot be reached, or keeps failing (429, 5xx)
     │    │    └── BackendTimeout         it did not answer in time
     │    ├── RequestRejected        the server refused the request as invalid (400, 422)
     │    │    └── PromptTooLong          the prompt does not fit the model's context
     │    └── ModelNotServed         the server does not serve the requested model
     ├── BudgetExhausted        the token/call/time budget is spent (strategies catch it, finish)
     ├── SandboxUnavailable     code must run but no jail can be made here (the message says why)
     └── MissingDependency      an optional extra is missing; the message names the pip command

The CLI prints ``str(error)`` as one line and exits non-zero; the Python API raises them.
"""

from __future__ import annotations

from typing import Literal


class PonderError(Exception):
    """Base class of every error ponder raises on purpose."""


class ConfigError(PonderError, ValueError):
    """The user asked for something invalid."""


class ModelError(PonderError):
    """A model could not be resolved or loaded."""


class BackendError(PonderError):
    """A backend failed while generating."""


class BackendUnavailable(BackendError):
    """The backend's server cannot be reached or keeps failing."""


class BackendTimeout(BackendUnavailable):
    """The backend's server did not answer in time."""


class RequestRejected(BackendError):
    """The server refused the request as invalid (e.g. a parameter it does not support)."""


class PromptTooLong(RequestRejected):
    """The prompt does not fit the context a sequence has (the caller's input is too long)."""


class ModelNotServed(BackendError):
    """The server does not serve the requested model."""


class BudgetExhausted(PonderError):
    """The compute budget is spent. ``limit`` says which: "tokens", "calls" or "time"."""

    def __init__(self, message: str, limit: str = "tokens") -> None:
        super().__init__(message)
        self.limit = limit

    @property
    def stop_reason(self) -> Literal["budget", "time"]:
        """What a run it stopped reports: "time" for the clock, "budget" for the rest."""
        return "time" if self.limit == "time" else "budget"


class SandboxUnavailable(PonderError):
    """Model-written code would run, but this host cannot build the jail for it."""


class MissingDependency(PonderError, ImportError):
    """An optional dependency is missing."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"{package} is not installed; run: pip install 'ponder[{extra}]'")
        self.package = package
        self.extra = extra
