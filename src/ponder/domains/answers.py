"""Answer extraction and equivalence.

``extract_answer`` pulls the final answer out of a model's text: the last ``\\boxed{}``, then
``#### x``, then "the answer is x" / "Answer: x", then a multiple-choice letter, then the last
number. ``equivalent`` decides whether two answers mean the same thing: normalised strings,
numbers with a tolerance (``1,000`` = ``1000``, ``$18`` = ``18``, ``0.5`` = ``\\frac{1}{2}``), and
symbolic math through ``math-verify``.

>>> extract_answer("So he has 17 + 5 = 22 sheep. The answer is 22.")
'22'
>>> equivalent("0.5", "\\\\frac{1}{2}")
True
"""

from __future__ import annotations

import logging
import math
import re
from fractions import Fraction
from functools import lru_cache

_NUMBER = r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+"
_ANSWER_PHRASES = re.compile(
    r"(?:final answer|the answer|answer)(?:\s+is\b|\s*[:=])\s*:?\s*(?P<ans>[^\n]+)",
    re.IGNORECASE,
)
_HASHES = re.compile(r"####\s*(?P<ans>[^\n]+)")
_CHOICE = re.compile(r"^\(?([A-Ea-e])\)?(?:[.:)]|\s|$)")
_LAST_NUMBER = re.compile(rf"(?:{_NUMBER})(?:\s*/\s*\d+)?")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces balanced."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    brace = text.find("{", start)
    if brace < 0:
        rest = text[start:].split(None, 1)  # "\boxed 5"
        return rest[1].split()[0] if len(rest) > 1 else None
    depth = 0
    for i in range(brace, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[brace + 1 : i].strip()
    return None


def _clean(answer: str) -> str:
    answer = answer.strip()
    answer = re.sub(r"^\*\*|\*\*$", "", answer).strip()
    # Keep the first sentence / clause of a phrase answer.
    answer = re.split(r"(?<!\d)\.(?:\s|$)|\.\s", answer, maxsplit=1)[0]
    return answer.strip().strip("*").strip().rstrip(".").strip()


def extract_answer(text: str) -> str | None:
    """The final answer in ``text``, or None when there is none."""
    if not text:
        return None
    boxed = last_boxed(text)
    if boxed:
        return boxed
    hashes = list(_HASHES.finditer(text))
    if hashes:
        return _clean(hashes[-1].group("ans"))
    phrases = list(_ANSWER_PHRASES.finditer(text))
    for match in reversed(phrases):
        ans = unwrap_answer(_clean(match.group("ans")))
        if ans:
            inner = last_boxed(ans)
            return inner if inner else ans
    numbers = _LAST_NUMBER.findall(text)
    if numbers:
        return numbers[-1].strip()
    return None


def unwrap_answer(answer: str) -> str:
    """The answer inside a repeated phrase: models write "the answer is: The answer is: 24".

    >>> unwrap_answer("The answer is: 24")
    '24'
    """
    while (match := _ANSWER_PHRASES.search(answer)) and _clean(match.group("ans")):
        answer = _clean(match.group("ans"))
    return answer


def states_answer(text: str) -> bool:
    """Whether ``text`` announces a final answer (boxed, ``#### x`` or "the answer is x"), as
    opposed to merely containing numbers."""
    return bool(last_boxed(text) or _HASHES.search(text) or _ANSWER_PHRASES.search(text))


def _strip_latex(s: str) -> str:
    s = s.strip()
    s = re.sub(r"\\(?:text|mathrm)\{([^}]*)\}", r"\1", s)
    s = s.replace("\\!", "").replace("\\,", "").replace("\\ ", " ").replace("\\%", "%")
    s = s.replace("\\$", "$").replace("^\\circ", "").replace("^{\\circ}", "")
    s = s.replace("\\left", "").replace("\\right", "").replace("\\dfrac", "\\frac")
    s = s.replace("\\tfrac", "\\frac")
    if len(s) >= 2 and s[0] == s[-1] == "$" and s.count("$") == 2:
        s = s[1:-1]
    if s.startswith("\\(") and s.endswith("\\)"):
        s = s[2:-2]
    if s.startswith("\\[") and s.endswith("\\]"):
        s = s[2:-2]
    return s.strip()


def normalize(answer: str) -> str:
    """A canonical string form: LaTeX wrappers, currency, markdown and trailing dots removed."""
    s = _strip_latex(answer)
    s = s.strip().strip("*").strip().rstrip(".").strip()
    choice = _CHOICE.match(s)
    if choice and (len(s) <= 3 or s[1:3] in (") ", ". ", ": ")):
        return choice.group(1).upper()
    s = s.lstrip("$").replace("$", "").strip()
    s = re.sub(r"\s+", " ", s)
    return s.lower()


def to_number(answer: str) -> float | None:
    """The number an answer denotes, or None. Accepts ``1,000``, ``$18``, ``50%``, ``3/4``,
    ``\\frac{3}{4}``, ``-2.5``, and a number followed by a unit word (``18 sheep``)."""
    s = normalize(answer)
    frac = re.fullmatch(r"(-?)\\frac\{?(-?\d+)\}?\{?(\d+)\}?", s.replace(" ", ""))
    if frac:
        sign = -1 if frac.group(1) else 1
        den = int(frac.group(3))
        return sign * int(frac.group(2)) / den if den else None
    match = re.fullmatch(
        r"(?P<num>-?\d[\d,]*(?:\.\d*)?|-?\.\d+)(?:\s*/\s*(?P<den>\d+))?\s*(?P<pct>%)?"
        r"(?:\s*[a-z][a-z ]*)?",
        s,
    )
    if not match:
        return None
    num = match.group("num")
    if "," in num:
        head, *groups = num.split(",")
        if not all(len(g.split(".")[0]) == 3 for g in groups):
            return None  # "1,2" is a list, not a number
        num = num.replace(",", "")
    try:
        value = float(Fraction(num.rstrip(".")))
    except (ValueError, ZeroDivisionError):
        return None
    if match.group("den"):
        den = int(match.group("den"))
        if den == 0:
            return None
        value /= den
    return value


def _numbers_equal(a: float, b: float) -> bool:
    if a.is_integer() and b.is_integer():
        return a == b  # 192000001 is not 192000000, however close (a reward must not learn it)
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


@lru_cache(maxsize=4096)
def _math_verify(a: str, b: str) -> bool:
    if len(a) > 200 or len(b) > 200:
        return False  # with its alarm-based timeout off (threads), keep sympy's input small
    try:
        from math_verify import parse, verify
    except ImportError:  # math-verify is a core dependency; stay usable without it anyway
        return False
    # Its signal-based timeout only works in the main thread, so it is off (inputs are kept
    # short instead); silence the warning it logs about that.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    try:
        gold = parse(f"${a}$", parsing_timeout=None)
        target = parse(f"${b}$", parsing_timeout=None)
        if not gold or not target:
            return False
        return bool(verify(gold, target, timeout_seconds=None))
    # math-verify raises many kinds of parser errors on odd input: they all mean "not proven equal".
    except Exception:  # noqa: BLE001
        return False


def equivalent(a: str | None, b: str | None) -> bool:
    """Whether two extracted answers mean the same. None is equivalent to nothing."""
    if a is None or b is None:
        return False
    na, nb = normalize(a), normalize(b)
    if na == nb:
        return True
    xa, xb = to_number(a), to_number(b)
    if xa is not None and xb is not None:
        return _numbers_equal(xa, xb)
    if xa is not None or xb is not None:
        # One side is a plain number: compare it with a symbolic form of the other.
        return _math_verify(_strip_latex(a), _strip_latex(b))
    if len(na) == 1 and len(nb) == 1:
        return False  # distinct choice letters
    return _math_verify(_strip_latex(a), _strip_latex(b))
