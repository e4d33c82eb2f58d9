import asyncio
import json
import math

import pytest

from ponder import ConfigError, ScriptedBackend
from ponder.domains.vote import best_score_pick, cluster_ids, vote_pick
from ponder.eval.curves import expected_accuracy, mean_ci, pass_at_k
from ponder.eval.harness import Harness, parse_budgets
from ponder.eval.store import SampleRow, ScoreRow, Store
from ponder.types import Problem

PROBLEMS = [Problem("a?", "5", "A"), Problem("b?", "4", "B")]
SAMPLES = {"A": ["5", "5", "7"], "B": ["3", None, "4"]}
SCORES = {"A": [0.9, 0.2, 0.95], "B": [0.1, None, 0.8]}


def harness(tmp_path, strategies=("self-consistency",), budgets=(1, 2, 3), backend=None,
            **kwargs):
    store = Store(tmp_path / "samples.sqlite")
    return Harness(backend or ScriptedBackend(), store, PROBLEMS, list(strategies), list(budgets),
                   greedy=False, **kwargs)


def fill(h, plan):
    for p in PROBLEMS:
        rows = [SampleRow(i, f"The answer is {a}", a, a == p.answer, 0, 10, 0.5, 1.0)
                for i, a in enumerate(SAMPLES[p.id])]
        h.store.add_samples(plan.pools[0].key, p.id, rows)
        if plan.verifier:
            h.store.add_scores(plan.pools[0].key, plan.verifier, p.id,
                               [ScoreRow(i, v, 1.0, 50.0, 1.0, 0.5)
                                for i, v in enumerate(SCORES[p.id])])


def test_vote_curve_matches_hand_computed_values(tmp_path):
    h = harness(tmp_path)
    fill(h, h.plans[0])
    data = h.curves(draws=1000)
    acc = {p["budget"]: p["accuracy"] for p in data["points"]}
    # A = [5, 5, 7] (gold 5): k=1 2/3, k=2 1 (ties go to the earliest sample), k=3 1.
    # B = [3, -, 4] (gold 4): k=1 1/3, k=2 1/3, k=3 0 (3 and 4 tie, 3 came first).
    assert acc == pytest.approx({1: 0.5, 2: 2 / 3, 3: 0.5})
    tokens = {p["budget"]: p["tokens"] for p in data["points"]}
    assert tokens == pytest.approx({1: 10.0, 2: 20.0, 3: 30.0})
    point3 = [p for p in data["points"] if p["budget"] == 3][0]
    assert (point3["ci_low"], point3["ci_high"]) == (0.0, 1.0)  # values [1, 0]
    cov = {p["budget"]: p["accuracy"] for p in data["coverage"]}
    assert cov == pytest.approx({1: 0.5, 2: (1 + 2 / 3) / 2, 3: 1.0})


def test_best_score_curve(tmp_path):
    h = harness(tmp_path, strategies=("best-of-n",))
    fill(h, h.plans[0])
    points = h.curves(draws=1000)["points"]
    acc = {p["budget"]: p["accuracy"] for p in points}
    assert {p["budget"]: p["tokens"] for p in points} == pytest.approx({1: 11, 2: 22, 3: 33})
    # A: scores .9 .2 .95 -> k=3 picks "7" (wrong); k=2 subsets {0,1}->5 {0,2}->7 {1,2}->7.
    # B: scores .1 - .8 -> k=3 picks "4"; k=2 {0,1}->3 {0,2}->4 {1,2}->4.
    assert acc == pytest.approx({1: 0.5, 2: (1 / 3 + 2 / 3) / 2, 3: 0.5})


def test_pick_rules():
    clusters = cluster_ids(["22", "22.0", "$21", None, "21"])
    assert clusters == [0, 0, 1, None, 1]
    assert vote_pick(clusters, [0, 2, 4]) == 2
    assert vote_pick(clusters, [3]) is None
    assert best_score_pick([None, None, None, None, None], clusters, [0, 2]) == 0
    assert best_score_pick([0.1, 0.9, 0.9, 1.0, 0.2], clusters, [0, 1, 2, 3]) == 1


def test_pass_at_k_and_ci():
    assert pass_at_k(10, 0, 3) == 0.0
    assert pass_at_k(10, 10, 3) == 1.0
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(5, 2))
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)
    mean, lo, hi = mean_ci([1] * 6 + [0] * 4)
    half = 1.959963984540054 * math.sqrt(0.24 * 10 / 9) / math.sqrt(10)  # sample sd / sqrt(n)
    assert (mean, lo, hi) == pytest.approx((0.6, 0.6 - half, 0.6 + half))
    assert mean_ci([1, 0]) == (0.5, 0.0, 1.0)  # clipped to [0, 1]


def test_sampled_random_draws_are_reproducible():
    import random

    correct = [True, False] * 8
    clusters = list(range(16))
    a = expected_accuracy(lambda s: vote_pick(clusters, s), correct, 8, 50, random.Random(1))
    b = expected_accuracy(lambda s: vote_pick(clusters, s), correct, 8, 50, random.Random(1))
    assert a == b


@pytest.mark.parametrize("text", ["", "4,2,1", "1,1,2", "0,1", "a,b", "-1"])
def test_bad_budgets(text):
    with pytest.raises(ConfigError, match="budgets must be"):
        parse_budgets(text)


def test_harness_generates_once_and_resumes(tmp_path):
    answers = {"a?": "The answer is 5", "b?": "The answer is 4"}
    fake = ScriptedBackend(lambda request, i: answers[request.messages[-1].content])
    h = harness(tmp_path, budgets=(1, 2, 4), backend=fake)
    asyncio.run(h.run())
    assert [r.n for r in fake.history] == [4, 4]  # the largest budget, once per problem
    assert h.store.counts(h.plans[0].pools[0].key, ["A", "B"]) == {"A": 4, "B": 4}
    h.store.close()
    # A second run over the same store generates nothing; a larger budget only the extra.
    h2 = harness(tmp_path, budgets=(1, 2, 4, 6), backend=fake)
    asyncio.run(h2.run())
    assert [r.n for r in fake.history] == [4, 4, 2, 2]
    data = h2.curves()
    assert {p["budget"]: p["accuracy"] for p in data["points"]} == {1: 1.0, 2: 1.0, 4: 1.0,
                                                                    6: 1.0}
    # A changed configuration is a different key: nothing is mixed.
    h3 = harness(tmp_path, budgets=(1,), backend=fake, options={"temperature": 0.3})
    assert h3.plans[0].pools != h2.plans[0].pools


def test_self_consistency_and_best_of_n_share_one_sample_pool(tmp_path):
    from helpers import judge_aware

    answers = ["The answer is 5", "The answer is 7", "The answer is 5"] * 2
    fake = ScriptedBackend(judge_aware(answers, {"5": 0.9, "7": 0.2, "4": 0.8, "3": 0.1}))
    h = harness(tmp_path, strategies=("self-consistency", "best-of-n"), budgets=(1, 3),
                backend=fake)
    sc, bon = h.plans
    assert sc.pools == bon.pools and bon.verifier == "judge"
    asyncio.run(h.run())
    sampling = [r for r in fake.history if r.params.logprobs is None]
    judging = [r for r in fake.history if r.params.logprobs == 20]
    assert [r.n for r in sampling] == [3, 3]  # generated once per problem, not per strategy
    assert len(judging) == 6  # every sample judged once
    data = h.curves()
    assert {(p["strategy"], p["budget"]) for p in data["points"]} == {
        ("self-consistency", 1), ("self-consistency", 3), ("best-of-n", 1), ("best-of-n", 3)}


def test_store_refuses_a_different_run(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    store.claim({"model_sha256": "aaa", "seed": "0"})
    store.claim({"model_sha256": "aaa", "seed": "0"})
    with pytest.raises(ConfigError, match="holds a different run: model_sha256"):
        store.claim({"model_sha256": "bbb", "seed": "0"})
    assert json.dumps(store.counts("k", ["x"])) == '{"x": 0}'
