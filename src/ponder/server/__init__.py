"""The OpenAI-compatible reasoning server (``ponder serve``)."""

from ponder.server.app import PonderServer, create_app

__all__ = ["PonderServer", "create_app"]
