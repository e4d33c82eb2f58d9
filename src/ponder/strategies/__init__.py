"""Strategies: ways to spend inference-time compute. One module each."""


# -- public face (generated from what other packages import) --
# Other packages import these names (the architecture test checks that they import
# nothing else from this package); those not above are loaded on first use.

_LAZY = {
    "AdaptiveConsistency": "ponder.strategies.adaptive_consistency",
    "BUILTIN_TEMPLATES": "ponder.strategies.prompts",
    "BeamSearch": "ponder.strategies.beam_search",
    "BestOfN": "ponder.strategies.best_of_n",
    "BudgetForcing": "ponder.strategies.budget_forcing",
    "Cascade": "ponder.strategies.cascade",
    "ChainOfThought": "ponder.strategies.chain_of_thought",
    "DVTS": "ponder.strategies.dvts",
    "Debate": "ponder.strategies.debate",
    "DeepConf": "ponder.strategies.deepconf",
    "MCTS": "ponder.strategies.mcts",
    "MixtureOfAgents": "ponder.strategies.mixture_of_agents",
    "ParticleFiltering": "ponder.strategies.particle_filtering",
    "ProgramOfThought": "ponder.strategies.program_of_thought",
    "Router": "ponder.strategies.router",
    "SelfConsistency": "ponder.strategies.self_consistency",
    "SelfDebug": "ponder.strategies.self_debug",
    "SelfRefine": "ponder.strategies.self_refine",
    "Strategy": "ponder.strategies.base",
    "StrategyConfig": "ponder.strategies.base",
    "VerifyByStrong": "ponder.strategies.verify_by_strong",
    "check_disjoint": "ponder.strategies.prompts",
    "group_shares": "ponder.strategies.cascade",
    "pointwise_winner": "ponder.strategies.verify_by_strong",
    "problem_messages": "ponder.strategies.base",
    "register_template": "ponder.strategies.prompts",
    "sample_candidates": "ponder.strategies.samplers",
    "split": "ponder.strategies.samplers",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AdaptiveConsistency",
    "BUILTIN_TEMPLATES",
    "BeamSearch",
    "BestOfN",
    "BudgetForcing",
    "Cascade",
    "ChainOfThought",
    "DVTS",
    "Debate",
    "DeepConf",
    "MCTS",
    "MixtureOfAgents",
    "ParticleFiltering",
    "ProgramOfThought",
    "Router",
    "SelfConsistency",
    "SelfDebug",
    "SelfRefine",
    "Strategy",
    "StrategyConfig",
    "VerifyByStrong",
    "check_disjoint",
    "group_shares",
    "pointwise_winner",
    "problem_messages",
    "register_template",
    "sample_candidates",
    "split",
]
