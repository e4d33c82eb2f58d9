"""How a sampling strategy gets its N candidates: chains of thought, programs, or both.

- ``chain``: sampled chains of thought; the answer is read from the text.
- ``program`` (program-of-thought, PAL): the model writes one Python program that prints the
  answer; the sandbox runs it and the printed value is the candidate's answer. A program that
  raises, times out or prints nothing is shown its (trimmed) error and repaired, up to
  ``repairs`` rounds, all failed samples of a round in one batched call.
- ``mixed``: both at once (``program_share`` of the N are programs), in one concurrent batch.

Every candidate carries its mode in ``metadata['mode']``, which the vote can weight
(:class:`SamplingModeConfig`), as it can a candidate cut off at the token limit (``cut_weight``,
0 by default: a cut chain does not vote). Self-consistency, best-of-n and the evaluation
harness all draw their samples through :func:`sample_candidates`.
"""

from __future__ import annotations

import asyncio
import re
from typing import Literal

from pydantic import Field, model_validator

from ponder.core.context import Context, Traced
from ponder.domains.answers import extract_answer
from ponder.domains.code_problems import extract_code
from ponder.errors import BudgetExhausted
from ponder.sandbox import Execution
from ponder.strategies import prompts
from ponder.strategies.base import StrategyConfig, problem_messages, to_candidate
from ponder.strategies.prompts import PROGRAM_SYSTEM as PROGRAM_SYSTEM
from ponder.types import Candidate, Message, Problem, SamplingParams

Mode = Literal["chain", "program", "mixed"]
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")

REPAIR = """Running your program gave:
{error}

Fix the program. Reply with the whole corrected program in one ```python block that prints the
final answer."""


class SamplingModeConfig(StrategyConfig):
    """Options of strategies that sample N candidates and vote or score them."""

    mode: Mode = Field("chain", description="chain, program (program-of-thought) or mixed")
    repairs: int = Field(1, ge=0, le=5, description="program mode: repair rounds per program")
    program_share: float = Field(0.5, ge=0.0, le=1.0,
                                 description="mixed mode: fraction of samples that are programs")
    chain_weight: float = Field(1.0, ge=0.0, description="a chain's vote")
    program_weight: float = Field(1.0, ge=0.0, description="a program's vote")
    cross_mode_bonus: float = Field(
        0.5, ge=0.0, description="an answer both modes reached gets its weight x (1 + bonus)")
    cut_weight: float = Field(
        0.0, ge=0.0, description="a sample cut off at the token limit votes with its weight x "
        "this (0: not at all; when every answered sample was cut, they vote at full weight)")
    template: str | None = Field(None, description="prompt template: NAME[@VERSION] or FILE.json")
    shots: int = Field(0, ge=0, le=32, description="few-shot exemplars from examples=FILE")
    examples: str | None = Field(None, description="JSONL of worked exemplars for shots")

    @model_validator(mode="after")
    def _prompt_options(self) -> SamplingModeConfig:
        if self.shots and not self.examples:
            raise ValueError("shots needs examples=FILE (a JSONL of worked exemplars)")
        if self.template is not None:
            prompts.get_template(self.template)  # an unknown one is refused now, in one line
        if self.examples is not None:
            prompts.load_examples(self.examples)
        return self

    def vote_weight(self, candidate: Candidate) -> float:
        mode = candidate.metadata.get("mode", "chain")
        return self.program_weight if mode == "program" else self.chain_weight


SAMPLING_FIELDS = (*StrategyConfig.model_fields, "mode", "repairs", "program_share")


def split(n: int, cfg: SamplingModeConfig) -> tuple[int, int]:
    """(chains, programs) for N samples."""
    if cfg.mode == "chain":
        return n, 0
    if cfg.mode == "program":
        return 0, n
    programs = round(n * cfg.program_share)
    if n > 1 and 0 < cfg.program_share < 1:
        programs = min(max(programs, 1), n - 1)  # a mixed vote has both kinds
    return n - programs, programs


async def sample_candidates(problem: Problem, ctx: Context, cfg: SamplingModeConfig, n: int,
                            parent: int | None, params: SamplingParams | None = None,
                            label: str = "chain") -> list[Candidate]:
    """N candidates in ``cfg.mode``; chains first, then programs. Stops early (fewer) only on
    an exhausted budget."""
    params = params or cfg.sampling()
    chains, programs = split(n, cfg)

    async def chain_part() -> list[Candidate]:
        if not chains:
            return []
        try:
            traced = await ctx.sample(chain_messages(problem, cfg), params, n=chains,
                                      parent=parent, label=label)
        except BudgetExhausted:
            return []
        return [_with_mode(to_candidate(t, problem), "chain") for t in traced]

    async def program_part() -> list[Candidate]:
        if not programs:
            return []
        return await sample_programs(problem, ctx, cfg, programs, parent, params)

    first, second = await asyncio.gather(chain_part(), program_part())
    return first + second


def _with_mode(candidate: Candidate, mode: str) -> Candidate:
    return candidate.replace(metadata={**candidate.metadata, "mode": mode})


def chain_messages(problem: Problem, cfg: StrategyConfig) -> list[Message]:
    """A chain's conversation: the problem as its domain poses it, in the template's words,
    after the few-shot exemplars."""
    system = prompts.system_for(cfg, type(cfg).model_fields["system"].default, program=False)
    return prompts.pose(problem_messages(problem, system), problem, cfg, program=False)


def program_messages(problem: Problem, cfg: StrategyConfig) -> list[Message]:
    system = prompts.system_for(cfg, type(cfg).model_fields["system"].default, program=True)
    base = [Message("system", problem.system or system), Message("user", problem.question)]
    return prompts.pose(base, problem, cfg, program=True)


def printed_answer(stdout: str) -> str | None:
    """The answer a program printed: its last non-empty line, read like a final answer."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if not lines:
        return None
    last = lines[-1][:200]
    answer = extract_answer(last) or last
    numbers = _NUMBER.findall(answer)
    return numbers[0].replace(",", "") if len(numbers) == 1 else answer


def _error_of(code: str | None, run: Execution | None) -> str | None:
    """Why a program gave no answer (None: it did)."""
    if code is None:
        return "Your reply has no ```python code block."
    assert run is not None
    if run.status != "ok":
        tail = (run.stderr.strip().splitlines() or [""])[-1]
        return f"{run.status}: {run.message or tail}"[:400]
    if printed_answer(run.stdout) is None:
        return "The program printed nothing. End it with print(<the final answer>)."
    return None


async def sample_programs(problem: Problem, ctx: Context, cfg: SamplingModeConfig, n: int,
                          parent: int | None, params: SamplingParams) -> list[Candidate]:
    messages = program_messages(problem, cfg)
    try:
        traced = await ctx.sample(messages, params, n=n, parent=parent, label="program")
    except BudgetExhausted:
        return []
    conversations = [list(messages) for _ in traced]
    usages = [t.completion.usage for t in traced]
    latest: list[Traced] = list(traced)
    runs: list[tuple[str | None, Execution | None]] = await asyncio.gather(
        *(_execute(ctx, t) for t in latest))
    repairs_done = [0] * n
    for _ in range(cfg.repairs):
        failed = [i for i, (code, run) in enumerate(runs) if _error_of(code, run) is not None]
        if not failed:
            break
        requests = []
        for i in failed:
            conversations[i] = [*conversations[i],
                                Message("assistant", latest[i].completion.text),
                                Message("user", REPAIR.format(error=_error_of(*runs[i])))]
            requests.append((conversations[i], latest[i].node))
        try:
            fixed = await asyncio.gather(*(
                ctx.sample(conv, params, parent=node, label="repair") for conv, node in requests))
        except BudgetExhausted:
            break
        new_runs = await asyncio.gather(*(_execute(ctx, t) for [t] in fixed))
        for i, [t], run in zip(failed, fixed, new_runs, strict=True):
            latest[i] = t
            runs[i] = run
            usages[i] = usages[i] + t.completion.usage
            repairs_done[i] += 1
    out = []
    for i, t in enumerate(latest):
        code, run = runs[i]
        error = _error_of(code, run)
        answer = None if error is not None or run is None else printed_answer(run.stdout)
        completion = t.completion
        out.append(Candidate(
            text=completion.text, answer=answer, usage=usages[i],
            finish_reason=completion.finish_reason, mean_logprob=completion.mean_logprob,
            metadata={"node": t.node, "mode": "program", "program": code,
                      "output": run.stdout[-500:] if run else None, "error": error,
                      "repairs": repairs_done[i],
                      "exec_seconds": round(run.seconds, 4) if run else 0.0},
        ))
    return out


async def _execute(ctx: Context, traced: Traced) -> tuple[str | None, Execution | None]:
    code = extract_code(traced.completion.text)
    if code is None:
        ctx.trace.add("execute", "no program found", parent=traced.node, status="no-code")
        return None, None
    run = await ctx.sandbox.run(code, as_main=True)
    ctx.trace.add("execute", "program run", parent=traced.node, status=run.status,
                  output=run.stdout[-300:], message=run.message, seconds=round(run.seconds, 4))
    return code, run
