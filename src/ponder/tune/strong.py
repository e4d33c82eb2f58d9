"""``ponder tune`` with a strong model: the search over the small model's configurations, the
strong model alone, cascades between them and the strong model verifying the small one, every
cost in FLOPs-equivalent.

``MixTuner`` is a ``search.Tuner`` whose stage 1 also draws, on the tuning part, the strong
model's greedy answer and a pool of samples at the reference setting (up to the largest
``strong_sizes``), with a harness of its own over the same store, keyed by the strong model
(``Harness(model_key=...)``: they never mix with the small model's samples at the same
setting), and the strong model's verdicts (P("yes"), the judge's prompt as verify-by-strong asks
it) on the small model's reference samples that a verify-by-strong choice would ask about. The
replay (``mixes.py``) scores the strong model alone, every cascade and verify-by-strong at each
sample count from the store; the choice per budget, the paired comparison with the reference
(the small model's self-consistency) and the held-out confirmation are ``search.Tuner``'s, over
FLOPs. Stage 2 draws on the held-out part the small model's settings the choices use (a
cascade's small side too) and the strong model's samples and verdicts they use.
"""

from __future__ import annotations

import asyncio
import random
import statistics
from collections.abc import Sequence
from typing import Any

from ponder.backends.base import Backend
from ponder.errors import ConfigError
from ponder.eval.harness import Harness, Status
from ponder.eval.plans import Plan, plan_samples, seed_of
from ponder.eval.pools import clusters_of, counts
from ponder.eval.store import ScoreRow
from ponder.presets import Preset
from ponder.runner import new_context
from ponder.tune.budgets import best_at, parse_reference_budget
from ponder.tune.mixes import (
    GREEDY,
    JUDGE,
    JUDGE_CHARS,
    MAX_STRONG_N,
    STRONG_SIZES,
    THRESHOLDS,
    Answered,
    Mix,
    Subsets,
    Verified,
    cascadable,
    cascade,
    judged_pick,
    small_cost,
    small_side,
    strong_alone,
    strong_side,
    subsets_of,
    verified_side,
    verify_mix,
)
from ponder.tune.search import (
    LEARNED,
    STAGES,
    STRATEGY,
    Candidate,
    Chosen,
    Setting,
    Tuner,
    TuneStatus,
    _rule_option,
)
from ponder.types import Candidate as Sample
from ponder.types import Problem
from ponder.verifiers.judge import JudgeVerifier

GREEDY_OPTIONS = {"temperature": 0.0, "mode": "chain"}
COMBINE = ("best", "weighted")  # verify-by-strong's pointwise rules, both replayed


def check_thresholds(thresholds: Sequence[float]) -> None:
    if not thresholds or any(not 0.0 <= t <= 1.0 for t in thresholds):
        raise ConfigError("--thresholds must be shares between 0 and 1 (a cascade escalates "
                          "when the small model's agreement is below one), e.g. 0.5,0.75,1.0; "
                          f"got {','.join(f'{t:g}' for t in thresholds) or 'none'}")


def check_strong_sizes(sizes: Sequence[int]) -> None:
    if not sizes or any(k < 1 or k > MAX_STRONG_N for k in sizes) or list(sizes) != sorted(
            set(sizes)):
        raise ConfigError(f"--strong-sizes must be increasing sample counts from 1 to "
                          f"{MAX_STRONG_N}, e.g. 1,4; got {','.join(map(str, sizes)) or 'none'}")


def size_of(model: Backend, role: str) -> int:
    """A model's parameter count; a model of unknown size is refused in one line."""
    size = getattr(model, "parameters", None)
    if size is None:
        raise ConfigError(f"the {role} model's size is unknown: ponder tune compares a small and "
                          "a strong model in FLOPs (2 x parameters x tokens); give it with "
                          "-B parameters=N (e.g. -B parameters=1.5e9)")
    return int(size)


class MixTuner(Tuner):
    """``search.Tuner`` over the small model's configurations, the strong model alone and the
    cascades between them, by FLOPs."""

    axis = "flops"

    def __init__(self, backend: Backend, *args: Any, strong: Backend,
                 strong_key: str = "strong", strong_sizes: Sequence[int] = STRONG_SIZES,
                 thresholds: Sequence[float] = THRESHOLDS, verify: bool = True,
                 **kwargs: Any) -> None:
        check_thresholds(thresholds)
        check_strong_sizes(strong_sizes)
        self.sizes_by_model = (size_of(backend, "small"), size_of(strong, "strong"))
        super().__init__(backend, *args, **kwargs)
        self.strong, self.strong_key = strong, strong_key
        self.strong_sizes, self.thresholds = list(strong_sizes), sorted(set(thresholds))
        reference = self.settings[0]
        self.strong_settings = {GREEDY: Setting("strong greedy", dict(GREEDY_OPTIONS)),
                                max(self.strong_sizes): Setting(f"strong {reference.label}",
                                                                dict(reference.options))}
        self.strong_harness = self._strong_harness(self.tuning, 1, max(self.strong_sizes))
        # verify-by-strong over the reference setting's samples (zero-shot: asked as it runs;
        # one pool: the strategy samples one mode), its verdicts kept by the strong model
        self.verify = verify and cascadable(reference, GREEDY) and \
            len(self.harness.plans[0].pools) == 1
        self.judge_key = f"{JUDGE}:{strong_key}:{JUDGE_CHARS}"
        self._prompts: dict[str, float] = {}  # the first sample's prompt tokens, per pool

    # -- generation ------------------------------------------------------------------------

    def _strong_harness(self, problems: Sequence[Problem], stage: int, most: int,
                        greedy: bool = True) -> Harness:
        """The strong model's plans on ``problems``: its greedy answer and its samples at the
        reference setting, up to ``most`` (0: none)."""
        harness = Harness(self.strong, self.store, problems, [], [1], greedy=False,
                          seed=self.seed, concurrency=self.concurrency, sandbox=self.sandbox,
                          options=self.options, model_key=self.strong_key)
        harness.on_update = lambda status: self._strong_progress(stage, status)
        if greedy:
            harness.add_plan(self.strong_settings[GREEDY].label, STRATEGY, GREEDY_OPTIONS)
        if most:
            pool = self.strong_settings[max(self.strong_sizes)]
            harness.add_plan(pool.label, STRATEGY, pool.options).budgets = [most]
        return harness

    def _strong_progress(self, stage: int, status: Status) -> None:
        if self.on_update is None:
            return
        first = self.harness.status
        self.on_update(TuneStatus(
            stage, STAGES[stage] + " (the strong model)",
            status.problems_done + (len(self.tuning) if stage == 2 else 0),
            len(self.tuning) + (len(self.held_out) if stage == 2 else 0),
            first.samples + status.samples, first.tokens + status.tokens))

    async def generate(self) -> None:
        """Stage 1: the small model's settings (``Tuner.generate``), then the strong model's
        greedy answer and samples on the tuning part, and its verdicts on the reference
        setting's samples that verify-by-strong would ask about at any of its sample counts."""
        await super().generate()
        await self.strong_harness.run()
        if self.verify:
            sizes = [n for n in self.harness.plans[0].budgets if n > 1]
            await self.judge(self.tuning, sizes, first=False, stage=1)

    def _to_judge(self, problem: Problem, sizes: Sequence[int], first: bool) -> list[int]:
        """The sample indices verify-by-strong asks the strong model about on ``problem``, at
        any of ``sizes`` over the subsets the replay draws (``first``: the first n alone)."""
        plan = self.harness.plans[0]
        wanted: set[int] = set()
        for n in sizes:
            top = n if first else max(plan.budgets)
            samples = plan_samples(self.store, plan, problem, counts(plan.config, plan.pools,
                                                                     top))
            if len(samples) < n:
                continue
            clusters = clusters_of(samples)
            rng = random.Random(seed_of(self.seed, "verify", plan.key, problem.id, n))
            strata = [range(len(samples))] if not first else [range(n)]
            for subset in subsets_of(strata, [n], self.draws, rng):
                _, judged = judged_pick(samples, subset, clusters, plan.config, {})
                wanted.update(samples[j].idx for j in judged)
        return sorted(wanted)

    async def judge(self, problems: Sequence[Problem], sizes: Sequence[int], *, first: bool,
                    stage: int) -> None:
        """Store the strong model's verdict (the judge's P("yes"), as verify-by-strong asks)
        on each sample of the reference setting that a verify-by-strong replay at ``sizes``
        needs and the store lacks; problems ``concurrency`` at a time."""
        plan = self.harness.plans[0]
        key = plan.pools[0].key
        judge = JudgeVerifier(self.strong, max_solution_chars=JUDGE_CHARS)
        slots = asyncio.Semaphore(self.concurrency)
        done = [0]

        async def one(problem: Problem) -> None:
            stored = self.store.scores(key, self.judge_key, problem.id)
            missing = [i for i in self._to_judge(problem, sizes, first) if i not in stored]
            if missing:
                rows = {r.idx: r for r in self.store.samples(key, problem.id)}
                asked = [Sample(rows[i].text, rows[i].answer) for i in missing]
                async with slots:
                    ctx = new_context(self.strong, sandbox=self.sandbox)
                    values = await judge.score(problem, asked, ctx, None)
                    # each verdict costs its whole prompt (a live run judges a few groups and
                    # shares less of the problem's prefix than this batch does)
                    prompts = [await self.strong.count_prompt_tokens(judge.request(problem, a))
                               for a in asked]
                u, m = ctx.trace.usage, len(missing)
                self.store.add_scores(key, self.judge_key, problem.id, [
                    ScoreRow(i, v, u.completion_tokens / m,
                             u.prompt_tokens / m if prompt is None else float(prompt),
                             u.calls / m, u.seconds / m)
                    for i, v, prompt in zip(missing, values, prompts, strict=True)])
            done[0] += 1
            if self.on_update is not None:
                self.on_update(TuneStatus(stage, STAGES[stage] + " (the strong model judges)",
                                          done[0], len(problems), 0, 0))

        await asyncio.gather(*(one(p) for p in problems))

    def strong_needed(self, chosen: Chosen) -> tuple[bool, int]:
        """What the confirmed configurations (``Chosen.confirmed``) need of the strong model on
        the held-out part: its greedy answer, and the most samples a vote of them uses."""
        greedy, most = False, 0
        for c in chosen.confirmed():
            if isinstance(c, Mix) and c.kind in ("strong", "cascade"):
                greedy = greedy or c.strong == GREEDY
                most = max(most, c.strong)
        return greedy, most

    async def generate_held_out(self, chosen: Chosen) -> None:
        """Stage 2: the small model's settings the choices use, then the strong model's."""
        await super().generate_held_out(chosen)
        greedy, most = self.strong_needed(chosen)
        if greedy or most:
            await self._strong_harness(self.held_out, 2, most, greedy).run()
        judged = self.judged_sizes(chosen)
        if judged:
            await self.judge(self.held_out, judged, first=True, stage=2)

    @staticmethod
    def judged_sizes(chosen: Chosen) -> list[int]:
        """The sample counts of the confirmed verify-by-strong configurations."""
        return sorted({c.n for c in chosen.confirmed()
                       if isinstance(c, Mix) and c.kind == "verify"})

    # -- costs -----------------------------------------------------------------------------

    def _with_flops(self, candidates: Sequence[Candidate], *, first: bool) -> None:
        """The small model's own configurations costed as the mixes are (``mixes.spent``):
        each one's mean FLOPs over the problems it was scored on."""
        plans = {p.label: p for p in self.harness.plans}
        problems = {p.id: p for p in self.problems}
        for c in candidates:
            if c.kind != "small":
                continue
            reads = [found[1] for pid in c.values if (found := small_cost(
                self.store, plans[c.setting.label], problems[pid], c.n, first=first))]
            c.flops = 2.0 * self.sizes_by_model[0] * statistics.fmean(reads) if reads else None

    def _first_prompt(self, pool_key: str) -> float | None:
        """Mean prompt tokens of a pool's first sample over the tuning part."""
        if pool_key in self._prompts:
            return self._prompts[pool_key]
        firsts = [rows[0].prompt_tokens for p in self.tuning
                  if (rows := self.store.samples(pool_key, p.id))]
        if firsts and len(firsts) == len(self.tuning):
            self._prompts[pool_key] = sum(firsts) / len(firsts)
        return sum(firsts) / len(firsts) if firsts else None

    def _estimate(self, plan: Plan, n: int, prices: dict[str, float | None]) -> float | None:
        """Estimated FLOPs of a setting at n samples, as the replay costs them
        (``mixes.spent``): each pool's prompt read once, n samples' tokens written."""
        tokens = self._cost(plan, n, prices)
        if tokens is None:
            return None
        read = 0.0
        for pool, k in zip(plan.pools, counts(plan.config, plan.pools, n), strict=True):
            prompt = self._first_prompt(pool.key) if k else 0.0
            if prompt is None:
                return None
            read += prompt
        return 2.0 * self.sizes_by_model[0] * (read + tokens)

    # -- replay ----------------------------------------------------------------------------

    def _answered(self, problems: Sequence[Problem], sides: Sequence[int], *, first: bool
                  ) -> dict[int, dict[str, Answered]]:
        """Each strong side on each problem that has its samples (``first``: its first
        samples only, as the held-out part is scored)."""
        plans = {p.label: p for p in self.strong_harness.plans}
        drawn = max(self.strong_sizes)
        # the greedy answer and the pool pose the same prompt: the most either call read
        prompts = {p.id: max((r.prompt_tokens for plan in plans.values()
                              for r in self.store.samples(plan.pools[0].key, p.id)), default=0)
                   for p in problems}
        out: dict[int, dict[str, Answered]] = {}
        for side in sides:
            plan = plans[self.strong_settings[GREEDY if side == GREEDY else drawn].label]
            limit = 1 if side == GREEDY else (side if first else drawn)
            found = {p.id: strong_side(self.store, plan, p, side, limit, self.draws, self.seed,
                                       prompts[p.id]) for p in problems}
            out[side] = {pid: a for pid, a in found.items() if a is not None}
        return out

    def _strong_setting(self, side: int) -> Setting:
        return self.strong_settings[GREEDY if side == GREEDY else max(self.strong_sizes)]

    def _cascade_sides(self) -> list[int]:
        """A cascade's strong side: greedy, or a vote of more than one sample (its
        ``strong_n=1`` is the greedy answer)."""
        return [GREEDY, *[k for k in self.strong_sizes if k > 1]]

    def _small_sides(self, problems: Sequence[Problem], plan: Plan, n: int, *, first: bool,
                     folds: dict[str, Plan] | None = None) -> dict[str, Subsets]:
        """A cascade's small side (a setting and rule at n samples) on each problem that has
        its samples; the learned rule by each problem's fold's plan (``folds``)."""
        folds = folds or {}
        out = {}
        for p in problems:
            found = small_side(self.store, folds.get(p.id, plan), p, n, self.draws, self.seed,
                               first=first)
            if found is not None:
                out[p.id] = found
        return out

    def _verified(self, problems: Sequence[Problem], n: int, *, first: bool,
                  combine: str = "best") -> dict[str, Verified]:
        """verify-by-strong at n (``combine``: the strategy's) on each problem that has its
        samples and verdicts."""
        plan = self.harness.plans[0]
        found = {p.id: verified_side(self.store, plan, p, n, self.draws, self.seed, first=first,
                                     judge=self.judge_key, combine=combine) for p in problems}
        return {pid: v for pid, v in found.items() if v is not None}

    def candidates(self, problems: Sequence[Problem], selector_file: str | None,
                   folds: Sequence[Sequence[str]] = (), fold_files: Sequence[str] = ()
                   ) -> list[Candidate]:
        """The small model's configurations (``Tuner.candidates``, with FLOPs), the strong
        model alone (greedy; a vote of each of ``strong_sizes``) and every cascade: each
        cascadable setting x rule x sample count x threshold x strong side."""
        out: list[Candidate] = list(super().candidates(problems, selector_file, folds,
                                                       fold_files))
        self._with_flops(out, first=False)
        answered = self._answered(problems, [GREEDY, *self.strong_sizes], first=False)
        for side in (GREEDY, *self.strong_sizes):
            alone = strong_alone(self._strong_setting(side), side, answered[side],
                                 self.sizes_by_model[1])
            if alone is not None:
                out.append(alone)
        plans = self._plans(lambda r: None if r == LEARNED and folds
                            else _rule_option(r, selector_file))
        by_fold: dict[tuple[str, str], Plan] = {}  # (setting, problem) -> its fold's plan
        for fold, path in zip(folds, fold_files, strict=True):
            for setting, rule, plan in self._plans(lambda r, path=path: _rule_option(r, path)):
                if rule == LEARNED:
                    by_fold.update({(setting.label, pid): plan for pid in fold})
        if self.verify:
            reference = self.harness.plans[0]
            for n in (n for n in reference.budgets if n > 1):
                for combine in COMBINE:
                    mix = verify_mix(self.settings[0], n, self._verified(
                        problems, n, first=False, combine=combine), self.sizes_by_model, combine)
                    if mix is not None:
                        out.append(mix)
        for setting, rule, plan in plans:
            sides = [s for s in self._cascade_sides() if cascadable(setting, s)]
            if not sides:
                continue
            folded = {pid: p for (label, pid), p in by_fold.items()
                      if label == setting.label} if rule == LEARNED else {}
            for n in plan.budgets:
                small = self._small_sides(problems, plan, n, first=False, folds=folded)
                for side in sides:
                    for threshold in self.thresholds:
                        mix = cascade(setting, rule, n, side, threshold, small, answered[side],
                                      self.sizes_by_model)
                        if mix is not None:
                            out.append(mix)
        return out

    def held_out_candidates(self, chosen: Chosen) -> dict[str, Candidate]:
        """``Tuner.held_out_candidates``, and the mixes among the choices and references
        scored on the held-out part: each on its first samples there."""
        out = super().held_out_candidates(chosen)
        self._with_flops(list(out.values()), first=True)
        mixes = {c.label: c for c in chosen.confirmed() if isinstance(c, Mix)}
        if not mixes:
            return out
        answered = self._answered(self.held_out, sorted({m.strong for m in mixes.values()}),
                                  first=True)
        plans = {(s.label, rule): plan for s, rule, plan in
                 self._plans(lambda r: _rule_option(r, chosen.selector_file))}
        for label, m in mixes.items():
            found: Mix | None
            if m.kind == "strong":
                found = strong_alone(m.setting, m.strong, answered[m.strong],
                                     self.sizes_by_model[1])
            elif m.kind == "verify":
                found = verify_mix(m.setting, m.n, self._verified(
                    self.held_out, m.n, first=True, combine=m.selector), self.sizes_by_model,
                    m.selector)
            else:
                small = self._small_sides(self.held_out, plans[(m.setting.label, m.selector)],
                                          m.n, first=True)
                found = cascade(m.setting, m.selector, m.n, m.strong, m.threshold or 0.0, small,
                                answered[m.strong], self.sizes_by_model, idle=True)
            if found is not None:
                out[label] = found
        return out

    def choose(self) -> Chosen:
        """``Tuner.choose``, with the best single-model configuration per budget (the small
        model's or the strong model's alone: what a mix must match to be compute-optimal), the
        best mix there (a cascade or verify-by-strong: confirmed whether chosen or not) and the
        anchors: the strong model greedy and its votes of each size above one, the small
        model's self-consistency at each sample count a ``ref@N`` budget names, and the small
        model's own best configuration at each budget (its tune preset without a strong
        model)."""
        chosen = super().choose()
        single = [c for c in chosen.candidates if c.kind in ("small", "strong")]
        mixes = [c for c in chosen.candidates if c.kind in ("cascade", "verify")]
        for choice in chosen.choices:
            if choice.best is not None:
                choice.single = best_at(single, choice.budget)
                choice.mix = best_at(mixes, choice.budget)
        strong = {c.strong: c for c in chosen.candidates
                  if isinstance(c, Mix) and c.kind == "strong"}
        chosen.anchors = [strong[k] for k in (GREEDY, *self.strong_sizes)
                          if k in strong and k != 1]
        reference = self.settings[0].label
        wanted = [c for spec in self.budgets if isinstance(spec, str)
                  for c in chosen.candidates if c.kind == "small"
                  and c.setting.label == reference and c.selector == "majority"
                  and c.n == parse_reference_budget(spec)]
        small = [c for c in chosen.candidates if c.kind == "small"]
        for choice in chosen.choices:  # what tune would choose with the small model alone
            found = best_at(small, choice.budget) if choice.best is not None else None
            if found is not None:
                wanted.append(found)
        for c in wanted:
            if all(c.label != a.label for a in chosen.anchors):
                chosen.anchors.append(c)
        return chosen

    # -- results ---------------------------------------------------------------------------

    def preset(self, choice: Candidate, selector_file: str | None) -> Preset:
        """A cascade's preset (``strategy: cascade``, run with ``-m SMALL -m strong=BIG``), or
        the strong model's own (self-consistency, run with ``-m BIG``)."""
        if not isinstance(choice, Mix):
            return super().preset(choice, selector_file)
        if choice.kind == "strong":
            return Preset(STRATEGY, {**choice.setting.options, "n": choice.n})
        if choice.kind == "verify":
            return Preset("verify-by-strong", {**choice.setting.options, "n": choice.n,
                                               "method": "pointwise",
                                               "combine": choice.selector,
                                               "max_solution_chars": JUDGE_CHARS})
        options: dict[str, Any] = {**choice.setting.options, "n": choice.n,
                                   "signal": "agreement", "threshold": choice.threshold,
                                   "strong_n": choice.strong or 1}
        if choice.strong != GREEDY:
            options["strong_temperature"] = self.settings[0].options["temperature"]
        rule = _rule_option(choice.selector, selector_file)
        if rule is not None:
            options["selector"] = rule
        return Preset("cascade", options)

    def cut_samples(self) -> dict[str, int]:
        """``Tuner.cut_samples``, the strong model's samples counted too."""
        out = super().cut_samples()
        for plan in self.strong_harness.plans:
            for problem in self.problems:
                rows = self.store.samples(plan.pools[0].key, problem.id)
                out["samples"] += len(rows)
                out["cut"] += sum(r.finish_reason == "length" for r in rows)
        return out

    def confirm(self, chosen: Chosen) -> dict[str, Any]:
        """``Tuner.confirm``, with what the strong model generated on the held-out part, the
        models' sizes and the mix grid."""
        data = super().confirm(chosen)
        greedy, most = self.strong_needed(chosen)
        if greedy:
            data["held_out_generated"].append({"setting": self.strong_settings[GREEDY].label,
                                               "n": 1})
        if most:
            data["held_out_generated"].append({"setting": self._strong_setting(most).label,
                                               "n": most})
        data["parameters"] = {"small": self.sizes_by_model[0], "strong": self.sizes_by_model[1]}
        data["thresholds"], data["strong_sizes"] = self.thresholds, self.strong_sizes
        data["verify"] = self.verify
        for n in self.judged_sizes(chosen):
            data["held_out_generated"].append({"setting": "strong judges "
                                               f"{self.settings[0].label}", "n": n})
        return data
