"""Evaluation: datasets, a resumable sample store, the harness, curves and reports."""


# -- public face (generated from what other packages import) --
# Other packages import these names (the architecture test checks that they import
# nothing else from this package); those not above are loaded on first use.

_LAZY = {
    "FORMATS": "ponder.eval.datasets",
    "Harness": "ponder.eval.harness",
    "PAIRED_HEADER": "ponder.eval.report",
    "Plan": "ponder.eval.plans",
    "RunFolder": "ponder.eval.session",
    "STORE": "ponder.eval.session",
    "SampleRow": "ponder.eval.store",
    "ScoreRow": "ponder.eval.store",
    "Scoring": "ponder.eval.scoring",
    "Status": "ponder.eval.harness",
    "Store": "ponder.eval.store",
    "StrategyInfo": "ponder.eval.distill",
    "clusters_of": "ponder.eval.pools",
    "collect": "ponder.eval.distill",
    "compare": "ponder.eval.paired",
    "counts": "ponder.eval.pools",
    "coverage": "ponder.eval.distill",
    "cut_of": "ponder.eval.pools",
    "distill": "ponder.eval.distill",
    "evaluate": "ponder.eval.evaluate",
    "graded": "ponder.eval.plans",
    "header": "ponder.eval.report",
    "identify": "ponder.eval.session",
    "load_dataset": "ponder.eval.datasets",
    "paired_rows": "ponder.eval.report",
    "parse_budgets": "ponder.eval.plans",
    "pass_at_k": "ponder.eval.curves",
    "pick": "ponder.eval.pools",
    "plan_samples": "ponder.eval.plans",
    "problem_page": "ponder.eval.traces",
    "read_report": "ponder.eval.distill",
    "seed_of": "ponder.eval.plans",
    "signals_of": "ponder.eval.pools",
    "split_specs": "ponder.eval.pools",
    "table_rows": "ponder.eval.report",
    "write": "ponder.eval.distill",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FORMATS",
    "Harness",
    "PAIRED_HEADER",
    "Plan",
    "RunFolder",
    "STORE",
    "SampleRow",
    "ScoreRow",
    "Scoring",
    "Status",
    "Store",
    "StrategyInfo",
    "clusters_of",
    "collect",
    "compare",
    "counts",
    "coverage",
    "cut_of",
    "distill",
    "evaluate",
    "graded",
    "header",
    "identify",
    "load_dataset",
    "paired_rows",
    "parse_budgets",
    "pass_at_k",
    "pick",
    "plan_samples",
    "problem_page",
    "read_report",
    "seed_of",
    "signals_of",
    "split_specs",
    "table_rows",
    "write",
]
