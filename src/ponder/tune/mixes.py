"""The replay of mixes of a small and a strong model, from stored samples: the strong model
alone, and cascades (the small model's vote; its leader's share of the votes below a threshold
hands the problem to the strong model, as ``strategies/cascade.py`` does live).

Everything here reads the store; ``strong.py`` generates what it reads. Per problem:

- **the strong side** (``Answered``): greedy (its one temperature-0 sample) or a majority vote
  of k samples at the reference temperature (expected over the k-subsets of its stored pool):
  the chance its answer is right, the chance it gives none (a cascade then keeps the small
  model's vote), and what it spent;
- **the small side** (``Subsets``): over the k-subsets of the small model's samples (as
  ``eval/scoring.py`` draws them: every subset when there are at most ``draws``, else that many
  at random), whether the selection rule's pick is right and the leader's share of the vote
  (``cascade.evidence`` with ``signal=agreement``: weights by mode, cut samples as the vote
  counts them, every sample in the denominator);
- **a cascade** at threshold t: a subset whose share is below t takes the strong side's
  expected correctness (its no-answer chance falls back to the subset's pick); its cost is the
  small side's plus the escalated share of subsets times the strong side's;
- **verify-by-strong** (pointwise), as ``strategies/verify_by_strong.py`` runs live: over the
  same subsets, the vote's groups; one group wins alone; otherwise each group's first member
  is judged by the strong model (its P("yes"), stored per sample under :data:`JUDGE`), the best
  score wins, or the most votes times score (``combine`` weighted), ties to the larger group;
  its cost is the small side's plus the judgements the subset asks for.

FLOPs-equivalent is 2 x parameters x every token read or written, per model, counted as the
backends charge a call: k samples drawn in one call read its prompt once and write k times the
pool's mean tokens (``spent``). The prompt is the most any stored call of the pool read (of the
strong model's greedy answer and its pool, which pose the same prompt, the most of both): a
backend charges a call only the prompt tokens it evaluated, fewer where a concurrent call shared
its prefix, and a live run of one configuration shares nothing. The small model's own
configurations are costed the same way, so every candidate is on one scale.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ponder.domains.vote import tally
from ponder.eval.plans import Plan, graded, plan_samples, seed_of
from ponder.eval.pools import clusters_of, counts, cut_of, pick
from ponder.eval.store import SampleRow, Store
from ponder.strategies.cascade import group_shares
from ponder.strategies.verify_by_strong import pointwise_winner
from ponder.tune.space import Candidate, Setting
from ponder.types import Problem

GREEDY = 0  # a strong side: its one greedy answer; k > 0: a majority vote of k samples
# the scores table's verifier for the strong model's verdicts on a sample (``MixTuner`` adds
# the strong model's key and the characters it reads: another model's verdicts are not these)
JUDGE = "strong-judge"
JUDGE_CHARS = 3000  # the end of each solution the strong model reads (verify-by-strong's)
THRESHOLDS = (0.5, 0.625, 0.75, 0.875, 1.0)
STRONG_SIZES = (1, 4)
MAX_STRONG_N = 64  # cascade's strong_n


def side_label(side: int) -> str:
    """``greedy`` or ``majority n=4``."""
    return "greedy" if side == GREEDY else f"majority n={side}"


@dataclass
class Mix(Candidate):
    """The strong model alone (``kind`` strong; ``n``: its samples) or a cascade (``kind``
    cascade: the small side's setting, rule and ``n``, escalating below ``threshold`` to the
    ``strong`` side)."""

    threshold: float | None = None
    strong: int = GREEDY
    escalation: float = 0.0  # a cascade's expected share of problems sent to the strong model
    tokens_by_model: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.kind == "strong":
            return "strong · greedy" if self.strong == GREEDY else \
                f"{self.setting.label} · majority · n={self.strong}"
        if self.kind == "verify" and self.selector == "weighted":
            return (f"{self.setting.label} · n={self.n}, votes weighted by the strong model's "
                    "verdicts")
        if self.kind == "verify":
            return f"{self.setting.label} · n={self.n}, the strong model judges the groups"
        return (f"{self.setting.label} · {self.selector} · n={self.n}, agreement < "
                f"{self.threshold:g} → strong {side_label(self.strong)}")

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        verify = self.kind == "verify"
        out.update(models={"strong": "strong", "verify": "small + strong judge"}.get(
                       self.kind, "small → strong"),
                   strong="judges" if verify else side_label(self.strong),
                   strong_n=None if verify else self.strong or 1,
                   tokens_by_model=dict(self.tokens_by_model))
        if self.kind == "cascade":
            out.update(threshold=self.threshold, escalation=self.escalation)
        return out


@dataclass(frozen=True)
class Answered:
    """The strong side on one problem: the chance its answer is right, the chance it gives
    none, and its generated tokens and tokens read or written."""

    right: float
    silent: float
    tokens: float
    read: float


@dataclass(frozen=True)
class Subsets:
    """The small side on one problem at n samples: per subset, whether the pick is right and
    the leader's share of the vote; and its generated tokens and tokens read or written."""

    right: tuple[bool, ...]
    agreement: tuple[float, ...]
    tokens: float
    read: float


@dataclass(frozen=True)
class Verified:
    """verify-by-strong on one problem at n samples: per subset, whether the strong model's
    choice is right; the small side's tokens and the judgements' (expected over subsets), each
    as (generated, read or written)."""

    right: tuple[bool, ...]
    small: tuple[float, float]
    judge: tuple[float, float]


def subsets_of(strata: Sequence[range], sizes: Sequence[int], draws: int,
               rng: random.Random) -> list[tuple[int, ...]]:
    """``sizes[i]`` samples from each ``strata[i]``: every such subset when there are at most
    ``draws`` of them, else ``draws`` random ones (as ``eval/curves.py`` and
    ``pools.stratified_accuracy`` draw them)."""
    total = math.prod(math.comb(len(s), k) for s, k in zip(strata, sizes, strict=True))
    if total <= draws:
        return [sum(parts, ()) for parts in itertools.product(
            *(itertools.combinations(s, k) for s, k in zip(strata, sizes, strict=True)))]
    return [tuple(i for s, k in zip(strata, sizes, strict=True)
                  for i in sorted(rng.sample(s, k))) for _ in range(draws)]


def agreement(samples: Sequence[SampleRow], subset: Sequence[int],
              clusters: Sequence[int | None], config: Any) -> float:
    """The leader's share of a subset's vote, as a cascade measures it (``signal=agreement``):
    weights by mode, cut samples as the vote counts them, every sample in the denominator."""
    weights = [getattr(config, f"{r.mode}_weight", 1.0) for r in samples]
    groups = tally(clusters, subset, weights, [r.mode for r in samples],
                   getattr(config, "cross_mode_bonus", 0.0), cut_of(samples),
                   getattr(config, "cut_weight", 0.0))
    return group_shares(groups, sum(weights[i] for i in subset))[0]


def _strata(plan: Plan, samples: Sequence[SampleRow]) -> list[range]:
    """The samples of each pool, in order (chains, then programs), as Scoring splits them."""
    strata, start = [], 0
    for pool in plan.pools:
        size = sum(1 for r in samples[start:] if r.mode == pool.mode or len(plan.pools) == 1)
        strata.append(range(start, start + size))
        start += size
    return strata


def spent(samples: Sequence[SampleRow], strata: Sequence[range], sizes: Sequence[int],
          prompt: float = 0.0) -> tuple[float, float]:
    """(generated tokens, tokens read or written) of ``sizes[i]`` samples of each pool, each
    pool's drawn in one call: its prompt read once (the most any of its stored calls read, at
    least ``prompt``) and its samples' mean tokens written."""
    tokens = read = 0.0
    for k, stratum in zip(sizes, strata, strict=True):
        if k:
            written = k * statistics.fmean(samples[i].completion_tokens for i in stratum)
            tokens += written
            read += max(prompt, *(samples[i].prompt_tokens for i in stratum)) + written
    return tokens, read


def _drawn(store: Store, plan: Plan, problem: Problem, n: int, first: bool
           ) -> tuple[list[SampleRow], list[range], list[int]] | None:
    """A plan's samples of a problem, split by pool, and how many of each n samples use: all
    it stored up to its largest count, or its first n (``first``). None when it lacks them."""
    top = n if first else max(plan.budgets)
    samples = plan_samples(store, plan, problem, counts(plan.config, plan.pools, top))
    if not samples:
        return None
    strata, sizes = _strata(plan, samples), counts(plan.config, plan.pools, n)
    if any(k > len(s) for k, s in zip(sizes, strata, strict=True)):
        return None
    return samples, strata, sizes


def small_cost(store: Store, plan: Plan, problem: Problem, n: int, *, first: bool
               ) -> tuple[float, float] | None:
    """(generated tokens, tokens read or written) of a setting at n samples on a problem."""
    found = _drawn(store, plan, problem, n, first)
    return None if found is None else spent(*found)


def small_side(store: Store, plan: Plan, problem: Problem, n: int, draws: int, seed: int, *,
               first: bool) -> Subsets | None:
    """The small side of ``plan`` (a setting and selection rule) at n samples on a problem:
    over subsets of its stored samples, or its first n (``first``: the held-out part). None
    when it lacks them."""
    found = _drawn(store, plan, problem, n, first)
    if found is None:
        return None
    samples, strata, sizes = found
    clusters = clusters_of(samples)
    rng = random.Random(seed_of(seed, "cascade", plan.key, problem.id, n))
    right, shares = [], []
    for subset in subsets_of(strata, sizes, draws, rng):
        chosen = pick(plan.mode, plan.config, samples, [None] * len(samples), subset, clusters)
        right.append(chosen is not None and samples[chosen].correct)
        shares.append(agreement(samples, subset, clusters, plan.config))
    tokens, read = spent(samples, strata, sizes)
    return Subsets(tuple(right), tuple(shares), tokens, read)


def judged_pick(samples: Sequence[SampleRow], subset: Sequence[int],
                clusters: Sequence[int | None], config: Any,
                scores: Mapping[int, Any], combine: str = "best"
                ) -> tuple[int | None, list[int]]:
    """verify-by-strong's choice on a subset (the position of the winning group's first
    member; None: no answer) and the positions the strong model judged (none when every
    answer agrees). ``scores``: the stored judgements by sample index; ``combine``: the
    strategy's (``pointwise_winner``)."""
    weights = [getattr(config, f"{r.mode}_weight", 1.0) for r in samples]
    groups = [g for g in tally(clusters, subset, weights, [r.mode for r in samples],
                               getattr(config, "cross_mode_bonus", 0.0), cut_of(samples),
                               getattr(config, "cut_weight", 0.0)) if g.weight > 0]
    if not groups:
        return None, []
    if len(groups) == 1:
        return groups[0].members[0], []
    judged = [g.members[0] for g in groups]
    verdicts = [row.score if (row := scores.get(samples[j].idx)) is not None else None
                for j in judged]
    best = pointwise_winner([g.weight for g in groups], verdicts, combine)
    return judged[best], judged


def verified_side(store: Store, plan: Plan, problem: Problem, n: int, draws: int, seed: int,
                  *, first: bool, judge: str = JUDGE, combine: str = "best"
                  ) -> Verified | None:
    """verify-by-strong over ``plan``'s samples (one pool) at n on a problem: over subsets of
    its stored samples, or its first n (``first``); the verdicts stored under ``judge``. None
    when it lacks the samples or a judgement a subset asks for."""
    found = _drawn(store, plan, problem, n, first)
    if found is None or len(plan.pools) != 1:
        return None
    samples, strata, sizes = found
    scores = store.scores(plan.pools[0].key, judge, problem.id)
    clusters = clusters_of(samples)
    rng = random.Random(seed_of(seed, "verify", plan.key, problem.id, n))
    right: list[bool] = []
    judge_tokens = judge_read = 0.0
    for subset in subsets_of(strata, sizes, draws, rng):
        chosen, judged = judged_pick(samples, subset, clusters, plan.config, scores, combine)
        rows = [scores.get(samples[j].idx) for j in judged]
        if any(r is None for r in rows):
            return None
        right.append(chosen is not None and samples[chosen].correct)
        judge_tokens += sum(r.completion_tokens for r in rows)  # type: ignore[union-attr]
        judge_read += sum(r.prompt_tokens + r.completion_tokens for r in rows)  # type: ignore[union-attr]
    m = len(right)
    return Verified(tuple(right), spent(samples, strata, sizes), (judge_tokens / m,
                                                                  judge_read / m))


def verify_mix(setting: Setting, n: int, verified: Mapping[str, Verified],
               parameters: tuple[int, int], combine: str = "best") -> Mix | None:
    """verify-by-strong on the problems it has: expected accuracy, tokens per model, FLOPs."""
    if not verified:
        return None
    m = len(verified)
    values = {pid: sum(v.right) / len(v.right) for pid, v in verified.items()}
    small_tokens = sum(v.small[0] for v in verified.values()) / m
    judge_tokens = sum(v.judge[0] for v in verified.values()) / m
    flops = sum(2.0 * (parameters[0] * v.small[1] + parameters[1] * v.judge[1])
                for v in verified.values()) / m
    return Mix(setting, combine, n, accuracy=sum(values.values()) / m,
               tokens=small_tokens + judge_tokens, problems=m, values=values, flops=flops,
               axis="flops", kind="verify",
               tokens_by_model={"small": small_tokens, "strong": judge_tokens})


def strong_side(store: Store, plan: Plan, problem: Problem, side: int, limit: int,
                draws: int, seed: int, prompt: float = 0.0) -> Answered | None:
    """The strong side on a problem: ``plan``'s greedy sample (``side`` GREEDY) or a majority
    vote of ``side`` of its first ``limit`` samples (expected over subsets; the held-out part
    has just ``side``); its prompt read at least ``prompt`` tokens. None when it lacks them."""
    k = 1 if side == GREEDY else side
    rows = graded(store.samples(plan.pools[0].key, problem.id)[:max(k, limit)], problem)
    if len(rows) < k:
        return None
    clusters = clusters_of(rows)
    rng = random.Random(seed_of(seed, "strong", plan.pools[0].key, problem.id, k))
    subsets = subsets_of([range(len(rows))], [k], draws, rng)
    chosen = [pick("vote", plan.config, rows, [None] * len(rows), s, clusters) for s in subsets]
    tokens, read = spent(rows, [range(len(rows))], [k], prompt)
    return Answered(statistics.fmean(c is not None and rows[c].correct for c in chosen),
                    statistics.fmean(c is None for c in chosen), tokens, read)


def cascade_on(small: Subsets, strong: Answered, threshold: float) -> tuple[float, float]:
    """(expected accuracy, escalated share) of a cascade on one problem."""
    total = escalated = 0.0
    for right, share in zip(small.right, small.agreement, strict=True):
        if share < threshold:
            escalated += 1
            total += strong.right + strong.silent * right
        else:
            total += right
    return total / len(small.right), escalated / len(small.right)


def strong_alone(setting: Setting, side: int, answered: Mapping[str, Answered],
                 parameters: int) -> Mix | None:
    """The strong model alone on the problems it answered: greedy, or a vote of ``side``."""
    if not answered:
        return None
    m = len(answered)
    tokens = sum(a.tokens for a in answered.values()) / m
    return Mix(setting, "majority", side or 1, accuracy=sum(a.right for a in answered.values()) / m,
               tokens=tokens, problems=m, values={pid: a.right for pid, a in answered.items()},
               flops=2.0 * parameters * sum(a.read for a in answered.values()) / m,
               axis="flops", kind="strong", strong=side, tokens_by_model={"strong": tokens})


def cascade(setting: Setting, rule: str, n: int, side: int, threshold: float,
            small: Mapping[str, Subsets], strong: Mapping[str, Answered],
            parameters: tuple[int, int], *, idle: bool = False) -> Mix | None:
    """A cascade on the problems both sides have: its expected accuracy per problem, its mean
    tokens per model, FLOPs (``parameters``: the small and the strong model's) and escalated
    share. None when it escalates nothing (unless ``idle``): it is then its small side, which
    is a candidate already."""
    values: dict[str, float] = {}
    small_tokens = strong_tokens = flops = escalated = 0.0
    for pid, sub in small.items():
        answered = strong.get(pid)
        if answered is None:
            continue
        values[pid], rate = cascade_on(sub, answered, threshold)
        small_tokens += sub.tokens
        strong_tokens += rate * answered.tokens
        flops += 2.0 * (parameters[0] * sub.read + rate * parameters[1] * answered.read)
        escalated += rate
    if not values or not (escalated or idle):
        return None
    m = len(values)
    return Mix(setting, rule, n, accuracy=sum(values.values()) / m,
               tokens=(small_tokens + strong_tokens) / m, problems=m, values=values,
               flops=flops / m, axis="flops", kind="cascade", threshold=threshold, strong=side,
               escalation=escalated / m,
               tokens_by_model={"small": small_tokens / m, "strong": strong_tokens / m})


def cascadable(setting: Setting, side: int) -> bool:
    """Whether a cascade with this small setting and strong side runs live as it is replayed:
    the strong model is asked in the small setting's prompt (so zero-shot, the default
    template: as its samples were drawn) and, voting, with its top-p and min-p (so the
    defaults, as its pool was drawn)."""
    options = setting.options
    if options.get("shots") or options.get("template", "default") != "default":
        return False
    return side == GREEDY or (options.get("top_p", 1.0) == 1.0 and not options.get("min_p"))
