"""Paired comparisons: values a person can check by hand."""

import math
import random

import pytest

from ponder.errors import ConfigError
from ponder.eval.comparisons import paired_table, pairs, parse_reference
from ponder.eval.paired import NOT_SIGNIFICANT, compare, paired_bootstrap, sign_test


def test_mcnemar_on_10_against_2_discordant_pairs():
    # 10 problems only the strategy gets right, 2 only the reference, 30 both or neither.
    diffs = [1.0] * 10 + [-1.0] * 2 + [0.0] * 30
    expected = 2 * sum(math.comb(12, k) for k in range(3)) / 2**12  # 2 * 79 / 4096
    assert sign_test(diffs) == pytest.approx(expected)
    assert round(sign_test(diffs), 4) == 0.0386


def test_sign_test_edges():
    assert sign_test([]) == 1.0
    assert sign_test([0.0, 0.0]) == 1.0  # ties dropped: nothing to test
    assert sign_test([1.0]) == 1.0  # 2 * 1/2, capped at 1
    assert sign_test([0.5] * 6) == pytest.approx(2 / 2**6)  # all six one way: 0.03125
    assert sign_test([0.25, -0.5, 0.0]) == 1.0  # fractions count by their sign only


def test_bootstrap_of_identical_outcomes_is_zero():
    assert paired_bootstrap([0.0] * 20, 500, random.Random(0)) == (0.0, 0.0)
    row = compare(("a", 4), ("b", 4), {"p1": 1.0, "p2": 0.0}, {"p1": 1.0, "p2": 0.0})
    assert (row.difference, row.ci_low, row.ci_high, row.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert row.verdict == NOT_SIGNIFICANT


def test_bootstrap_is_reproducible_and_brackets_the_mean():
    diffs = [1.0, 0.0, -1.0, 1.0, 0.5, 0.0, 1.0, -0.25]
    a = paired_bootstrap(diffs, 1000, random.Random(7))
    b = paired_bootstrap(diffs, 1000, random.Random(7))
    assert a == b
    assert a[0] < sum(diffs) / len(diffs) < a[1]
    values = {str(i): d for i, d in enumerate(diffs)}
    zeros = dict.fromkeys(values, 0.0)
    assert compare(("x", 2), ("y", 2), values, zeros, seed=3) == \
        compare(("x", 2), ("y", 2), values, zeros, seed=3)


def test_constant_difference_has_a_degenerate_interval():
    # Every problem 1 point better: every resample's mean difference is exactly 0.25.
    row = compare(("a", 1), ("b", 1), dict.fromkeys("abcdefgh", 0.75),
                  dict.fromkeys("abcdefgh", 0.5))
    assert (row.difference, row.ci_low, row.ci_high) == (0.25, 0.25, 0.25)
    assert row.p_value == pytest.approx(2 / 2**8) and row.verdict == "better"


def test_only_problems_both_have_are_paired():
    row = compare(("a", 1), ("b", 1), {"p": 1.0, "q": 0.0, "r": 1.0}, {"q": 1.0, "s": 0.0})
    assert row.problems == 1 and row.difference == -1.0
    assert row.verdict == NOT_SIGNIFICANT  # one discordant pair: p = 1


def test_worse_when_the_reference_wins_most_problems():
    mine = dict.fromkeys(map(str, range(12)), 0.0)
    ref = {**mine, **dict.fromkeys(map(str, range(10)), 1.0)}
    row = compare(("a", 1), ("b", 1), mine, ref)
    assert row.p_value == pytest.approx(2 / 2**10) and row.verdict == "worse"
    assert row.ci_high < 0


def test_default_pairs_are_self_consistency_at_the_same_budget_and_greedy():
    budgets = {"greedy": [1], "self-consistency": [1, 4], "best-of-n": [1, 4], "cot": [1]}
    names = {"greedy": "cot", "self-consistency": "self-consistency",
             "best-of-n": "best-of-n", "cot": "cot"}
    assert pairs(budgets, names) == [
        (("self-consistency", 1), ("greedy", 1)), (("self-consistency", 4), ("greedy", 1)),
        (("best-of-n", 1), ("self-consistency", 1)), (("best-of-n", 1), ("greedy", 1)),
        (("best-of-n", 4), ("self-consistency", 4)), (("best-of-n", 4), ("greedy", 1)),
        (("cot", 1), ("self-consistency", 1)), (("cot", 1), ("greedy", 1)),
    ]
    # A chosen reference replaces both; a fixed budget pins it.
    assert pairs(budgets, names, ("best-of-n", 4)) == [
        (("greedy", 1), ("best-of-n", 4)), (("self-consistency", 1), ("best-of-n", 4)),
        (("self-consistency", 4), ("best-of-n", 4)), (("cot", 1), ("best-of-n", 4))]


def test_parse_reference():
    labels = ["greedy", "self-consistency", "weird@label"]
    assert parse_reference("self-consistency", labels) == ("self-consistency", None)
    assert parse_reference("self-consistency@8", labels) == ("self-consistency", 8)
    assert parse_reference("weird@label", labels) == ("weird@label", None)
    with pytest.raises(ConfigError, match="unknown strategy 'nope'"):
        parse_reference("nope", labels)
    with pytest.raises(ConfigError, match="unknown strategy 'nope'"):
        parse_reference("nope@4", labels)
    with pytest.raises(ConfigError, match="positive integer"):
        parse_reference("greedy@x", labels)


def test_paired_table_rows():
    values = {"greedy": {1: {"A": 1.0, "B": 0.0}},
              "self-consistency": {1: {"A": 1.0, "B": 0.5}, 2: {"A": 1.0}}}
    rows = paired_table(values, {"greedy": "cot", "self-consistency": "self-consistency"})
    assert [(r["strategy"], r["budget"], r["reference"], r["problems"]) for r in rows] == [
        ("self-consistency", 1, "greedy", 2), ("self-consistency", 2, "greedy", 1)]
    assert rows[0]["difference"] == 0.25 and rows[0]["p_value"] == 1.0
