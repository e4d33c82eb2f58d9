"""Math rewards: correctness against the dataset's answer column, and the answer's format.

Both read a completion exactly as ponder's math domain does (``domains.answers``): the final
answer is the last ``\\boxed{}``, else ``#### x``, else "the answer is x", else the last number,
and two answers are equal when ``equivalent`` says so (numbers with a tolerance, LaTeX through
math-verify).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ponder.domains.answers import (
    equivalent,
    extract_answer,
    states_answer,
    strip_latex,
    to_number,
)
from ponder.rewards.base import Reward, RewardValue, column, completion_text

ANSWER_COLUMNS = ("answer", "solution", "gold")
_CHOICE = re.compile(r"\(?[A-Ea-e]\)?")
_MATHY = re.compile(r"\d|\\[A-Za-z]+|[\^_=+*/<>]|^[A-Za-z]$")
_PROSE = re.compile(r"[A-Za-z]{3,}\s+[A-Za-z]{3,}")


def gold_answer(value: Any) -> str | None:
    """The answer a dataset's gold value states, or None when it cannot be read as one.

    Read: a number; a stated final answer (GSM8K's ``#### 72``, MATH's ``\\boxed{}``, "The
    answer is x"); one short line that is a number, a choice letter or a math expression.
    Not read: empty values, several lines without a stated answer, prose ("see the figure").

    >>> gold_answer("Natalia sold 48/2 = 24 clips in May.\\n#### 72"), gold_answer("\\\\frac{1}{2}")
    ('72', '\\\\frac{1}{2}')
    >>> gold_answer("see the figure") is None, gold_answer(None) is None
    (True, True)
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return None if isinstance(value, float) and not math.isfinite(value) else str(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    if states_answer(text):
        return extract_answer(text)
    if "\n" in text or len(text) > 200:
        return None
    if to_number(text) is not None or _CHOICE.fullmatch(text):
        return text
    plain = strip_latex(text)
    if _MATHY.search(plain) and not _PROSE.search(re.sub(r"\\[A-Za-z]+", " ", plain)):
        return text
    return None


class MathReward(Reward):
    """1.0 when the completion's final answer equals the gold answer, 0.0 when it does not (or
    states none); None where the gold answer cannot be read (:func:`gold_answer`), so the row
    is left out rather than counted wrong.

    The gold is read from the first of ``columns`` the dataset has (default ``answer``, else
    ``solution``, else ``gold``). Cost: string work only, plus sympy through math-verify for
    symbolic answers (cached per process): thousands of completions a second on one core.

    >>> reward = MathReward()
    >>> reward(completions=["3 + 4 = 7. The answer is 7.", "It is 8."], answer=["7", "7"])
    [1.0, 0.0]
    """

    name = "math_correctness"

    def __init__(self, columns: Sequence[str] = ANSWER_COLUMNS) -> None:
        super().__init__()
        self.columns = tuple(columns)

    def score(self, prompts: Sequence[Any], completions: Sequence[Any],
              completion_ids: Sequence[Sequence[int]] | None, columns: Mapping[str, Any]
              ) -> list[RewardValue]:
        golds = column(columns, self.columns, len(completions))
        out: list[RewardValue] = []
        for completion, gold in zip(completions, golds, strict=True):
            expected = gold_answer(gold)
            if expected is None:
                out.append(None)
                continue
            answer = extract_answer(completion_text(completion))
            out.append(1.0 if equivalent(answer, expected) else 0.0)
        return out


class FormatReward(Reward):
    """1.0 when the completion states its final answer the way ponder reads one first — a
    ``\\boxed{}``, ``#### x`` or "the answer is x" — rather than leaving it to the last number
    in the text, and an answer follows (not "The answer is:"); 0.0 otherwise. Never None.
    Cost: a few regular expressions per completion.

    >>> FormatReward()(completions=["The answer is 7.", "so 7"])
    [1.0, 0.0]
    """

    name = "answer_format"

    def score(self, prompts: Sequence[Any], completions: Sequence[Any],
              completion_ids: Sequence[Sequence[int]] | None, columns: Mapping[str, Any]
              ) -> list[RewardValue]:
        out: list[RewardValue] = []
        for completion in completions:
            text = completion_text(completion)
            answer = extract_answer(text) if states_answer(text) else None
            out.append(1.0 if answer and re.search(r"\w", answer) else 0.0)
        return out
