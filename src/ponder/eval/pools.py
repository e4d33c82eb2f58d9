"""Sample pools: the stored samples sampling strategies draw from, and how a strategy's
selection is replayed on subsets of them.

A pool holds the samples of one sampling configuration for one mode (chains, or programs), so
self-consistency, best-of-n, program-of-thought and mixed voting at the same temperature share
samples: a mixed plan at budget k draws its chains from the chain pool and its programs from the
program pool, exactly as many of each as the strategy would sample (``split``).
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ponder.domains.selector import Signal, get_selector
from ponder.domains.vote import (
    best_score_pick,
    cluster_ids,
    is_cut,
    labels,
    selector_pick,
    vote_pick,
)
from ponder.errors import ConfigError
from ponder.eval.curves import expected_accuracy
from ponder.eval.store import SampleRow, ScoreRow, strategy_key
from ponder.strategies import prompts
from ponder.strategies.base import StrategyConfig
from ponder.strategies.samplers import split


@dataclass(frozen=True)
class Pool:
    mode: str  # "chain" or "program"
    key: str


def pools_for(config: dict[str, Any], model: str | None = None) -> list[Pool]:
    """The pools a sampling strategy with this configuration draws from. A chain pool's key
    depends on the sampling knobs only (stores written before program modes existed still
    match); a program pool's also on its repairs. ``model``: which model draws them, for a
    store that holds another model's samples too (``ponder tune``'s strong model); None, the
    run's generator, keeps the keys as they always were."""
    sampling = {k: config[k] for k in StrategyConfig.model_fields}
    sampling.update(prompts.key_of(config))  # template, shots: only when set
    if model is not None:
        sampling["model"] = model
    mode = config.get("mode", "chain")
    pools = []
    if mode in ("chain", "mixed"):
        pools.append(Pool("chain", strategy_key("samples", sampling)))
    if mode in ("program", "mixed"):
        program = {**sampling, "mode": "program", "repairs": config["repairs"]}
        pools.append(Pool("program", strategy_key("samples", program)))
    return pools


def counts(config: Any, pools: Sequence[Pool], k: int) -> list[int]:
    """How many samples of each pool the strategy uses at budget k."""
    if len(pools) == 1:
        return [k]
    chains, programs = split(k, config)
    return [chains if p.mode == "chain" else programs for p in pools]


def clusters_of(samples: Sequence[SampleRow]) -> list[int | None]:
    """Stored execution signatures (code) when there are any, else answer equivalence."""
    if any(r.signature is not None for r in samples):
        return labels([r.signature for r in samples])
    return cluster_ids([r.answer for r in samples])


def pick(mode: str, config: Any, samples: Sequence[SampleRow], scores: Sequence[float | None],
         subset: Sequence[int], clusters: Sequence[int | None] | None = None) -> int | None:
    """The strategy's own selection rule, replayed on a subset of stored samples (a sample
    cut off at the token limit votes with the strategy's ``cut_weight``, as live)."""
    clusters = clusters if clusters is not None else clusters_of(samples)
    vote = {
        "weights": [getattr(config, f"{r.mode}_weight", 1.0) for r in samples],
        "modes": [r.mode for r in samples],
        "cross_mode_bonus": getattr(config, "cross_mode_bonus", 0.0),
        "cut": cut_of(samples),
        "cut_weight": getattr(config, "cut_weight", 0.0),
    }
    if mode == "vote" and getattr(config, "selector", None):
        return selector_pick(clusters, subset, signals_of(samples),
                             [r.answer for r in samples], get_selector(config.selector))
    if mode == "vote":
        return vote_pick(clusters, subset, **vote)
    return best_score_pick(scores, clusters, subset, **vote)


def cut_of(samples: Sequence[SampleRow]) -> list[bool]:
    """Which stored samples were cut off at the token limit."""
    return [is_cut(r.finish_reason) for r in samples]


def signals_of(samples: Sequence[SampleRow]) -> list[Signal]:
    """Each stored sample's signals for a selection rule (confidence when it was stored)."""
    return [Signal.of(r.mode, r.completion_tokens, (r.meta or {}).get("mean_logprob"),
                      r.finish_reason, r.meta) for r in samples]


def stratified_accuracy(chooser: Any, correct: Sequence[bool], strata: Sequence[range],
                        sizes: Sequence[int], draws: int, rng: random.Random) -> float:
    """Mean correctness of ``chooser`` over subsets made of ``sizes[i]`` samples from each
    ``strata[i]``: all such subsets when there are at most ``draws``, else random ones."""
    if len(strata) == 1:
        offset = strata[0].start
        return expected_accuracy(lambda s: chooser([offset + i for i in s]),
                                 correct[strata[0].start:strata[0].stop], sizes[0], draws, rng)
    total = math.prod(math.comb(len(s), k) for s, k in zip(strata, sizes, strict=True))
    if total <= draws:
        subsets = [sum(parts, ()) for parts in itertools.product(
            *(itertools.combinations(s, k) for s, k in zip(strata, sizes, strict=True)))]
    else:
        subsets = [tuple(i for s, k in zip(strata, sizes, strict=True)
                         for i in sorted(rng.sample(s, k))) for _ in range(draws)]
    hits = 0
    for subset in subsets:
        chosen = chooser(list(subset))
        hits += chosen is not None and correct[chosen]
    return hits / len(subsets)


def score_values(samples: Sequence[SampleRow], pools: Sequence[Pool],
                 scores: dict[str, dict[int, ScoreRow]]) -> list[float | None]:
    out = []
    for pool_key, row in zip(pool_keys(samples, pools), samples, strict=True):
        found = scores.get(pool_key, {}).get(row.idx)
        out.append(found.score if found else None)
    return out


def pool_keys(samples: Sequence[SampleRow], pools: Sequence[Pool]) -> list[str]:
    by_mode = {p.mode: p.key for p in pools}
    return [by_mode[r.mode] if r.mode in by_mode else pools[0].key for r in samples]


_SPEC = re.compile(r"^(?P<name>[\w.-]+)(?:\[(?P<options>.*)\])?$")


def parse_strategy_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``self-consistency[mode=mixed,n=8]`` -> ("self-consistency", {"mode": "mixed", "n": 8});
    a value may be a JSON list: ``mixture-of-agents[proposers=["generator","strong"]]``."""
    import json

    m = _SPEC.match(spec.strip())
    if not m:
        raise ConfigError(f"cannot read strategy {spec!r}; expected NAME or NAME[key=value,...]")
    options: dict[str, Any] = {}
    for item in split_specs(m.group("options") or ""):  # a JSON list's commas stay in it
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"strategy {spec!r}: expected key=value, got {item!r}")
        try:
            options[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip().replace("-", "_")] = value.strip()
    return m.group("name"), options


def split_specs(text: str) -> list[str]:
    """Split ``a,b[x=1,y=2],c`` on the commas outside brackets."""
    specs, depth, current = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            specs.append(current.strip())
            current = ""
        else:
            current += ch
    specs.append(current.strip())
    return [s for s in specs if s]
