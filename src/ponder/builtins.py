"""Registers ponder's built-in strategies, verifiers and backends, exactly as a plugin would."""

from __future__ import annotations

import inspect

from ponder import registry
from ponder.backends.fake import ScriptedBackend
from ponder.errors import ConfigError
from ponder.strategies.adaptive_consistency import AdaptiveConsistency
from ponder.strategies.beam_search import BeamSearch
from ponder.strategies.best_of_n import BestOfN
from ponder.strategies.budget_forcing import BudgetForcing
from ponder.strategies.cascade import Cascade
from ponder.strategies.chain_of_thought import ChainOfThought
from ponder.strategies.debate import Debate
from ponder.strategies.deepconf import DeepConf
from ponder.strategies.dvts import DVTS
from ponder.strategies.mcts import MCTS
from ponder.strategies.mixture_of_agents import MixtureOfAgents
from ponder.strategies.particle_filtering import ParticleFiltering
from ponder.strategies.program_of_thought import ProgramOfThought
from ponder.strategies.prompts import BUILTIN_TEMPLATES, register_template
from ponder.strategies.router import Router
from ponder.strategies.self_consistency import SelfConsistency
from ponder.strategies.self_debug import SelfDebug
from ponder.strategies.self_refine import SelfRefine
from ponder.strategies.verify_by_strong import VerifyByStrong
from ponder.verifiers.code_tests import CodeTestsVerifier
from ponder.verifiers.judge import JudgeVerifier
from ponder.verifiers.logprob import MeanLogprobVerifier
from ponder.verifiers.steps import ConfidenceScorer, SelfJudgeScorer


def _checked(cls, options, extra=()):
    """Refuse unknown options with the list of valid ones, before anything is loaded."""
    params = inspect.signature(cls).parameters
    unknown = sorted(set(options) - set(params))
    if unknown:
        valid = ", ".join([*(n for n, p in params.items() if p.kind is p.KEYWORD_ONLY), *extra])
        raise ConfigError(f"unknown {cls.name} backend option {', '.join(unknown)}; valid: {valid}")
    return cls(**options)


def _llamacpp(**options):  # imported lazily: loading llama.cpp is not free
    """An in-process GGUF model on the fastest llama.cpp engine installed (native, else
    prebuilt), or the one ``engine=`` (or $PONDER_ENGINE) forces."""
    from ponder.backends.engines import choose_engine

    if choose_engine(options.pop("engine", None)) == "native":
        from ponder.backends.llamacpp import LlamaCppBackend

        return _checked(LlamaCppBackend, options, ("engine",))
    from ponder.backends.xllamacpp import XLlamaCppBackend

    return _checked(XLlamaCppBackend, options, ("engine",))


def _openai(**options):
    from ponder.backends.openai_http import OpenAIBackend

    return _checked(OpenAIBackend, options)


for _strategy in (ChainOfThought, SelfConsistency, BestOfN, SelfRefine, BudgetForcing,
                  SelfDebug, ProgramOfThought, AdaptiveConsistency, DeepConf, Router,
                  BeamSearch, DVTS, MCTS, ParticleFiltering, Cascade, VerifyByStrong,
                  MixtureOfAgents, Debate):
    registry.strategies.register(_strategy.name, _strategy)
for _verifier in (JudgeVerifier, MeanLogprobVerifier, CodeTestsVerifier):
    registry.verifiers.register(_verifier.name, _verifier)
registry.step_scorers.register(SelfJudgeScorer.name, SelfJudgeScorer)
registry.step_scorers.register(ConfidenceScorer.name, ConfidenceScorer)


def _prm(**options):  # imported lazily: torch and transformers are an optional extra
    from ponder.verifiers.prm import PrmScorer

    return PrmScorer(**options)


def _prm_http(**options):
    from ponder.verifiers.prm_http import PrmHttpScorer

    return PrmHttpScorer(**options)


registry.step_scorers.register("prm", _prm)
registry.step_scorers.register("prm-http", _prm_http)
registry.backends.register("llamacpp", _llamacpp)
registry.backends.register("openai", _openai)
registry.backends.register("fake", ScriptedBackend)
for _template in BUILTIN_TEMPLATES:
    register_template(_template)
