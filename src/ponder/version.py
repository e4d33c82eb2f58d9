"""The version of ponder."""

__version__ = "0.1.0"
