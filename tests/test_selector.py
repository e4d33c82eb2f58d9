"""Selection rules: weighted votes on hand-computed cases, the same pick live and in the replay,
and a learned selector that recovers the right answer from a feature."""

import asyncio
import json
import math
import random

import pytest

from ponder.api import asolve
from ponder.backends.fake import ScriptedBackend
from ponder.domains.selector import RULES, Selector, Signal, get_selector, group_features
from ponder.domains.vote import cluster_ids, scored_groups, selector_pick
from ponder.errors import ConfigError
from ponder.eval.pools import pick, signals_of
from ponder.eval.store import SampleRow
from ponder.runner import build_strategy
from ponder.tune import learn
from ponder.types import Completion, TokenLogprob

# Five samples: answers 7, 9, 9, 7, 9; chains 0-2, programs 3-4 (3 ran cleanly, 4 was repaired).
ANSWERS = ["7", "9", "9", "7", "9"]
SIGNALS = [Signal("chain", 10, 0.9), Signal("chain", 30, 0.2), Signal("chain", 20, 0.3),
           Signal("program", 40, None, clean=True), Signal("program", 20, None, clean=False)]
CLUSTERS = cluster_ids(ANSWERS)


def winner(rule, subset=range(5)):
    chosen = selector_pick(CLUSTERS, list(subset), SIGNALS, ANSWERS, get_selector(rule))
    return ANSWERS[chosen]


def test_group_features_by_hand():
    seven = group_features([0, 3], SIGNALS, "7", range(5))
    # votes 2/5; confidence (0.9 + 0.5 for the program without logprobs) / 5; one clean program
    # of five samples; both modes: cross = votes; mean tokens 25 over the mean 24; an integer.
    assert seven == pytest.approx({"votes": 0.4, "confidence": 0.28, "clean": 0.2, "cross": 0.4,
                                   "length": 25 / 24, "integer": 1.0, "truncated": 0.0})
    nine = group_features([1, 2, 4], SIGNALS, "9", range(5))
    assert nine == pytest.approx({"votes": 0.6, "confidence": 0.2, "clean": 0.0, "cross": 0.6,
                                  "length": (70 / 3) / 24, "integer": 1.0, "truncated": 0.0})


def test_weighted_votes_by_hand():
    assert winner("majority") == "9"  # 3 votes to 2
    assert winner("confidence") == "7"  # 0.28 > 0.20
    assert winner("clean") == "7"  # 7: 0.4 + 0.2; 9: 0.6 + 0: a tie; 7 was seen first
    assert winner("cross-mode") == "9"  # 0.4 * 1.5 = 0.6 < 0.6 * 1.5 = 0.9
    # among samples 0-3 only: 7 has a chain and a clean program, 9 two chains
    assert winner("clean", range(4)) == "7"  # 7: 0.5 + 0.25; 9: 0.5
    # samples 1 then 0: a 1-1 tie that the majority gives to 9 (seen first); the shorter 7
    # (10 tokens against 30, mean 20) wins on length: 0.5 - 0.25 * 0.5 > 0.5 - 0.25 * 1.5
    assert (winner("majority", [1, 0]), winner("short", [1, 0])) == ("9", "7")


def test_a_tie_goes_to_the_answer_seen_first():
    groups = scored_groups(CLUSTERS, range(5), SIGNALS, ANSWERS, RULES["clean"])
    assert [round(g.weight, 9) for g in groups] == [0.6, 0.6]
    assert winner("clean") == "7"


def test_an_answer_form_rule_and_a_file(tmp_path):
    answers = ["2.5", "3"]
    signals = [Signal("chain", 5), Signal("chain", 5)]
    clusters = cluster_ids(answers)
    assert answers[selector_pick(clusters, [0, 1], signals, answers, RULES["majority"])] == "2.5"
    assert answers[selector_pick(clusters, [0, 1], signals, answers, RULES["integer"])] == "3"
    path = tmp_path / "sel.json"
    Selector("mine", {"length": -1.0, "votes": 2.0}, 0.5).save(path)
    data = json.loads(path.read_text())
    assert data["weights"]["length"] == -1.0 and data["intercept"] == 0.5
    assert get_selector(str(path)).score({"votes": 1, "length": 2}) == 0.5
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read selector"):
        get_selector(str(path))
    with pytest.raises(ConfigError, match="unknown selector 'nope'"):
        build_strategy("self-consistency", selector="nope")


def _completion(text, logprob):
    words = text.split()
    return Completion(text=text, logprobs=tuple(TokenLogprob(w, logprob) for w in words))


def test_live_run_and_replay_pick_alike():
    script = [_completion("so The answer is: 9", -2.0), _completion("The answer is: 7", -0.1),
              _completion("The answer is: 9", -1.5)]
    result = asyncio.run(asolve("q?", "self-consistency", n=3, selector="confidence",
                                backend=ScriptedBackend(script)))
    assert result.answer == "7"  # 2 votes for 9 at low confidence lose to one confident 7
    rows = [SampleRow(i, c.text, c.answer, c.answer == "7", 0, c.usage.completion_tokens, 1, 0,
                      c.finish_reason, None, {"mode": "chain", "mean_logprob": c.mean_logprob})
            for i, c in enumerate(result.candidates)]
    config = build_strategy("self-consistency", selector="confidence").config
    assert rows[pick("vote", config, rows, [None] * 3, [0, 1, 2])].answer == "7"
    assert [s.confidence for s in signals_of(rows)] == pytest.approx(
        [math.exp(-2.0), math.exp(-0.1), math.exp(-1.5)])
    plain = build_strategy("self-consistency").config
    assert rows[pick("vote", plain, rows, [None] * 3, [0, 1, 2])].answer == "9"


def synthetic(problems, rng):
    """Decisions whose right group is never the largest but is the only confident one."""
    rows = []
    for p in range(problems):
        groups = rng.randint(2, 4)
        right = rng.randrange(groups)
        features, labels = [], []
        for g in range(groups):
            votes = rng.uniform(0.05, 0.25) if g == right else rng.uniform(0.3, 0.6)
            confidence = votes * (rng.uniform(0.8, 0.95) if g == right
                                  else rng.uniform(0.05, 0.2))
            features.append([votes, confidence, 0.0, 0.0, rng.uniform(0.8, 1.2), 1.0, 0.0])
            labels.append(g == right)
        rows.append(learn.Decision(str(p), features, labels))
    return rows


def test_the_learned_selector_recovers_the_answer_from_a_feature(tmp_path):
    rng = random.Random(7)
    train, test = synthetic(120, rng), synthetic(60, rng)
    model = learn.fit(train)
    assert model is not None and model.weights["confidence"] > 0 > model.weights["votes"]
    assert learn.accuracy(model, test) >= 0.95
    assert learn.accuracy(RULES["majority"], test) == 0.0
    report, fitted = learn.cross_validate(train, learn.folds_of([d.problem_id for d in train],
                                                                5, 0))
    assert report["learned"] >= 0.95 and report["majority"] == 0.0 and len(fitted) == 5
    path = tmp_path / "selector.json"
    model.save(path)
    loaded = get_selector(str(path))  # plain JSON coefficients, read back exactly
    assert loaded.weights == pytest.approx(model.weights)
    assert learn.accuracy(loaded, test) == learn.accuracy(model, test)


def test_one_class_is_not_fitted():
    rows = [learn.Decision("0", [[1.0] * 7, [0.5] * 7], [False, False])]
    assert learn.fit(rows) is None
