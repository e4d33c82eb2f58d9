"""Step-level search (beam-search, dvts, mcts) on the fake backend with scripted steps and
scores, step scorers and aggregation by hand, and one beam search on the bundled model."""

import asyncio
import math
import random
import re

import pytest

from ponder import ScriptedBackend, registry
from ponder.api import asolve
from ponder.core.context import Context
from ponder.errors import ConfigError
from ponder.types import Completion, Problem, Step, TokenLogprob
from ponder.verifiers.steps import STEP_JUDGE_SYSTEM, aggregate_steps, load_step_scorer


class BracketScorer:
    """A scripted step scorer: a step's score is the number in brackets in its text."""

    name = "bracket"
    needs_logprobs = False

    async def score_steps(self, problem, partials, ctx, parent=None, known=None):
        return [[float(re.search(r"\[([\d.]+)\]", s.text).group(1)) for s in steps]
                for steps in partials]


registry.step_scorers.register("bracket", BracketScorer)


def run(strategy, backend, **options):
    options.setdefault("scorer", "bracket")
    return asyncio.run(asolve("q", strategy, backend=backend, **options))


def nodes(result, kind=None, label=None):
    return [n for n in result.trace.nodes
            if (kind is None or n.kind == kind) and (label is None or n.label.startswith(label))]


@pytest.mark.parametrize("how, expected", [
    ("min", 0.5), ("prod", 0.9 * 0.5 * 0.8), ("last", 0.8), ("mean", (0.9 + 0.5 + 0.8) / 3),
])
def test_step_aggregation_by_hand(how, expected):
    assert math.isclose(aggregate_steps([0.9, 0.5, 0.8], how), expected)
    assert aggregate_steps([], "min") == 1.0 and aggregate_steps([], "last") == 0.5
    with pytest.raises(ConfigError, match="unknown step aggregation"):
        aggregate_steps([0.5], "max")


def random_tree(depth_done=3):
    """Every step gets a random score from its prefix and index; at ``depth_done`` the step
    states an answer (and the model stops)."""

    def respond(request, index):
        prefix = request.prefill
        depth = prefix.count("\n\n")
        score = random.Random(f"{prefix}|{index}").random()
        if depth + 1 >= depth_done:
            return f"[{score:.3f}] so the answer is {index + depth}"
        return f"step{depth}.{index} [{score:.3f}]\n\nleftover"

    return respond


def test_beam_search_keeps_exactly_the_top_n_paths_at_every_depth():
    fake = ScriptedBackend(random_tree(depth_done=4))
    result = run("beam-search", fake, n=3, m=2, aggregate="mean")
    by_id = {n.id: n for n in result.trace.nodes}
    decisions = nodes(result, "decision", "beams depth")
    assert len(decisions) == 4
    kept_before: list[int] = []
    for decision in decisions:
        kept, pruned = decision.data["kept"][0], decision.data["pruned"][0]
        assert len(kept) == 3
        # the pool: children of the unfinished kept paths, plus finished kept paths
        pool = set(kept) | set(pruned)
        children = {n.id for n in result.trace.nodes
                    if n.kind == "generate" and n.parent in
                    ({0} if not kept_before else set(kept_before))}
        finished = {k for k in kept_before if "answer" in by_id[k].data}
        assert pool == {c for c in children if c not in kept_before} | finished
        worst_kept = min(by_id[k].data["score"] for k in kept)
        assert all(by_id[p].data["score"] <= worst_kept for p in pruned)
        kept_before = kept
    # every beam finished; the first depth sampled n x m steps in one request, later depths
    # m per beam, all beams in one call per depth
    assert len(result.candidates) == 3
    assert [[r.n for r in call] for call in [fake.history[:1]]] == [[6]]
    assert all(r.prefill.endswith("\n\n") for r in fake.history[1:])
    assert result.answer is not None


def test_beam_search_follows_the_best_path_by_hand():
    steps = {
        ("", 0): "a [0.9]\n\n", ("", 1): "b [0.2]\n\n",
        ("a [0.9]\n\n", 0): "[0.7] The answer is 5", ("a [0.9]\n\n", 1): "aa [0.3]\n\n",
        ("aa [0.3]\n\n", 0): "never", ("b [0.2]\n\n", 0): "never",
    }
    fake = ScriptedBackend(lambda request, i: steps[(request.prefill, i)])
    result = run("beam-search", fake, n=1, m=2)
    assert result.answer == "5"
    assert [c.text for c in result.candidates] == ["a [0.9]\n\n[0.7] The answer is 5"]
    assert result.candidates[0].metadata["step_scores"] == [0.9, 0.7]
    assert result.candidates[0].score == 0.7  # min over the path
    pruned = [n.data["why"] for n in result.trace.nodes if n.data.get("status") == "pruned"]
    assert pruned == ["rank 2 of 2 at depth 1: score 0.200 < kept 0.900",
                      "rank 2 of 2 at depth 2: score 0.300 < kept 0.700"]


def test_dvts_partitions_the_budget_into_independent_greedy_subtrees():
    fake = ScriptedBackend(random_tree(depth_done=3))
    result = run("dvts", fake, n=8, m=2)
    subtrees = nodes(result, "subtree")
    assert len(subtrees) == 4
    # depth 1: every subtree root has the same (empty) prefix, so one request of 4 x 2 samples;
    # depths 2 and 3: each subtree's one kept path expanded by m = 2
    assert fake.history[0].n == 8
    assert [r.n for r in fake.history[1:]] == [2] * 8
    decisions = nodes(result, "decision", "subtrees depth")
    assert len(decisions) == 3
    for decision in decisions:
        assert [len(k) for k in decision.data["kept"]] == [1, 1, 1, 1]
        assert [len(p) for p in decision.data["pruned"]] == [1, 1, 1, 1]
    first = nodes(result, "decision", "subtrees depth 1")[0]
    by_id = {n.id: n for n in result.trace.nodes}
    assert sorted(by_id[k[0]].parent for k in first.data["kept"]) == [s.id for s in subtrees]
    assert len(result.candidates) == 4


MCTS_STEPS = {
    ("", 0): "a [0.8]\n\n", ("", 1): "b [0.4]\n\n",
    ("a [0.8]\n\n", 0): "aa [0.9]: the answer is 7", ("a [0.8]\n\n", 1): "ab [0.5]\n\n",
    ("b [0.4]\n\n", 0): "ba [0.3]\n\n", ("b [0.4]\n\n", 1): "bb [0.2]\n\n",
}


def test_mcts_visits_and_values_match_a_hand_computed_search():
    fake = ScriptedBackend(lambda request, i: MCTS_STEPS[(request.prefill, i)])
    result = run("mcts", fake, simulations=4, m=2, parallel=1, exploration=1.0,
                 aggregate="last")
    # sim 1: root -> a 0.8, b 0.4                                   root N2 W1.2
    # sim 2: UCT a 0.8+sqrt(ln2) > b 0.4+sqrt(ln2): a -> aa 0.9, ab 0.5   a N3 W2.2, root N4 W2.6
    # sim 3: a 2.2/3+sqrt(ln4/3)=1.413 < b 0.4+sqrt(ln4)=1.577: b -> ba 0.3, bb 0.2
    #        b N3 W0.9, root N6 W3.1
    # sim 4: a 0.733+sqrt(ln6/3)=1.506 > b 0.3+0.773: a; aa 0.9+sqrt(ln3) > ab: aa, finished:
    #        evaluated again: aa N2 W1.8, a N4 W3.1, root N7 W4.0
    expected = {"a": (4, 3.1), "b": (3, 0.9), "aa": (2, 1.8), "ab": (1, 0.5),
                "ba": (1, 0.3), "bb": (1, 0.2)}
    seen = {}
    for node in nodes(result, "generate"):
        name = node.data["text"].split(" ")[0].rstrip(":")
        seen[name] = (node.data["visits"], round(node.data["visits"] * node.data["value"], 4))
    assert seen == {k: (v[0], pytest.approx(v[1], abs=1e-3)) for k, v in expected.items()}
    tree = nodes(result, "decision", "tree")[0].data
    assert tree["visits"] == 7 and tree["value"] == pytest.approx(4.0 / 7, abs=1e-4)
    selected = [n.data["selected"] for n in nodes(result, "decision", "simulation round")]
    ids = {n.data["text"].split(" ")[0].rstrip(":"): n.id for n in nodes(result, "generate")}
    assert selected == [[0], [ids["a"]], [ids["b"]], [ids["aa"]]]
    assert result.answer == "7" and len(fake.history) == 3


def test_mcts_rollouts_evaluate_new_nodes_and_become_candidates():
    def respond(request, i):
        if not request.params.stop:  # a rollout: write to the end
            return "[0.6] the answer is 3"
        return MCTS_STEPS.get((request.prefill, i), "x [0.1]\n\n")

    fake = ScriptedBackend(respond)
    result = run("mcts", fake, simulations=1, m=2, evaluation="both", aggregate="last")
    rollouts = [n for n in nodes(result, "generate") if n.data.get("status") == "rollout"]
    assert len(rollouts) == 2
    values = sorted(n.data["value"] for n in nodes(result, "generate") if "expanded"
                    == n.data.get("status"))
    assert values == [pytest.approx((0.4 + 0.6) / 2), pytest.approx((0.8 + 0.6) / 2)]
    assert result.answer == "3" and len(result.candidates) == 2


def test_mcts_expands_parallel_leaves_in_one_call():
    fake = ScriptedBackend(random_tree(depth_done=5))
    result = run("mcts", fake, simulations=7, m=2, parallel=3)
    assert len(fake.history) >= 2 and max(len(r.messages) for r in fake.history) == 2
    rounds = nodes(result, "decision", "simulation round")
    assert len(rounds[0].data["selected"]) == 1  # only the root to expand
    assert len(rounds[1].data["selected"]) > 1


def test_a_step_that_never_ends_is_cut_and_continued():
    long = " ".join(f"w{k}" for k in range(40))  # 40 fake tokens, no delimiter, no answer
    fake = ScriptedBackend(lambda request, i: long)
    result = run("beam-search", fake, n=1, m=1, step_tokens=5, max_tokens=12,
                 scorer="confidence")
    # step 1: 5 tokens cut by length; step 2 continues the text with no delimiter added; the
    # third writes the last 2 tokens of the path's 12 and the path ends there
    assert [r.prefill for r in fake.history] == ["", "w0 w1 w2 w3 w4",
                                                "w0 w1 w2 w3 w4w0 w1 w2 w3 w4"]
    assert [r.params.max_tokens for r in fake.history] == [5, 5, 2]
    assert result.candidates[0].usage.completion_tokens == 12
    assert result.candidates[0].finish_reason == "length"


def test_depth_limit_finishes_the_answer_without_a_stop():
    fake = ScriptedBackend(lambda request, i: "more [0.5]\n\n[0.5] The answer is 4")
    result = run("beam-search", fake, n=1, m=1, max_steps=2)
    assert [r.params.stop for r in fake.history] == [("\n\n",), ()]
    assert result.answer == "4"


def test_self_judge_scores_new_steps_from_yes_logprobs_and_reuses_known_scores():
    def respond(request, index):
        assert request.messages[0].content == STEP_JUDGE_SYSTEM
        p = 0.8 if "Is step 2" in request.messages[1].content else 0.3
        top = (("Yes", math.log(p)), ("No", math.log(1 - p)))
        return Completion("Yes", logprobs=(TokenLogprob("Yes", math.log(p), top),))

    fake = ScriptedBackend(respond)
    ctx = Context(fake)
    scorer = load_step_scorer("self-judge")
    partials = [[Step("a"), Step("b")], [Step("c"), Step("d")]]
    scores = asyncio.run(scorer.score_steps(Problem("q"), partials, ctx,
                                            known=[[0.9], []]))
    assert scores[0] == [0.9, pytest.approx(0.8)]
    assert scores[1] == [pytest.approx(0.3), pytest.approx(0.8)]
    assert len(fake.history) == 3 and all(r.params.max_tokens == 1 for r in fake.history)


def test_self_judge_parses_the_verdict_without_logprobs():
    from ponder.backends.base import Capabilities

    fake = ScriptedBackend(["No, it is wrong", "Yes.", "Maybe"],
                           capabilities=Capabilities(parallel_n=True, prefill=True))
    scores = asyncio.run(load_step_scorer("self-judge").score_steps(
        Problem("q"), [[Step("a")], [Step("b")], [Step("c")]], Context(fake)))
    assert scores == [[0.0], [1.0], [0.5]]


def test_confidence_scores_a_step_by_its_token_probabilities():
    fake = ScriptedBackend([
        Completion("sure step\n\n", logprobs=(TokenLogprob("sure", math.log(0.9)),
                                             TokenLogprob(" step", math.log(0.9)))),
        Completion("unsure\n\n", logprobs=(TokenLogprob("unsure", math.log(0.2)),)),
        "The answer is 1", "The answer is 2",
    ])
    result = asyncio.run(asolve("q", "beam-search", backend=fake, n=1, m=2,
                                scorer="confidence"))
    assert fake.history[0].params.logprobs == 0
    assert result.answer == "1"
    assert result.candidates[0].metadata["step_scores"][0] == pytest.approx(0.9)


def test_unknown_scorer_and_bad_options_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown step scorer 'nope'"):
        run("beam-search", ScriptedBackend(), scorer="nope")
    with pytest.raises(ConfigError, match="needs a url"):
        run("beam-search", ScriptedBackend(), scorer="prm-http")
    with pytest.raises(ConfigError, match="invalid options for beam-search"):
        run("beam-search", ScriptedBackend(), aggregate="max")


def test_the_budget_stops_the_search_with_the_paths_so_far():
    fake = ScriptedBackend(random_tree(depth_done=50))
    result = asyncio.run(asolve("q", "beam-search", backend=fake, n=2, m=2, scorer="bracket",
                                max_tokens_total=60))
    assert result.stop_reason == "budget"
    assert result.candidates and result.usage.total_tokens <= 60


@pytest.mark.model
def test_beam_search_on_the_bundled_model_with_exact_token_accounting(llama):
    result = asyncio.run(asolve("What is 12 + 30?", "beam-search", backend=llama, n=2, m=2,
                                max_tokens=96, step_tokens=48, max_steps=3, seed=3))
    steps = [n for n in result.trace.nodes if n.kind == "generate" and n.label.startswith("step")]
    judges = [n for n in result.trace.nodes if n.label.startswith("judge step")]
    assert steps and judges
    usage = result.usage
    assert usage.completion_tokens == sum(n.usage.completion_tokens for n in steps + judges)
    assert usage.prompt_tokens == sum(n.usage.prompt_tokens for n in steps + judges)
    assert all(n.usage.completion_tokens == 1 for n in judges)
    by_id = {n.id: n for n in result.trace.nodes}
    for candidate in result.candidates:  # a path's tokens: the sum over its steps
        walk, tokens = by_id[candidate.metadata["node"]], 0
        while walk.kind == "generate":
            tokens += walk.usage.completion_tokens
            walk = by_id[walk.parent]
        assert tokens == candidate.usage.completion_tokens <= 96
    assert result.text and len(result.candidates) <= 2


def test_show_trace_renders_the_search_tree_with_statuses():
    from rich.console import Console

    from ponder.cli.render import trace_tree

    steps = {
        ("", 0): "a [0.9]\n\n", ("", 1): "b [0.2]\n\n",
        ("a [0.9]\n\n", 0): "[0.7] The answer is 5", ("a [0.9]\n\n", 1): "aa [0.3]\n\n",
    }
    fake = ScriptedBackend(lambda request, i: steps[(request.prefill, i)])
    result = run("beam-search", fake, n=1, m=2)
    console = Console(width=120, record=True)
    console.print(trace_tree(result.trace, "trace of beam-search"))
    text = console.export_text()
    lines = text.splitlines()
    indent = {name: next(len(line) - len(line.lstrip("│ ├└─")) for line in lines
                         if line.lstrip("│ ├└─").startswith(name))
              for name in ("generate step 1 1/2", "generate step 2 1/2")}
    assert indent["generate step 2 1/2"] > indent["generate step 1 1/2"]  # a child of step 1
    assert "answer score 0.700" in text and "pruned score 0.200" in text
    assert "rank 2 of 2 at depth 1: score 0.200 < kept 0.900" in text


@pytest.mark.model
def test_ask_beam_search_show_trace_end_to_end():
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "ponder", "ask", "What is 2 + 3?", "-s", "beam-search", "-n", "1",
         "-o", "m=2", "-o", "step_tokens=24", "-o", "max_steps=2", "--max-tokens", "48",
         "--seed", "2", "--show-trace"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "trace of beam-search" in proc.stdout and "judge step" in proc.stdout
    assert "pruned" in proc.stdout and "cost:" in proc.stdout


def test_step_searches_run_per_budget_in_eval(tmp_path):
    from ponder.eval.harness import Harness
    from ponder.eval.store import Store

    problems = [Problem("q1", answer="1", id="a"), Problem("q2", answer="2", id="b")]
    store = Store(tmp_path / "s.sqlite")
    beam, mcts = "beam-search[budgets=1/2,scorer=bracket]", "mcts[budgets=2/4,scorer=bracket]"
    harness = Harness(ScriptedBackend(random_tree(depth_done=2)), store, problems, [beam, mcts],
                      [1], greedy=False)
    asyncio.run(harness.run())
    points = {(p["strategy"], p["budget"]): p for p in harness.curves()["points"]}
    assert set(points) == {(beam, 1), (beam, 2), (mcts, 2), (mcts, 4)}
    assert points[(beam, 2)]["tokens"] > points[(beam, 1)]["tokens"]
    assert all(p["problems"] == 2 for p in points.values())
    store.close()


@pytest.mark.model
def test_self_judge_can_be_another_model(model_path):
    """The policy is scripted; the steps are judged by the bundled model named in the options."""
    fake = ScriptedBackend(lambda request, i: ["2 + 3 = 5.\n\n", "2 + 3 = 6.\n\n",
                                               "The answer is 5.", "The answer is 6."][
        min(3, 2 * request.prefill.count("\n\n") + i)])
    result = asyncio.run(asolve("What is 2 + 3?", "beam-search", backend=fake, n=1, m=2,
                                scorer_options={"model": str(model_path)}))
    judged = [n for n in result.trace.nodes if n.label.startswith("judge step")]
    assert judged and all(n.usage.calls == 1 and 0.0 <= n.data["score"] <= 1.0 for n in judged)
    assert all(not r.messages[0].content.startswith("You are a strict grader")
               for r in fake.history)  # no judge request reached the policy


def test_mcts_without_a_finished_path_completes_the_most_visited_one():
    def respond(request, i):
        if not request.params.stop:
            return "[0.5] so the answer is 9"
        return random_tree(depth_done=99)(request, i)

    fake = ScriptedBackend(respond)
    result = run("mcts", fake, simulations=3, m=2, parallel=1)
    assert result.answer == "9" and len(result.candidates) == 1
    completed = [n for n in result.trace.nodes if n.label == "complete"]
    assert len(completed) == 1 and "most visited path" in completed[0].data["why"]
    tree = nodes(result, "decision", "tree")[0].data
    best_child = max(tree["children"], key=lambda c: (c[1], c[2]))[0]
    by_id = {n.id: n for n in result.trace.nodes}
    walk = by_id[completed[0].id]
    while walk.parent != 0:
        walk = by_id[walk.parent]
    assert walk.id == best_child


@pytest.mark.parametrize("cut_weight, answer", [(0.0, "7"), (1.0, "9")])
def test_a_path_cut_at_the_token_limit_does_not_outvote_a_finished_one(cut_weight, answer):
    """The better-scored path ran out of tokens mid-thought ("maybe 9 …"): by default it does
    not count, as a cut chain does not vote in self-consistency; cut_weight=1 counts it."""
    texts = ["[0.5] The answer is 7", "[0.9] maybe 9 " + "ww " * 30]
    fake = ScriptedBackend(lambda request, i: texts[i] if not request.prefill else "ww " * 30)
    result = run("beam-search", fake, n=2, m=1, step_tokens=12, max_tokens=12,
                 cut_weight=cut_weight)
    assert result.answer == answer
    by_answer = {c.answer: c for c in result.candidates}
    assert by_answer["9"].finish_reason == "length" and by_answer["7"].finish_reason == "stop"
    assert by_answer["9"].votes == (0.9 if cut_weight else 0.0)


def test_when_every_path_was_cut_they_count_in_full():
    texts = ["[0.4] maybe 3 " + "ww " * 30, "[0.9] maybe 9 " + "ww " * 30]
    fake = ScriptedBackend(lambda request, i: texts[i] if not request.prefill else "ww " * 30)
    result = run("beam-search", fake, n=2, m=1, step_tokens=12, max_tokens=12)
    assert result.answer == "9"
