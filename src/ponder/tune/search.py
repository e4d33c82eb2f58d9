"""``ponder tune``'s search: generate once per sampling setting, replay every selection rule at
every sample count on the stored samples, pick the best configuration per token budget on one
part of the dev set, and confirm it on the part the choice never saw.

- **Generation** is the evaluation harness's, in two stages, each resumable (the store keeps
  every sample as it returns). Stage 1, the tuning part: one self-consistency plan per sampling
  setting (temperature, top-p, min-p, mode, few-shot, template), its largest sample count drawn
  once per problem. Stage 2, after the choice, the held-out part: only the settings of the chosen
  configurations and their references, each only up to the sample count they use (mixed: the
  chains and programs of its split at that count). Nothing else calls the model.
- **Replay** is the harness's scoring (``eval/scoring.py``): each setting x selection rule is a
  plan on the same sample pools, scored at each sample count, per problem.
- **The learned selector** (``learn.py``) is fitted on the tuning part only; its accuracy there
  comes from cross-validation (each fold scored by a selector fitted without it), so it competes
  with the hand-set rules on equal terms; the held-out part is scored with the selector fitted
  on the whole tuning part.
- **The choice** per budget: the most accurate configuration whose mean generated tokens per
  problem fit the budget, paired (``eval/paired.py``) against the reference — self-consistency
  by majority at the reference setting, with as many samples as fit the same budget — on the
  tuning part, then confirmed on the held-out part alone.
- **Mixes** with a strong model (``strong.MixTuner``, replayed by ``mixes.py``): the strong
  model alone and cascades join the configurations, every cost counted in FLOPs-equivalent
  (``axis``); this module's choice, pairing and confirmation serve both.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ponder.backends.base import Backend
from ponder.domains.selector import RULES
from ponder.errors import ConfigError
from ponder.eval.curves import pass_at_k
from ponder.eval.harness import Harness, Status
from ponder.eval.paired import compare
from ponder.eval.plans import Plan, plan_samples, seed_of
from ponder.eval.pools import clusters_of, counts, signals_of
from ponder.eval.scoring import Scoring
from ponder.eval.store import Store
from ponder.presets import Preset
from ponder.sandbox import Sandbox
from ponder.strategies.prompts import check_disjoint
from ponder.tune import learn
from ponder.tune.budgets import (
    best_at,
    check_budgets,
    fits_in,
    parse_reference_budget,
    reference_at,
)
from ponder.tune.levers import levers, levers_of
from ponder.tune.space import (
    LEARNED,
    STRATEGY,
    Candidate,
    Setting,
    grid,
    pareto,
    split,
)
from ponder.types import Problem


@dataclass
class TuneStatus:
    """What tune's progress bar shows: problems done over both stages, of those the stages
    started so far need (the total grows when stage 2 starts), and what the current stage
    does."""

    stage: int
    text: str
    done: int
    total: int
    samples: int
    tokens: int


REF_MARGIN = 1.1  # ref@N's budget is estimated from first samples before the reference is drawn
STAGES = {1: "stage 1/2 · tuning part, every setting",
          2: "stage 2/2 · held-out part, the chosen and the references"}


@dataclass
class Choice:
    """The configuration chosen at a budget on the tuning part, and its reference."""

    budget: int | float  # generated tokens (a whole number) or FLOPs
    best: Candidate | None
    reference: Candidate | None
    spec: str = ""  # as given: "1500", or "ref@8" (read off the tuning part)
    # with a strong model: the most accurate configuration of one model alone (either) there,
    # what the choice must match to be compute-optimal
    single: Candidate | None = None
    mix: Candidate | None = None  # with a strong model: the most accurate mix there


@dataclass
class Chosen:
    """Stage 1's outcome: every configuration on the tuning part and the choice per budget."""

    candidates: list[Candidate]
    choices: list[Choice]
    selector_file: str | None
    cv: dict[str, Any]
    # with a strong model: the yardsticks confirmed on the held-out part whatever is chosen
    # (the strong model alone, greedy and its votes; the small model's self-consistency)
    anchors: list[Candidate] = field(default_factory=list)

    def confirmed(self) -> list[Candidate]:
        """Every configuration the held-out part confirms, each once: per budget the choice,
        its reference, the best single-model configuration and the best mix, then the
        anchors."""
        out: dict[str, Candidate] = {}
        for choice in self.choices:
            for c in (choice.best, choice.reference, choice.single, choice.mix):
                if c is not None:
                    out.setdefault(c.label, c)
        for c in self.anchors:
            out.setdefault(c.label, c)
        return list(out.values())

    def needed(self) -> list[tuple[Setting, int]]:
        """The (setting, sample count) pairs of the generator the confirmed configurations use:
        all it generates on the held-out part (a cascade's small side too)."""
        out: dict[tuple[str, int], tuple[Setting, int]] = {}
        for c in self.confirmed():
            if c.kind != "strong":
                out.setdefault((c.setting.label, c.n), (c.setting, c.n))
        return list(out.values())


def _rule_option(rule: str, learned_file: str | None) -> str | None:
    """The ``selector`` option of a selection rule (None: the strategy's own majority vote)."""
    if rule == "majority":
        return None
    return learned_file if rule == LEARNED else rule


class Tuner:
    """Generate (stage 1), choose, generate what the choice needs (stage 2), confirm. ``out``
    holds the store, the fitted selectors and the presets."""

    axis = "tokens"  # what budgets count (``strong.MixTuner``: FLOPs)

    def __init__(self, backend: Backend, store: Store, problems: Sequence[Problem],
                 settings: Sequence[Setting], sizes: Sequence[int],
                 budgets: Sequence[int | float | str], *,
                 selectors: Sequence[str] = tuple(RULES), learned: bool = True, seed: int = 0,
                 holdout: float = 0.5, draws: int = 50, out: Path,
                 options: dict[str, Any] | None = None, concurrency: int = 1,
                 on_update: Callable[[TuneStatus], None] | None = None,
                 sandbox: Sandbox | None = None) -> None:
        unknown = sorted(set(selectors) - set(RULES))
        if unknown:
            raise ConfigError(f"unknown selection rule {', '.join(unknown)}; valid: "
                              f"{', '.join(RULES)}")
        check_budgets(budgets, sizes)
        self.backend, self.store, self.problems = backend, store, list(problems)
        self.settings, self.sizes = list(settings), list(sizes)
        self.budgets: list[int | float | str] = list(budgets)
        self.selectors = ["majority", *[s for s in selectors if s != "majority"]]
        self.learned, self.seed, self.draws, self.out = learned, seed, draws, out
        self.options = dict(options or {})
        self.concurrency, self.sandbox, self.on_update = concurrency, sandbox, on_update
        self.tuning, self.held_out = split(self.problems, holdout, seed)
        for setting in self.settings:  # exemplars are never any dev problem, held out or not
            if setting.options.get("shots"):
                check_disjoint(setting.options["examples"], self.problems)
        self.harness = self._harness(self.tuning, 1)  # stage 1
        for setting in self.settings:
            self.harness.add_plan(setting.label, STRATEGY, setting.options)
        self.confirming: Harness | None = None  # stage 2, once chosen
        self._phase = ""  # what stage 1 is doing
        self.chosen: Chosen | None = None  # stage 1's choice, once made
        self._prices: dict[str, float] = {}  # _first_tokens once every tuning problem has one

    def _harness(self, problems: Sequence[Problem], stage: int) -> Harness:
        harness = Harness(self.backend, self.store, problems, [], self.sizes, greedy=False,
                          seed=self.seed, concurrency=self.concurrency,
                          sandbox=self.sandbox, logprobs=True, options=self.options)
        harness.on_update = lambda status: self._progress(stage, status)
        return harness

    def _progress(self, stage: int, status: Status) -> None:
        if self.on_update is None:
            return
        first = self.harness.status
        later = status if stage == 2 else None
        self.on_update(TuneStatus(
            stage, STAGES[stage] + (self._phase if stage == 1 else ""),
            first.problems_done + (later.problems_done if later else 0),
            len(self.tuning) + (len(self.held_out) if later else 0),
            first.samples + (later.samples if later else 0),
            first.tokens + (later.tokens if later else 0)))

    async def generate(self) -> None:
        """Stage 1 on the tuning part (what the store lacks): one sample of every setting, to
        price a sample of each; then every setting up to the largest sample count whose tokens
        fit the largest budget (``sizes_of``), so cheap settings are tried with many samples
        and dear ones are not drawn past what any budget affords."""
        first = min(self.sizes)
        self._phase = " (pricing a sample of each)"
        for plan in self.harness.plans:
            plan.budgets = [first]
        # a problem asks for one sample per setting here, not n: more problems at once keep as
        # many sequences decoding together as the phase after it does
        self.harness.concurrency = self.concurrency * max(self.sizes) // first
        await self.harness.run()
        self.harness.concurrency = self.concurrency
        self._phase = " (each up to what the budget affords)"
        for plan in self.harness.plans:
            plan.budgets = self.sizes_of(plan)
        done = self.harness.status
        self.harness.status = Status(len(self.tuning), samples=done.samples, tokens=done.tokens)
        await self.harness.run()
        self._phase = ""

    def _first_tokens(self, pool_key: str) -> float | None:
        """Mean generated tokens of a pool's first sample over the tuning part (fixed once
        drawn, so a rerun prices every setting the same)."""
        if pool_key in self._prices:
            return self._prices[pool_key]
        firsts = [rows[0].completion_tokens for p in self.tuning
                  if (rows := self.store.samples(pool_key, p.id))]
        if firsts and len(firsts) == len(self.tuning):  # every one priced: fixed from now on
            self._prices[pool_key] = sum(firsts) / len(firsts)
        return sum(firsts) / len(firsts) if firsts else None

    def _cost(self, plan: Plan, n: int, prices: dict[str, float | None]) -> float | None:
        """Estimated generated tokens per problem of a setting at n samples (``prices``: each
        pool's ``_first_tokens``, read once per call of ``sizes_of``)."""
        total = 0.0
        for pool, k in zip(plan.pools, counts(plan.config, plan.pools, n), strict=True):
            if k:
                each = prices[pool.key]
                if each is None:
                    return None
                total += k * each
        return total

    def _estimate(self, plan: Plan, n: int, prices: dict[str, float | None]) -> float | None:
        """A setting's estimated cost per problem at n samples, in what budgets count."""
        return self._cost(plan, n, prices)

    def sizes_of(self, plan: Plan) -> list[int]:
        """The sample counts a setting is drawn and scored at: those whose estimated cost
        fits the largest budget (a ``ref@N`` budget: N reference samples' estimate, with a
        margin); the reference's own ``ref@N`` counts always; at least the smallest."""
        reference_plan = self.harness.plans[0]
        reference = plan is reference_plan
        wanted = {parse_reference_budget(b) for b in self.budgets if isinstance(b, str)}
        limits = [float(b) for b in self.budgets if not isinstance(b, str)]
        prices = {pool.key: self._first_tokens(pool.key)
                  for pool in {*plan.pools, *reference_plan.pools}}
        ref_cost = [self._estimate(reference_plan, n, prices) for n in wanted]
        limits += [REF_MARGIN * c for c in ref_cost if c is not None]
        if not limits:
            return list(self.sizes)  # nothing priced yet: a store read before stage 1
        fit = [n for n in self.sizes
               if (reference and n in wanted)
               or ((cost := self._estimate(plan, n, prices)) is not None
                   and cost <= max(limits))]
        return fit or [min(self.sizes)]

    def confirmation(self, chosen: Chosen) -> Harness:
        """Stage 2's harness: on the held-out part, a plan per setting the choices need, drawn
        up to the largest sample count they use of it (mixed: the split at that count, which
        holds every smaller count's split)."""
        harness = self._harness(self.held_out, 2)
        sizes: dict[str, tuple[Setting, list[int]]] = {}
        for setting, n in chosen.needed():
            sizes.setdefault(setting.label, (setting, []))[1].append(n)
        for setting, ns in sizes.values():
            plan = harness.add_plan(setting.label, STRATEGY, setting.options)
            plan.budgets = sorted(ns)
        return harness

    async def generate_held_out(self, chosen: Chosen) -> None:
        """Stage 2: on the held-out part, only what the choices and their references use."""
        self.confirming = self.confirmation(chosen)
        if self.confirming.plans:
            self._progress(2, self.confirming.status)  # the total grows before the first one
            await self.confirming.run()

    # -- replay ----------------------------------------------------------------------------

    def _plans(self, selector_of: Callable[[str], str | None]) -> list[tuple[Setting, str, Plan]]:
        """A plan per setting x rule on the same pools (``selector_of(rule)``: the option)."""
        replay = Harness(self.backend, self.store, self.problems, [], self.sizes, greedy=False,
                         seed=self.seed, options=self.options)
        rules = [*self.selectors, *([LEARNED] if self.learned else [])]
        sizes = {s.label: self.sizes_of(p) for s, p in zip(self.settings, self.harness.plans,
                                                            strict=True)}
        out = []
        for setting in self.settings:
            for rule in rules:
                selector = selector_of(rule)
                options = {**setting.options, **({"selector": selector} if selector else {})}
                plan = replay.add_plan(f"{setting.label} · {rule}", STRATEGY, options)
                plan.budgets = sizes[setting.label]
                out.append((setting, rule, plan))
        return out

    def _score(self, problems: Sequence[Problem], plans: Sequence[tuple[Setting, str, Plan]]
               ) -> dict[tuple[str, str], dict[int, dict[str, float]]]:
        """Per-problem expected accuracy of each (setting, rule) at each sample count."""
        data = Scoring(self.store, problems, [p for _, _, p in plans], self.seed).curves(
            self.draws)
        return {(s.label, rule): data["per_problem"].get(plan.label, {})
                for s, rule, plan in plans}

    def _tokens(self, problems: Sequence[Problem]) -> dict[tuple[str, int], float]:
        """Mean generated tokens per problem of each setting at each sample count."""
        for plan in self.harness.plans:
            plan.budgets = self.sizes_of(plan)
        data = Scoring(self.store, problems, [p for p in self.harness.plans], self.seed).curves(1)
        return {(pt["strategy"], pt["budget"]): pt["tokens"] for pt in data["points"]}

    def _decisions(self) -> list[learn.Decision]:
        rows: list[learn.Decision] = []
        rng = random.Random(seed_of(self.seed, "learn"))
        for plan in self.harness.plans:
            sizes = self.sizes_of(plan)
            targets = counts(plan.config, plan.pools, max(sizes))
            for problem in self.tuning:
                samples = plan_samples(self.store, plan, problem, targets)
                if not samples:
                    continue
                rows += learn.decisions(problem.id, clusters_of(samples), signals_of(samples),
                                        [r.answer for r in samples],
                                        [r.correct for r in samples], sizes,
                                        min(self.draws, 8), rng)
        return rows

    def fit_selector(self) -> tuple[dict[str, Any], list[str], str]:
        """Fit the learned selector on the tuning part: the cross-validation report, one file
        per fold (fitted without it) and the file fitted on all of it."""
        folder = self.out / "selectors"
        folder.mkdir(parents=True, exist_ok=True)
        rows = self._decisions()
        folds = learn.folds_of([p.id for p in self.tuning], min(5, len(self.tuning)), self.seed)
        report, fitted = learn.cross_validate(rows, folds)
        paths = []
        for i, model in enumerate(fitted):
            path = folder / f"fold-{i}.json"
            (model or RULES["majority"]).save(path)
            paths.append(str(path.resolve()))
        final = learn.fit(rows) or RULES["majority"]
        path = self.out / "selector.json"
        final = type(final)(LEARNED, final.weights, final.intercept, {"cv": report})
        final.save(path)
        report["folds_problems"] = folds
        return report, paths, str(path.resolve())

    def candidates(self, problems: Sequence[Problem], selector_file: str | None,
                   folds: Sequence[Sequence[str]] = (), fold_files: Sequence[str] = ()
                   ) -> list[Candidate]:
        """Every configuration scored on ``problems``; the learned rule by ``selector_file``,
        or fold by fold (each problem by the selector fitted without its fold)."""
        values = self._score(problems, self._plans(
            lambda r: None if r == LEARNED and folds else _rule_option(r, selector_file)))
        if self.learned and folds:
            merged: dict[str, dict[int, dict[str, float]]] = {s.label: {} for s in self.settings}
            for fold, path in zip(folds, fold_files, strict=True):
                chosen = [p for p in problems if p.id in set(fold)]
                if not chosen:
                    continue
                plans = [t for t in self._plans(lambda r, path=path: _rule_option(r, path))
                         if t[1] == LEARNED]
                for (label, _), by_n in self._score(chosen, plans).items():
                    for n, per in by_n.items():
                        merged[label].setdefault(n, {}).update(per)
            for label, by_n in merged.items():
                values[(label, LEARNED)] = by_n
        tokens = self._tokens(problems)
        out = []
        for setting in self.settings:
            for rule in [*self.selectors, *([LEARNED] if self.learned else [])]:
                for n, per in sorted(values.get((setting.label, rule), {}).items()):
                    if (setting.label, n) not in tokens or not per:
                        continue
                    out.append(Candidate(setting, rule, n, sum(per.values()) / len(per),
                                         tokens[(setting.label, n)], len(per), dict(per),
                                         axis=self.axis))
        return out

    def choose(self) -> Chosen:
        """Every configuration on the tuning part (the learned rule cross-validated) and the
        best per budget with its reference (store reads only)."""
        cv: dict[str, Any] = {}
        fold_files: list[str] = []
        selector_file: str | None = None
        folds: list[list[str]] = []
        if self.learned:
            cv, fold_files, selector_file = self.fit_selector()
            folds = cv.pop("folds_problems")
        tuning = self.candidates(self.tuning, selector_file, folds, fold_files)
        choices = []
        for budget, spec in self.resolve_budgets(tuning):
            ref, best = reference_at(tuning, self.settings[0], budget), best_at(tuning, budget)
            choices.append(Choice(budget, best, ref, spec) if ref is not None
                           and best is not None else Choice(budget, None, None, spec))
        return Chosen(tuning, choices, selector_file, cv)

    def resolve_budgets(self, tuning: Sequence[Candidate]) -> list[tuple[int | float, str]]:
        """(cost, as given) per budget, by cost; a ``ref@N`` one read off the tuning part:
        the reference's mean cost per problem at N samples (tokens rounded up), so the
        choice costs no more there."""
        out: dict[int | float, str] = {}
        for b in self.budgets:
            cost = b
            if isinstance(b, str):
                n = parse_reference_budget(b)
                ref = next((c for c in tuning if c.kind == "small"
                            and c.setting.label == self.settings[0].label
                            and c.selector == "majority" and c.n == n), None)
                if ref is None:
                    raise ConfigError(f"--budget {b}: the reference has no samples at n={n} on "
                                      "the tuning part")
                cost = ref.cost
                if self.axis == "tokens":
                    cost = math.ceil(round(cost, 6))  # a float a hair above 1234 is 1234
            spec = f"{b:g}" if isinstance(b, float) else str(b)  # 2e12, not 2000000000000.0
            out.setdefault(int(cost) if self.axis == "tokens" else float(cost), spec)
        return sorted(out.items())

    def held_out_candidates(self, chosen: Chosen) -> dict[str, Candidate]:
        """The confirmed configurations (``Chosen.confirmed``) of the small model scored on
        the held-out part, each on its first n samples there (store reads only)."""
        wanted = {c.label: c for c in chosen.confirmed() if c.kind == "small"}  # a mix: mixes.py
        replay = Harness(self.backend, self.store, self.held_out, [], [1], greedy=False,
                         seed=self.seed, options=self.options)
        plans = []
        for c in wanted.values():
            selector = _rule_option(c.selector, chosen.selector_file)
            options = {**c.setting.options, **({"selector": selector} if selector else {})}
            plan = replay.add_plan(c.label, STRATEGY, options)
            plan.budgets = [c.n]
            plans.append((c, plan))
        data = Scoring(self.store, self.held_out, [p for _, p in plans], self.seed).curves(
            self.draws)
        tokens = {(pt["strategy"], pt["budget"]): pt["tokens"] for pt in data["points"]}
        out = {}
        for c, plan in plans:
            per = data["per_problem"].get(plan.label, {}).get(c.n, {})
            if per:
                out[c.label] = Candidate(c.setting, c.selector, c.n, sum(per.values()) / len(per),
                                         tokens[(plan.label, c.n)], len(per), dict(per),
                                         axis=self.axis)
        return out

    def ceiling(self, c: Candidate, problems: Sequence[Problem], *, first: bool
                ) -> float | None:
        """What a perfect selection rule would reach: the share of ``problems`` with a right
        answer among the samples ``c`` votes over (pass@n). Expected over subsets of the stored
        samples (exact: per pool, ``pass_at_k``), as the tuning part's accuracy
        is; or on the first n samples (``first``), as the held-out part is scored. None when no
        problem has them all, and for a mix."""
        if c.kind != "small":
            return None
        plan = next(p for p in self.harness.plans if p.label == c.setting.label)
        targets = counts(plan.config, plan.pools, c.n)
        shares = []
        for problem in problems:
            missed = 1.0  # the chance that no sample voted over is right
            for pool, k in zip(plan.pools, targets, strict=True):
                if not k:
                    continue
                rows = self.store.samples(pool.key, problem.id)
                rows = rows[:k] if first else rows
                if len(rows) < k:
                    break
                missed *= 1.0 - pass_at_k(len(rows), sum(r.correct for r in rows), k)
            else:
                shares.append(1.0 - missed)
        return sum(shares) / len(shares) if shares else None

    def cut_samples(self) -> dict[str, int]:
        """How many of the stored samples of every setting, on every dev problem, the token
        limit cut short (finish reason "length"), and the largest limit they were drawn with."""
        cut = total = 0
        for plan in self.harness.plans:
            for pool in plan.pools:
                for problem in self.problems:
                    rows = self.store.samples(pool.key, problem.id)
                    total += len(rows)
                    cut += sum(r.finish_reason == "length" for r in rows)
        limit = max((int(getattr(p.config, "max_tokens", 0)) for p in self.harness.plans),
                    default=0)
        return {"cut": cut, "samples": total, "max_tokens": limit}

    def confirm(self, chosen: Chosen) -> dict[str, Any]:
        """The choices paired against their references on the tuning part and, confirmed, on
        the held-out part: the data the report and presets need (store reads only)."""
        held_by = self.held_out_candidates(chosen)
        choices = []
        for choice in chosen.choices:
            best, ref, budget = choice.best, choice.reference, choice.budget
            if best is None or ref is None:
                choices.append({"budget": budget, "budget_spec": choice.spec, "chosen": None,
                                "why": "no configuration fits: below one sample's tokens"})
                continue
            entry: dict[str, Any] = {
                "budget": budget, "budget_spec": choice.spec,
                "chosen": best.to_dict(), "reference": ref.to_dict(),
                "tuning": compare((best.label, budget), (ref.label, budget), best.values,
                                  ref.values, seed=self.seed).to_dict(),
            }
            h_best, h_ref = held_by.get(best.label), held_by.get(ref.label)
            if h_best is not None and h_ref is not None:
                entry["held_out"] = compare((best.label, budget), (ref.label, budget),
                                            h_best.values, h_ref.values, seed=self.seed).to_dict()
                entry["held_out_chosen"] = h_best.to_dict()
                entry["held_out_reference"] = h_ref.to_dict()
                entry["confirm_problem_ids"] = sorted(set(h_best.values) | set(h_ref.values))
            if best.kind == "small":  # a mix's ceiling is not a pass@n of its samples
                entry["ceiling"] = {
                    name: {"tuning": self.ceiling(c, self.tuning, first=False),
                           "held_out": self.ceiling(c, self.held_out, first=True)
                           if h_best is not None and h_ref is not None else None}
                    for name, c in (("chosen", best), ("reference", ref))}
            if choice.single is not None:
                entry.update(self._against(best, choice.single, budget, held_by, "single"))
                if choice.mix is not None:  # the best mix against the best single model
                    entry["mix"] = {"configuration": choice.mix.to_dict(), **{
                        k.replace("single", "against"): v for k, v in self._against(
                            choice.mix, choice.single, budget, held_by, "single").items()
                        if k != "single"}}
                    if (h_mix := held_by.get(choice.mix.label)) is not None:
                        entry["mix"]["held_out"] = h_mix.to_dict()
            entry["preset"] = self.preset(best, chosen.selector_file)
            entry["levers"] = [
                {"lever": name, "configuration": c.to_dict(),
                 "tuning": compare((c.label, budget), (ref.label, budget), c.values, ref.values,
                                   seed=self.seed).to_dict()}
                for name, c in levers(chosen.candidates, ref, budget)]
            choices.append(entry)
        return {
            "tuning_ids": sorted(p.id for p in self.tuning),
            "held_out_ids": sorted(p.id for p in self.held_out),
            "settings": [{"label": s.label, "options": s.options} for s in self.settings],
            "candidates": [c.to_dict() for c in chosen.candidates],
            "front": [c.label for c in pareto(chosen.candidates)],
            "held_out_generated": [{"setting": s.label, "n": n} for s, n in chosen.needed()],
            "choices": choices, "selector_cv": chosen.cv,
            "selector_file": chosen.selector_file,
            "budgets": [c.budget for c in chosen.choices], "sizes": self.sizes,
            "samples_cut": self.cut_samples(), "axis": self.axis,
            "anchors": [self._anchor(c, chosen, held_by) for c in chosen.anchors],
        }

    def _against(self, best: Candidate, other: Candidate, budget: int | float,
                 held_by: dict[str, Candidate], name: str) -> dict[str, Any]:
        """``best`` paired against ``other`` on the tuning part and, where both were confirmed,
        on the held-out part: ``{name}``, ``{name}_tuning``, ``{name}_held_out`` (the
        comparison) and ``held_out_{name}`` (``other`` there)."""
        out: dict[str, Any] = {name: other.to_dict(), f"{name}_tuning": compare(
            (best.label, budget), (other.label, budget), best.values, other.values,
            seed=self.seed).to_dict()}
        h_best, h_other = held_by.get(best.label), held_by.get(other.label)
        if h_best is not None and h_other is not None:
            out[f"held_out_{name}"] = h_other.to_dict()
            out[f"{name}_held_out"] = compare((best.label, budget), (other.label, budget),
                                              h_best.values, h_other.values,
                                              seed=self.seed).to_dict()
        return out

    def _anchor(self, anchor: Candidate, chosen: Chosen, held_by: dict[str, Candidate]
                ) -> dict[str, Any]:
        """An anchor on both parts, and each budget's choice paired against it on the
        held-out part."""
        held = held_by.get(anchor.label)
        out: dict[str, Any] = {"tuning": anchor.to_dict(),
                               "held_out": held.to_dict() if held is not None else None,
                               "choices": []}
        for choice in chosen.choices:
            best = choice.best
            h_best = held_by.get(best.label) if best is not None else None
            if best is None or h_best is None or held is None:
                continue
            out["choices"].append({
                "budget": choice.budget, "budget_spec": choice.spec, "chosen": best.label,
                "held_out": compare((best.label, choice.budget), (anchor.label, choice.budget),
                                    h_best.values, held.values, seed=self.seed).to_dict()})
        return out

    def preset(self, choice: Candidate, selector_file: str | None) -> Preset:
        """The preset that runs ``choice``."""
        return preset_of(choice, selector_file)


def preset_of(choice: Candidate, selector_file: str | None) -> Preset:
    options = {**choice.setting.options, "n": choice.n}
    if choice.selector == LEARNED:
        options["selector"] = selector_file
    elif choice.selector != "majority":
        options["selector"] = choice.selector
    return Preset(STRATEGY, options)


async def run_tune(tuner: Tuner) -> dict[str, Any]:
    """Generate on the tuning part, choose there, generate on the held-out part what the choice
    needs, confirm: the data the report and presets need. Resumable at every stage."""
    await tuner.generate()
    tuner.chosen = chosen = tuner.choose()
    await tuner.generate_held_out(chosen)
    return tuner.confirm(chosen)


# the names that lived here before the split (the CLI, tests and plugins import them from here)
__all__ = ["LEARNED", "REF_MARGIN", "STAGES", "STRATEGY", "Candidate", "Choice", "Chosen",
           "Setting", "TuneStatus", "Tuner", "best_at", "check_budgets", "fits_in", "grid",
           "levers", "levers_of", "parse_reference_budget", "pareto", "preset_of",
           "reference_at", "run_tune", "split"]
