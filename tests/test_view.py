"""The page builder without a browser: what each strategy's view holds (node counts, groups,
winner, tree, rounds, programs, confidence, waves), the escaping of the embedded data, the
page's policy, the files it reads, `ponder view` and `ponder ask --view`, and the evaluation's
pages."""

import asyncio
import base64
import hashlib
import json
import re

import pytest
import view_scenarios as scenarios

from ponder import ScriptedBackend
from ponder.api import asolve
from ponder.cli.main import main
from ponder.eval.harness import Harness
from ponder.eval.report import write_reports
from ponder.eval.store import Store
from ponder.eval.traces import load_trace, slug
from ponder.trace import Trace
from ponder.types import Problem
from ponder.verifiers.steps import STEP_JUDGE_SYSTEM
from ponder.view import build_view, embed_json, render_page, view_of_result
from ponder.view.page import asset, content_security_policy
from ponder.view.sources import views_of

HOSTILE = "</script><script>alert(1)</script><!-- <img src=x onerror=alert(2)> & \u2028 end"


def tree_nodes(result):
    """The trace's search nodes: the root, subtrees and every step (rollouts too)."""
    return [n for n in result.trace.nodes
            if n.kind in ("strategy", "subtree")
            or (n.kind == "generate" and n.label.split(" ")[0] in ("step", "complete", "rollout"))]


def data_of(page: str) -> dict:
    body = re.search(r'<script type="application/json" id="ponder-data">(.*?)</script>', page,
                     re.DOTALL).group(1)
    return json.loads(body)


# -- embedding and escaping -------------------------------------------------------------------

def test_embedded_json_has_nothing_the_html_parser_reads_and_round_trips():
    data = {"text": HOSTILE, "nested": [HOSTILE, {"k": "<!--"}]}
    text = embed_json(data)
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == data


def test_a_hostile_trace_cannot_leave_its_script_block():
    trace = Trace()
    root = trace.add("strategy", "self-consistency", config={"n": 1}, question=HOSTILE)
    trace.add("generate", HOSTILE, parent=root, text=HOSTILE)
    page = render_page([build_view(nodes=trace.to_dict()["nodes"], answer=HOSTILE)])
    assert page.count("</script>") == 2  # the data block's and the script's own
    assert page.count("<script") == 2 and "<img" not in page and "<!-- <" not in page
    assert data_of(page)["views"][0]["nodes"][1]["data"]["text"] == HOSTILE
    assert "&lt;/script&gt;" in page.split("<title>")[1].split("</title>")[0]


def test_the_script_never_parses_trace_text_as_html():
    js = asset("view.js")
    assert not re.search(r"\.innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", js)
    assert "textContent" in js and "fetch(" in js  # fetch: only a live page's own data URL


def test_the_policy_pins_the_inline_script_and_style_and_forbids_the_network():
    page = render_page([view_of_result(scenarios.chain_of_thought().to_dict())])
    script = re.search(r"<script>(.*)</script>", page, re.DOTALL).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = content_security_policy()
    assert f"script-src 'sha256-{digest}'" in policy and "connect-src 'none'" in policy
    assert "default-src 'none'" in policy and "unsafe-inline" not in policy
    assert policy.replace("'", "&#x27;") in page
    assert "connect-src 'self'" in content_security_policy(live=True)
    assert not re.search(r"(src|href)=\"?https?:", page)  # nothing to load


# -- what each strategy's view holds ----------------------------------------------------------

def test_beam_search_tree_matches_the_trace():
    result = scenarios.beam_search()
    view = view_of_result(result.to_dict())
    tree = view["tree"]
    assert len(tree["nodes"]) == len(tree_nodes(result)) == 11
    by_id = {n["id"]: n for n in tree["nodes"]}
    pruned = [n for n in tree["nodes"] if n.get("status") == "pruned"]
    assert len(pruned) == 5 and all("score" in n["why"] for n in pruned)
    pick = next(n for n in result.trace.nodes if n.label.startswith("pick"))
    assert tree["chosen"] == pick.data["chosen"] and tree["path"][0] == 0
    assert [by_id[i]["depth"] for i in tree["path"]] == [0, 1, 2, 3]
    assert all(by_id[i]["chosen"] for i in tree["path"])
    # every step's judge call is linked to it
    judges = [n for n in result.trace.nodes if n.label == "judge step"]
    assert sum(len(n.get("judges", [])) for n in tree["nodes"]) == len(judges) == 10
    assert view["sections"][:2] == ["answers", "tree"]
    assert view["winner"] is not None and view["groups"][0]["winner"]
    assert view["groups"][0]["answer"] == result.answer == "72"


def test_dvts_subtrees_and_mcts_visits_are_in_the_tree():
    dvts = scenarios.dvts()
    tree = view_of_result(dvts.to_dict())["tree"]
    assert len(tree["nodes"]) == len(tree_nodes(dvts)) and tree["subtrees"] == 2
    mcts = scenarios.mcts()
    view = view_of_result(mcts.to_dict())
    nodes = view["tree"]["nodes"]
    assert len(nodes) == len(tree_nodes(mcts))
    steps = [n for n in nodes if n["depth"] > 0]
    assert all("visits" in n and "value" in n for n in steps)
    assert view["tree"]["path"] and view["answer"] == "72"


def test_self_consistency_groups_are_the_vote():
    result = scenarios.self_consistency()
    view = view_of_result(result.to_dict())
    vote = next(n for n in result.trace.nodes if n.kind == "vote")
    assert [(g["answer"], g["count"]) for g in view["groups"]] == [("72", 4), ("144", 1),
                                                                   ("48", 1)]
    assert {g["answer"]: g["weight"] for g in view["groups"]} == {
        g["answer"]: g["weight"] for g in vote.data["groups"]}
    assert view["groups"][0]["winner"] and view["groups"][0]["share"] == pytest.approx(4 / 6)
    winner = view["candidates"][view["winner"]]
    assert winner["answer"] == "72" and winner["winner"]
    assert all("text_node" in c for c in view["candidates"])  # texts are not repeated
    assert view["sections"] == ["answers", "calls"]


def test_self_debug_reads_as_rounds_with_the_fix_chosen():
    result = scenarios.self_debug()
    view = view_of_result(result.to_dict())
    assert "timeline" in view["sections"] and "answers" not in view["sections"]
    roles = [(i["kind"], i["role"]) for i in view["timeline"]]
    assert roles == [("generate", "solution"), ("execute", "visible"),
                     ("generate", "revision"), ("execute", "visible"), ("decision", "first")]
    tests = [i for i in view["timeline"] if i["kind"] == "execute"]
    assert tests[0]["passed"] == 0 and "AssertionError" in tests[0]["failures"]
    assert tests[1]["passed"] == tests[1]["tests"] == 3
    chosen = view["candidates"][view["winner"]]
    assert chosen["node"] == view["timeline"][2]["node"]  # the revision


def test_programs_deepconf_and_adaptive_views():
    pot = view_of_result(scenarios.program_of_thought().to_dict())
    [first, second] = pot["programs"]
    assert len(first["attempts"]) == 1 and first["attempts"][0]["status"] == "ok"
    assert len(second["attempts"]) == 2 and second["attempts"][0]["status"] != "ok"
    assert second["attempts"][1]["status"] == "ok"

    deep = scenarios.deepconf()
    view = view_of_result(deep.to_dict())
    conf = view["confidence"]
    assert len(conf["traces"]) == len([n for n in deep.trace.nodes if n.kind == "confidence"])
    stopped = [t for t in conf["traces"] if t["stopped"]]
    assert len(stopped) == 1 and not stopped[0]["voted"] and conf["threshold"] is not None
    assert all(t["curve"] for t in conf["traces"])

    ada = view_of_result(scenarios.adaptive_consistency().to_dict())
    points = ada["waves"]["points"]
    assert [p["samples"] for p in points] == [2, 4, 6, 8][: len(points)]
    assert all(0 <= p["p"] <= 1 for p in points) and ada["waves"]["threshold"] == 0.9


@pytest.mark.parametrize("name", sorted(scenarios.SCENARIOS))
def test_every_strategy_gets_a_page_with_its_question_answer_and_cost(name):
    result = scenarios.SCENARIOS[name]()
    view = view_of_result(result.to_dict())
    assert view["question"] == result.trace.nodes[0].data["question"]
    assert view["answer"] == result.answer and view["usage"]["calls"] == result.usage.calls
    assert view["nodes"] == result.trace.to_dict()["nodes"]
    assert view["sections"][-1] == "calls"
    page = render_page([view])
    assert data_of(page)["views"][0]["answer"] == result.answer


def test_a_trace_alone_gives_the_question_answer_and_vote():
    result = scenarios.self_consistency()
    lines = [n.to_dict() for n in result.trace.nodes]
    [view] = views_of(lines)
    assert view["question"] == scenarios.QUESTION and view["answer"] == "72"
    assert view["strategy"] == "self-consistency" and len(view["candidates"]) == 6
    assert view["groups"][0]["winner"] and view["groups"][0]["count"] == 4
    assert view["usage"]["calls"] == result.usage.calls
    [beam] = views_of([n.to_dict() for n in scenarios.beam_search().trace.nodes])
    assert beam["tree"] and beam["answer"] == "72"


# -- runs of several models -------------------------------------------------------------------

SMALL, STRONG = scenarios.SMALL, scenarios.STRONG


def test_a_run_of_two_models_lists_each_models_cost_and_marks_who_wrote_what():
    result = scenarios.cascade()
    view = view_of_result(result.to_dict())
    assert view["sections"] == ["models", "cascade", "answers", "calls"]
    rows = view["models"]["rows"]
    assert [(r["name"], r["roles"], r["calls"], r["parameters"]) for r in rows] == [
        (SMALL, ["generator"], 1, scenarios.SMALL_PARAMETERS),
        (STRONG, ["strong"], 1, scenarios.STRONG_PARAMETERS)]
    for r in rows:
        cost = result.models[r["name"]]
        assert (r["prompt_tokens"], r["completion_tokens"], r["total_tokens"]) == (
            cost.usage.prompt_tokens, cost.usage.completion_tokens, cost.usage.total_tokens)
        assert r["flops"] == cost.flops == 2 * r["parameters"] * r["total_tokens"]
    assert view["models"]["share_of"] == "FLOPs" and view["models"]["flops"] == result.flops
    assert [r["share"] for r in rows] == [pytest.approx(result.models[r["name"]].flops
                                                        / result.flops, abs=1e-6) for r in rows]
    assert [c["model"] for c in view["candidates"]] == [SMALL] * 4 + [STRONG]
    # the answer groups are both votes, each group named by its vote and the models in it
    assert [(g["answer"], g["members"], g["vote"], g["models"], g["share"], g["winner"])
            for g in view["groups"]] == [
        ("72", [4], "strong model's answer", [[STRONG, 1]], 1.0, True),
        ("144", [0, 1], "small model's vote", [[SMALL, 2]], 0.5, False),
        ("72", [2], "small model's vote", [[SMALL, 1]], 0.25, False),
        ("48", [3], "small model's vote", [[SMALL, 1]], 0.25, False)]


def test_a_run_of_one_model_has_no_cost_table():
    view = view_of_result(scenarios.self_consistency().to_dict())
    assert len(view["models"]["rows"]) == 1 and "models" not in view["sections"]
    assert view["cascade"] is view["verdicts"] is view["debate"] is view["layers"] is None
    assert all("model" not in c for c in view["candidates"])


def test_cascade_shows_the_small_vote_the_evidence_and_the_strong_answer():
    view = view_of_result(scenarios.cascade().to_dict())
    c = view["cascade"]
    assert (c["signal"], c["evidence"], c["threshold"], c["escalated"]) == (
        "agreement", 0.5, 0.75, True)
    assert (c["small_model"], c["strong_model"], c["taken"], c["answer"]) == (
        SMALL, STRONG, "strong", "72")
    assert c["label"] == f"agreement 0.50 < 0.75: escalate to {STRONG}"
    assert c["small"]["winner"] == "144" and c["small"]["candidates"] == [0, 1, 2, 3]
    assert [(g["answer"], g["weight"], g["members"]) for g in c["small"]["groups"]] == [
        ("144", 2.0, [0, 1]), ("72", 1.0, [2]), ("48", 1.0, [3])]
    assert c["strong"]["candidates"] == [4] and c["strong"]["winner"] == "72"

    kept = view_of_result(scenarios.cascade_kept().to_dict())
    k = kept["cascade"]
    assert (k["evidence"], k["threshold"], k["escalated"], k["strong"], k["taken"]) == (
        0.75, 0.75, False, None, "small")
    assert k["strong_model"] == STRONG and k["small"]["winner"] == "72"
    # the strong model never ran: one model spent anything, so no cost table
    assert kept["sections"] == ["cascade", "answers", "calls"]


def test_a_cascade_from_its_trace_alone_has_both_votes_and_the_usage_by_model():
    result = scenarios.cascade()
    [view] = views_of([n.to_dict() for n in result.trace.nodes])
    assert [c["model"] for c in view["candidates"]] == [SMALL] * 4 + [STRONG]
    assert [c["answer"] for c in view["candidates"]] == ["144", "144", "72", "48", "72"]
    rows = view["models"]["rows"]
    assert [(r["name"], r["calls"], r["total_tokens"], r["parameters"]) for r in rows] == [
        (m, result.models[m].usage.calls, result.models[m].usage.total_tokens, None)
        for m in (SMALL, STRONG)]
    assert view["models"]["share_of"] == "tokens" and view["models"]["flops"] is None
    assert view["cascade"]["escalated"] and view["cascade"]["strong"]["candidates"] == [4]
    assert view["groups"][0]["winner"] and view["groups"][0]["members"] == [4]


def test_verify_by_strong_pointwise_verdicts_per_answer_group():
    result = scenarios.verify_by_strong()
    view = view_of_result(result.to_dict())
    assert view["sections"] == ["models", "verdicts", "answers", "calls"]
    r = view["verdicts"]
    assert (r["method"], r["asked"], r["judge_model"], r["answer"]) == (
        "pointwise", True, STRONG, "72")
    assert [(g["answer"], g["score"], g["votes"], g["winner"]) for g in r["groups"]] == [
        ("144", 0.07, 3.0, False), ("72", 0.92, 2.0, True), ("48", 0.31, 1.0, False)]
    # each verdict links the judge call to the solution it judged: the group's first member
    by_id = {n.id: n for n in result.trace.nodes}
    for g in r["groups"]:
        judged = view["candidates"][g["candidate"]]
        assert by_id[g["node"]].data["judged"] == judged["node"]
        assert judged["answer"] == g["answer"] and judged["score"] == g["score"]
    assert view["models"]["rows"][1]["roles"] == ["strong"]
    assert all(c["model"] == SMALL for c in view["candidates"])  # from their trace nodes


def test_verify_by_strong_tournament_matches_both_orders_and_the_champion():
    view = view_of_result(scenarios.verify_by_strong_tournament().to_dict())
    r = view["verdicts"]
    assert (r["method"], r["judge_model"], r["answer"]) == ("tournament", STRONG, "72")
    assert [(m["champion"], m["challenger"], m["winner"], m["kept"], m["split"],
             m["p_champion"]) for m in r["matches"]] == [
        ("144", "72", "72", False, False, 0.0), ("72", "48", "72", True, True, 0.5)]
    assert [[(o["a"], o["b"], o["said"], o["for"]) for o in m["verdicts"]]
            for m in r["matches"]] == [
        [("144", "72", "B", "72"), ("72", "144", "A", "72")],
        [("72", "48", "A", "72"), ("48", "72", "A", "48")]]
    assert [(w["answer"], w["wins"], w["votes"], w["champion"]) for w in r["wins"]] == [
        ("144", 0, 3.0, False), ("72", 2, 2.0, True), ("48", 0, 1.0, False)]


def test_a_match_label_is_read_as_the_strings_it_quotes():
    trace = Trace()
    root = trace.add("strategy", "verify-by-strong", config={"method": "tournament"})
    odd = ["it's 72", 'a "vs" b']
    match = trace.add("score", f"match: {odd[0]!r} vs {odd[1]!r}", parent=root,
                      method="tournament", p_first=1.0, winner=odd[0])
    trace.add("generate", "compare", parent=match, text="A", model="judge")
    [m] = build_view(nodes=trace.to_dict()["nodes"])["verdicts"]["matches"]
    assert (m["champion"], m["challenger"], m["kept"]) == (odd[0], odd[1], True)
    assert m["verdicts"][0]["for"] == odd[0]


def test_verify_by_strong_that_asked_nothing_says_so():
    small, strong = scenarios.two_models(["The answer is 72."] * 3, [])
    result = asyncio.run(asolve(scenarios.QUESTION, "verify-by-strong", backend=small,
                                models={"strong": strong}, n=3))
    r = view_of_result(result.to_dict())["verdicts"]
    assert r["asked"] is False and "not asked" in r["why"] and r["answer"] == "72"


def test_debate_grid_rounds_by_agents_with_the_changed_answers():
    result = scenarios.debate()
    view = view_of_result(result.to_dict())
    assert view["sections"] == ["models", "debate", "answers", "calls"]
    d = view["debate"]
    assert [(c["round"], c["played"], c["unanimous"], c["changes"]) for c in d["columns"]] == [
        (0, True, False, 0), (1, True, False, 1), (2, True, True, 1), (3, False, False, 0)]
    assert [(a["agent"], a["model"], a["role"]) for a in d["agents"]] == [
        (1, SMALL, "generator"), (2, STRONG, "strong"), (3, SMALL, "generator")]
    assert [[c and c["answer"] for c in a["cells"]] for a in d["agents"]] == [
        ["144", "72", "72", None], ["72", "72", "72", None], ["48", "48", "72", None]]
    changed = {(a["agent"], k): c["from"] for a in d["agents"]
               for k, c in enumerate(a["cells"]) if c and c["changed"]}
    assert changed == {(1, 1): "144", (3, 2): "48"}
    # the cells that voted: each agent's latest answer
    assert [[bool(c and c["voted"]) for c in a["cells"]] for a in d["agents"]] == [
        [False, False, True, False]] * 3
    for a in d["agents"]:
        for c in filter(None, a["cells"]):
            assert view["candidates"][c["candidate"]]["node"] == c["node"]
            assert view["candidates"][c["candidate"]]["agent"] == a["agent"]
    assert d["stopped_early"]["round"] == 2 and d["stopped_early"]["answer"] == "72"
    assert d["stopped_early"]["label"] == "all 3 agents answer 72 after round 2: stop early"
    assert d["budget"] is None
    assert d["vote"]["winner"] == "72" and [(g["answer"], g["weight"], g["members"])
                                            for g in d["vote"]["groups"]] == [("72", 3.0,
                                                                               [6, 7, 8])]


def test_particle_filtering_draws_the_population_step_by_step():
    """The scenario's three steps (tests/view_scenarios.py says which particle survives each
    resampling): scores, weights, copies, the slot each particle grew from, the picked line."""
    result = scenarios.particle_filtering()
    view = view_of_result(result.to_dict())
    assert view["sections"] == ["models", "particles", "answers", "tree", "decisions", "calls"]
    p = view["particles"]
    assert p["n"] == 4
    assert [(c["step"], c["resampled"], c["why"]) for c in p["columns"]] == [
        (1, True, "multinomial resampling"), (2, True, "multinomial resampling"),
        (3, False, "every particle finished")]
    steps = [n for n in result.trace.nodes if n.label.startswith("particles step")]
    assert [c["ess"] for c in p["columns"]] == [n.data["ess"] for n in steps]
    # the weights are the scores over their sum: step 1's 0.93, 0.88, 0.12, 0.55
    first = [row["cells"][0] for row in p["rows"]]
    assert [c["score"] for c in first] == [0.93, 0.88, 0.12, 0.55]
    assert [c["weight"] for c in first] == [round(x / 2.48, 4) for x in (0.93, 0.88, 0.12, 0.55)]
    assert [(c["copies"], c["dropped"], c["from"]) for c in first] == [
        (3, False, None), (1, False, None), (0, True, None), (0, True, None)]
    second = [row["cells"][1] for row in p["rows"]]
    # slots 1-3 grew from particle 1's step ("In April ... 48"), slot 4 from particle 2's
    assert [c["from"] for c in second] == [1, 1, 1, 2]
    assert [(c["answer"], c["copies"], c["dropped"]) for c in second] == [
        (None, 1, False), (None, 0, True), (None, 3, False), ("72", 0, True)]
    third = [row["cells"][2] for row in p["rows"]]
    assert [(c["answer"], c["from"], c["dropped"]) for c in third] == [
        ("72", 1, False), ("74", 3, False), ("72", 3, False), ("74", 3, False)]
    # the picked line: slot 1 at every step (its first step, its second, its answer)
    assert [[c["chosen"] for c in row["cells"]] for row in p["rows"]] == [
        [True, True, True], [False] * 3, [False] * 3, [False] * 3]
    assert p["pick"]["answer"] == "72" and p["pick"]["chosen"] == third[0]["node"]
    # the steps are the small model's (its colour on the page); the strong model judged them
    assert {c["model"] for row in p["rows"] for c in row["cells"]} == {SMALL}


def test_a_particle_step_with_odd_fields_is_drawn_without_them():
    """A stored trace is untrusted: ids that are not ids, ancestors out of range or booleans."""
    trace = Trace()
    root = trace.add("strategy", "particle-filtering", config={"n": 3})
    step = trace.add("generate", "step 1 1/3", parent=root, text="a", answer="5")
    trace.add("decision", "particles step 1", parent=root, particles=[step, {"x": 1}, True],
              weights=[1.0, "w", None], scores=[0.9, 0.1], ancestors=[0, 7, True],
              resampled=True, why="multinomial resampling")
    trace.add("decision", "pick: best", parent=root, chosen=[step])  # not an id
    p = build_view(nodes=trace.to_dict()["nodes"])["particles"]
    [one], [two], [three] = (row["cells"] for row in p["rows"])
    assert (one["node"], one["copies"], one["weight"], one["answer"]) == (step, 1, 1.0, "5")
    assert two is None and three is None
    assert not one["chosen"] and p["pick"]["chosen"] is None and p["pick"]["answer"] is None
    assert p["columns"][0]["why"] == "multinomial resampling"


def test_a_finished_particle_in_several_slots_is_counted_by_slot():
    """Step 1 resamples slot 0's finished answer into slots 0 and 1 and slot 2's partial into
    slot 2 (an out-of-range draw keeps its place); step 2 extends slot 2 only. Copies, drops,
    sources and the picked line (the answer in slot 1, from slot 0) are each slot's."""
    trace = Trace()
    root = trace.add("strategy", "particle-filtering", config={"n": 3})
    done = trace.add("generate", "step 1 1/3", parent=root, text="x", answer="7")
    other = trace.add("generate", "step 1 2/3", parent=root, text="y")
    partial = trace.add("generate", "step 1 3/3", parent=root, text="z")
    trace.add("decision", "particles step 1", parent=root, particles=[done, other, partial],
              weights=[0.5, 0.1, 0.4], scores=[0.5, 0.1, 0.4], ancestors=[0, 0, 9],
              resampled=True, why="multinomial resampling")
    last = trace.add("generate", "step 2 1/1", parent=partial, text="w", answer="8")
    trace.add("decision", "particles step 2", parent=root, particles=[done, done, last],
              weights=[0.3, 0.3, 0.4], scores=[0.5, 0.5, 0.6], ancestors=[0, 1, 2],
              resampled=False, why="every particle finished")
    trace.add("decision", "pick: best", parent=root, chosen=done, answer="7")
    p = build_view(nodes=trace.to_dict()["nodes"])["particles"]
    first = [row["cells"][0] for row in p["rows"]]
    assert [(c["copies"], c["dropped"]) for c in first] == [(2, False), (0, True), (0, True)]
    second = [row["cells"][1] for row in p["rows"]]
    assert [(c["node"], c["copies"], c["from"]) for c in second] == [
        (done, 1, 1), (done, 1, 1), (last, 1, None)]
    # both slots holding the picked answer, and the slot they came from
    assert [[c["chosen"] for c in row["cells"]] for row in p["rows"]] == [
        [True, True], [False, True], [False, False]]
    assert p["pick"]["chosen"] == done and p["pick"]["answer"] == "7"


def test_mixture_of_agents_layers_by_proposer_and_the_aggregator():
    view = view_of_result(scenarios.mixture_of_agents().to_dict())
    assert view["sections"] == ["models", "layers", "answers", "calls"]
    m = view["layers"]
    assert [(p["proposer"], p["model"], p["role"], p["n"]) for p in m["proposers"]] == [
        (1, SMALL, "generator", 2), (2, STRONG, "strong", 2)]
    assert [[[r["answer"] for r in cell] for cell in c["cells"]] for c in m["columns"]] == [
        [["144", "48"], ["72", "144"]], [["72", "144"], ["72", "72"]]]
    assert [[[r["model"] for r in cell] for cell in c["cells"]] for c in m["columns"]] == [
        [[SMALL, SMALL], [STRONG, STRONG]]] * 2
    assert [r["final"] for c in m["columns"] for cell in c["cells"] for r in cell] == [
        False, False, True, False, True, False, True, True]
    a = m["aggregator"]
    assert (a["model"], a["role"], a["answer"], a["agrees"], a["chosen"], a["majority"]) == (
        STRONG, "strong", "72", True, "aggregator", "72")
    assert view["candidates"][a["candidate"]]["aggregator"] is True
    assert view["winner"] == a["candidate"]
    assert m["vote"]["label"] == "vote over layer 2" and [
        (g["answer"], g["weight"]) for g in m["vote"]["groups"]] == [("72", 3.0), ("144", 1.0)]
    # the aggregator's answer is its own group, not lumped with a proposer's
    assert view["groups"][0]["members"] == [a["candidate"]]
    assert view["groups"][0]["vote"] == "the aggregator's answer"


def test_an_aggregator_against_the_majority_and_a_debate_the_budget_cut():
    small, strong = scenarios.two_models(
        [scenarios.TWICE, scenarios.CHAINS[2], scenarios.CHAINS[0]], [scenarios.RIGHT])
    result = asyncio.run(asolve(scenarios.QUESTION, "mixture-of-agents", backend=small,
                                models={"strong": strong}, n_per_proposer=3, layers=1,
                                aggregator="strong"))
    a = view_of_result(result.to_dict())["layers"]["aggregator"]
    assert (a["answer"], a["agrees"], a["majority"], a["chosen"]) == ("72", False, "144",
                                                                     "aggregator")
    small = ScriptedBackend([scenarios.CHAINS[0], scenarios.CHAINS[2], scenarios.CHAINS[5]] * 2)
    result = asyncio.run(asolve(scenarios.QUESTION, "debate", backend=small, agents=3,
                                rounds=2, max_tokens_total=250))
    view = view_of_result(result.to_dict())
    d = view["debate"]
    assert d["budget"]["round"] == 1 and d["stopped_early"] is None
    assert [c["played"] for c in d["columns"]] == [True, True, False]
    assert "models" not in view["sections"]  # one model, its seeds the agents



MANY = ("cascade", "cascade-kept", "verify-by-strong", "verify-by-strong-tournament", "debate",
        "mixture-of-agents")


@pytest.mark.parametrize("name", MANY)
def test_a_many_model_run_can_be_drawn_at_every_step_while_it_runs(name):
    """A server's live page draws the trace as it grows: every prefix of it makes a view."""
    result = scenarios.SCENARIOS[name]()
    nodes = result.trace.to_dict()["nodes"]
    for k in range(1, len(nodes) + 1):
        view = build_view(nodes=nodes[:k], strategy=result.strategy, model=SMALL,
                          status="running")
        assert view["sections"][-1] == "calls"
        render_page([view])
    assert build_view(nodes=nodes, strategy=result.strategy, model=SMALL)["answer"] == \
        result.answer

# -- the command line -------------------------------------------------------------------------

def test_ponder_view_writes_one_page_per_input(tmp_path, capsys):
    result = scenarios.beam_search()
    source = tmp_path / "beam.json"
    source.write_text(json.dumps(result.to_dict()))
    trace = tmp_path / "beam.jsonl"
    result.trace.write_jsonl(trace)
    assert main(["view", str(source), "--no-open"]) == 0
    page = (tmp_path / "beam.html").read_text()
    assert data_of(page)["views"][0]["tree"]["chosen"] is not None
    assert "view: " in capsys.readouterr().err
    out = tmp_path / "t" / "from-trace.html"
    assert main(["view", str(trace), "--no-open", "-o", str(out)]) == 0
    assert data_of(out.read_text())["views"][0]["answer"] == "72"


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("{\"hello\": 1}", "is not a ponder result or trace"),
    ("not json at all", "is not a ponder result or trace: not JSON"),
    ("[1, 2]", "is not a ponder result or trace: trace entry 1"),
    ("{\"id\": 0, \"kind\": \"strategy\"}\n{\"a\": 1}", "trace entry 2"),
    ("[" * 100_000 + "]" * 100_000, "is not a ponder result or trace: its JSON is nested too "
     "deeply to read"),
    ("{\"nodes\": [{\"id\": 0, \"kind\": \"strategy\", \"data\": " + "[" * 5000
     + "]" * 5000 + "}]}", "nested too deeply"),
    ("{\"a\": 1}\n" + "[" * 5000 + "]" * 5000, "nested too deeply"),
])
def test_bad_input_is_one_line_and_non_zero(tmp_path, capsys, content, message):
    path = tmp_path / "in.json"
    if content is not None:
        path.write_text(content)
    assert main(["view", str(path), "--no-open"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ponder: error: ") and message in err and err.count("\n") == 1


def test_ask_view_writes_the_page_of_the_answer(tmp_path, monkeypatch, capsys):
    import ponder.cli.ask as ask
    from ponder.api import asolve

    async def scripted(problem, strategy, **options):
        for key in ("model", "base_url", "backend", "api_key", "backend_options", "effort",
                    "events"):
            options.pop(key, None)
        return await asolve(problem, strategy, backend=ScriptedBackend(list(scenarios.CHAINS)),
                            **options)

    monkeypatch.setattr(ask, "asolve", scripted)
    out = tmp_path / "answer.html"
    assert main(["ask", scenarios.QUESTION, "-n", "6", "--no-progress", "--view", str(out),
                 "--no-open"]) == 0
    view = data_of(out.read_text())["views"][0]
    assert view["answer"] == "72" and len(view["candidates"]) == 6
    assert f"view: {out}" in capsys.readouterr().err


# -- an evaluation's pages --------------------------------------------------------------------

def test_eval_keeps_traces_and_links_each_problem_to_its_page(tmp_path, capsys):
    def respond(request, index):  # step searches stop at the step delimiter; judges judge
        if request.params.stop or request.messages[0].content == STEP_JUDGE_SYSTEM:
            return scenarios._steps(request, index)
        return scenarios.CHAINS[index % 3]

    problems = [Problem(scenarios.QUESTION, answer="72", id="gsm8k/1"),
                Problem(scenarios.QUESTION, answer="72", id="gsm8k/2")]
    store = Store(tmp_path / "samples.sqlite")
    harness = Harness(ScriptedBackend(respond), store, problems,
                      ["beam-search[max_steps=3]", "self-consistency"], [2], traces=tmp_path)
    asyncio.run(harness.run())
    data = harness.curves(draws=5)
    config = {"dataset": "d", "model": "scripted", "model_sha256": "0" * 64, "problems": 2,
              "seed": 0, "ponder_version": "test",
              "strategies": {p.label: {"name": p.name, "key": p.key, "mode": p.mode,
                                       "config": p.build().config.model_dump()}
                             for p in harness.plans}}
    write_reports(tmp_path, data, config)
    store.close()
    beam = next(p for p in harness.plans if p.name == "beam-search")
    stored = load_trace(tmp_path, beam.key, "gsm8k/1", 2)
    assert stored["question"] == scenarios.QUESTION and stored["trace"]["nodes"]
    report = (tmp_path / "report.html").read_text()
    link = f"view/{slug('gsm8k/1')}.html"
    assert f"href='{link}#view=" in report
    views = data_of((tmp_path / link).read_text())["views"]
    assert [v["label"] for v in views] == ["greedy", "beam-search[max_steps=3]",
                                           "self-consistency"]
    assert views[1]["tree"] and views[1]["gold"] == "72" and views[1]["correct"] is not None
    assert views[2]["nodes"] == [] and "No trace" in views[2]["note"]
    assert len(views[2]["candidates"]) == 2
    # the command line: a problem of the folder, its strategy first
    out = tmp_path / "p.html"
    assert main(["view", str(tmp_path), "--problem", "gsm8k/2", "--strategy", "self-consistency",
                 "--no-open", "-o", str(out)]) == 0
    assert data_of(out.read_text())["selected"] == 2
    capsys.readouterr()
    assert main(["view", str(tmp_path), "--problem", "nope", "--no-open"]) == 1
    assert "no problem 'nope'" in capsys.readouterr().err
    assert main(["view", str(tmp_path), "--no-open"]) == 1
    assert "--problem" in capsys.readouterr().err
    assert main(["view", str(tmp_path), "--problem", "gsm8k/1", "--strategy", "x",
                 "--no-open"]) == 1
    assert "no strategy 'x'" in capsys.readouterr().err


def test_a_deeply_nested_evaluation_report_is_one_line(tmp_path, capsys):
    (tmp_path / "report.json").write_text("[" * 100_000 + "]" * 100_000)
    assert main(["view", str(tmp_path), "--problem", "p1", "--no-open"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ponder: error: ") and "nested too deeply" in err
    assert err.count("\n") == 1


def test_a_gsm8k_evaluation_names_its_problems_by_number(tmp_path, monkeypatch, capsys):
    """A GSM8K file's problems have no ids of their own: the eval store gives them their place
    in the file, from 0, so `ponder view FOLDER --problem 1` shows the second one; an id it does
    not have (the 'gsm8k-1' an old README showed) is one line that suggests the right one and
    lists a few."""
    import ponder.backends.loading as loading
    import ponder.eval.session as session
    from ponder.backends.models import ModelSpec

    monkeypatch.setattr(session, "resolve_model", lambda *a, **k: ModelSpec("scripted", "s"))
    monkeypatch.setattr(loading, "load_backend",
                        lambda *a, **k: ScriptedBackend(lambda r, i: "The answer is 5"))
    dataset = tmp_path / "gsm8k.jsonl"
    dataset.write_text("".join(json.dumps({"question": f"What is {a} + 3?",
                                           "answer": f"{a} + 3 = {a + 3}\n#### {a + 3}"}) + "\n"
                               for a in (2, 4, 6, 8, 10, 12)))
    out = tmp_path / "run"
    assert main(["eval", "--dataset", str(dataset), "--strategies", "cot", "--budgets", "1",
                 "--concurrency", "1", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [p["id"] for p in report["problems"]] == ["0", "1", "2", "3", "4", "5"]
    capsys.readouterr()
    page = tmp_path / "p.html"
    assert main(["view", str(out), "--problem", "1", "--no-open", "-o", str(page)]) == 0
    assert data_of(page.read_text())["views"][0]["question"] == "What is 4 + 3?"
    capsys.readouterr()
    assert main(["view", str(out), "--problem", "gsm8k-1", "--no-open"]) == 1
    err = capsys.readouterr().err
    assert err == (f"ponder: error: no problem 'gsm8k-1' in {out}; did you mean '1'? "
                   "(its 6 problems: 0, 1, 2, 3, 4, ...)\n")
    assert main(["view", str(out), "--problem", "seven", "--no-open"]) == 1
    assert capsys.readouterr().err == (f"ponder: error: no problem 'seven' in {out} "
                                       "(its 6 problems: 0, 1, 2, 3, 4, ...)\n")
