"""``ponder tune``: find the best way to spend a token budget on a model and a task, on a dev set
with gold answers, and prove it on the part of it the choice never saw."""


# -- public face (generated from what other packages import) --
# Other packages import these names (the architecture test checks that they import
# nothing else from this package); those not above are loaded on first use.

_LAZY = {
    "MixTuner": "ponder.tune.strong",
    "STRONG_SIZES": "ponder.tune.mixes",
    "THRESHOLDS": "ponder.tune.mixes",
    "TuneStatus": "ponder.tune.search",
    "Tuner": "ponder.tune.search",
    "check_budgets": "ponder.tune.search",
    "check_strong_sizes": "ponder.tune.strong",
    "check_thresholds": "ponder.tune.strong",
    "choice_rows": "ponder.tune.report",
    "cut_line": "ponder.tune.report",
    "flops_cell": "ponder.tune.report",
    "grid": "ponder.tune.search",
    "header": "ponder.tune.report",
    "parse_reference_budget": "ponder.tune.search",
    "require_sklearn": "ponder.tune.learn",
    "run_tune": "ponder.tune.search",
    "single_lines": "ponder.tune.report",
    "split": "ponder.tune.search",
    "verdict_lines": "ponder.tune.report",
    "write_reports": "ponder.tune.report",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MixTuner",
    "STRONG_SIZES",
    "THRESHOLDS",
    "TuneStatus",
    "Tuner",
    "check_budgets",
    "check_strong_sizes",
    "check_thresholds",
    "choice_rows",
    "cut_line",
    "flops_cell",
    "grid",
    "header",
    "parse_reference_budget",
    "require_sklearn",
    "run_tune",
    "single_lines",
    "split",
    "verdict_lines",
    "write_reports",
]
