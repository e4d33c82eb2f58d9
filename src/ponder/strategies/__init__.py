"""Strategies: ways to spend inference-time compute. One module each."""
