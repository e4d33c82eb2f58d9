"""Selection rules over answer groups: a linear score of signals ponder already has.

Each sample brings a :class:`Signal` (its mode, tokens, token confidence, whether its program
ran cleanly, whether it was cut off, its answer). The samples of one answer group (a cluster
of the vote) give the group its :data:`FEATURES`, all relative to the number of samples voting,
so a rule means the same at every budget:

- ``votes``: the group's share of the samples;
- ``confidence``: its members' token confidence exp(mean logprob), summed, over the samples
  (a confidence-weighted vote; a sample without logprobs counts 0.5);
- ``clean``: its programs that ran cleanly the first time (no repair), over the samples;
- ``cross``: its share again when chains and programs both reached it (agreement across modes);
- ``length``: its members' mean tokens over all the samples' mean (below 1: shorter);
- ``integer``: 1 when the answer is a whole number (the answer's form);
- ``truncated``: the share of its members cut off at the token limit.

A :class:`Selector` scores a group as ``intercept + sum(weight * feature)`` and the vote picks
the highest (ties: the group seen first, as in every vote). The built-in weighted votes are
:data:`RULES`; a learned selector (``ponder tune``) is the same thing with fitted weights, in
a small JSON file of coefficients.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ponder.domains.answers import to_number
from ponder.errors import ConfigError

FEATURES = ("votes", "confidence", "clean", "cross", "length", "integer", "truncated")
NEUTRAL_CONFIDENCE = 0.5


@dataclass(frozen=True)
class Signal:
    """What one sample tells about itself."""

    mode: str = "chain"
    tokens: int = 0
    confidence: float | None = None  # exp(mean logprob), None when not measured
    clean: bool = False  # a program that ran and printed an answer with no repair
    truncated: bool = False

    @classmethod
    def of(cls, mode: str, tokens: int, mean_logprob: float | None, finish_reason: str,
           meta: dict[str, Any] | None) -> Signal:
        meta = meta or {}
        clean = mode == "program" and not meta.get("error") and not meta.get("repairs")
        confidence = math.exp(mean_logprob) if mean_logprob is not None else None
        return cls(mode, tokens, confidence, clean, finish_reason == "length")


@dataclass(frozen=True)
class Selector:
    """A linear rule over :data:`FEATURES` (unnamed features weigh 0)."""

    name: str
    weights: dict[str, float]
    intercept: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(FEATURES))
        if unknown:
            raise ConfigError(f"selector {self.name}: unknown feature {', '.join(unknown)}; "
                              f"valid: {', '.join(FEATURES)}")

    def score(self, features: dict[str, float]) -> float:
        return self.intercept + sum(w * features[k] for k, w in self.weights.items() if w)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "linear", "name": self.name, "features": list(FEATURES),
                "weights": {k: self.weights.get(k, 0.0) for k in FEATURES},
                "intercept": self.intercept, **self.meta}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n")


RULES: dict[str, Selector] = {s.name: s for s in (
    Selector("majority", {"votes": 1.0}),
    Selector("confidence", {"confidence": 1.0}),
    Selector("clean", {"votes": 1.0, "clean": 1.0}),  # a clean program's vote counts twice
    Selector("cross-mode", {"votes": 1.0, "cross": 0.5}),
    Selector("short", {"votes": 1.0, "length": -0.25}),
    Selector("integer", {"votes": 1.0, "integer": 0.25}),
)}


def get_selector(spec: str) -> Selector:
    """A built-in rule by name, or a selector file (JSON: weights, intercept)."""
    if spec in RULES:
        return RULES[spec]
    path = Path(spec)
    try:
        mtime = path.stat().st_mtime
    except OSError:
        raise ConfigError(f"unknown selector {spec!r}: not a rule ({', '.join(RULES)}) nor a "
                          "readable file") from None
    return _selector_file(str(path.resolve()), mtime)


@functools.lru_cache(maxsize=32)
def _selector_file(path: str, mtime: float) -> Selector:
    try:
        data = json.loads(Path(path).read_text())
        weights = {str(k): float(v) for k, v in data["weights"].items()}
        intercept = float(data.get("intercept", 0.0))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"cannot read selector {path}: {exc}") from None
    meta = {k: v for k, v in data.items()
            if k not in ("kind", "name", "features", "weights", "intercept")}
    return Selector(str(data.get("name", Path(path).stem)), weights, intercept, meta)


def _is_integer(answer: str | None) -> float:
    value = to_number(answer) if answer is not None else None
    return float(value is not None and math.isfinite(value) and value == int(value))


def group_features(members: Sequence[int], signals: Sequence[Signal], answer: str | None,
                   voting: Sequence[int]) -> dict[str, float]:
    """The features of one answer group (``members``) among the samples ``voting``."""
    n = max(1, len(voting))
    mine = [signals[i] for i in members]
    votes = len(mine) / n
    mean_all = sum(signals[i].tokens for i in voting) / n
    mean_mine = sum(s.tokens for s in mine) / max(1, len(mine))
    return {
        "votes": votes,
        "confidence": sum(NEUTRAL_CONFIDENCE if s.confidence is None else s.confidence
                          for s in mine) / n,
        "clean": sum(s.clean for s in mine) / n,
        "cross": votes if len({s.mode for s in mine}) > 1 else 0.0,
        "length": mean_mine / mean_all if mean_all > 0 else 1.0,
        "integer": _is_integer(answer),
        "truncated": sum(s.truncated for s in mine) / max(1, len(mine)),
    }
