"""Backends: the one async, batched protocol that every model sits behind."""
