"""The ``code`` domain: a problem with ``entry_point`` / ``tests`` metadata (e.g. HumanEval).

The answer is the program in the completion; programs are compared by what they *do* — their
outputs on the problem's example inputs plus inputs generated from them (execution-based voting,
as in AlphaCode and CodeT) — and graded by the hidden tests, all in the sandbox.
"""

from __future__ import annotations

import ast
import asyncio
import json
import random
from collections.abc import Sequence
from typing import ClassVar

from ponder.domains.base import pose
from ponder.domains.code_problems import hidden_tests, probe_inputs, program_of, task_names
from ponder.sandbox import Sandbox, TestCase
from ponder.types import Message, Problem

CODE_SYSTEM = (
    "You are an expert Python programmer. Think briefly about the approach, then write the "
    "complete solution as a single ```python code block."
)


class CodeDomain:
    name: ClassVar[str] = "code"
    default_verifier: ClassVar[str | None] = "code-tests"
    generated_inputs: ClassVar[int] = 8

    def messages(self, problem: Problem, system: str, default_system: str) -> list[Message]:
        question = problem.question
        if problem.metadata.get("entry_point"):
            question = ("Complete the following Python function. Reply with the whole function "
                        f"in one ```python block.\n\n```python\n{question.rstrip()}\n```")
        return pose(Problem(question, system=problem.system),
                    CODE_SYSTEM if system == default_system else system)

    def extract(self, problem: Problem, text: str) -> str | None:
        return program_of(problem, text)

    async def signatures(self, problem: Problem, answers: Sequence[str | None],
                         sandbox: Sandbox) -> list[str | None] | None:
        """Each program's outputs (or exception types) on the probe inputs, as one JSON string;
        None for a program that does not even load. Without inputs, the program's syntax tree
        (formatting and comments do not split a cluster)."""
        inputs = probe_inputs(problem)
        if not inputs:
            return [_syntax_key(a) for a in answers]
        inputs += generate_inputs(inputs, self.generated_inputs, random.Random(problem.id))
        tests = [TestCase(f"input {i + 1}", capture=call) for i, call in enumerate(inputs)]

        async def one(program: str | None) -> str | None:
            if program is None:
                return None
            run = await sandbox.run(program, tests, expose=task_names(problem))
            if run.status not in ("ok", "timeout"):
                return None
            return json.dumps([t.value if t.value is not None else f"<{t.status}>"
                               for t in run.tests])

        return list(await asyncio.gather(*(one(a) for a in answers)))

    async def grade(self, problem: Problem, answers: Sequence[str | None],
                    sandbox: Sandbox) -> list[bool]:
        setup, tests = hidden_tests(problem)
        if not tests:
            return [False] * len(answers)

        async def one(program: str | None) -> bool:
            if program is None:
                return False
            return (await sandbox.run(program, tests, setup=setup,
                                      expose=task_names(problem))).ok

        return list(await asyncio.gather(*(one(a) for a in answers)))


def _syntax_key(program: str | None) -> str | None:
    if program is None:
        return None
    try:
        return ast.dump(ast.parse(program))
    except SyntaxError:
        return None


def generate_inputs(calls: Sequence[str], count: int, rng: random.Random) -> list[str]:
    """New calls made by mutating the literal arguments of example calls (numbers nudged,
    sequences reversed or cut, strings changed), so programs that agree on the examples can
    still be told apart."""
    out: list[str] = []
    seen = set(calls)
    parsed = []
    for call in calls:
        try:
            parsed.append(ast.parse(call, mode="eval").body)
        except SyntaxError:
            continue
    for _ in range(count * 4):
        if len(out) >= count or not parsed:
            break
        tree = _Mutator(rng).visit(ast.parse(ast.unparse(rng.choice(parsed)), mode="eval"))
        text = ast.unparse(tree)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


class _Mutator(ast.NodeTransformer):
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if node.args:
            i = self.rng.randrange(len(node.args))
            node.args[i] = self._mutate(node.args[i])
        return node

    def _mutate(self, arg: ast.expr) -> ast.expr:
        rng = self.rng
        try:
            value = ast.literal_eval(arg)
        except ValueError:
            return arg
        if isinstance(value, bool):
            value = not value
        elif isinstance(value, int):
            value = rng.choice([value + 1, value - 1, value * 2, 0, -value, value + 7])
        elif isinstance(value, float):
            value = rng.choice([value * 2, value + 0.5, -value, 0.0])
        elif isinstance(value, str):
            value = rng.choice([value[::-1], value.upper(), value[: len(value) // 2], "",
                                value + value[:1]])
        elif isinstance(value, (list, tuple)):
            items = list(value)
            items = rng.choice([items[::-1], items[: len(items) // 2], items + items[:1],
                                sorted(items, key=repr), []])
            value = type(value)(items)
        else:
            return arg
        return ast.parse(repr(value), mode="eval").body
