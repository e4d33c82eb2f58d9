"""Answer extraction and equivalence.

``extract_answer`` pulls the final answer out of a model's text: the last ``\\boxed{}``, then
``#### x``, then "the answer is x" / "Answer: x", then a multiple-choice letter, then the last
number. A stated answer is read as a person reads it (:func:`answer_value`): "The farmer has a
total of 22 sheep", "17 + 5 = 22 sheep", "Total: $22" and "x = 22" all state 22; a hedge ("3 or
4", "between 3 and 5", "at least 3") stays as written. ``equivalent`` decides whether two answers
mean the same thing: normalised strings, the values they state, numbers with a tolerance
(``1,000`` = ``1000``, ``$18`` = ``18``, ``0.5`` = ``\\frac{1}{2}``), and symbolic math through
``math-verify``.

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
    return answer.strip().strip("*").strip().rstrip(".。").strip()


def extract_answer(text: str) -> str | None:
    """The final answer in ``text``, or None when there is none."""
    if not text:
        return None
    boxed = last_boxed(text)
    if boxed:
        return answer_value(boxed)
    hashes = list(_HASHES.finditer(text))
    if hashes:
        return answer_value(_clean(hashes[-1].group("ans")))
    phrases = list(_ANSWER_PHRASES.finditer(text))
    for match in reversed(phrases):
        ans = unwrap_answer(_clean(match.group("ans")))
        if ans:
            inner = last_boxed(ans)
            return answer_value(inner if inner else ans)
    numbers = _LAST_NUMBER.findall(text)
    if numbers:
        return numbers[-1].strip().rstrip(",")  # "= 100, but": the comma ends the sentence
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


def strip_latex(s: str) -> str:
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
    s = strip_latex(answer)
    s = s.strip().strip("*").strip().rstrip(".").strip()
    choice = _CHOICE.match(s)
    if choice and (len(s) <= 3 or s[1:3] in (") ", ". ", ": ")):
        return choice.group(1).upper()
    s = s.lstrip("$").replace("$", "").strip()
    s = re.sub(r"\s+", " ", s)
    return s.lower()


def to_number(answer: str) -> float | None:
    """The number an answer denotes, or None. Accepts ``1,000``, ``$18``, ``50%``, ``3/4``,
    ``\\frac{3}{4}``, ``-2.5``, a number followed by a unit word (``18 sheep``) and a scale
    (``5 million``, ``2 dozen``). Not a hedge or a relation: ``5 or more``, ``3 and a half``,
    ``5 at least`` are None."""
    s = normalize(answer)
    frac = re.fullmatch(r"(-?)\\frac\{?(-?\d+)\}?\{?(\d+)\}?", s.replace(" ", ""))
    if frac:
        sign = -1 if frac.group(1) else 1
        den = int(frac.group(3))
        return sign * int(frac.group(2)) / den if den else None
    match = re.fullmatch(
        r"(?P<num>-?\d[\d,]*(?:\.\d*)?|-?\.\d+)(?:\s*/\s*(?P<den>\d+))?\s*(?P<pct>%)?"
        r"(?:\s*(?P<unit>[a-z][a-z ]*))?",
        s,
    )
    if not match:
        return None
    unit = match.group("unit") or ""
    if _HEDGE.search(unit) or re.search(r"\band\b", unit):
        return None  # "5 or more", "3 and a half": not the number 5 or 3
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
    scale = _SCALES.get(unit.split()[0]) if unit.strip() else None
    return value * scale if scale else value


# What a sentence or labelled answer states (answer_value): a number as written, with its
# currency, percent and scale ("$1,200", "-4", "3/4", "50%", "5 million").
_VALUE = (r"-?\$?-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?%?"
          r"(?:\s+(?:hundred|thousand|million|billion|trillion|dozen)\b)?")
_VALUE_TOKEN = re.compile(rf"(?<![A-Za-z0-9_.$,]){_VALUE}(?![A-Za-z0-9_%])")
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9,
           "trillion": 10**12, "dozen": 12}
# Words that make an answer a hedge, a bound or a negation rather than one value: such an answer
# is kept as written (and so never equals a number), however few numbers it holds.
_HEDGE = re.compile(
    r"\b(?:or|nor|either|neither|between|not|no|never|cannot|least|most|than|unless|except|"
    r"without|almost|nearly|maybe|perhaps|possibly|probably|under|over|below|above|up to|"
    r"plus|minus|range|about|around|roughly|approx\w*|estimat\w*|close to|minimum|maximum|"
    r"bound|might|could|likely|guess|think|believe|negative|loss|decrease\w*|deficit|less|"
    r"fewer|if)\b|n['’]t\b|[?~≈]", re.IGNORECASE)
# Two scale words in a row ("5 hundred thousand") are read as neither: not the first alone.
_DOUBLE_SCALE = re.compile(r"\b(?:hundred|thousand|million|billion|trillion|dozen)s?\s+"
                           r"(?:hundred|thousand|million|billion|trillion|dozen)", re.IGNORECASE)
# Words that scale or split the number they stand beside ("half of his 20 dollars", "twice 11"):
# a sentence holding one is not read as the number it states.
_SCALING = re.compile(r"\b(?:half|halves|thirds?|quarters?|twice|double|triple|thrice|times|"
                      r"percent|fraction)\b", re.IGNORECASE)
_RELATION = re.compile(r"[<>≤≥≠±∓]|\\(?:le|ge|leq|geq|neq|ne|lt|gt|pm|mp|approx|sim)\b")
# A one-letter name (x, L, D in "5D + 200") makes an expression, not a sentence; the articles
# "a", "A" and "I" before a word and an "x" between two numbers (times) are not names.
_NAME = re.compile(r"(?<![A-Za-z\\'’])[A-Za-z](?![A-Za-z'’])")
_ARTICLE = re.compile(r"[aAI]\s+[A-Za-z]{2,}")
_TIMES = re.compile(r"(?<=\d)\s*x\s*(?=\d)")
_LABEL = re.compile(r"(?P<label>[A-Za-z][A-Za-z '’_-]{0,40}?)\s*[:=]\s*(?P<value>[^:=]+)")
_COPULA = re.compile(r"\b(?:is|are|was|were|equals|equal to|totals|comes to|will be|would be|"
                     r"becomes)\s+", re.IGNORECASE)
_AFTERWORD = re.compile(r"(?:\s*,\s*|\s+)(?=(?:which|because|since|so|as|meaning|given|"
                        r"therefore|thus|hence|i\.e\.)\b)|\s*\(", re.IGNORECASE)


def _has_name(text: str) -> bool:
    text = _TIMES.sub(" × ", text)
    return any(not _ARTICLE.match(text, m.start()) for m in _NAME.finditer(text))


def _plain_value(text: str) -> str | None:
    """The number ``text`` is, as written without its unit words ("22 sheep" -> "22"), or
    None when ``text`` is not just a number."""
    text = text.strip().rstrip(".。").strip()
    if "\\" in text or to_number(text) is None:
        return None
    token = re.match(_VALUE, text)
    return token.group(0) if token else None


@lru_cache(maxsize=8192)
def answer_value(answer: str) -> str:
    """The value a stated answer gives, read as a person reads it; the answer itself when it
    gives none, or is a hedge.

    - a sentence that states one number: "The farmer has a total of 22 sheep" -> "22";
    - the value after a final ``=`` of arithmetic: "17 + 5 = 22 sheep" -> "22";
    - a label: "correct: 100", "Total: $1,200", "x = 5" -> "100", "$1,200", "5";
    - the value after the last "is" / "equals": "The profit in 20 weeks is $650,000";
    - a value followed by its reason: "22, since 17 + 5 = 22" -> "22";
    - the answer inside ``\\text{The answer is: 22}`` -> "22".

    Kept as written: anything that is already a number ("1,000 sheep"), hedges and bounds
    ("3 or 4", "between 3 and 5", "at least 3", "not 5", "x = 3 or x = 4"), relations
    (``x < 5``), expressions with a variable ("2x = 10", "L + 36"), LaTeX, words, choice letters.

    >>> answer_value("The farmer has a total of 22 sheep"), answer_value("3 or 4")
    ('22', '3 or 4')
    """
    if to_number(answer) is not None:
        return answer
    text = unwrap_answer(strip_latex(answer)).strip().strip("*").strip().rstrip(".。").strip()
    if to_number(text) is not None:
        return text
    if _HEDGE.search(text) or _RELATION.search(text) or _DOUBLE_SCALE.search(text):
        return answer
    if _SCALING.search(_TIMES.sub(" × ", text.split("=")[-1])):
        return answer  # "3 and a half", "He spent half of his 20 dollars"
    # a value, then why: "22, since 17 + 5 = 22", "22 sheep (17 + 5)"
    head = _AFTERWORD.split(text, maxsplit=1)[0]
    if head != text and (value := _plain_value(head)) is not None:
        why = text[len(head):].strip()
        # a bracket may compute the value ("(17 + 5)"), never offer another ("(4 with the
        # lamb)"); a reason ("because he had 17 and bought 5") offering one is a hedge word's
        if why.startswith("(") and _VALUE_TOKEN.search(why) and not re.search(r"[-+*/=×÷]", why):
            return answer
        return value
    # a label: "Total: $1,200", "x = 5"
    label = _LABEL.fullmatch(text)
    if label and (value := _plain_value(label.group("value"))) is not None:
        return value
    # arithmetic ending in its value: "$20 + $5 = $25", "\\frac{48}{2} = 24 clips"
    if "=" in text:
        left, right = text.rsplit("=", 1)
        value = _plain_value(right)
        if value is not None and not _has_name(left) and not re.search(r"[,;]\s|\band\b", left):
            return value
        return answer
    if any(c in text for c in "\\{}^_"):
        return answer  # LaTeX: math-verify's to compare
    # "The profit James makes in 20 weeks is $650,000"
    copulas = list(_COPULA.finditer(text))
    # one "is" only: in "The answer is 3 and the rest is 4" the last is not the answer
    before = text[:copulas[-1].start()] if copulas else ""
    if _VALUE_TOKEN.search(before) and re.search(r"\band\b|[,;]", before):
        return answer  # "3 and the remainder is 4": two values, and the last is not the answer
    if len(copulas) == 1 and not _has_name(before):
        value = _plain_value(text[copulas[-1].end():])
        if value is not None:
            return value
    # a sentence stating one number: "He needs 18 more apples"
    tokens = list(_VALUE_TOKEN.finditer(text))
    rest = _VALUE_TOKEN.sub(" ", text)
    if (tokens and re.search(r"[^\W\d_]{2,}", rest) and not re.search(r"[-+*/=×÷]", rest)
            and not _has_name(rest)):
        values = {to_number(t.group(0)) for t in tokens}
        if len(values) == 1 and None not in values:
            return tokens[0].group(0)
    return answer


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
    """Whether two extracted answers mean the same. None is equivalent to nothing. A sentence or
    labelled answer is compared by the value it states (:func:`answer_value`), so a stored
    "The farmer has 22 sheep" joins "22"."""
    if a is None or b is None:
        return False
    if normalize(a) == normalize(b):
        return True
    a, b = answer_value(a), answer_value(b)
    na, nb = normalize(a), normalize(b)
    if na == nb:
        return True
    hedged = [bool(_HEDGE.search(strip_latex(x)) or _DOUBLE_SCALE.search(x)) for x in (a, b)]
    if hedged[0] != hedged[1] and to_number(b if hedged[0] else a) is not None:
        return False  # "3 or 4", "at least 3", "3?": no one value (math-verify reads 3)
    if any(hedged):  # two sets of solutions ("1 or 3", "3 or 1") are math-verify's to compare
        return _math_verify(strip_latex(a), strip_latex(b))
    xa, xb = to_number(a), to_number(b)
    if xa is not None and xb is not None:
        return _numbers_equal(xa, xb)
    if (xa is not None and _RELATION.search(b)) or (xb is not None and _RELATION.search(a)):
        return False  # "x < 3" is not the number 3
    if xa is not None or xb is not None:
        # One side is a plain number: compare it with a symbolic form of the other.
        return _math_verify(strip_latex(a), strip_latex(b))
    if len(na) == 1 and len(nb) == 1:
        return False  # distinct choice letters
    return _math_verify(strip_latex(a), strip_latex(b))
