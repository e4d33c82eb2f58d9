"""What ``ponder tune`` searches over: sampling settings (:class:`Setting`, the grid of them),
the configurations scored on stored samples (:class:`Candidate`: a setting, a selection rule
and a sample count; or the strong model alone, or a cascade), the Pareto front of them, and the
split of a dev set into a tuning part and a held-out part."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ponder.errors import ConfigError
from ponder.eval.plans import seed_of
from ponder.types import Problem

STRATEGY = "self-consistency"


LEARNED = "learned"


@dataclass(frozen=True)
class Setting:
    """A way to generate: the sampling options one pool of samples is drawn with."""

    label: str
    options: dict[str, Any]


def grid(temperatures: Sequence[float], modes: Sequence[str], *, top_ps: Sequence[float] = (1.0,),
         min_ps: Sequence[float] = (0.0,), shots: Sequence[int] = (0,),
         templates: Sequence[str] = ("default",), examples: str | None = None,
         reference_temperature: float = 0.7) -> list[Setting]:
    """Every combination, the reference (chains at ``reference_temperature``, zero-shot, the
    default template) first."""
    if any(k for k in shots) and not examples:
        raise ConfigError("--shots needs --examples FILE")
    out = [_setting(reference_temperature, "chain", 1.0, 0.0, 0, "default", examples)]
    for t in temperatures:
        for mode in modes:
            for top_p in top_ps:
                for min_p in min_ps:
                    for k in shots:
                        for template in templates:
                            s = _setting(t, mode, top_p, min_p, k, template, examples)
                            if s.label not in {x.label for x in out}:
                                out.append(s)
    return out


def _setting(t: float, mode: str, top_p: float, min_p: float, k: int, template: str,
             examples: str | None) -> Setting:
    options: dict[str, Any] = {"temperature": t, "mode": mode}
    label = f"{mode} T{t:g}"
    if top_p != 1.0:
        options["top_p"], label = top_p, label + f" top-p{top_p:g}"
    if min_p:
        options["min_p"], label = min_p, label + f" min-p{min_p:g}"
    if k:
        options["shots"], options["examples"] = k, examples
        label += f" {k}-shot"
    if template != "default":
        options["template"], label = template, label + f" {Path(template).stem}"
    return Setting(label, options)


def split(problems: Sequence[Problem], holdout: float, seed: int
          ) -> tuple[list[Problem], list[Problem]]:
    """(tuning part, held-out part): a seeded shuffle, ``holdout`` of it held out — a share
    (0 < holdout < 1) or a count of problems (a whole number >= 1)."""
    if holdout >= 1 and holdout != int(holdout) or not holdout > 0:
        raise ConfigError(f"--holdout must be a share between 0 and 1 or a count of problems, "
                          f"got {holdout:g}")
    order = sorted(problems, key=lambda p: seed_of(seed, "split", p.id))
    held = int(holdout) if holdout >= 1 else max(1, round(len(order) * holdout))
    if holdout >= 1 and held >= len(order):
        raise ConfigError(f"--holdout {held} leaves no tuning problems of {len(order)}; give "
                          "more problems or hold out fewer")
    if held >= len(order):
        raise ConfigError(f"{len(order)} problems cannot be split into a tuning and a held-out "
                          "part; give more problems")
    held_ids = {p.id for p in order[:held]}
    return ([p for p in problems if p.id not in held_ids],
            [p for p in problems if p.id in held_ids])


@dataclass
class Candidate:
    """One configuration: a setting, a selection rule and a sample count (of the generator:
    ``kind`` small; ``mixes.Mix`` is the strong model alone's and a cascade's)."""

    setting: Setting
    selector: str
    n: int
    accuracy: float = 0.0
    tokens: float = 0.0
    problems: int = 0
    values: dict[str, float] = field(default_factory=dict)
    flops: float | None = None  # FLOPs-equivalent per problem, where the models' sizes count
    axis: str = "tokens"  # what a budget counts: generated tokens, or "flops"
    kind: str = "small"  # "small" (the generator alone), "strong" or "cascade"

    @property
    def label(self) -> str:
        return f"{self.setting.label} · {self.selector} · n={self.n}"

    @property
    def cost(self) -> float:
        """What a budget is compared with: mean generated tokens, or FLOPs (unknown: never
        fits)."""
        if self.axis == "tokens":
            return self.tokens
        return math.inf if self.flops is None else self.flops

    def to_dict(self) -> dict[str, Any]:
        out = {"label": self.label, "setting": self.setting.label, "selector": self.selector,
               "n": self.n, "accuracy": self.accuracy, "tokens": self.tokens,
               "problems": self.problems}
        if self.axis == "flops":
            out.update(kind=self.kind, flops=self.flops, models="small",
                       tokens_by_model={"small": self.tokens})
        return out


def pareto(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The configurations no other beats on both accuracy and cost, by cost; of several
    with the same accuracy and cost, the first in the grid's order."""
    front, seen = [], set()
    for c in candidates:
        point = (round(c.cost, 9), round(c.accuracy, 12))
        if point in seen or any(o.cost <= c.cost and o.accuracy >= c.accuracy
                                and (o.cost < c.cost or o.accuracy > c.accuracy)
                                for o in candidates):
            continue
        seen.add(point)
        front.append(c)
    return sorted(front, key=lambda c: (c.cost, -c.accuracy))
