"""The evaluation harness: every strategy at every budget on every problem, resumable.

Sampling strategies (``eval_mode`` vote / best-score / sequential) generate their largest budget
once per problem into shared sample pools (``pools.py``), each new sample stored as its call
returns; smaller budgets, and early-stopping rules, are replayed on the stored samples
(``scoring.py``). Budget strategies run once per budget; ``single`` strategies once; ``batch``
strategies once over all the problems. A greedy chain of thought is the baseline; coverage
(pass@k) comes from the first sampling strategy. Answers are graded by the problem's domain
(math: equivalence to the gold answer; code: its hidden tests, in the sandbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ponder import registry
from ponder.backends.base import Backend
from ponder.core.context import DEFAULT_SANDBOX, Context, EventSink
from ponder.domains import domain_for
from ponder.errors import ConfigError
from ponder.eval.plans import (
    GREEDY,
    Plan,
    parse_budgets,
    plan_samples,
    samples_used,
    seed_of,
)
from ponder.eval.pools import Pool, counts, parse_strategy_spec, pick, pools_for, score_values
from ponder.eval.scoring import Scoring
from ponder.eval.store import ResultRow, SampleRow, ScoreRow, Store, strategy_key
from ponder.eval.traces import save_trace
from ponder.presets import load_preset
from ponder.runner import (
    build_strategy,
    check_backend,
    check_roles,
    choose_verifier,
    new_context,
    run_strategy,
    strategy_options,
)
from ponder.sandbox import Sandbox
from ponder.strategies.prompts import check_disjoint
from ponder.strategies.samplers import sample_candidates
from ponder.types import Candidate, Problem


async def _together(coroutines: Iterable[Awaitable[Any]]) -> None:
    """Run the coroutines concurrently; the first failure cancels the others and is raised
    (``asyncio.gather`` would leave them running, writing to the store after the error)."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        await asyncio.gather(*tasks)
    except (Exception, asyncio.CancelledError):  # not GeneratorExit: a closed coroutine
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


@dataclass
class Status:
    """What the progress display shows. ``samples`` and ``tokens`` move as the model works:
    every finished sample (a judge's verdicts are not samples) and every generated token, of
    calls still in flight too; ``problems_done`` only when a problem's every plan is stored."""

    problems_total: int
    problems_done: int = 0
    samples: int = 0
    tokens: int = 0
    started: float = field(default_factory=time.monotonic)
    correct: int = 0
    scored: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.scored if self.scored else None


LIVE_EVERY = 0.1  # seconds between progress updates for tokens alone (a sample always shows)


@dataclass
class _Call:
    """What a counter has counted of one call in flight."""

    judge: bool = False  # a verifier's call: its verdicts are not samples
    tokens: int = 0  # tokens counted so far
    samples: int = 0  # finished samples counted so far
    finished_tokens: int = 0  # the finished samples' tokens


class _Counter:
    """An event sink per run context (``core/context.py``'s events) that adds to ``status``
    what the model generates as it generates it: the tokens of each call in flight, as the
    backend reports them, and each finished sample; the call's own totals when it returns
    (exact, also for a backend that reports nothing on the way). Backends call it from their
    own threads: it holds the harness's lock."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.calls: dict[Any, _Call] = {}

    def __call__(self, event: str, details: dict[str, Any]) -> None:
        if event not in ("generate", "tokens", "sample", "generated"):
            return
        harness, key = self.harness, details.get("call")
        with harness.lock:
            status = harness.status
            if event == "generate":
                self.calls[key] = _Call(judge=str(details.get("label", "")).startswith("judge"))
                return
            call = self.calls.setdefault(key, _Call())
            if event == "generated":  # the call returned: its exact totals
                del self.calls[key]
                status.tokens += int(details.get("tokens") or 0) - call.tokens
                if not call.judge:
                    status.samples += int(details.get("samples") or 0) - call.samples
            else:
                if event == "sample":
                    call.finished_tokens += int(details.get("tokens") or 0)
                    if not call.judge:
                        call.samples += 1
                        status.samples += 1
                # "tokens": the call's running total, which a finished sample's tokens bound
                reported = int(details.get("tokens") or 0) if event == "tokens" else 0
                tokens = max(call.tokens, reported, call.finished_tokens)
                status.tokens += tokens - call.tokens
                call.tokens = tokens
        harness.live_update(force=event != "tokens")


def preset_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``preset:FILE`` -> the preset's strategy and options (its effort preset applied)."""
    preset = load_preset(spec.removeprefix("preset:"))
    return preset.strategy, strategy_options(preset.strategy, preset.effort, **preset.options)


class Harness:
    def __init__(
        self,
        backend: Backend,
        store: Store,
        problems: Sequence[Problem],
        strategies: Sequence[str],
        budgets: Sequence[int],
        *,
        options: dict[str, Any] | None = None,
        verifier: str | None = None,
        seed: int = 0,
        greedy: bool = True,
        concurrency: int = 1,
        on_update: Callable[[Status], None] | None = None,
        sandbox: Sandbox | None = None,
        traces: Path | None = None,
        logprobs: bool = False,
        models: Mapping[str, Backend] | None = None,
        model_key: str | None = None,
    ) -> None:
        self.backend = backend
        # which model this harness's samples and results are keyed by, when the store holds
        # another model's too (``pools_for``); None: the store's own generator, keys unchanged
        self.model_key = model_key
        self.models = dict(models or {})  # the run's other models by role (``strong``, ...)
        self.store = store
        self.problems = list(problems)
        self.budgets = list(budgets)
        self.options = dict(options or {})
        self.verifier = verifier
        self.seed = seed
        self.concurrency = max(1, concurrency)
        self.on_update = on_update
        self.sandbox = sandbox or DEFAULT_SANDBOX
        self.traces = traces  # a folder to keep each run's trace in (``ponder view``), or None
        self.logprobs = logprobs  # store each sample's token confidence (selection rules)
        self.status = Status(len(self.problems))
        self.lock = threading.Lock()  # the status, counted from backend threads too
        self._shown = 0.0  # when the progress was last shown for tokens alone
        self.plans: list[Plan] = []
        if greedy:
            self.plans.append(self._plan(GREEDY, "cot", {**self.options, "temperature": 0.0}))
        for spec in strategies:
            name, own = preset_spec(spec) if spec.startswith("preset:") \
                else parse_strategy_spec(spec)
            only = own.pop("budgets", None)  # e.g. deepconf[budgets=16] or [budgets=4/16]
            plan = self._plan(spec, name, {**self.options, **own})
            if only is not None and plan.mode not in ("single", "batch"):
                plan.budgets = parse_budgets(str(only).replace("/", ","))
            self.plans.append(plan)
        # a selection rule reads token confidence: its samples are drawn with logprobs
        self.logprobs = logprobs or any(getattr(p.config, "selector", None) for p in self.plans)
        labels = [p.label for p in self.plans]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"a strategy is listed twice: {', '.join(labels)}")

    def add_plan(self, label: str, name: str, options: dict[str, Any]) -> Plan:
        """One more strategy, by its options rather than a spec (``ponder tune``'s grid)."""
        plan = self._plan(label, name, {**self.options, **options})
        self.plans.append(plan)
        self.logprobs = self.logprobs or bool(getattr(plan.config, "selector", None))
        return plan

    def _plan(self, label: str, name: str, options: dict[str, Any]) -> Plan:
        if "examples" not in registry.strategies.get(name).Config.model_fields:
            options = {k: v for k, v in options.items() if k != "examples"}  # --examples: few-shot
        strategy = build_strategy(name, **options)  # validates name and options up front
        if getattr(strategy.config, "shots", 0):
            check_disjoint(strategy.config.examples, self.problems)  # never an evaluated one
        mode = strategy.eval_mode
        config = strategy.config.model_dump()
        for knob in type(strategy).budget_overrides(1):
            config.pop(knob, None)  # the budget is a row key, not part of the strategy's key
        for knob in ("template", "shots", "examples", "selector", "cut_weight"):
            if not config.get(knob):
                config.pop(knob, None)  # unset: keys of stores written before they existed
        pools: list[Pool] = []
        verifier = None
        if mode in ("vote", "best-score", "sequential"):
            if config.get("weighting", "none") != "none":
                raise ConfigError("ponder eval scores self-consistency by plain majority vote; "
                                  f"weighting={config['weighting']} is not supported there")
            pools = pools_for(config, self.model_key)
            if mode == "best-score":
                verifier = self.verifier or (
                    domain_for(self.problems[0]).default_verifier if self.problems else None
                ) or getattr(strategy, "default_verifier", None)
                config["verifier"] = verifier
        if self.model_key is not None:
            config["model"] = self.model_key
        key = strategy_key(name, config)
        self.store.register_strategy(key, name, config)
        budgets = [1] if mode in ("single", "batch") else self.budgets
        return Plan(label, name, key, mode, budgets, dict(options), pools, verifier)

    # -- generation ------------------------------------------------------------------------

    async def run(self) -> None:
        await self.backend.probe()  # an HTTP backend learns what it can do before the judge asks
        for plan in self.plans:
            check_backend(plan.build(), self.backend)
            check_roles(plan.build(), self.models)
        for model in self.models.values():
            await model.probe()
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(problem: Problem) -> None:
            async with semaphore:
                await self.run_problem(problem)
                self.status.problems_done += 1
                self._update()

        await _together(one(p) for p in self.problems)
        for plan in self.plans:
            if plan.mode == "batch":
                await self._ensure_batch(plan)

    async def run_problem(self, problem: Problem) -> None:
        """Every plan but the batch ones on one problem (what a Ray worker runs: ray_eval.py),
        all at once: a batching backend decodes the greedy chain, every pool's samples and the
        judge's calls in the same steps instead of one plan's tail after another. A pool shared
        by several plans is topped up once, to the most any of them uses."""
        locks: dict[str, asyncio.Lock] = {}
        await _together(self._ensure(plan, problem, locks) for plan in self.plans)

    def _pool_target(self, key: str) -> int:
        """The most samples of pool ``key`` any plan uses (one draw serves them all)."""
        return max(
            (target for plan in self.plans if plan.pools
             for pool, target in zip(plan.pools, counts(plan.config, plan.pools,
                                                        max(plan.budgets)), strict=True)
             if pool.key == key),
            default=0,
        )

    async def _ensure_batch(self, plan: Plan) -> None:
        """A strategy that allocates compute across the problems runs once over all of them
        (those without a stored result: a resumed run routes the rest as one batch)."""
        missing = [p for p in self.problems if self.store.result(plan.key, p.id, 1) is None]
        if not missing:
            return
        strategy = plan.build()

        def make_ctx(problem: Problem) -> Context:
            return new_context(self.backend, sandbox=self.sandbox,
                               verifier=choose_verifier(self.verifier, strategy, problem),
                               seed=seed_of(self.seed, plan.key, problem.id, 1),
                               events=self.counter())

        results = await strategy.run_batch(missing, make_ctx)
        for problem, result in zip(missing, results, strict=True):
            await self._store_result(plan, problem, 1, result)

    def _update(self) -> None:
        if self.on_update is not None:
            self.on_update(self.status)

    def counter(self) -> EventSink:
        """An event sink for one run context that counts its samples and tokens into
        ``status`` as they are generated (see :class:`_Counter`)."""
        return _Counter(self)

    def live_update(self, force: bool = True) -> None:
        """Show the progress: now (``force``), or at most every ``LIVE_EVERY`` seconds."""
        now = time.monotonic()
        if not force and now - self._shown < LIVE_EVERY:
            return
        self._shown = now
        self._update()

    def _note(self, correct: bool) -> None:
        """A plan's result on a problem is in (its samples and tokens were counted as they
        were generated)."""
        with self.lock:
            self.status.scored += 1
            self.status.correct += correct
        self._update()

    async def _grade(self, problem: Problem, answers: Sequence[str | None]) -> list[bool]:
        return await domain_for(problem).grade(problem, answers, self.sandbox)

    async def _ensure(self, plan: Plan, problem: Problem,
                      locks: dict[str, asyncio.Lock] | None = None) -> None:
        if plan.mode == "batch":
            return  # after every problem's other plans: see _ensure_batch
        locks = {} if locks is None else locks
        if plan.pools:
            await self._ensure_sampled(plan, problem, locks)
            return
        # two plans can share a key (greedy and cot[temperature=0]): one runs, one finds it
        async with locks.setdefault(f"result:{plan.key}", asyncio.Lock()):
            for budget in plan.budgets:
                if self.store.result(plan.key, problem.id, budget) is not None:
                    continue
                strategy = plan.build(budget if plan.mode == "budget" else None)
                result = await run_strategy(
                    strategy, problem, self.backend, verifier=self.verifier,
                    sandbox=self.sandbox, seed=seed_of(self.seed, plan.key, problem.id, budget),
                    events=self.counter(), models=self.models)
                await self._store_result(plan, problem, budget, result)

    async def _store_result(self, plan: Plan, problem: Problem, budget: int, result: Any
                            ) -> None:
        u = result.usage
        if self.traces is not None:  # before the row: a stored result always has its trace
            save_trace(self.traces, plan.key, problem, budget, result)
        answers = [result.answer, *(c.answer for c in result.candidates)]
        correct, *each = await self._grade(problem, answers)
        self.store.add_result(plan.key, problem.id, ResultRow(
            budget, result.answer, correct,
            u.prompt_tokens, u.completion_tokens, u.calls, u.seconds,
            [{**c.to_dict(), "correct": ok} for c, ok in zip(result.candidates, each,
                                                              strict=True)],
            {name: cost.to_dict() for name, cost in result.models.items()},
        ))
        self._note(correct)

    async def _ensure_sampled(self, plan: Plan, problem: Problem,
                              locks: dict[str, asyncio.Lock]) -> None:
        """Top up the problem's sample pools (together) to the largest budget, then
        (best-score) score the samples that lack this verifier's score. Each step is stored as
        soon as it returns. ``locks``: shared by the problem's plans, one per pool and one per
        pool and verifier, so that what one plan draws or scores the others find."""
        targets = counts(plan.config, plan.pools, max(plan.budgets))
        drawn = [0]  # new samples (they and their tokens are counted as they come: _Counter)

        async def top_up(pool: Pool, target: int) -> None:
            async with locks.setdefault(pool.key, asyncio.Lock()):
                have = self.store.sample_count(pool.key, problem.id)
                if have < target:  # what any plan on this pool uses, drawn in one call
                    want = max(target, self._pool_target(pool.key))
                    await self._sample(plan, pool, problem, have, want - have)
                    drawn[0] += want - have

        await _together(top_up(pool, target)
                        for pool, target in zip(plan.pools, targets, strict=True))
        new_samples = drawn[0]
        samples = plan_samples(self.store, plan, problem, targets)
        scores: list[float | None] = [None] * len(samples)
        if plan.verifier is not None:
            async with contextlib.AsyncExitStack() as held:  # plans sharing a pool and verifier
                for key in sorted(f"score:{p.key}:{plan.verifier}" for p in plan.pools):
                    await held.enter_async_context(locks.setdefault(key, asyncio.Lock()))
                stored = {p.key: self.store.scores(p.key, plan.verifier, problem.id)
                          for p in plan.pools}
                await self._score(plan, problem, samples, stored)
            scores = score_values(samples, plan.pools, stored)
        if new_samples or plan.verifier is not None:
            used = samples_used(plan, samples, max(plan.budgets))
            chosen = pick("vote" if plan.mode == "sequential" else plan.mode, plan.config,
                          samples, scores, range(used))
            correct = chosen is not None and samples[chosen].correct
            self._note(correct)

    async def _sample(self, plan: Plan, pool: Pool, problem: Problem, have: int, n: int) -> int:
        cfg = plan.config
        if "mode" in type(cfg).model_fields:
            cfg = cfg.model_copy(update={"mode": pool.mode})
        ctx = new_context(self.backend, sandbox=self.sandbox,
                          seed=seed_of(self.seed, pool.key, problem.id, have),
                          events=self.counter())
        started = time.monotonic()
        params = cfg.sampling(logprobs=0) if self.logprobs and \
            self.backend.capabilities.logprobs else None
        candidates = await sample_candidates(problem, ctx, cfg, n, None, params, label="sample")
        seconds, calls, n = time.monotonic() - started, ctx.trace.usage.calls, len(candidates)
        answers = [c.answer for c in candidates]
        domain = domain_for(problem)
        grades = await domain.grade(problem, answers, self.sandbox)
        keys = await domain.signatures(problem, answers, self.sandbox) or [None] * n
        rows = [
            SampleRow(have + i, c.text, c.answer, ok, c.usage.prompt_tokens,
                      c.usage.completion_tokens, calls / n, seconds / n, c.finish_reason, key,
                      {k: v for k, v in c.metadata.items() if k != "node"}
                      | ({"mean_logprob": c.mean_logprob} if c.mean_logprob is not None else {})
                      or None)
            for i, (c, ok, key) in enumerate(zip(candidates, grades, keys, strict=True))
        ]
        self.store.add_samples(pool.key, problem.id, rows)
        return sum(c.usage.completion_tokens for c in candidates)

    async def _score(self, plan: Plan, problem: Problem, samples: Sequence[SampleRow],
                     stored: dict[str, dict[int, ScoreRow]]) -> int:
        assert plan.verifier is not None
        tokens = 0
        for pool in plan.pools:
            missing = [r for r in samples if r.mode == pool.mode or len(plan.pools) == 1]
            missing = [r for r in missing if r.idx not in stored[pool.key]]
            if not missing:
                continue
            ctx = new_context(self.backend, sandbox=self.sandbox,
                              seed=seed_of(self.seed, plan.key, problem.id),
                              events=self.counter())
            started = time.monotonic()
            verifier = choose_verifier(plan.verifier, None, problem)
            assert verifier is not None
            values = await verifier.score(
                problem, [Candidate(r.text, r.answer, metadata=r.meta or {}) for r in missing],
                ctx, None)
            u, m = ctx.trace.usage, len(missing)
            seconds = time.monotonic() - started
            rows = [ScoreRow(r.idx, v, u.completion_tokens / m, u.prompt_tokens / m,
                             u.calls / m, seconds / m)
                    for r, v in zip(missing, values, strict=True)]
            self.store.add_scores(pool.key, plan.verifier, problem.id, rows)
            stored[pool.key].update({r.idx: r for r in rows})
            tokens += u.completion_tokens
        return tokens

    # -- curves ----------------------------------------------------------------------------

    def curves(self, draws: int = 200) -> dict[str, Any]:
        """Accuracy, confidence interval and cost for every strategy x budget, plus the greedy
        baseline and coverage; per-problem details for the drill-down."""
        parameters = getattr(self.backend, "parameters", None) if self.backend else None
        prices = getattr(self.backend, "prices", None) if self.backend else None
        return Scoring(self.store, self.problems, self.plans, self.seed,
                       parameters, prices).curves(draws)
