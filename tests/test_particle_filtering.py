"""particle-filtering on scripted backends: which particles survive each resampling (by hand,
for a seed), systematic against multinomial counts, the effective sample size, finished particles
kept in the population, max_steps, the final pick (best and the weighted vote), the strong model
as step judge by role, reproducibility; and one run on the bundled model."""

import asyncio
import math
import random
import re

import pytest

from ponder import ScriptedBackend, registry
from ponder.api import asolve
from ponder.backends.base import Capabilities
from ponder.errors import ConfigError
from ponder.strategies.particle_filtering import (
    effective_sample_size,
    particle_weights,
    resample,
)
from ponder.verifiers.steps import STEP_JUDGE_SYSTEM

Q = "What is 2 + 3?"


class BracketScorer:
    """A scripted step scorer: a step's score is the number in brackets in its text (its own
    name: tests/test_step_search.py registers a "bracket" of its own)."""

    name = "pf-bracket"
    needs_logprobs = False

    async def score_steps(self, problem, partials, ctx, parent=None, known=None):
        return [[float(re.search(r"\[([\d.]+)\]", s.text).group(1)) for s in steps]
                for steps in partials]


registry.step_scorers.register(BracketScorer.name, BracketScorer)


def run(backend, **options):
    options.setdefault("scorer", BracketScorer.name)
    return asyncio.run(asolve(Q, "particle-filtering", backend=backend, **options))


def decisions(result):
    return [n.data for n in result.trace.nodes
            if n.kind == "decision" and n.label.startswith("particles step")]


def scripted(steps):
    """A backend answering each request from ``steps[(prefill, sample index)]``."""
    return ScriptedBackend(lambda request, i: steps[(request.prefill, i)])


class Draws(random.Random):
    """A generator whose random() returns the given numbers in order."""

    def __init__(self, *numbers):
        super().__init__(0)
        self.numbers = list(numbers)

    def random(self):
        return self.numbers.pop(0)


# -- the pieces, by hand ---------------------------------------------------------------------

def test_resampling_by_hand():
    # weights 2:1:1, cumulative 2, 3, 4 of 4: draws 0.1 0.3 0.6 0.95 -> 0.4 1.2 2.4 3.8
    assert resample([2, 1, 1], 4, Draws(0.1, 0.6, 0.95, 0.3)) == [0, 0, 1, 2]
    # systematic: one draw u, positions (u + k) / 4 against cumulative 0.7, 0.9, 1.0
    assert resample([0.7, 0.2, 0.1], 4, Draws(0.9), "systematic") == [0, 0, 1, 2]
    assert resample([0.7, 0.2, 0.1], 4, Draws(0.1), "systematic") == [0, 0, 0, 1]
    # a zero weight is never drawn, not even at a draw of exactly 0 or just under 1
    assert resample([0, 1, 0], 3, Draws(0.0, 0.5, 0.999999)) == [1, 1, 1]
    assert resample([0, 1, 0], 3, Draws(0.0), "systematic") == [1, 1, 1]


def test_systematic_gives_each_particle_floor_or_ceil_of_its_share():
    weights = [0.7, 0.2, 0.1, 0.0]  # x 4 particles: 2.8, 0.8, 0.4, 0 copies expected
    outside = 0
    for seed in range(50):
        for how in ("systematic", "multinomial"):
            counts = [resample(weights, 4, random.Random(seed), how).count(i) for i in range(4)]
            assert counts[3] == 0 and sum(counts) == 4
            within = all(math.floor(4 * w) <= c <= math.ceil(4 * w)
                         for c, w in zip(counts, weights, strict=True))
            if how == "systematic":
                assert within, (seed, counts)
            else:
                outside += not within
    assert outside > 10  # multinomial draws independently: its counts stray


def test_weights_and_effective_sample_size_by_hand():
    assert particle_weights([0.4, 0.2, 0.2, 0.0]) == [0.4, 0.2, 0.2, 0.0]
    odds = particle_weights([0.5, 0.8], "softmax")  # exp(logit): the odds 1 : 4
    assert odds == [pytest.approx(0.25), pytest.approx(1.0)]
    sharper = particle_weights([0.5, 0.8], "softmax", 0.5)  # the odds squared: 1 : 16
    assert sharper == [pytest.approx(1 / 16), pytest.approx(1.0)]
    assert particle_weights([0.0, 1.0], "softmax")[0] == pytest.approx(1e-7 ** 2 / (1 - 1e-7) ** 2)
    assert effective_sample_size([2, 1, 1, 0]) == pytest.approx(1 / (0.25 + 0.0625 + 0.0625))
    assert effective_sample_size([1, 1, 1]) == 3.0 and effective_sample_size([0, 0]) is None


# -- a run, resampling pinned ----------------------------------------------------------------

FIRST = {("", 0): "a [0.7]\n\n", ("", 1): "b [0.2]\n\n", ("", 2): "c [0.1]\n\n",
         ("", 3): "d [0.0]\n\n"}


def two_steps(first):
    """Step 1 from ``first``; step 2 writes each letter's answer (scored 0.5)."""
    def respond(request, i):
        if not request.prefill:
            return first[("", i)]
        return f"[0.5] The answer is {' 1234'[' abcd'.index(request.prefill[0])]}"
    return ScriptedBackend(respond)


@pytest.mark.parametrize("resampling, seed, ancestors", [
    # multinomial: the run's generator is Random(seed) and resampling its only user: seed 1
    # draws 0.134 0.847 0.764 0.255, against cumulative 0.7 0.9 1.0 -> a a b b
    ("multinomial", 1, [0, 0, 1, 1]),
    ("multinomial", 4, [0, 0, 0, 0]),  # draws 0.236 0.103 0.396 0.155: all below 0.7
    # systematic: u = the first draw; seed 1: positions 0.034 0.284 0.534 0.784 -> a a a b
    ("systematic", 1, [0, 0, 0, 1]),
    ("systematic", 2, [0, 0, 1, 2]),  # u = 0.956: 0.239 0.489 0.739 0.989
])
def test_which_particles_survive_for_a_seed(resampling, seed, ancestors):
    fake = two_steps(FIRST)
    result = run(fake, n=4, seed=seed, resampling=resampling)
    first, second = decisions(result)
    assert first["scores"] == [0.7, 0.2, 0.1, 0.0]
    assert first["weights"] == [0.7, 0.2, 0.1, 0.0]
    assert first["ancestors"] == ancestors
    assert first["population"] == [first["particles"][a] for a in ancestors]
    # the survivors' next steps: one request per surviving partial, n = its copies
    asked = {r.prefill: r.n for r in fake.history[1:]}
    expected = {}
    for a in ancestors:
        prefix = FIRST[("", a)]
        expected[prefix] = expected.get(prefix, 0) + 1
    assert asked == expected
    assert "d [0.0]\n\n" not in asked  # scored 0: never resampled
    # the tree: each step-2 node sits under the step-1 node it was resampled from
    by_id = {n.id: n for n in result.trace.nodes}
    assert sorted(by_id[p].parent for p in second["particles"]) == first["population"]
    pruned = [by_id[p].data["text"] for p in first["particles"] if by_id[p].data["copies"] == 0]
    assert all(by_id[p].data["status"] == "pruned" for p in first["particles"]
               if by_id[p].data["copies"] == 0)
    assert pruned == [FIRST[("", i)].strip() for i in range(4) if i not in ancestors]


@pytest.mark.parametrize("resampling", ["multinomial", "systematic"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_step_scored_1_among_zeros_takes_every_slot(resampling, seed):
    first = {("", 0): "a [0.0]\n\n", ("", 1): "b [1.0]\n\n", ("", 2): "c [0.0]\n\n",
             ("", 3): "d [0.0]\n\n"}
    fake = two_steps(first)
    result = run(fake, n=4, seed=seed, resampling=resampling)
    step1 = decisions(result)[0]
    assert step1["ancestors"] == [1, 1, 1, 1]
    assert step1["ess"] == 1.0 and step1["weights"] == [0.0, 1.0, 0.0, 0.0]
    [request] = fake.history[1:]  # b's four copies: four next steps in one request
    assert request.prefill == "b [1.0]\n\n" and request.n == 4
    assert result.answer == "2"


def test_effective_sample_size_and_weights_in_the_trace():
    first = {("", 0): "a [0.4]\n\n", ("", 1): "b [0.2]\n\n", ("", 2): "c [0.2]\n\n",
             ("", 3): "d [0.0]\n\n"}
    result = run(two_steps(first), n=4, seed=1)
    step1, step2 = decisions(result)
    assert step1["weights"] == [0.5, 0.25, 0.25, 0.0]
    assert step1["ess"] == round(1 / (0.25 + 0.0625 + 0.0625), 4) == 2.6667
    assert step1["resampled"] is True and step1["why"] == "multinomial resampling"
    # step 2: every particle answered with 0.5: equal weights, ESS = N, no resampling
    assert step2["weights"] == [0.25] * 4 and step2["ess"] == 4.0
    assert step2["resampled"] is False and step2["ancestors"] == [0, 1, 2, 3]
    assert step2["finished"] == 4 and step2["why"] == "every particle finished"


def test_softmax_weighting_uses_the_odds_of_the_scores():
    first = {("", 0): "a [0.5]\n\n", ("", 1): "b [0.8]\n\n"}
    by_score = decisions(run(two_steps(first), n=2, seed=1))[0]
    by_odds = decisions(run(two_steps(first), n=2, seed=1, weighting="softmax"))[0]
    assert by_score["weights"] == [round(0.5 / 1.3, 4), round(0.8 / 1.3, 4)]
    assert by_odds["weights"] == [0.2, 0.8]  # odds 1 : 4
    sharp = decisions(run(two_steps(first), n=2, seed=1, weighting="softmax",
                          softmax_temperature=0.5))[0]
    assert sharp["weights"] == [round(1 / 17, 4), round(16 / 17, 4)]


def test_with_no_weight_anywhere_the_population_stays():
    first = {("", 0): "a [0.0]\n\n", ("", 1): "b [0.0]\n\n"}
    fake = two_steps(first)
    result = run(fake, n=2, seed=1)
    step1 = decisions(result)[0]
    assert step1["ancestors"] == [0, 1] and step1["ess"] is None
    assert step1["why"] == "no particle has weight"
    assert sorted(r.prefill for r in fake.history[1:]) == ["a [0.0]\n\n", "b [0.0]\n\n"]


# -- finished particles, max_steps, the pick -----------------------------------------------

ANSWERED_EARLY = {
    ("", 0): "[0.9] The answer is 7", ("", 1): "b [0.9]\n\n", ("", 2): "c [0.9]\n\n",
    ("b [0.9]\n\n", 0): "[0.5] The answer is 9", ("c [0.9]\n\n", 0): "[0.6] The answer is 9",
}


@pytest.mark.parametrize("pick, answer", [("best", "7"), ("weighted-vote", "9")])
def test_a_finished_particle_stays_in_the_population_and_the_pick(pick, answer):
    fake = scripted(ANSWERED_EARLY)
    # equal weights, systematic: one copy each, whatever the seed
    result = run(fake, n=3, seed=1, resampling="systematic", pick=pick)
    step1, step2 = decisions(result)
    assert step1["ancestors"] == [0, 1, 2] and step1["finished"] == 1
    # the finished particle is not extended: step 2 asks only for b's and c's next steps
    assert [r.prefill for r in fake.history[1:]] == ["b [0.9]\n\n", "c [0.9]\n\n"]
    # ... but it stays in the population, with its weight (its last score)
    assert step2["particles"][0] == step1["particles"][0]
    assert step2["scores"] == [0.9, 0.5, 0.6] and step2["finished"] == 3
    # best: 7 (0.9); the vote: 9 has 0.5 + 0.6 = 1.1 against 7's 0.9
    assert result.answer == answer
    assert sorted((c.answer, c.score, c.metadata["copies"]) for c in result.candidates) == [
        ("7", 0.9, 1), ("9", 0.5, 1), ("9", 0.6, 1)]
    [chosen] = [n.data for n in result.trace.nodes if n.label == f"pick: {pick}"]
    assert chosen["answer"] == answer
    if pick == "weighted-vote":
        [tally] = [n.data for n in result.trace.nodes if n.kind == "vote"]
        assert {g["answer"]: g["weight"] for g in tally["groups"]} == {"7": 0.9, "9": 1.1}


def test_a_finished_particle_can_take_every_slot_and_end_the_run():
    steps = {("", 0): "x [0.0]\n\n", ("", 1): "[1.0] The answer is 7", ("", 2): "y [0.0]\n\n"}
    fake = scripted(steps)
    result = run(fake, n=3, seed=5, pick="weighted-vote")
    [step1] = decisions(result)  # every particle is now the finished one: no second step
    assert step1["ancestors"] == [1, 1, 1] and len(fake.history) == 1
    [candidate] = result.candidates
    assert candidate.answer == "7" and candidate.metadata["copies"] == 3
    assert candidate.metadata["weight"] == 1.0 and candidate.votes == 3.0
    assert result.answer == "7"


def test_the_vote_sums_the_weights_per_answer():
    """Two 0.5 paths answering 4 outvote one 0.8 path answering 6; the best pick takes 6."""
    steps = {("", 0): "a [0.5]\n\n", ("", 1): "b [0.5]\n\n", ("", 2): "c [0.0]\n\n",
             ("a [0.5]\n\n", 0): "[0.5] The answer is 4",
             ("a [0.5]\n\n", 1): "[0.5] The answer is 4",
             ("b [0.5]\n\n", 0): "[0.8] The answer is 6"}
    # seed 3 draws 0.238 0.544 0.370, against cumulative 0.5 1.0 1.0: a a b
    result = run(scripted(steps), n=3, seed=3, pick="weighted-vote")
    assert decisions(result)[0]["ancestors"] == [0, 0, 1]
    assert result.answer == "4"
    by_answer = {c.answer: c for c in result.candidates}
    assert by_answer["4"].votes == pytest.approx(1.0) and by_answer["6"].votes == 0.8
    [tally] = [n.data for n in result.trace.nodes if n.kind == "vote"]
    assert {g["answer"]: g["weight"] for g in tally["groups"]} == {"4": 1.0, "6": 0.8}
    assert run(scripted(steps), n=3, seed=3, pick="best").answer == "6"


def test_the_search_stops_at_max_steps():
    def respond(request, i):
        return "x [0.5]\n\n" if request.params.stop else "[0.5] The answer is 4"

    fake = ScriptedBackend(respond)
    result = run(fake, n=2, seed=1, max_steps=3)
    # steps 1 and 2 stop at the delimiter; step 3, the last, writes to the end
    assert [r.params.stop for r in fake.history] == [("\n\n",), ("\n\n",), ()]
    assert len(decisions(result)) == 3 and result.answer == "4"
    assert all(c.metadata["steps"] == 3 for c in result.candidates)


def test_the_budget_ends_the_run_with_the_population_so_far():
    def respond(request, i):
        return f"step [{random.Random(f'{request.prefill}|{i}').random():.3f}]\n\n"

    fake = ScriptedBackend(respond)
    result = run(fake, n=3, seed=1, max_tokens_total=120, max_steps=50)
    assert result.stop_reason == "budget" and result.usage.total_tokens <= 120
    assert result.candidates and all(c.answer is None for c in result.candidates)
    assert result.text  # the best partial's text
    assert sum(c.metadata["copies"] for c in result.candidates) == 3


# -- the strong model judges the steps -----------------------------------------------------

def test_the_strong_model_judges_steps_by_role():
    small = scripted({("", 0): "good step\n\n", ("", 1): "bad step\n\n",
                      ("good step\n\n", 0): "The answer is 5",
                      ("good step\n\n", 1): "The answer is 5"})
    small.model = "small"
    # no logprobs: the judge's verdict is parsed (Yes 1.0, No 0.0)
    strong = ScriptedBackend(lambda request, i: "No" if "bad step" in request.messages[1]
                             .content else "Yes", model="strong",
                             capabilities=Capabilities(parallel_n=True, prefill=True))
    result = asyncio.run(asolve(Q, "particle-filtering", backend=small, models={"strong": strong},
                                n=2, seed=1, scorer_role="strong"))
    assert registry.strategies.get("particle-filtering")(
        registry.strategies.get("particle-filtering").Config(scorer_role="strong")
    ).required_roles() == ("strong",)
    # every judge request went to the strong model, none to the small one
    assert all(r.messages[0].content == STEP_JUDGE_SYSTEM for r in strong.history)
    assert not any(r.messages[0].content == STEP_JUDGE_SYSTEM for r in small.history)
    assert len(strong.history) == 4  # steps 1 (good, bad) and 2 (two answers)
    step1 = decisions(result)[0]
    assert step1["scores"] == [1.0, 0.0] and step1["ancestors"] == [0, 0]
    assert result.answer == "5"
    # what each model spent: the small one wrote 2 + 2 + 4 + 4 words in 2 calls (the two
    # copies of "good step" continued in one request); the strong one 4 verdicts of 1 word
    assert result.models["small"].usage.calls == 2
    assert result.models["small"].usage.completion_tokens == 12
    assert result.models["strong"].usage.calls == 4
    assert result.models["strong"].usage.completion_tokens == 4
    assert {c.metadata["model"] for c in result.candidates} == {"small"}
    judges = [n for n in result.trace.nodes if n.label.startswith("judge step")]
    assert {n.data["model"] for n in judges} == {"strong"}


def test_the_budget_holds_over_both_models():
    """The strong model's verdicts are charged to the same budget as the small model's steps."""
    small = ScriptedBackend(lambda request, i: "more words here\n\n", model="small")
    strong = ScriptedBackend(lambda request, i: "Yes", model="strong")
    result = asyncio.run(asolve(Q, "particle-filtering", backend=small,
                                models={"strong": strong}, n=2, seed=1, scorer_role="strong",
                                max_steps=50, max_tokens_total=400))
    assert result.stop_reason == "budget" and result.usage.total_tokens <= 400
    spent = result.models["small"].usage.total_tokens + result.models["strong"].usage.total_tokens
    assert spent == result.usage.total_tokens and result.models["strong"].usage.calls >= 2


def test_a_missing_role_is_refused_before_anything_runs():
    fake = ScriptedBackend(["never"])
    with pytest.raises(ConfigError) as caught:
        asyncio.run(asolve(Q, "particle-filtering", backend=fake, scorer_role="strong"))
    message = str(caught.value)
    assert message.startswith("strategy 'particle-filtering' needs a strong model besides the "
                              "generator (given: only the generator); add --model strong=")
    assert "\n" not in message and fake.history == []


def test_a_role_needs_a_scorer_that_asks_a_model():
    fake = ScriptedBackend(["never"])
    with pytest.raises(ConfigError, match="invalid options for step scorer 'confidence'"):
        asyncio.run(asolve(Q, "particle-filtering", backend=fake, scorer="confidence",
                           scorer_role="strong", models={"strong": ScriptedBackend()}))
    assert fake.history == []
    with pytest.raises(ConfigError, match="not both"):
        asyncio.run(asolve(Q, "particle-filtering", backend=fake, scorer_role="strong",
                           scorer_options={"model": "x.gguf"},
                           models={"strong": ScriptedBackend()}))


# -- reproducibility, configuration --------------------------------------------------------

def random_tree(depth_done=3):
    def respond(request, index):
        depth = request.prefill.count("\n\n")
        score = random.Random(f"{request.prefill}|{index}").random()
        if depth + 1 >= depth_done:
            return f"[{score:.3f}] so the answer is {index + depth}"
        return f"step{depth}.{index} [{score:.3f}]\n\n"
    return respond


def test_the_same_seed_gives_the_same_run_and_seeds_differ():
    def once(seed):
        result = run(ScriptedBackend(random_tree(4)), n=6, seed=seed, pick="weighted-vote")
        return ([d["ancestors"] for d in decisions(result)], result.answer,
                [(c.text, c.votes) for c in result.candidates])

    assert once(7) == once(7)
    runs = {seed: once(seed) for seed in range(1, 7)}
    assert len({str(r[0]) for r in runs.values()}) > 1  # the scripted steps are the same:
    # only the resampling, drawn from the seed, differs


def test_configuration_presets_and_refusals():
    cls = registry.strategies.get("particle-filtering")
    assert cls.budget_overrides(16) == {"n": 16}
    assert [cls.effort_presets[e]["n"] for e in ("low", "medium", "high")] == [4, 8, 16]
    defaults = cls.Config()
    assert (defaults.n, defaults.aggregate, defaults.pick, defaults.weighting,
            defaults.resampling) == (8, "last", "best", "score", "multinomial")
    assert cls().required_roles() == ()
    with pytest.raises(ConfigError, match="bogus: unknown option"):
        run(ScriptedBackend(), bogus=1)
    with pytest.raises(ConfigError, match="resampling"):
        run(ScriptedBackend(), resampling="stratified")
    with pytest.raises(ConfigError, match="needs prefill"):
        run(ScriptedBackend(capabilities=Capabilities(parallel_n=True)))


def test_particle_filtering_runs_per_budget_in_eval(tmp_path):
    from ponder.eval.harness import Harness
    from ponder.eval.store import Store
    from ponder.types import Problem

    problems = [Problem("q1", answer="1", id="a"), Problem("q2", answer="2", id="b")]
    store = Store(tmp_path / "s.sqlite")
    plan = "particle-filtering[budgets=2/4,scorer=pf-bracket]"
    harness = Harness(ScriptedBackend(random_tree(2)), store, problems, [plan], [1],
                      greedy=False)
    asyncio.run(harness.run())
    points = {p["budget"]: p for p in harness.curves()["points"] if p["strategy"] == plan}
    assert set(points) == {2, 4} and points[4]["tokens"] > points[2]["tokens"]
    store.close()


def test_distill_labels_the_steps_of_the_final_particles():
    from ponder.eval.distill import STEP_SEARCHES, step_paths

    assert "particle-filtering" in STEP_SEARCHES
    result = run(scripted(ANSWERED_EARLY), n=3, seed=1, resampling="systematic")
    stored = result.to_dict()
    graded = [{**c, "correct": c["answer"] == "9"} for c in stored["candidates"]]
    paths = {p.steps: p.labels for p in step_paths(stored, graded)}
    assert paths == {("[0.9] The answer is 7",): (False,),
                     ("b [0.9]", "[0.5] The answer is 9"): (True, True),
                     ("c [0.9]", "[0.6] The answer is 9"): (True, True)}


# -- the bundled model -----------------------------------------------------------------------

@pytest.mark.model
def test_particle_filtering_on_the_bundled_model(llama):
    """Real steps scored by their own token probabilities (no judge calls: cheap): the weights
    are the normalized scores, the tokens add up."""
    result = asyncio.run(asolve("What is 12 + 30?", "particle-filtering", backend=llama, n=2,
                                max_tokens=32, step_tokens=12, max_steps=2, seed=3,
                                scorer="confidence"))
    steps = [n for n in result.trace.nodes if n.kind == "generate"]
    assert steps and all(n.label.startswith("step") for n in steps)
    assert result.usage.completion_tokens == sum(n.usage.completion_tokens for n in steps)
    assert 1 <= len(decisions(result)) <= 2  # max_steps
    for d in decisions(result):
        assert all(0.0 < s < 1.0 for s in d["scores"])
        total = sum(d["scores"])
        assert d["weights"] == [pytest.approx(s / total, abs=1e-4) for s in d["scores"]]
        assert d["ess"] == pytest.approx(1 / sum((s / total) ** 2 for s in d["scores"]),
                                         abs=1e-3)
        assert all(0 <= a < 2 for a in d["ancestors"])
    assert sum(c.metadata["copies"] for c in result.candidates) == 2
    by_id = {n.id: n for n in result.trace.nodes}
    for candidate in result.candidates:  # a particle's tokens: the sum over its steps
        walk, tokens = by_id[candidate.metadata["node"]], 0
        while walk.kind == "generate":
            tokens += walk.usage.completion_tokens
            walk = by_id[walk.parent]
        assert tokens == candidate.usage.completion_tokens <= 32
