"""``ponder tune`` over mixes of a small and a strong model, on scripted models of known sizes:
which problems a cascade escalates at which threshold, its expected accuracy, tokens and FLOPs
worked out by hand, the strong model alone, the choice per FLOPs budget, the store's keys per
model, resuming, the presets, and the one-line refusals.

The dev set: six problems, 1, 3, 4 and 5 tuned on, 0 and 2 held out (seed 0, --holdout 2).
The small model (100 parameters) answers each problem four ways, by pattern; its n=4 vote:

    pattern  samples          leader's share  its pick
    sure     R R R R          1.0             right
    split    R R W W          0.5             right (a tie goes to the answer seen first)
    wrong    W W W R          0.75            wrong
    lost     500 501 502 503  0.25            wrong

The strong model (1000 parameters): greedy, right everywhere but on ``split``, where it gives no
answer (so an escalated split keeps the small model's pick); at T=0.7, right three times in four.
Every answer is four words ("The answer is: 13"), the strong model's "I cannot tell." three.
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import re
import sqlite3

import pytest

import ponder.cli.endpoints as endpoints_cli
import ponder.eval.session as session
from ponder import asolve, registry
from ponder.backends import loading
from ponder.backends.fake import ScriptedBackend, count_words
from ponder.backends.models import ModelSpec
from ponder.cli.main import main
from ponder.errors import ConfigError
from ponder.eval.store import Store
from ponder.presets import load_preset
from ponder.tune import mixes, search
from ponder.tune.mixes import GREEDY, Mix
from ponder.tune.report import mix_lines
from ponder.tune.strong import MixTuner
from ponder.types import Completion, Problem, TokenLogprob
from ponder.verifiers.judge import JUDGE_SYSTEM

PATTERN = {"0": "sure", "1": "sure", "2": "lost", "3": "split", "4": "wrong", "5": "lost"}
SMALL = {"sure": "RRRR", "split": "RRWW", "wrong": "WWWR", "lost": "0123"}
TUNING, HELD_OUT = ["1", "3", "4", "5"], ["0", "2"]
SMALL_SIZE, STRONG_SIZE = 100, 1000
DRAWN: collections.Counter = collections.Counter()  # samples drawn per (model, problem)


@pytest.fixture(autouse=True)
def _fresh_counts():
    DRAWN.clear()
    JUDGED.clear()
    MUTE["on"] = False


def question(i: int | str) -> str:
    return f"Problem {i}: what is the secret number?"


def problem_of(request) -> str:
    return request.messages[-1].content.split()[1].rstrip(":")


def said(i: str, what: str) -> str:
    answer = {"R": str(10 + int(i)), "W": "999"}.get(what, f"50{what}")
    return f"The answer is: {answer}"


def small(request, index):
    i = problem_of(request)
    position, DRAWN[("small", i)] = DRAWN[("small", i)], DRAWN[("small", i)] + 1
    return said(i, SMALL[PATTERN[i]][position % 4])


JUDGED: list[tuple[str, str]] = []  # (problem, answer) the strong model was asked to judge
MUTE = {"on": False}  # the strong model answers nothing itself (it still judges)


def strong(request, index):
    if request.messages[0].content == JUDGE_SYSTEM:  # honest: yes when the answer is right
        prompt = request.messages[-1].content
        i = re.search(r"Problem (\d+):", prompt).group(1)
        answer = re.search(r"Proposed final answer: (.*)", prompt).group(1)
        JUDGED.append((i, answer))
        return "Yes" if answer == str(10 + int(i)) else "No"
    i = problem_of(request)
    if MUTE["on"]:
        return "I cannot tell."
    if request.params.temperature == 0.0:
        return "I cannot tell." if PATTERN[i] == "split" else said(i, "R")
    position, DRAWN[("strong", i)] = DRAWN[("strong", i)], DRAWN[("strong", i)] + 1
    return said(i, "R" if position % 4 < 3 else "W")


def models(small_size=SMALL_SIZE, strong_size=STRONG_SIZE):
    return (ScriptedBackend(small, model="small", parameters=small_size),
            ScriptedBackend(strong, model="big", parameters=strong_size))


PROBLEMS = [Problem(question(i), str(10 + i), id=str(i)) for i in range(6)]


def make(tmp_path, backends, budgets=("ref@4", 3e4, 7e4), **options) -> MixTuner:
    store = Store(tmp_path / "samples.sqlite")
    options.setdefault("verify", False)  # verify-by-strong: its own tests below
    return MixTuner(backends[0], store, PROBLEMS, search.grid([0.7], ["chain"]), [1, 2, 4],
                    list(budgets), strong=backends[1], strong_key="strong:big", learned=False,
                    holdout=2, out=tmp_path, selectors=["majority"], **options)


@pytest.fixture
def tuned(tmp_path):
    backends = models()
    tuner = make(tmp_path, backends)
    data = asyncio.run(search.run_tune(tuner))
    prompt = sum(count_words(m.content) for m in backends[0].history[0].messages)
    assert prompt == sum(count_words(m.content) for m in backends[1].history[0].messages)
    yield tuner, data, backends, prompt
    tuner.store.close()


def by_label(data):
    return {c["label"]: c for c in data["candidates"]}


def cascade_label(n: int, threshold: str, side: str) -> str:
    return f"chain T0.7 · majority · n={n}, agreement < {threshold} → strong {side}"


def test_the_split_is_the_one_the_docstring_draws():
    tuning, held = search.split(PROBLEMS, 2, seed=0)
    assert ([p.id for p in tuning], [p.id for p in held]) == (TUNING, HELD_OUT)


def test_which_problems_escalate_at_which_threshold(tuned):
    tuner, _, _, _ = tuned
    [(_, _, plan)] = tuner._plans(lambda rule: None)
    problems = {p.id: p for p in PROBLEMS}

    def side(pid, n):
        return mixes.small_side(tuner.store, plan, problems[pid], n, 50, 0, first=False)

    four = {pid: side(pid, 4) for pid in TUNING}
    assert {PATTERN[pid]: (s.agreement, s.right) for pid, s in four.items()} == {
        "sure": ((1.0,), (True,)), "split": ((0.5,), (True,)),
        "wrong": ((0.75,), (False,)), "lost": ((0.25,), (False,))}
    escalated = {t: sorted(PATTERN[pid] for pid, s in four.items() if s.agreement[0] < t)
                 for t in mixes.THRESHOLDS}
    assert escalated == {0.5: ["lost"], 0.625: ["lost", "split"], 0.75: ["lost", "split"],
                         0.875: ["lost", "split", "wrong"], 1.0: ["lost", "split", "wrong"]}
    # two of RRWW: {R,R} and {W,W} agree; the four mixed pairs split 0.5 and pick R (first)
    pairs = side("3", 2)
    assert list(zip(pairs.agreement, pairs.right, strict=True)) == [
        (1.0, True), (0.5, True), (0.5, True), (0.5, True), (0.5, True), (1.0, False)]
    assert (pairs.tokens, four["3"].tokens) == (8, 16)


def test_a_cascade_by_hand(tuned):
    _, data, _, prompt = tuned
    c = by_label(data)
    # n=4, below 0.5: only "lost" goes to the strong model, which is right there
    low = c[cascade_label(4, "0.5", "greedy")]
    assert (low["accuracy"], low["escalation"]) == (0.75, 0.25)
    assert low["tokens_by_model"] == {"small": 16, "strong": 1.0}
    assert low["flops"] == pytest.approx(2 * SMALL_SIZE * (prompt + 16)
                                         + 2 * STRONG_SIZE * (prompt + 4) / 4)
    # below 0.625: "split" goes too, where the strong model has no answer: the small one's
    # pick (right) stands; the same accuracy for more FLOPs
    mid = c[cascade_label(4, "0.625", "greedy")]
    assert (mid["accuracy"], mid["escalation"]) == (0.75, 0.5)
    assert mid["flops"] == pytest.approx(2 * SMALL_SIZE * (prompt + 16)
                                         + 2 * STRONG_SIZE * ((prompt + 3) + (prompt + 4)) / 4)
    # below 0.875: "wrong" too, which the strong model gets right: every problem
    high = c[cascade_label(4, "0.875", "greedy")]
    assert (high["accuracy"], high["escalation"]) == (1.0, 0.75)
    assert high["tokens_by_model"] == {"small": 16, "strong": (3 + 4 + 4) / 4}
    assert high["flops"] == pytest.approx(2 * SMALL_SIZE * (prompt + 16) + 2 * STRONG_SIZE
                                          * ((prompt + 3) + 2 * (prompt + 4)) / 4)
    # n=2 below 0.625, over the six pairs of each problem: split sends its 4 mixed pairs (no
    # strong answer: their R picks stand), wrong its 3 mixed pairs (right now), lost all 6
    pairs = c[cascade_label(2, "0.625", "greedy")]
    assert pairs["escalation"] == pytest.approx((0 + 4 / 6 + 3 / 6 + 1) / 4)
    assert pairs["accuracy"] == pytest.approx((1 + 5 / 6 + 3 / 6 + 1) / 4)
    # the strong side a vote of 4 at T=0.7 (right 3 in 4: the vote is right everywhere)
    vote = c[cascade_label(4, "0.875", "majority n=4")]
    assert (vote["accuracy"], vote["escalation"], vote["strong_n"]) == (1.0, 0.75, 4)
    assert vote["flops"] == pytest.approx(2 * SMALL_SIZE * (prompt + 16)
                                          + 0.75 * 2 * STRONG_SIZE * (prompt + 16))
    # a single sample always agrees with itself: n=1 escalates nothing, so it is no cascade
    assert not [label for label in c if label.startswith("chain T0.7 · majority · n=1,")]
    # the small model alone, costed the same way: its prompt once, 4 words a sample
    alone = c["chain T0.7 · majority · n=4"]
    assert (alone["accuracy"], alone["flops"]) == (0.5, 2 * SMALL_SIZE * (prompt + 16))
    assert c["chain T0.7 · majority · n=1"]["flops"] == 2 * SMALL_SIZE * (prompt + 4)


def test_the_strong_model_alone(tuned):
    tuner, data, _, prompt = tuned
    c = {x.label: x for x in tuner.chosen.candidates if isinstance(x, Mix)
         and x.kind == "strong"}
    assert list(c) == ["strong · greedy", "strong chain T0.7 · majority · n=1",
                       "strong chain T0.7 · majority · n=4"]
    greedy = c["strong · greedy"]
    assert greedy.values == {"1": 1.0, "3": 0.0, "4": 1.0, "5": 1.0}  # no answer on split
    assert greedy.flops == pytest.approx(2 * STRONG_SIZE * (4 * prompt + 4 + 3 + 4 + 4) / 4)
    one, four = c["strong chain T0.7 · majority · n=1"], c["strong chain T0.7 · majority · n=4"]
    assert one.values == {pid: 0.75 for pid in TUNING}  # 3 of its 4 samples are right
    assert four.values == {pid: 1.0 for pid in TUNING}
    assert (one.flops, four.flops) == (2 * STRONG_SIZE * (prompt + 4),
                                       2 * STRONG_SIZE * (prompt + 16))
    assert by_label(data)["strong · greedy"]["models"] == "strong"


def test_the_choice_per_flops_budget(tuned):
    _, data, _, prompt = tuned
    reference = 2 * SMALL_SIZE * (prompt + 16)  # self-consistency@4 on the small model
    ref4, low, high = data["choices"]
    assert data["axis"] == "flops" and ref4["budget"] == pytest.approx(reference)
    assert (ref4["budget_spec"], low["budget_spec"], high["budget_spec"]) == (
        "ref@4", "30000", "70000")
    # at the reference's own FLOPs nothing beats it; 3e4 buys the cascade that escalates
    # "lost" only, 7e4 the one that escalates everything but "sure" (1.0)
    assert ref4["chosen"]["label"] == ref4["reference"]["label"] == \
        "chain T0.7 · majority · n=4"
    assert low["chosen"]["label"] == cascade_label(4, "0.5", "greedy")
    assert high["chosen"]["label"] == cascade_label(4, "0.875", "greedy")  # 1.0 ties, later
    assert low["reference"]["label"] == high["reference"]["label"] == \
        "chain T0.7 · majority · n=4"
    assert high["tuning"]["difference"] == 0.5
    # confirmed on the held-out part: "sure" and "lost", first samples only; lost escalates
    assert high["held_out_chosen"]["accuracy"] == 1.0
    assert high["held_out_chosen"]["escalation"] == 0.5
    assert high["held_out_reference"]["accuracy"] == 0.5
    assert high["confirm_problem_ids"] == HELD_OUT
    # the choices need the strong model's greedy answer; the anchors its vote of 4 too
    assert data["held_out_generated"] == [{"setting": "chain T0.7", "n": 4},
                                          {"setting": "strong greedy", "n": 1},
                                          {"setting": "strong chain T0.7", "n": 4}]
    preset = high["preset"]
    assert (preset.strategy, preset.options) == ("cascade", {
        "temperature": 0.7, "mode": "chain", "n": 4, "signal": "agreement",
        "threshold": 0.875, "strong_n": 1})
    assert [row["lever"] for row in high["levers"]][0] == "cascade to the strong model"


def test_each_choice_against_the_best_single_model_and_the_anchors(tuned):
    """The best configuration of one model alone at each budget: the strong model's cheapest
    (greedy, 7.15e4 FLOPs) fits none of them, so it is the small model's vote of 4 (50% on the
    tuning part) everywhere; the cascade chosen at 7e4 beats it by 50 points on both parts.
    The anchors (the strong model greedy and its vote of 4, the small model's self-consistency
    at ref@4) are confirmed on the held-out part ("sure" and "lost") whatever is chosen."""
    _, data, _, prompt = tuned
    ref4, low, high = data["choices"]
    assert {c["single"]["label"] for c in data["choices"]} == {"chain T0.7 · majority · n=4"}
    assert high["single"]["accuracy"] == 0.5
    assert (ref4["single_tuning"]["difference"], low["single_tuning"]["difference"],
            high["single_tuning"]["difference"]) == (0.0, 0.25, 0.5)
    assert high["held_out_single"]["accuracy"] == 0.5  # right on "sure", wrong on "lost"
    assert high["single_held_out"]["difference"] == 0.5
    assert high["single_held_out"]["problems"] == 2
    anchors = {a["tuning"]["label"]: a for a in data["anchors"]}
    assert list(anchors) == ["strong · greedy", "strong chain T0.7 · majority · n=4",
                             "chain T0.7 · majority · n=4"]
    greedy = anchors["strong · greedy"]
    assert (greedy["tuning"]["accuracy"], greedy["held_out"]["accuracy"]) == (0.75, 1.0)
    assert greedy["tuning"]["flops"] == pytest.approx(2 * STRONG_SIZE * (prompt + 15 / 4))
    four = anchors["strong chain T0.7 · majority · n=4"]
    assert (four["tuning"]["accuracy"], four["held_out"]["accuracy"]) == (1.0, 1.0)
    assert four["held_out"]["flops"] == 2 * STRONG_SIZE * (prompt + 16)
    # each choice paired against each anchor on the held-out part
    assert [(c["budget_spec"], c["held_out"]["difference"]) for c in four["choices"]] == [
        ("ref@4", -0.5), ("30000", 0.0), ("70000", 0.0)]
    small = anchors["chain T0.7 · majority · n=4"]
    assert [c["held_out"]["difference"] for c in small["choices"]] == [0.0, 0.5, 0.5]
    # the best mix per budget, chosen or not: none fits ref@4; at 7e4 the chosen cascade
    assert ref4.get("mix") is None
    mix = high["mix"]
    assert mix["configuration"]["label"] == cascade_label(4, "0.875", "greedy")
    assert (mix["against_tuning"]["difference"], mix["against_held_out"]["difference"],
            mix["held_out"]["accuracy"], mix["held_out_against"]["accuracy"]) == (
        0.5, 0.5, 1.0, 0.5)
    assert mix_lines(data)[1].startswith(
        "At 7e4 FLOPs the best mix is chain T0.7 · majority · n=4, agreement < 0.875 → strong "
        "greedy (100.0% on the tuning part, 6.31e4 FLOPs, escalating 75.0%): against the best "
        "single model chain T0.7 · majority · n=4, +50.0 points on the tuning part, held out "
        "100.0% against 50.0%")


def test_the_strong_models_samples_have_keys_of_their_own(tuned, tmp_path):
    """The strong model's pool at T=0.7 is the small reference's setting: keyed by the strong
    model, it never mixes with the small one's, and a tune of the small model alone on the same
    store reads only its own samples and generates nothing."""
    tuner, data, _, _ = tuned
    small_key = tuner.harness.plans[0].pools[0].key
    greedy_key, pool_key = (p.pools[0].key for p in tuner.strong_harness.plans)
    assert len({small_key, greedy_key, pool_key}) == 3
    db = sqlite3.connect(tuner.store.path)
    try:
        texts = {key: [t for (t,) in db.execute(
            "SELECT text FROM samples WHERE sample_key = ? AND problem_id = '1' ORDER BY idx",
            (key,))] for key in (small_key, greedy_key, pool_key)}
    finally:
        db.close()
    # problem 1: the small model right four times, the strong one right three times in four
    assert texts == {small_key: ["The answer is: 11"] * 4, greedy_key: ["The answer is: 11"],
                     pool_key: ["The answer is: 11"] * 3 + ["The answer is: 999"]}
    backends = (ScriptedBackend([], parameters=SMALL_SIZE), None)
    alone = search.Tuner(backends[0], tuner.store, PROBLEMS, search.grid([0.7], ["chain"]),
                         [1, 2, 4], [100], learned=False, holdout=2, out=tmp_path,
                         selectors=["majority"])
    again = asyncio.run(search.run_tune(alone))
    assert backends[0].history == []
    assert {c["label"]: c["accuracy"] for c in again["candidates"]} == {
        f"chain T0.7 · majority · n={n}": by_label(data)[f"chain T0.7 · majority · n={n}"][
            "accuracy"] for n in (1, 2, 4)}


def test_a_resumed_tune_generates_nothing(tuned, tmp_path):
    tuner, data, _, _ = tuned
    silent = (ScriptedBackend([], model="small", parameters=SMALL_SIZE),
              ScriptedBackend([], model="big", parameters=STRONG_SIZE))
    again = asyncio.run(search.run_tune(make(tmp_path, silent)))
    assert silent[0].history == silent[1].history == []
    assert [c["chosen"]["label"] for c in again["choices"]] == \
        [c["chosen"]["label"] for c in data["choices"]]
    assert again["candidates"] == data["candidates"]


def test_a_model_of_unknown_size_and_bad_grids_are_refused(tmp_path):
    for sizes, role in (((None, STRONG_SIZE), "small"), ((SMALL_SIZE, None), "strong")):
        with pytest.raises(ConfigError, match=f"the {role} model's size is unknown: .*"
                           r"-B parameters=N"):
            make(tmp_path, models(*sizes))
    with pytest.raises(ConfigError, match="--thresholds must be shares between 0 and 1"):
        make(tmp_path, models(), thresholds=[0.5, 1.5])
    with pytest.raises(ConfigError, match="--strong-sizes must be increasing sample counts "
                       "from 1 to 64"):
        make(tmp_path, models(), strong_sizes=[4, 1])


def test_cascadable_settings_ask_the_strong_model_as_its_samples_were_drawn():
    plain = search.Setting("chain T0.3", {"temperature": 0.3, "mode": "chain"})
    top_p = search.Setting("chain T0.7 top-p0.9", {"temperature": 0.7, "top_p": 0.9})
    shots = search.Setting("chain T0.7 4-shot", {"temperature": 0.7, "shots": 4})
    assert mixes.cascadable(plain, GREEDY) and mixes.cascadable(plain, 4)
    assert mixes.cascadable(top_p, GREEDY) and not mixes.cascadable(top_p, 4)
    assert not mixes.cascadable(shots, GREEDY)


# -- the command line --------------------------------------------------------------------------

STRONG_URL = "http://strong.test/v1#big"


@pytest.fixture
def dev(tmp_path):
    path = tmp_path / "dev.jsonl"
    path.write_text("".join(json.dumps({"question": question(i), "answer": f"#### {10 + i}"})
                            + "\n" for i in range(6)))
    return path


@pytest.fixture
def scripted(monkeypatch):
    """The small model and the strong one (served, at STRONG_URL) as scripted backends; calls
    records which model each load was."""
    calls: list[str] = []
    monkeypatch.setattr(endpoints_cli, "resolve_model",
                        lambda *a, **k: ModelSpec("small", "scripted"))
    monkeypatch.setattr(session, "resolve_model",  # where RunFolder resolves it
                        lambda *a, **k: ModelSpec("small", "scripted"))

    def load(model=None, base_url=None, **options):
        calls.append("strong" if base_url else "small")
        return ScriptedBackend(strong, model="big", parameters=STRONG_SIZE) if base_url \
            else ScriptedBackend(small, model="small", parameters=SMALL_SIZE)

    monkeypatch.setattr(endpoints_cli, "load_backend", load)
    monkeypatch.setattr(loading, "load_backend", load)
    registry.strategies.names()
    monkeypatch.setattr(registry.strategies, "_items", dict(registry.strategies._items))
    return calls


def tune(dev, out, *extra, verify=False):
    return main(["tune", "--dataset", str(dev), "--samples", "1,2,4", "--holdout", "2",
                 "--no-learn", "--selectors", "majority", "--concurrency", "1",
                 "-m", "small.gguf", "-m", f"strong={STRONG_URL}", "--out", str(out),
                 *([] if verify else ["--no-verify"]), *extra])


def test_tune_on_the_command_line_chooses_the_strong_model_alone_and_a_cascade(
        dev, tmp_path, scripted, capsys, monkeypatch):
    """With the threshold 0.5 only, no cascade reaches 100%: at 1e5 FLOPs the strong model's
    own vote of 4 is the choice; at 3e4 the cascade that escalates "lost". Both presets run."""
    monkeypatch.setenv("COLUMNS", "240")
    out = tmp_path / "t"
    assert tune(dev, out, "--budget", "3e4,1e5", "--thresholds", "0.5") == 0
    data = json.loads((out / "tune.json").read_text())
    low, high = data["choices"]
    assert low["chosen"]["label"] == cascade_label(4, "0.5", "greedy")
    assert high["chosen"]["label"] == "strong chain T0.7 · majority · n=4"
    assert high["chosen"]["models"] == "strong" and high["held_out_chosen"]["accuracy"] == 1.0
    assert data["config"]["strong_model"] == STRONG_URL
    assert data["config"]["parameters"] == {"small": SMALL_SIZE, "strong": STRONG_SIZE}
    assert {t for c in data["candidates"] if c["kind"] == "cascade"
            for t in [c["threshold"]]} == {0.5}
    printed = capsys.readouterr().out  # the table: budget, chosen, models, escalated, FLOPs...
    assert re.search(r"^ *\(FLOPs\) +chosen +models +escalated +FLOPs ", printed, re.M)
    assert re.search(r"^ *1e5 +strong chain T0\.7 · majority · n=4 +strong +— +9\.6e4 +16 strong ",
                     printed, re.M)
    assert re.search(r"^ *3e4 +chain T0\.7 · majority · n=4, agreement < 0\.5 → strong +small → +"
                     r"25\.0% +2\.76e4 +16 small / 1 ", printed, re.M)
    md = (out / "tune.md").read_text()
    assert "| 1e5 | strong chain T0.7 · majority · n=4 | strong | — | 9.6e4 | 16 strong |" in md
    assert "| chain T0.7 · majority · n=4, agreement < 0.5 → strong greedy | small → strong " \
        "| 0.5 | greedy | 25.0% | 75.0% | 2.76e4 | 16 small / 1 strong |" in md
    assert "## The strong model alone (tuning part)" in md
    # compute-optimal: the cascade against the best single model at 3e4, held out
    single = ("At 3e4 FLOPs the best single model is chain T0.7 · majority · n=4 (50.0% on the "
              "tuning part, 9.6e3 FLOPs); held out, the choice is at least as accurate: 100.0% "
              "against 50.0%, +50.0 [+0.0, +100.0] p=1 (2 problems, paired; not significant at "
              "5%).")
    assert single in md and single in " ".join(printed.split())
    assert "At 1e5 FLOPs the choice is a single model's own configuration" in md
    # the anchors, and the cascade at 0.47 of the strong model's vote of 4's FLOPs
    assert "| strong · greedy | strong | 7.2e4 | 75.0% | 100.0% |" in md
    assert "| 3e4 | chain T0.7 · majority · n=4, agreement < 0.5 → strong greedy | strong chain " \
        "T0.7 · majority · n=4 | 0.47 | 100.0% vs 100.0% | +0.0 [+0.0, +0.0] p=1 |" in md
    assert "Held-out part: generated chain T0.7 (n=4), strong greedy (n=1), " \
        "strong chain T0.7 (n=4); nothing else." in md
    assert "The strong model alone (tuning part)" in (out / "tune.html").read_text()
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"

    alone = load_preset(out / "preset-1e5.json")
    assert (alone.strategy, alone.options) == ("self-consistency", {
        "temperature": 0.7, "mode": "chain", "n": 4})
    saved = json.loads((out / "preset-1e5.json").read_text())
    assert saved["tuned"]["run_with"] == "--base-url http://strong.test/v1 -m big"
    cascade = load_preset(out / "preset-3e4.json")
    assert (cascade.strategy, cascade.options["threshold"], cascade.options["strong_n"]) == (
        "cascade", 0.5, 1)
    saved = json.loads((out / "preset-3e4.json").read_text())
    assert saved["tuned"]["run_with"] == f"-m small.gguf -m strong={STRONG_URL}"

    # the cascade preset runs in ask: problem 5 ("lost") splits 4 ways and goes to the strong
    # model, which answers 15
    assert main(["ask", question(5), "--preset", str(out / "preset-3e4.json"),
                 "-m", "small.gguf", "-m", f"strong={STRONG_URL}", "--json",
                 "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["answer"] == "15" and result["config"]["threshold"] == 0.5
    assert set(result["models"]) == {"small", "big"}


def test_a_rerun_generates_nothing_and_the_folder_keeps_its_strong_model(
        dev, tmp_path, scripted, capsys):
    out = tmp_path / "t"
    assert tune(dev, out, "--budget", "3e4") == 0
    drawn = sum(DRAWN.values())
    assert tune(dev, out, "--budget", "3e4") == 0
    assert sum(DRAWN.values()) == drawn  # nothing drawn again
    capsys.readouterr()
    other = ["tune", "--dataset", str(dev), "--budget", "3e4", "-m", "small.gguf",
             "-m", "strong=http://strong.test/v1#other", "--out", str(out)]
    assert main(other) == 1
    err = capsys.readouterr().err
    assert "model_sha256:strong" in err and "#other" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("extra, message", [
    (["--budget", "3e4", "--thresholds", "0.5,2"], "--thresholds must be shares between 0 and 1"),
    (["--budget", "3e4", "--thresholds", "half"], "--thresholds must be shares between 0 and 1"),
    (["--budget", "3e4", "--strong-sizes", "0,4"], "--strong-sizes must be increasing"),
    (["--budget", "lots"], "--budget must be FLOPs per problem (e.g. 2e12) or ref@N"),
    (["--budget", "3e4", "-m", "judge=x.gguf"], "--model judge=... is not a role it uses"),
])
def test_bad_mix_flags_are_one_line_before_anything_is_written(dev, tmp_path, scripted, capsys,
                                                                extra, message):
    out = tmp_path / "o"
    assert tune(dev, out, *extra) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and scripted == []


def test_mix_flags_without_a_strong_model_and_an_unknown_size_are_one_line(
        dev, tmp_path, scripted, capsys, monkeypatch):
    argv = ["tune", "--dataset", str(dev), "--budget", "30", "-m", "small.gguf",
            "--thresholds", "0.5", "--out", str(tmp_path / "a")]
    assert main(argv) == 1
    assert "--strong-sizes, --thresholds and --no-verify need a strong model" in \
        capsys.readouterr().err
    monkeypatch.setattr(loading, "load_backend",  # a served model nobody gave a size
                        lambda *a, **k: ScriptedBackend(strong, model="big"))
    assert tune(dev, tmp_path / "b", "--budget", "3e4") == 1
    err = capsys.readouterr().err
    assert err.strip() == ("ponder: error: the strong model's size is unknown: ponder tune "
                           "compares a small and a strong model in FLOPs (2 x parameters x "
                           "tokens); give it with -B parameters=N (e.g. -B parameters=1.5e9)")


def test_cascade_picks_the_small_answer_by_its_selector():
    """Three unsure wrong answers and one confident right one: 0.75 agreement keeps the small
    model's answer, which the majority gets wrong and the confidence rule right."""
    def unsure(request, index):
        if index == 0:
            return Completion("The answer is: 22", logprobs=(TokenLogprob("22", -0.05),) * 4)
        return Completion("The answer is: 999", logprobs=(TokenLogprob("999", -2.0),) * 4)

    def run(**options):
        backend = ScriptedBackend(unsure, model="small")
        return asyncio.run(asolve("17 + 5?", "cascade", backend=backend, n=4, threshold=0.5,
                                  models={"strong": ScriptedBackend([], model="big")},
                                  **options))

    assert run().answer == "999"
    assert run(selector="confidence").answer == "22"
    with pytest.raises(ConfigError, match="selector"):
        run(selector="no-such-rule")


# -- real models -------------------------------------------------------------------------------

def test_tune_mixes_two_real_models_end_to_end(model_path, kquant, tmp_path, capsys):
    """The bundled model as the small one, its Q4_K_M copy as the strong one (the same 135M
    network: equal sizes), five sums, 24 new tokens. The costs are checked against the store by
    hand: per tuning problem the strong model's greedy answer is the pool holding 1 sample, its
    vote pool 3, the small model's 2; a call reads its prompt once (the most any call of the
    same prompt was charged: decoding beside each other, calls share a prompt's cells)."""
    from ponder.backends.models import file_sha256

    dataset = tmp_path / "sums.jsonl"
    dataset.write_text("".join(json.dumps({"question": f"What is {a} + {b}?",
                                           "answer": f"#### {a + b}"}) + "\n"
                               for a, b in [(2, 3), (4, 4), (7, 1), (5, 5), (6, 2)]))
    out = tmp_path / "t"
    assert main(["tune", "--dataset", str(dataset), "--budget", "ref@2,1e13", "--samples", "1,2",
                 "--strong-sizes", "1,3", "--thresholds", "0.5,1.0", "--holdout", "2",
                 "--max-tokens", "24", "-o", "template=concise", "--no-learn",
                 "--selectors", "majority", "--no-deterministic", "--concurrency", "2",
                 "-m", str(model_path), "-m", f"strong={kquant}", "--out", str(out)]) == 0
    capsys.readouterr()
    data = json.loads((out / "tune.json").read_text())
    assert data["config"]["strong_sha256"] == file_sha256(kquant)
    size = data["config"]["parameters"]["small"]
    assert size == data["config"]["parameters"]["strong"] > 100_000_000
    db = sqlite3.connect(out / "samples.sqlite")
    try:
        rows = db.execute("SELECT sample_key, problem_id, prompt_tokens, completion_tokens "
                          "FROM samples ORDER BY idx").fetchall()
    finally:
        db.close()
    pools: dict = collections.defaultdict(lambda: collections.defaultdict(list))
    for key, pid, prompt, written in rows:
        pools[key][pid].append((prompt, written))
    by_count = {}
    for per in pools.values():
        counts = {len(per[pid]) for pid in data["tuning_ids"]}  # a pool: as many per problem
        assert len(counts) == 1
        by_count[counts.pop()] = per
    assert set(by_count) == {1, 2, 3}  # greedy, the small pool, the strong pool: apart
    c = by_label(data)

    def mean(values):
        return sum(values) / len(values)

    tuning = data["tuning_ids"]
    strong_prompt = {pid: max(p for p, _ in by_count[1][pid] + by_count[3][pid])
                     for pid in tuning}
    assert c["strong · greedy"]["flops"] == pytest.approx(
        2 * size * mean([strong_prompt[pid] + by_count[1][pid][0][1] for pid in tuning]))
    assert c["strong chain T0.7 · majority · n=3"]["tokens"] == pytest.approx(
        mean([sum(w for _, w in by_count[3][pid]) for pid in tuning]))
    small2 = [(max(p for p, _ in s), mean([w for _, w in s])) for s in
              (by_count[2][pid] for pid in tuning)]
    assert c["chain T0.7 · majority · n=2"]["flops"] == pytest.approx(
        2 * size * mean([p + 2 * w for p, w in small2]))
    for label, cand in c.items():
        if cand["kind"] == "cascade":  # between its small side's cost and both models' in full
            assert 0 < cand["escalation"] <= 1
            assert cand["tokens_by_model"]["small"] == pytest.approx(
                c[label.split(",")[0]]["tokens"])
    ref2, top = data["choices"]
    assert ref2["budget"] == pytest.approx(c["chain T0.7 · majority · n=2"]["flops"])
    assert top["chosen"] is not None and "held_out" in top
    assert (out / "tune.md").read_text().count("## The strong model alone (tuning part)") == 1
    preset = load_preset(next(out.glob("preset-1e13.json")))
    assert preset.strategy in ("self-consistency", "cascade")


# -- verify-by-strong ------------------------------------------------------------------------
# The strong model judges honestly ("Yes" when the answer is right). At n=4 on the tuning part:
# sure agrees (not asked), split RRWW and wrong WWWR each have their two groups judged and the
# right one wins, lost's four groups are all judged wrong (a tie: the first group). At n=2,
# over the six pairs: split's four mixed pairs and wrong's three go right.

def judge_words() -> int:
    """Words the strong model reads and writes for one verdict (every judge prompt here is as
    long: the same question, a four-word solution, one answer word)."""
    from ponder.verifiers.judge import judge_prompt

    return (count_words(JUDGE_SYSTEM) + count_words(judge_prompt(question(3), said("3", "R"),
                                                                 "13")) + 1)


def verify_label(n: int) -> str:
    return f"chain T0.7 · n={n}, the strong model judges the groups"


def test_verify_by_strong_by_hand(tmp_path):
    backends = models()
    tuner = make(tmp_path, backends, verify=True)
    data = asyncio.run(search.run_tune(tuner))
    prompt = sum(count_words(m.content) for m in backends[0].history[0].messages)
    c = by_label(data)
    four, two = c[verify_label(4)], c[verify_label(2)]
    values = {x.label: x.values for x in tuner.chosen.candidates}[verify_label(4)]
    assert values == {"1": 1.0, "3": 1.0, "4": 1.0, "5": 0.0}
    assert four["accuracy"] == 0.75 and four["models"] == "small + strong judge"
    assert two["accuracy"] == pytest.approx((1 + 5 / 6 + 3 / 6 + 0) / 4)
    assert verify_label(1) not in c  # one sample is one group: nothing to verify
    # verdicts asked once per sample any subset needs: none on "sure", all four elsewhere
    key = tuner.harness.plans[0].pools[0].key
    assert tuner.judge_key == "strong-judge:strong:big:3000"  # another strong model's are apart
    assert {pid: sorted(tuner.store.scores(key, tuner.judge_key, pid)) for pid in TUNING} == {
        "1": [], "3": [0, 1, 2, 3], "4": [0, 1, 2, 3], "5": [0, 1, 2, 3]}
    assert sorted(JUDGED) == sorted([(i, str(10 + int(i)) if what == "R" else
                                      ("999" if what == "W" else f"50{what}"))
                                     for i in ("3", "4", "5") for what in SMALL[PATTERN[i]]])
    # costs: the small model's four samples, then 0, 2, 2 and 4 verdicts (2 on average)
    assert four["tokens_by_model"] == {"small": 16, "strong": 2.0}
    assert four["flops"] == pytest.approx(2 * SMALL_SIZE * (prompt + 16)
                                          + 2 * STRONG_SIZE * 2 * judge_words())
    # n=2: verdicts for the mixed pairs only (split 4 of 6 pairs, wrong 3, lost 6), 2 each
    assert two["tokens_by_model"]["strong"] == pytest.approx((0 + 8 / 6 + 6 / 6 + 12 / 6) / 4)
    tuner.store.close()


def test_weighted_verdicts_by_hand(tmp_path):
    """A judge that says yes to everything, a little more to right answers (P(yes) 0.9 right,
    0.6 wrong), at n=4: the best verdict wins "split" (R 0.9 against W 0.6) and "wrong" (the
    lone R); weighted by votes, "wrong"'s three W (1.8) beat its R (0.9). "sure" needs no
    verdict, "lost" has no right group. So 75% best, 50% weighted, from the same verdicts."""
    def hedging(request, index):
        if request.messages[0].content != JUDGE_SYSTEM:
            return strong(request, index)
        prompt = request.messages[-1].content
        i = re.search(r"Problem (\d+):", prompt).group(1)
        right = re.search(r"Proposed final answer: (.*)", prompt).group(1) == str(10 + int(i))
        p = 0.9 if right else 0.6
        return Completion("Yes", logprobs=(TokenLogprob("Yes", math.log(p), (
            ("Yes", math.log(p)), ("No", math.log(1 - p)))),))

    backends = (models()[0], ScriptedBackend(hedging, model="big", parameters=STRONG_SIZE))
    tuner = make(tmp_path, backends, verify=True)
    asyncio.run(search.run_tune(tuner))
    c = {x.label: x for x in tuner.chosen.candidates}
    best = c[verify_label(4)]
    weighted = c["chain T0.7 · n=4, votes weighted by the strong model's verdicts"]
    assert best.values == {"1": 1.0, "3": 1.0, "4": 1.0, "5": 0.0}
    assert weighted.values == {"1": 1.0, "3": 1.0, "4": 0.0, "5": 0.0}
    assert (best.selector, weighted.selector) == ("best", "weighted")
    assert weighted.flops == best.flops  # the same verdicts, read the same way
    assert tuner.preset(weighted, None).options["combine"] == "weighted"
    # scored on first samples (as the held-out part is), each rule is still its own
    first = {combine: {pid: v.right for pid, v in tuner._verified(
        tuner.tuning, 4, first=True, combine=combine).items()} for combine in ("best", "weighted")}
    assert (first["best"]["4"], first["weighted"]["4"]) == ((True,), (False,))
    chosen = search.Chosen(tuner.chosen.candidates, [search.Choice(1e9, weighted, best)], None,
                           {})
    held = tuner.held_out_candidates(chosen)
    assert held[weighted.label].selector == "weighted" and held[best.label].selector == "best"


def test_tune_chooses_verify_by_strong_where_the_strong_model_only_judges_well(
        dev, tmp_path, scripted, capsys):
    """A strong model that never answers itself but judges honestly: at 1e6 FLOPs
    verify-by-strong at n=4 (75% on the tuning part) beats the small model's vote (50%), the
    strong model alone (0%) and every cascade (its escalations keep the small pick). Held out
    ("sure" and "lost"): 50%, with verdicts on "lost" only. Its preset runs live in ask and
    agrees with the replay: on "wrong" the strong model picks the lone right answer."""
    MUTE["on"] = True
    out = tmp_path / "t"
    assert tune(dev, out, "--budget", "1e6", verify=True) == 0
    data = json.loads((out / "tune.json").read_text())
    [choice] = data["choices"]
    assert choice["chosen"]["label"] == verify_label(4)
    assert choice["chosen"]["models"] == "small + strong judge"
    assert choice["held_out_chosen"]["accuracy"] == 0.5
    assert choice["held_out_reference"]["accuracy"] == 0.5
    # held out: the small model's samples and the strong model's verdicts; its own answers
    # only for the anchors (greedy and its vote of 4)
    assert data["held_out_generated"] == [{"setting": "chain T0.7", "n": 4},
                                          {"setting": "strong greedy", "n": 1},
                                          {"setting": "strong chain T0.7", "n": 4},
                                          {"setting": "strong judges chain T0.7", "n": 4}]
    # verify-by-strong is a lever of its own, and here the best of all
    levers = [row["lever"] for row in choice["levers"]]
    assert levers[0] == "the strong model verifies" and "weighted vote" not in levers
    assert levers[-1] == "all together (best of all): the strong model verifies"
    # the best single model: the small one's vote (the mute strong model scores 0)
    assert choice["single"]["label"] == "chain T0.7 · majority · n=4"
    assert choice["single_tuning"]["difference"] == 0.25
    assert sorted({i for i, _ in JUDGED}) == ["2", "3", "4", "5"]  # held out: "lost" alone
    preset = load_preset(out / "preset-1e6.json")
    assert (preset.strategy, preset.options) == ("verify-by-strong", {
        "temperature": 0.7, "mode": "chain", "n": 4, "method": "pointwise", "combine": "best",
        "max_solution_chars": 3000})
    capsys.readouterr()
    DRAWN.clear()
    assert main(["ask", question(4), "--preset", str(out / "preset-1e6.json"),
                 "-m", "small.gguf", "-m", f"strong={STRONG_URL}", "--json",
                 "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["answer"] == "14" and set(result["models"]) == {"small", "big"}
