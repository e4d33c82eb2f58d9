"""The core layer every strategy, verifier and application stands on: the run context and the
Verifier protocol (``context``). Domains (``ponder.domains``) belong to the same layer."""

from ponder.core.context import DEFAULT_SANDBOX, Context, EventSink, Traced, Verifier

__all__ = ["DEFAULT_SANDBOX", "Context", "EventSink", "Traced", "Verifier"]
