"""How a sampling strategy poses a problem: named, versioned prompt templates and few-shot
exemplars drawn from a dev file.

- A **template** (``-o template=NAME[@VERSION]`` or ``-o template=FILE.json``) is the system
  prompt of chains, the system prompt of programs and the wording of the question
  (``{question}``). Built-ins register with :func:`register_template` as a plugin's would; a
  name without a version means its latest one.
- **Few-shot** (``-o shots=K -o examples=FILE``): the first K usable exemplars of a JSONL file
  (``question``, ``answer``; GSM8K's ``... #### 72`` answers give the worked solution too;
  ``program``: the exemplar's program-of-thought form) go before the question as earlier turns.
  An exemplar whose question is the problem being solved is never shown, and the evaluation
  refuses an examples file that holds any of the problems it evaluates (:func:`check_disjoint`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ponder import registry
from ponder.errors import ConfigError
from ponder.types import Message, Problem

PROGRAM_SYSTEM = (
    "You solve problems by writing Python. Think briefly, then write one complete Python "
    "program in a single ```python block that computes the answer and prints only the final "
    "answer with print(). Compute it; do not hard-code it."
)
FIELDS = ("template", "shots", "examples")  # the options that change how a problem is posed


@dataclass(frozen=True)
class Template:
    """A versioned way to pose a problem. ``system``/``program_system``: None keeps the
    strategy's own (its ``system`` option, the default program prompt)."""

    name: str
    version: int = 1
    system: str | None = None
    program_system: str | None = None
    user: str = "{question}"

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    def question(self, problem: Problem) -> str:
        return self.user.replace("{question}", problem.question)

    def digest(self) -> str:
        blob = json.dumps([self.system, self.program_system, self.user])
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def register_template(template: Template) -> Template:
    """Add a template under ``name@version`` (built-ins and plugins alike, through
    ``registry.templates``; plugins also by the ``ponder.templates`` entry-point group)."""
    if "{question}" not in template.user:
        raise ConfigError(f"template {template.id}: its user text has no {{question}}")
    return registry.templates.register(template.id, template)


def template_names() -> list[str]:
    return sorted(registry.templates.names())


def get_template(spec: str) -> Template:
    """A template by ``name``, ``name@version`` or a JSON file (name, version, system,
    program_system, user)."""
    if spec.endswith(".json") or "/" in spec:
        return _template_file(str(Path(spec).resolve()), _mtime(spec))
    name, _, version = spec.partition("@")
    versions = {t.version: t for _, t in registry.templates if t.name == name}
    if not versions:
        raise ConfigError(f"unknown template {spec!r}; valid: {', '.join(template_names())} "
                          "or a FILE.json")
    if not version:
        return versions[max(versions)]
    if not version.isdigit() or int(version) not in versions:
        raise ConfigError(f"template {name!r} has no version {version!r}; it has "
                          f"{', '.join(str(v) for v in sorted(versions))}")
    return versions[int(version)]


def _mtime(path: str) -> float:
    try:
        return Path(path).stat().st_mtime
    except OSError:
        raise ConfigError(f"cannot read template file {path}") from None


@functools.lru_cache(maxsize=64)
def _template_file(path: str, mtime: float) -> Template:
    try:
        data = json.loads(Path(path).read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        known = {"name", "version", "system", "program_system", "user"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown key {', '.join(unknown)}")
        template = Template(**{"name": Path(path).stem, **data})
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot read template {path}: {exc}") from None
    if "{question}" not in template.user:
        raise ConfigError(f"template {path}: its user text has no {{question}}")
    return template


@dataclass(frozen=True)
class Example:
    """One worked exemplar: the question, its final answer, a worked solution (chains) and a
    program (programs), when the file gives them."""

    question: str
    answer: str
    solution: str = ""
    program: str | None = None

    def chain_reply(self) -> str:
        body = self.solution.strip()
        return f"{body}\nThe answer is: {self.answer}" if body else \
            f"The answer is: {self.answer}"

    def program_reply(self) -> str | None:
        return None if not self.program else f"```python\n{self.program.strip()}\n```"


_CALC = re.compile(r"<<[^>]*>>")


def same_question(a: str, b: str) -> bool:
    """Questions compared as text, ignoring case and whitespace."""
    return " ".join(a.lower().split()) == " ".join(b.lower().split())


def _example(row: Any, line: int, path: str) -> Example:
    if not isinstance(row, dict) or not isinstance(row.get("question"), str) \
            or row.get("answer") is None:
        raise ConfigError(f"{path}:{line}: an example needs 'question' and 'answer'")
    answer, solution = str(row["answer"]), str(row.get("solution", ""))
    if "####" in answer:  # GSM8K: the worked solution, then "#### 72"
        solution, _, answer = answer.rpartition("####")
        solution = _CALC.sub("", solution).strip()
    program = row.get("program")
    return Example(row["question"], answer.strip(), solution,
                   program if isinstance(program, str) else None)


@functools.lru_cache(maxsize=16)
def _examples_file(path: str, mtime: float) -> tuple[tuple[Example, ...], str]:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read examples {path}: {exc.strerror}") from None
    examples = []
    for line, text in enumerate(raw.decode("utf-8", "replace").splitlines(), 1):
        if not text.strip():
            continue
        try:
            examples.append(_example(json.loads(text), line, path))
        except json.JSONDecodeError:
            raise ConfigError(f"{path}:{line}: not JSON") from None
    if not examples:
        raise ConfigError(f"examples {path} holds no examples")
    return tuple(examples), hashlib.sha256(raw).hexdigest()[:12]


def load_examples(path: str) -> tuple[tuple[Example, ...], str]:
    """The exemplars of a JSONL file and the digest of its bytes (cached per file version)."""
    try:
        mtime = Path(path).stat().st_mtime
    except OSError:
        raise ConfigError(f"cannot read examples {path}") from None
    return _examples_file(str(Path(path).resolve()), mtime)


def shots_for(problem: Problem, examples: Sequence[Example], k: int, program: bool
              ) -> list[Example]:
    """The first ``k`` exemplars usable for ``problem``: never the problem itself, and only
    those with a program when the reply is a program."""
    out = []
    for example in examples:
        if len(out) == k:
            break
        if same_question(example.question, problem.question):
            continue
        if program and example.program_reply() is None:
            continue
        out.append(example)
    return out


def check_disjoint(path: str, problems: Iterable[Problem]) -> None:
    """Refuse an examples file that holds a problem being evaluated (by question text)."""
    examples, _ = load_examples(path)
    asked = {" ".join(e.question.lower().split()) for e in examples}
    overlap = [p.id or p.question[:40] for p in problems
               if " ".join(p.question.lower().split()) in asked]
    if overlap:
        shown = ", ".join(overlap[:5]) + (" ..." if len(overlap) > 5 else "")
        raise ConfigError(f"examples {path} holds {len(overlap)} of the problems being "
                          f"evaluated ({shown}); few-shot exemplars must come from other "
                          "problems")


def pose(base: list[Message], problem: Problem, cfg: Any, program: bool) -> list[Message]:
    """``base`` (the problem posed by its domain) with the template's question wording and,
    with ``shots``, the exemplars as earlier turns before the question."""
    template = get_template(cfg.template) if getattr(cfg, "template", None) else None
    messages = list(base)
    last = max(i for i, m in enumerate(messages) if m.role == "user")
    if template is not None and messages[last].content == problem.question:
        messages[last] = Message("user", template.question(problem))
    k = getattr(cfg, "shots", 0)
    if k and cfg.examples:
        examples, _ = load_examples(cfg.examples)
        turns: list[Message] = []
        for example in shots_for(problem, examples, k, program):
            asked = Problem(example.question)
            reply = example.program_reply() if program else example.chain_reply()
            turns += [Message("user", template.question(asked) if template else asked.question),
                      Message("assistant", reply or "")]
        messages[last:last] = turns
    return messages


def system_for(cfg: Any, default_system: str, program: bool) -> str:
    """The system prompt: the strategy's ``system`` when the user changed it, else the
    template's (chains or programs), else the default."""
    template = get_template(cfg.template) if getattr(cfg, "template", None) else None
    own = cfg.system if cfg.system != default_system else None
    if program:
        return own or (template.program_system if template and template.program_system
                       else None) or PROGRAM_SYSTEM
    return own or (template.system if template and template.system else None) or \
        default_system


def key_of(config: dict[str, Any]) -> dict[str, Any]:
    """What the prompt options add to a sample pool's key: nothing at their defaults (stores
    written before they existed still match), else the template's id and digest, and the
    shots with the examples file's digest."""
    out: dict[str, Any] = {}
    if config.get("template"):
        template = get_template(config["template"])
        out["template"] = f"{template.id}#{template.digest()}"
    if config.get("shots") and config.get("examples"):
        out["shots"] = config["shots"]
        out["examples"] = load_examples(config["examples"])[1]
    return out


BUILTIN_TEMPLATES = (
    Template("default", 1),
    Template(
        "concise", 1,
        system="Solve the problem. Be brief: write only the steps you need, then a final line "
               "'The answer is: <answer>'.",
        program_system="Write one short Python program in a ```python block that computes the "
                       "answer and prints it with print(). Compute it; do not hard-code it."),
    Template(
        "tutor", 1,
        system="You are a careful math tutor. Read the question twice, write the quantities "
               "you know, compute step by step and check the result. Finish with a final line "
               "'The answer is: <answer>'.",
        user="Question: {question}\nWork it out step by step."),
)
