import pytest

from ponder.domains.answers import equivalent, extract_answer, normalize, to_number

EXTRACT = [
    ("So 17 + 5 = 22. The answer is 22.", "22"),
    ("The answer is: 22", "22"),
    ("Therefore, the answer is: The answer is: 24.", "24"),  # the phrase doubled
    ("4. The answer is: The answer is: $240.", "$240"),
    ("Final answer: 1,000 sheep", "1,000 sheep"),
    ("We get \\boxed{\\frac{1}{2}} in the end.", "\\frac{1}{2}"),
    ("first \\boxed{3} then \\boxed{4}", "4"),
    ("nested \\boxed{\\frac{\\sqrt{2}}{2}}", "\\frac{\\sqrt{2}}{2}"),
    ("Natalia sold 48/2 = 24 clips.\n#### 72", "72"),
    ("The answer is (B).", "(B)"),
    ("Answer: C", "C"),
    ("He pays $18 in total.", "18"),
    ("The total is 3.75 dollars", "3.75"),
    ("The temperature fell to -4 degrees", "-4"),
    ("no digits here at all", None),
    ("", None),
    ("The answer is **42**.", "42"),
    ("The final answer is $\\boxed{7}$.", "7"),
    ("I think 5, no wait, 6", "6"),
    ("Ratio is 3/4", "3/4"),
    ("The answer to this problem is 2+3 = 5", "5"),
    ("Answer the question: what is 4 + 4? It is 8", "8"),
]


@pytest.mark.parametrize("text,expected", EXTRACT)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


EQUIV = [
    ("1,000", "1000", True),
    ("0.5", "\\frac{1}{2}", True),
    ("$18", "18", True),
    ("18", "18.0", True),
    ("18 sheep", "18", True),
    ("\\$18.00", "18", True),
    ("50%", "50", True),
    ("3/4", "0.75", True),
    ("\\dfrac{3}{4}", "0.75", True),
    ("-2", "-2.0", True),
    ("(B)", "B", True),
    ("b", "B", True),
    ("A", "B", False),
    ("22", "21", False),
    ("1,2", "12", False),
    ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}", True),
    ("\\frac{\\sqrt{2}}{2}", "0.7071067811865476", True),
    ("x^2+2x+1", "(x+1)^2", True),
    ("\\pi", "3.14", False),
    ("Paris", "paris", True),
    ("Paris.", "Paris", True),
    ("$\\frac{1}{3}$", "\\frac{1}{3}", True),
    ("1000000", "1,000,000", True),
    ("192000001", "192000000", False),  # integers compare exactly, however large
    ("192,000,000", "192000000.0", True),
    ("0.33", "\\frac{1}{3}", False),
    ("0.333333", "\\frac{1}{3}", True),  # within the 1e-6 relative tolerance
    (None, "1", False),
    ("\\text{5 apples}", "5", True),
]


@pytest.mark.parametrize("a,b,expected", EQUIV)
def test_equivalent(a, b, expected):
    assert equivalent(a, b) is expected
    assert equivalent(b, a) is expected


def test_normalize_and_number():
    assert normalize(" **$18.** ") == "18"
    assert to_number("1,000") == 1000
    assert to_number("1,00") is None
    assert to_number("\\frac{1}{0}") is None
    assert to_number("seven") is None
