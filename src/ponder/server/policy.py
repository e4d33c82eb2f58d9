"""What a client of ``ponder serve`` may choose: a strategy, an effort and knobs — never anything
that names a model, a file or a URL, or that loads code. Those come from the operator alone
(:mod:`ponder.server.settings`).

What a client may set in ``ponder.options`` is read off each strategy's pydantic ``Config``:

- **knobs** — fields whose type is a number, a boolean or a ``Literal`` choice (optionally
  None): ``n``, ``m``, ``temperature``, ``rounds``, ``aggregate``, ``mode``, ``pick``... Counts and
  token lengths are capped (:class:`~ponder.server.settings.Caps`).
- **prompt text** — the string fields in :data:`PROMPT_FIELDS` (``system``, ``delimiter``,
  ``cue``, ``answer_marker``): they only shape the prompt and the parsing of the model's own
  text, which the client writes anyway.
- **the step scorer** — ``scorer`` may name one of :data:`SETUP_FREE_SCORERS` (scorers that use
  the served model or the samples' own logprobs), unless the operator set the strategy's scorer.

``ponder.verifier`` may name any registered verifier: verifiers are built without arguments
(the served model judges, or the sandbox runs the problem's own tests), so naming one is a
choice, not a setup.

Everything else is the operator's: dict fields (``scorer_options``, which would name a judge
model, a ``base_url``, a PRM path or ``trust_remote_code``), any other string field (a plugin's
string may be a path), a scorer that needs setup (``prm``, ``prm-http``, plugins), and any
option the operator set that is not a knob. A client naming one gets a 400 naming it, before
anything is built or loaded. An option no strategy has (``model``, ``base_url``...) is a 400 too.

The operator's options for a strategy are explicit options under the client's knobs: the client
may change a number the operator chose (within the caps), never the rest. Over a cap, a value the
client sent is refused (400 naming the option and the cap); one that came from an effort preset,
a default or the operator's options is lowered to the cap. What the server tells a client of
a configuration (``ponder[i].config``, the trace) leaves out the operator-only options
(:func:`public_config`): a reward model's URL or key is not the client's business.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

from pydantic.fields import FieldInfo

from ponder import registry
from ponder.errors import ConfigError
from ponder.runner import build_strategy
from ponder.server.errors import ApiError
from ponder.server.settings import Caps
from ponder.strategies.base import Strategy

PROMPT_FIELDS = frozenset({"system", "delimiter", "cue", "answer_marker"})
SETUP_FREE_SCORERS = frozenset({"self-judge", "confidence"})
_NUMBERS = (int, float, bool)


def _is_knob_type(annotation: Any) -> bool:
    """A number, a boolean, a Literal of plain values, or an Optional of these."""
    if annotation in _NUMBERS:
        return True
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return all(isinstance(v, (str, int, float, bool)) for v in typing.get_args(annotation))
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(args) and all(_is_knob_type(a) for a in args)
    return False


def option_kind(name: str, field: FieldInfo) -> Literal["knob", "prompt", "scorer", "operator"]:
    """Who may set strategy option ``name``: a client (knob, prompt, scorer) or the operator."""
    if name == "scorer":
        return "scorer"
    if _is_knob_type(field.annotation):
        return "knob"
    if name in PROMPT_FIELDS and field.annotation is str:
        return "prompt"
    return "operator"


def client_options(strategy: str) -> dict[str, str]:
    """Every option of ``strategy`` with who may set it (for documentation and tests)."""
    fields = registry.strategies.get(strategy).Config.model_fields
    return {name: option_kind(name, field) for name, field in fields.items()}


def public_config(strategy: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` as a client may read it: without the options only the operator sets (a
    scorer's URL, model or key in ``scorer_options``...)."""
    if strategy not in registry.strategies:
        return {k: v for k, v in config.items() if not isinstance(v, (dict, list))}
    kinds = client_options(strategy)
    return {k: v for k, v in config.items() if kinds.get(k, "operator") != "operator"}


def public_trace(trace: dict[str, Any]) -> dict[str, Any]:
    """A trace's ``to_dict()`` as a client may read it: each strategy node's configuration
    through :func:`public_config`."""
    nodes = []
    for node in trace.get("nodes", []):
        data = node.get("data")
        if isinstance(data, dict) and isinstance(data.get("config"), dict):
            node = {**node, "data": {**data, "config": public_config(str(node.get("label")),
                                                                     data["config"])}}
        nodes.append(node)
    return {**trace, "nodes": nodes}


def _operator_only(param: str, why: str) -> ApiError:
    return ApiError(400, f"'{param}' cannot be set by a client: {why}. Clients choose a "
                    "strategy, an effort and numeric knobs; models, scorers, files and URLs "
                    "are the server operator's (ponder serve --config)", param=param,
                    code="operator_only")


def check_client_options(name: str, client: dict[str, tuple[str, Any]],
                         operator: dict[str, Any]) -> None:
    """Refuse what a client may not set for strategy ``name`` (``client``: option -> (the
    request parameter it came from, value)), before anything is built or loaded."""
    fields = registry.strategies.get(name).Config.model_fields
    for option, (param, value) in client.items():
        if option not in fields:
            raise ApiError(400, f"Unrecognized option '{param}': strategy {name!r} has no such "
                           f"option; its options: {', '.join(sorted(client_options(name)))}",
                           param=param, code="unknown_parameter")
        kind = option_kind(option, fields[option])
        if kind == "operator":
            raise _operator_only(param, "it is set by the server's operator only")
        if kind == "scorer":
            if option in operator:
                raise _operator_only(param, f"the operator chose the step scorer of {name}")
            if value not in SETUP_FREE_SCORERS:
                raise _operator_only(param, f"only {', '.join(sorted(SETUP_FREE_SCORERS))} "
                                     "need no setup; other scorers are configured by the "
                                     "operator")


def capped(name: str, preset: str | None, client: dict[str, tuple[str, Any]],
           operator: dict[str, Any], caps: Caps) -> Strategy:
    """Strategy ``name`` built by :func:`ponder.runner.build_strategy` (the effort ``preset``,
    then the operator's options, then the client's, which win), within ``caps``."""
    check_client_options(name, client, operator)
    for option, (param, value) in client.items():
        _check_cap(option, param, value, caps)
    explicit = {**operator, **{option: value for option, (_, value) in client.items()}}
    try:
        strategy = build_strategy(name, preset, **explicit)
        lowered: dict[str, int] = {}
        for option, value in strategy.config.model_dump().items():
            cap = caps.cap_for(option)
            if cap is None or isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or value <= cap:
                continue
            if option in client:
                _check_cap(option, client[option][0], value, caps)
            lowered[option] = cap
        if lowered:
            strategy = build_strategy(name, preset, **{**explicit, **lowered})
    except ConfigError as exc:
        raise ApiError(400, str(exc), param="ponder", code="invalid_value") from None
    return strategy


def _check_cap(option: str, param: str, value: Any, caps: Caps) -> None:
    cap = caps.cap_for(option)
    if cap is not None and isinstance(value, (int, float)) and not isinstance(value, bool) \
            and value > cap:
        raise above_cap(param, value, cap)


def above_cap(param: str, value: Any, cap: int) -> ApiError:
    return ApiError(400, f"Invalid '{param}': {value} is above this server's limit of {cap}",
                    param=param, code="integer_above_max_value")


def check_operator_caps(strategies: dict[str, dict[str, Any]], caps: Caps) -> None:
    """Refuse operator options above the operator's own caps (a ConfigError naming one)."""
    for name, options in strategies.items():
        for option, value in options.items():
            cap = caps.cap_for(option)
            if cap is None or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if value > cap:
                which = option if option in Caps.model_fields else "max_tokens"
                raise ConfigError(f"strategies.{name}.{option} is {value}, above the cap "
                                  f"limits.caps.{which} = {cap}")
