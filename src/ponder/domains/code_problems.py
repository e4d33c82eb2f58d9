"""Code problems: pulling the program out of a completion, and the tests it is judged by.

A code problem is a :class:`~ponder.types.Problem` whose metadata holds any of:

- ``entry_point``: the function to write (HumanEval); the question is its signature + docstring;
- ``tests``: visible tests, a list of Python statements (usually ``assert f(1) == 2``);
- ``test``: hidden tests in HumanEval's form, a source defining ``check(candidate)`` — used to
  grade, never shown to a strategy.

Without ``tests``, the visible tests are the examples in the question's docstring (``>>>``
doctests, or lines like ``f(1) == 2`` / ``f(1) ➞ 2``), as in the Self-Debugging paper.
"""

from __future__ import annotations

import ast
import builtins
import doctest
import re
from collections.abc import Sequence

from ponder.sandbox import TestCase, TestOutcome
from ponder.types import Problem

_FENCE = re.compile(
    r"(?P<fence>```|~~~)[ \t]*(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)(?:(?P=fence)|\Z)", re.DOTALL)
_CODE_LANGS = {"", "python", "py", "python3", "py3"}
_EXAMPLE_ARROWS = r"==>|=>|==|➞|->|→|returns|should return"
_CLOSING_QUOTES = re.compile(r"\n?\s*(?:\"\"\"|\'\'\')\s*$")


def is_code_problem(problem: Problem) -> bool:
    meta = problem.metadata
    return bool(meta.get("entry_point") or meta.get("tests") or meta.get("domain") == "code")


def extract_code(text: str, entry_point: str | None = None) -> str | None:
    """The program in a completion: the fenced Python block that defines ``entry_point`` (else
    the last Python block); an unclosed fence (a truncated answer) runs to the end; with no fence,
    the whole text when it parses as Python.

    >>> extract_code("Here:\\n```python\\ndef f(x):\\n    return x\\n```\\nDone.")
    'def f(x):\\n    return x\\n'
    """
    blocks = [m.group("body") for m in _FENCE.finditer(text)
              if m.group("lang").lower() in _CODE_LANGS]
    blocks = [b for b in blocks if b.strip()]
    if blocks:
        if entry_point:
            pattern = re.compile(rf"\bdef\s+{re.escape(entry_point)}\s*\(")
            defining = [b for b in blocks if pattern.search(b)]
            if defining:
                return defining[-1]
        return blocks[-1]
    try:
        ast.parse(text)
    except SyntaxError:
        return None
    return text if text.strip() else None


def assemble_program(problem: Problem, code: str) -> str:
    """A runnable program for a function problem: the code, after the question's imports; when
    the code is only the function's body (it never defines the entry point), the question's
    signature in front of it."""
    entry = problem.metadata.get("entry_point")
    if not entry:
        return code
    if re.search(rf"\bdef\s+{re.escape(entry)}\s*\(", code):
        imports = [line for line in problem.question.splitlines()
                   if re.match(r"\s*(?:from\s+\S+\s+)?import\s", line) and not line.startswith(" ")]
        return "\n".join(imports + [code]) if imports else code
    body = code if code.startswith((" ", "\t")) else "\n".join(
        "    " + line if line.strip() else line for line in code.splitlines())
    return problem.question.rstrip("\n") + "\n" + body


def program_of(problem: Problem, text: str) -> str | None:
    """The runnable program a completion proposes for ``problem`` (None: no code found)."""
    code = extract_code(text, problem.metadata.get("entry_point"))
    return None if code is None else assemble_program(problem, code)


def _doctest_cases(question: str) -> list[tuple[str, str | None]]:
    try:
        examples = doctest.DocTestParser().get_examples(question)
    except ValueError:
        return []
    return [(e.source.strip(), _CLOSING_QUOTES.sub("", e.want).strip() or None)
            for e in examples]


def _line_cases(question: str, entry: str) -> list[tuple[str, str | None]]:
    cases: list[tuple[str, str | None]] = []
    call = re.compile(rf"(?P<call>\b{re.escape(entry)}\s*\(.*\))\s*(?:{_EXAMPLE_ARROWS})\s*"
                      r"(?P<want>.+?)\s*$")
    for line in question.splitlines():
        m = call.search(line)
        if m:
            want = m.group("want").rstrip(".,;")
            if re.search(r"(?<![=!<>])=(?!=)", want):  # "19 - 5 - 6 = 8": the value is last
                want = want.rsplit("=", 1)[1].strip()
            want = {"true": "True", "false": "False", "null": "None"}.get(want, want)
            cases.append((m.group("call"), want))
    return cases


def example_cases(problem: Problem) -> list[tuple[str, str | None]]:
    """(call expression, expected repr) pairs shown in the question; ``None`` expected means
    the expression is itself a check (``f(1) == 2``). Only calls that parse and use literal
    arguments are kept."""
    entry = problem.metadata.get("entry_point")
    cases = _doctest_cases(problem.question)
    if not cases and entry:
        cases = _line_cases(problem.question, entry)
    good = []
    for source, want in cases:
        try:
            tree = ast.parse(source, mode="eval")
        except SyntaxError:
            continue
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
        names = {n.id for c in calls for a in (*c.args, *(k.value for k in c.keywords))
                 for n in ast.walk(a) if isinstance(n, ast.Name)}
        if not calls or names - {"True", "False", "None"}:
            continue  # "is_happy(a) => False": not a literal input
        if not all(_plain_callee(c.func, entry) for c in calls):
            continue  # only the function under test (and pure built-ins) may be called
        if want is None and not isinstance(tree.body, ast.Compare):
            want = "None"
        good.append((ast.unparse(tree), want))
    return good


PURE_BUILTINS = frozenset({"abs", "all", "any", "bool", "dict", "float", "frozenset", "int",
                           "len", "list", "max", "min", "repr", "reversed", "round", "set",
                           "sorted", "str", "sum", "tuple"})


def _plain_callee(func: ast.expr, entry: str | None) -> bool:
    """Whether a call in an example calls the function under test (any plain name when it is
    not known) or a pure built-in: never an attribute, a dunder or another built-in."""
    if not isinstance(func, ast.Name) or func.id.startswith("_"):
        return False
    if func.id in PURE_BUILTINS or func.id == entry:
        return True
    return entry is None and not hasattr(builtins, func.id)


def _example_test(source: str, want: str | None) -> str:
    if want is None:
        return f"assert {source}, {source + ' is False'!r}\n"
    return (
        f"__got = ({source})\n"
        f"try:\n    __want = __import__('ast').literal_eval({want!r})\n"
        "except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):\n"
        "    __want = object()\n"
        f"assert __got == __want or repr(__got) == {want!r} or str(__got) == {want!r}, "
        f"'%s returned %r, expected %s' % ({source!r}, __got, {want!r})\n"
    )


def visible_tests(problem: Problem) -> list[TestCase]:
    """The tests a strategy may see: ``metadata['tests']``, else the question's examples."""
    given = problem.metadata.get("tests")
    if given:
        return [TestCase(f"test {i + 1}", src) for i, src in enumerate(given)]
    return [TestCase(f"example {i + 1}", _example_test(src, want))
            for i, (src, want) in enumerate(example_cases(problem))]


def hidden_tests(problem: Problem) -> tuple[str, list[TestCase]]:
    """(setup, tests) that grade a program: HumanEval's ``check(entry_point)`` when present,
    else the visible tests. The setup starts with the question's own helpers (see
    :func:`task_helpers`)."""
    test = problem.metadata.get("test")
    entry = problem.metadata.get("entry_point")
    if test and entry:
        helpers = task_helpers(problem)
        setup = f"{helpers}\n\n{test}" if helpers else test
        return setup, [TestCase("check", f"check({entry})")]
    return "", visible_tests(problem)


def task_names(problem: Problem) -> tuple[str, ...]:
    """The names of the program the tests call on purpose even where a built-in has the same
    name: the entry point (``Sandbox.run(expose=...)``)."""
    entry = problem.metadata.get("entry_point")
    return (entry,) if isinstance(entry, str) and entry.isidentifier() else ()


def task_helpers(problem: Problem) -> str:
    """The imports, constants and helper functions the question itself defines besides the
    entry point
    (HumanEval/32's ``poly``, /38's ``encode_cyclic``, /50's ``encode_shift``), as source for
    the tests' setup: the tests call the task's helpers, not the program's versions of them,
    so a program cannot pass ``decode(encode(s)) == s`` by redefining ``encode``."""
    entry = problem.metadata.get("entry_point")
    try:
        tree = ast.parse(problem.question)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ""
    keep = [node for node in tree.body
            if isinstance(node, (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign))
            or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and node.name != entry]
    if not any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
               for node in keep):
        return ""
    return "\n\n".join(ast.unparse(node) for node in keep)


def probe_inputs(problem: Problem) -> list[str]:
    """Calls to compare programs by (execution-based voting): ``metadata['inputs']``, else the
    calls in the visible examples."""
    given = problem.metadata.get("inputs")
    if given:
        return list(given)
    tests = problem.metadata.get("tests") or []
    calls = []
    entry = problem.metadata.get("entry_point")
    for src in tests:
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and (
                    entry is None or node.func.id == entry):
                calls.append(ast.unparse(node))
                break
    if calls:
        return calls
    found = []
    for src, _ in example_cases(problem):
        tree = ast.parse(src, mode="eval").body
        found.append(ast.unparse(tree.left) if isinstance(tree, ast.Compare) else src)
    return found


def failure_report(outcomes: Sequence[TestOutcome], limit: int = 3, width: int = 300) -> str:
    """A short account of the failed tests, for feeding back to the model."""
    lines = []
    for outcome in list(outcomes)[:limit]:
        message = outcome.message.strip() or outcome.status
        lines.append(f"- {outcome.name}: {outcome.status}: {message[:width]}")
    return "\n".join(lines)
