"""Verifiers: score whole answers (or abstain); answer extraction and equivalence."""


# -- public face (generated from what other packages import) --
# Other packages import these names (the architecture test checks that they import
# nothing else from this package); those not above are loaded on first use.

_LAZY = {
    "AGGREGATES": "ponder.verifiers.steps",
    "Aggregate": "ponder.verifiers.steps",
    "CodeTestsVerifier": "ponder.verifiers.code_tests",
    "ConfidenceScorer": "ponder.verifiers.steps",
    "JUDGE_SYSTEM": "ponder.verifiers.judge",
    "JudgeVerifier": "ponder.verifiers.judge",
    "MeanLogprobVerifier": "ponder.verifiers.logprob",
    "PrmHttpScorer": "ponder.verifiers.prm_http",
    "PrmScorer": "ponder.verifiers.prm",
    "SelfJudgeScorer": "ponder.verifiers.steps",
    "StepScorer": "ponder.verifiers.steps",
    "aggregate_steps": "ponder.verifiers.steps",
    "load_step_scorer": "ponder.verifiers.steps",
    "solution_marker": "ponder.verifiers.judge",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AGGREGATES",
    "Aggregate",
    "CodeTestsVerifier",
    "ConfidenceScorer",
    "JUDGE_SYSTEM",
    "JudgeVerifier",
    "MeanLogprobVerifier",
    "PrmHttpScorer",
    "PrmScorer",
    "SelfJudgeScorer",
    "StepScorer",
    "aggregate_steps",
    "load_step_scorer",
    "solution_marker",
]
