"""Model-graded rewards: an LLM judge's P(correct) and a process reward model's path score.

Unlike the math and code rewards these cost model calls, so each batch's cost goes to TRL's log
(``<name>/prompt_tokens``, ``<name>/completion_tokens``, ``<name>/seconds``):

- :class:`JudgeReward`: one judge request per completion, one batched call per prompt
  (ponder's ``judge`` verifier: the question, the last ``max_solution_chars`` of the solution
  and its extracted answer; one generated token read through its top logprobs where the
  backend gives them, else up to 4).
- :class:`StepReward`: one step-scorer pass per completion (one call per prompt), split into
  steps at ``delimiter``
  (``prm``: one forward pass of a process reward model over question + completion; ``prm-http``:
  one request; ``self-judge``: one call per step; ``confidence``: free, but needs logprobs the
  completion does not carry here, so it scores every step 0.5).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from ponder.backends.base import Backend, Capabilities
from ponder.backends.loading import load_backend
from ponder.core.context import Context
from ponder.domains.answers import extract_answer
from ponder.errors import ConfigError
from ponder.rewards.base import Reward, RewardValue, completion_text, log_metric, prompt_text
from ponder.types import Candidate, Problem, Step
from ponder.verifiers.judge import JudgeVerifier
from ponder.verifiers.steps import AGGREGATES, aggregate_steps, load_step_scorer


class _ModelReward(Reward):
    """Holds how to reach a model, and opens it on first use in each process."""

    def __init__(self, model: str | None = None, base_url: str | None = None, *,
                 backend: Backend | None = None, api_key: str | None = None,
                 backend_options: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.model = model
        self.base_url = base_url
        self.api_key = api_key
        self.backend_options = dict(backend_options or {})
        self._backend = backend
        self._given = backend is not None

    def __getstate__(self) -> dict[str, Any]:
        if self._given:
            raise TypeError(f"{self.name}: a reward made with backend= does not pickle; give "
                            "model= (and base_url=) so each process opens its own")
        return {**self.__dict__, "_backend": None}

    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = load_backend(self.model, self.base_url, api_key=self.api_key,
                                         **self.backend_options)
        return self._backend

    def _report(self, columns: Mapping[str, Any], ctx: Context, seconds: float) -> None:
        usage = ctx.trace.usage
        log_metric(columns, f"{self.name}/prompt_tokens", usage.prompt_tokens)
        log_metric(columns, f"{self.name}/completion_tokens", usage.completion_tokens)
        log_metric(columns, f"{self.name}/seconds", seconds)


class JudgeReward(_ModelReward):
    """P("yes") that the completion is correct, from an LLM judge (ponder's ``judge``
    verifier); None where the judge says neither yes nor no. ``model``/``base_url``: as
    ``ponder ask -m/--base-url`` (an in-process GGUF, or any OpenAI-compatible server)."""

    name = "judge"

    def __init__(self, model: str | None = None, base_url: str | None = None, *,
                 max_solution_chars: int = 4000, **kwargs: Any) -> None:
        super().__init__(model, base_url, **kwargs)
        self.max_solution_chars = max_solution_chars

    async def ascore(self, prompts: Sequence[Any], completions: Sequence[Any],
                     completion_ids: Sequence[Sequence[int]] | None, columns: Mapping[str, Any]
                     ) -> list[RewardValue]:
        ctx = Context(self.backend())
        started = time.monotonic()
        verifier = JudgeVerifier(max_solution_chars=self.max_solution_chars)
        values: list[RewardValue] = [None] * len(completions)
        for question, indices in by_prompt(prompts).items():  # one batched call per prompt
            texts = [completion_text(completions[i]) for i in indices]
            scores = await verifier.score(Problem(question),
                                          [Candidate(t, extract_answer(t)) for t in texts],
                                          ctx, None)
            for i, score in zip(indices, scores, strict=True):
                values[i] = score
        self._report(columns, ctx, time.monotonic() - started)
        return values


class StepReward(_ModelReward):
    """A step scorer's score of the completion's reasoning path: the completion split into
    steps at ``delimiter``, each step scored, the scores combined by ``aggregate`` (min, prod,
    last, mean). ``scorer``/``options`` as ``--step-scorer`` / ``scorer_options`` of the step
    searches, e.g. ``StepReward("prm", {"model": "Qwen/Qwen2.5-Math-PRM-7B"})``. ``model`` is
    needed only by a scorer that generates (``self-judge``)."""

    name = "step_score"

    def __init__(self, scorer: str = "prm", options: Mapping[str, Any] | None = None, *,
                 delimiter: str = "\n\n", aggregate: str = "min", model: str | None = None,
                 base_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(model, base_url, **kwargs)
        if aggregate not in AGGREGATES:
            raise ConfigError(f"unknown step aggregation {aggregate!r}; valid: "
                              f"{', '.join(AGGREGATES)}")
        if not delimiter:
            raise ConfigError("the step delimiter must not be empty")
        self.scorer = scorer
        self.options = dict(options or {})
        self.delimiter = delimiter
        self.aggregate = aggregate

    def steps(self, text: str) -> list[Step]:
        return [Step(part.strip()) for part in text.split(self.delimiter) if part.strip()]

    def backend(self) -> Backend:
        if self._backend is None and self.model is None and self.base_url is None:
            return _NoModel()  # a scorer that never generates (prm, prm-http, confidence)
        return super().backend()

    async def ascore(self, prompts: Sequence[Any], completions: Sequence[Any],
                     completion_ids: Sequence[Sequence[int]] | None, columns: Mapping[str, Any]
                     ) -> list[RewardValue]:
        scorer = load_step_scorer(self.scorer, self.options)
        ctx = Context(self.backend())
        started = time.monotonic()
        values: list[RewardValue] = [None] * len(completions)
        for question, indices in by_prompt(prompts).items():  # one scorer call per prompt
            steps = {i: self.steps(completion_text(completions[i])) for i in indices}
            scored = [i for i in indices if steps[i]]  # no steps: None
            if not scored:
                continue
            rows = await scorer.score_steps(Problem(question), [steps[i] for i in scored], ctx,
                                            None)
            for i, row in zip(scored, rows, strict=True):
                values[i] = aggregate_steps(row, self.aggregate)
        self._report(columns, ctx, time.monotonic() - started)
        return values


def by_prompt(prompts: Sequence[Any]) -> dict[str, list[int]]:
    """Completion indices grouped by their prompt's question (GRPO samples several per prompt),
    in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, prompt in enumerate(prompts):
        groups.setdefault(prompt_text(prompt), []).append(i)
    return groups


class _NoModel(Backend):
    """The backend of a step reward given no model: any call to it says one is needed."""

    name = "none"
    model = "none"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(parallel_n=False, logprobs=False, prefill=False, early_stop=False,
                            max_context=0)

    async def generate(self, requests: Any, on_progress: Any = None) -> Any:
        raise ConfigError("this step scorer generates text: give StepReward a model= "
                          "(or base_url=)")
