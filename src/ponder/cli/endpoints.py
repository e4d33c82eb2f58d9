"""The flags that name OpenAI-compatible servers: ``--base-url`` (repeatable), ``--endpoints``."""

from __future__ import annotations

import argparse
from typing import Any

from ponder.backends.base import Backend
from ponder.backends.endpoints import endpoint_roles, endpoint_specs
from ponder.backends.loading import load_backend, split_role
from ponder.backends.models import ModelSpec, resolve_model
from ponder.backends.runs import batch_options, determinism, endpoint_stats
from ponder.errors import ConfigError


def add_endpoint_flags(p: argparse.ArgumentParser | argparse._ArgumentGroup,
                       what: str = "an OpenAI-compatible server") -> None:
    p.add_argument("--base-url", action="append", default=None, metavar="URL",
                   help=f"{what}, e.g. http://localhost:8000/v1; repeat it for a pool of "
                   "replicas of one model")
    p.add_argument("--endpoints", default=None, metavar="FILE",
                   help="a YAML or JSON list of servers (url, model, key or key_env, weight, "
                   "max_concurrent) to spread requests over")


def split_models(values: list[str] | None) -> tuple[str | None, dict[str, str]]:
    """Repeated ``--model`` values as (the generator, the other models by role): at most one
    without a role, each role once.

    >>> split_models(["small.gguf", "strong=big.gguf"])
    ('small.gguf', {'strong': 'big.gguf'})
    """
    generator: str | None = None
    roles: dict[str, str] = {}
    for value in values or []:
        role, spec = split_role(value)
        if role is None or role == "generator":
            if generator is not None:
                raise ConfigError(f"two generator models ({generator!r} and {spec!r}): name "
                                  "the others by role, e.g. --model strong=PATH.gguf")
            generator = spec
        elif role in roles:
            raise ConfigError(f"the {role} model is named twice")
        else:
            roles[role] = spec
    return generator, roles


def models_of(args: argparse.Namespace) -> tuple[str | None, dict[str, str]]:
    """The generator and the other models by role that the flags name: ``--model`` values, and
    the roles of an ``--endpoints`` file's servers (a ``--model ROLE=`` flag wins)."""
    generator, roles = split_models(args.model)
    return generator, {**endpoint_roles(getattr(args, "endpoints", None)), **roles}


def is_pool(args: argparse.Namespace) -> bool:
    return bool(args.endpoints) or len(args.base_url or []) > 1


def load_from_args(args: argparse.Namespace, api_key: str | None,
                   options: dict[str, Any]) -> Backend:
    """The backend the flags name: an in-process model, one server, or a pool."""
    return load_backend(args.model, args.base_url, api_key=api_key,
                        endpoints=args.endpoints, **options)



def add_deterministic_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=True,
                   help="batch-invariant decoding of an in-process model: the same command "
                   "gives the same samples, whatever ran beside them (default: on; "
                   "--no-deterministic decodes about 10-25%% faster, see "
                   "bench/results/determinism-*.md)")



def model_spec(args: argparse.Namespace) -> ModelSpec:
    """The model the flags name: an in-process file, or the model the servers serve (``--model``
    or the endpoints file's), at the first server."""
    specs = endpoint_specs(args.base_url, args.endpoints)
    model = args.model or next((s.model for s in specs if s.model), None)
    return resolve_model(model, specs[0].url if specs else None)


__all__ = ["add_deterministic_flag", "add_endpoint_flags", "batch_options", "determinism",
           "endpoint_stats", "is_pool", "load_from_args", "model_spec", "models_of",
           "split_models"]
