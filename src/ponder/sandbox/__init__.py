"""Sandboxed execution of generated code: one executor for code verifiers and program-of-thought.
"""

from ponder.sandbox.executor import Execution, Limits, Sandbox, TestCase, TestOutcome

__all__ = ["Execution", "Limits", "Sandbox", "TestCase", "TestOutcome"]
