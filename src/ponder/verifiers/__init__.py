"""Verifiers: score whole answers (or abstain); answer extraction and equivalence."""
