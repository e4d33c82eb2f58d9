"""Evaluation: datasets, a resumable sample store, the harness, curves and reports."""
