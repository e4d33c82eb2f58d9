"""Paired comparisons: values a person can check by hand."""

import asyncio
import json
import math
import random

import pytest

from ponder import ScriptedBackend
from ponder.cli.main import main
from ponder.errors import ConfigError
from ponder.eval.comparisons import paired_table, pairs, parse_reference
from ponder.eval.harness import Harness
from ponder.eval.paired import NOT_SIGNIFICANT, compare, paired_bootstrap, sign_test
from ponder.eval.report import html_page, markdown
from ponder.eval.store import Store
from ponder.types import Problem


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
    # A chosen reference replaces both; a fixed budget pins it (its own smaller budget is a
    # row too, never the reference point against itself).
    assert pairs(budgets, names, ("best-of-n", 4)) == [
        (("greedy", 1), ("best-of-n", 4)), (("self-consistency", 1), ("best-of-n", 4)),
        (("self-consistency", 4), ("best-of-n", 4)), (("best-of-n", 1), ("best-of-n", 4)),
        (("cot", 1), ("best-of-n", 4))]
    # Without a budget: each row's budget, or the reference's only one.
    assert pairs(budgets, names, ("self-consistency", None)) == [
        (("greedy", 1), ("self-consistency", 1)), (("best-of-n", 1), ("self-consistency", 1)),
        (("best-of-n", 4), ("self-consistency", 4)), (("cot", 1), ("self-consistency", 1))]


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


PROBLEMS = [Problem(f"What is {i}?", str(i), f"P{i}") for i in range(12)]


def scripted_run(tmp_path):
    """Greedy is right on P0 and P1 only; self-consistency's 3 samples are right, right, wrong,
    so its vote is right everywhere and a single sample two times in three."""
    def respond(request, index):
        gold = request.messages[-1].content.split()[-1].rstrip("?")
        if request.params.temperature == 0:
            return f"The answer is {gold if gold in ('0', '1') else '99'}"
        return f"The answer is {gold if index < 2 else '98'}"

    store = Store(tmp_path / "samples.sqlite")
    h = Harness(ScriptedBackend(respond), store, PROBLEMS, ["self-consistency"], [1, 3],
                greedy=True)
    asyncio.run(h.run())
    data = h.curves(draws=100)
    names = {plan.label: plan.name for plan in h.plans}
    return h, data, names


def test_report_shows_the_paired_table(tmp_path):
    h, data, names = scripted_run(tmp_path)
    assert data["per_problem"]["greedy"][1] == {f"P{i}": float(i < 2) for i in range(12)}
    assert data["per_problem"]["self-consistency"][3] == {f"P{i}": 1.0 for i in range(12)}
    data["paired"] = paired_table(data["per_problem"], names)
    by_budget = {r["budget"]: r for r in data["paired"]}
    assert set(by_budget) == {1, 3} and all(r["reference"] == "greedy" for r in data["paired"])
    top = by_budget[3]  # 10 discordant pairs, all one way: p = 2 / 2^10
    assert top["problems"] == 12 and top["difference"] == pytest.approx(10 / 12)
    assert top["p_value"] == pytest.approx(2 / 1024) and top["verdict"] == "better"
    config = {"dataset": "tiny<&>", "model": "scripted", "model_sha256": "n/a", "problems": 12,
              "seed": 0, "ponder_version": "test"}
    md = markdown(data, config)
    assert "| self-consistency@3 | greedy@1 | 12 | +83.3 |" in md
    assert "| 0.0020 | better |" in md
    page = html_page(data, config, tmp_path / "absent.png")
    assert "<h2>Paired comparisons</h2>" in page and "<td>self-consistency@3</td>" in page
    h.store.close()
    print("\n" + "\n".join(line for line in md.splitlines() if line.startswith("|")))


def test_html_escapes_the_paired_table(tmp_path):
    data = {"points": [], "coverage": [], "problems": [], "paired": [
        {"strategy": "<b>x</b>", "budget": 1, "reference": "a&b", "reference_budget": 1,
         "problems": 3, "difference": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_value": 1.0,
         "verdict": NOT_SIGNIFICANT}]}
    config = {"dataset": "d", "model": "m", "model_sha256": "n/a", "problems": 3, "seed": 0,
              "ponder_version": "test"}
    page = html_page(data, config, tmp_path / "absent.png")
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;@1" in page and "a&amp;b@1" in page


@pytest.mark.parametrize("argv,message", [
    (["--reference", "nope"], "--reference names an unknown strategy 'nope'"),
    (["--reference", "greedy", "--no-greedy"], "unknown strategy 'greedy'"),
    (["--reference", "cot@x"], "the budget after '@' must be a positive integer"),
])
def test_eval_refuses_an_unknown_reference(capsys, tmp_path, argv, message):
    dataset = tmp_path / "tiny.jsonl"
    dataset.write_text(json.dumps({"question": "1+1?", "answer": "#### 2"}) + "\n")
    code = main(["eval", "--dataset", str(dataset), "--strategies", "cot", "--out",
                 str(tmp_path / "o"), *argv])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ponder: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "o").exists()  # refused before anything was loaded or written


def _scripted_cli(monkeypatch, tmp_path):
    import ponder.backends.loading as loading
    import ponder.eval.session as session
    from ponder.backends.models import ModelSpec

    def respond(request, index):
        text = request.messages[-1].content
        right = text.split("+")[0].strip().split()[-1] in ("1", "2")
        if request.params.temperature == 0:
            return "The answer is 2" if right else "The answer is 99"
        return "The answer is 2" if index < 2 else "The answer is 98"

    monkeypatch.setattr(session, "resolve_model",
                        lambda *a, **k: ModelSpec("scripted", "scripted"))
    monkeypatch.setattr(loading, "load_backend", lambda *a, **k: ScriptedBackend(respond))
    dataset = tmp_path / "tiny.jsonl"
    dataset.write_text("".join(json.dumps({"question": f"What is {i} + {2 - i}?",
                                           "answer": "#### 2"}) + "\n" for i in range(8)))
    return ["eval", "--dataset", str(dataset), "--strategies", "self-consistency",
            "--budgets", "1,3", "--concurrency", "1", "--out", str(tmp_path / "o")]


def test_eval_writes_the_paired_table_against_a_chosen_reference(monkeypatch, tmp_path, capsys):
    argv = _scripted_cli(monkeypatch, tmp_path)
    assert main([*argv, "--reference", "self-consistency@3"]) == 0
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert [(r["strategy"], r["budget"], r["reference"], r["reference_budget"])
            for r in report["paired"]] == [("greedy", 1, "self-consistency", 3),
                                           ("self-consistency", 1, "self-consistency", 3)]
    assert report["config"]["reference"] == "self-consistency@3"
    assert report["per_problem"]["self-consistency"]["3"] == dict.fromkeys(map(str, range(8)),
                                                                            1.0)
    md = (tmp_path / "o" / "report.md").read_text()
    assert "| greedy@1 | self-consistency@3 | 8 | -75.0 |" in md
    assert "paired comparisons" in capsys.readouterr().out


def test_eval_refuses_a_reference_budget_not_evaluated(monkeypatch, tmp_path, capsys):
    argv = _scripted_cli(monkeypatch, tmp_path)
    assert main([*argv, "--reference", "self-consistency@5"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("ponder: error: --reference self-consistency@5: self-consistency is "
                   "evaluated at budgets 1, 3 only")
