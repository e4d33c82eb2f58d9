"""The view in a real browser: Debian's Chromium, headless, driven by Playwright. For a beam
search, an MCTS run, a self-debug run and a self-consistency run (scripted, so every tree is
known): the page loads with no console error and no network request, draws exactly the trace's
tree nodes, shows a pruned node's text and why it was pruned, and marks the winner. For runs of two
models (cascade, verify-by-strong, debate, mixture-of-agents): the cost table, one colour per
model, the escalation, the verdicts, the debate's grid and the layers. Also: trace text that
looks like HTML stays text, and a server's live page follows a running search.

Skipped, with the reason, where Chromium or Playwright is not installed (.ci/run installs both).
"""

import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import view_scenarios as scenarios

from ponder.api import asolve
from ponder.trace import Trace
from ponder.view import build_view, render_page, view_of_result
from ponder.view.page import content_security_policy

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install -y "
                       "chromium; .ci/run does)"),
]


@pytest.fixture(scope="module")
def runs():
    """The scripted runs, made before the browser starts (Playwright's sync API holds an event
    loop in this thread while it runs)."""
    return {name: scenarios.SCENARIOS[name]()
            for name in ("beam-search", "mcts", "self-debug", "self-consistency", "cascade",
                         "cascade-kept", "verify-by-strong", "verify-by-strong-tournament",
                         "debate", "mixture-of-agents", "particle-filtering")} | {
                             "hostile-debate": hostile_debate()}


HOSTILE = "<img src=x onerror=alert(1)>"


def hostile_debate():
    """A debate whose models' names and answers look like HTML."""
    small = scenarios.ScriptedBackend([f"The answer is: {HOSTILE}"] * 4, model=HOSTILE + " s")
    strong = scenarios.ScriptedBackend([f"The answer is: {HOSTILE}"] * 2, model=HOSTILE)
    return asyncio.run(asolve(scenarios.QUESTION, "debate", backend=small,
                              models={"strong": strong}, agents=3, rounds=1,
                              stop_when_unanimous=False, agent_roles=["generator", "strong"]))


@pytest.fixture(scope="module")
def browser(runs):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                                   "(it is in the dev extra)")
    with tempfile.TemporaryDirectory() as profile, sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=FLAGS, headless=True,
            viewport={"width": 1280, "height": 900})
        yield context
        context.close()


class Opened:
    """A page loaded in the browser, with what it logged and requested."""

    def __init__(self, browser, url: str) -> None:
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page = browser.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.goto(url)
        self.page.wait_for_selector("#final-answer")

    def close(self) -> None:
        self.page.close()


def open_page(browser, tmp_path: Path, result, name: str) -> Opened:
    path = tmp_path / f"{name}.html"
    path.write_text(render_page([view_of_result(result.to_dict())]), encoding="utf-8")
    return Opened(browser, path.as_uri())


def tree_nodes(result):
    return [n for n in result.trace.nodes
            if n.kind in ("strategy", "subtree")
            or (n.kind == "generate" and n.label.split(" ")[0] in ("step", "complete", "rollout"))]


def check_clean(opened: Opened, url_prefix: str = "file://") -> None:
    assert opened.errors == []
    assert all(u.startswith(url_prefix) for u in opened.requests), opened.requests
    assert len(opened.requests) == 1 or url_prefix != "file://"  # the page itself, nothing else


def test_beam_search_tree_pruned_node_and_winner(runs, browser, tmp_path):
    result = runs["beam-search"]
    opened = open_page(browser, tmp_path, result, "beam")
    page = opened.page
    page.wait_for_selector(".tnode")
    assert page.locator(".tnode").count() == len(tree_nodes(result)) == 11
    pruned = next(n for n in result.trace.nodes if n.data.get("status") == "pruned")
    page.click(f'.tnode[data-node-id="{pruned.id}"]')
    page.wait_for_selector("#drawer.open")
    assert page.inner_text("#node-text") == pruned.data["text"]
    assert page.inner_text("#node-why") == pruned.data["why"]
    assert "judge step" in page.inner_text("#drawer")  # its judge call
    assert page.inner_text(".group.winner .ganswer") == result.answer == "72"
    view = view_of_result(result.to_dict())
    assert page.locator(".tnode.chosen").count() == len(view["tree"]["path"]) == 4
    assert page.locator(".edge.chosen").count() == 3
    # zoom changes the view box; folding a node hides what is below it; expand all restores
    before = page.get_attribute("#tree-svg", "viewBox")
    page.click("button[title='zoom in']")
    assert page.get_attribute("#tree-svg", "viewBox") != before
    kept = next(n for n in result.trace.nodes if n.label == "step 1 1/4")
    page.click(f'.tnode[data-node-id="{kept.id}"] .fold')
    assert page.locator(".tnode").count() == 11 - 4
    page.click("text=expand all")
    assert page.locator(".tnode").count() == 11
    check_clean(opened)
    opened.close()


def test_mcts_tree_visits_and_winner(runs, browser, tmp_path):
    result = runs["mcts"]
    opened = open_page(browser, tmp_path, result, "mcts")
    page = opened.page
    page.wait_for_selector(".tnode")
    assert page.locator(".tnode").count() == len(tree_nodes(result))
    step = next(n for n in result.trace.nodes if n.label.startswith("step 1"))
    page.click(f'.tnode[data-node-id="{step.id}"]')
    page.wait_for_selector("#drawer.open")
    drawer = page.inner_text("#drawer")
    assert f"visits\t{step.data['visits']}" in drawer and step.data["text"] in drawer
    assert page.inner_text(".group.winner .ganswer") == result.answer
    assert page.locator(".tnode.chosen").count() >= 2
    check_clean(opened)
    opened.close()


def test_self_debug_rounds_failures_and_the_chosen_fix(runs, browser, tmp_path):
    result = runs["self-debug"]
    opened = open_page(browser, tmp_path, result, "debug")
    page = opened.page
    items = page.locator(".titem")
    assert items.count() == len(result.trace.nodes) - 1  # every node below the root
    assert page.locator(".titem.fail").count() == 1 and page.locator(".titem.ok").count() == 1
    assert "AssertionError" in page.inner_text(".titem.fail")
    chosen = page.locator(".titem.chosen")
    assert chosen.count() == 1 and "revision 1" in chosen.inner_text()
    assert "return a + b" in chosen.inner_text()
    assert "return a + b" in page.inner_text("#final-answer")
    page.click(".titem.fail >> text=details")
    page.wait_for_selector("#drawer.open")
    assert "test 1: failed" in page.inner_text("#drawer")
    check_clean(opened)
    opened.close()


def test_self_consistency_groups_and_winner(runs, browser, tmp_path):
    result = runs["self-consistency"]
    opened = open_page(browser, tmp_path, result, "sc")
    page = opened.page
    assert page.locator(".group").count() == 3 and page.locator(".tnode").count() == 0
    winner = page.locator(".group.winner")
    assert winner.count() == 1 and "★ chosen" in winner.inner_text()
    assert winner.locator(".ganswer").inner_text() == "72"
    winner.locator(".ghead").click()
    first = winner.locator(".member").first
    first.locator("text=full text").click()
    assert result.candidates[0].text in first.inner_text()
    check_clean(opened)
    opened.close()


def test_trace_text_that_looks_like_html_stays_text(browser, tmp_path):
    hostile = "<img src=x onerror=alert(1)></script><script>alert(2)</script><!--"
    trace = Trace()
    root = trace.add("strategy", "self-consistency", config={"n": 1}, question=hostile)
    trace.add("generate", "chain", parent=root, text=hostile)
    path = tmp_path / "hostile.html"
    path.write_text(render_page([build_view(nodes=trace.to_dict()["nodes"], answer=hostile)]))
    opened = Opened(browser, path.as_uri())
    page = opened.page
    assert page.inner_text(".question") == hostile and page.inner_text("#final-answer") == hostile
    assert page.locator("img").count() == 0 and opened.dialogs == []
    check_clean(opened)
    opened.close()


# -- runs of several models ---------------------------------------------------------------------

SMALL, STRONG = scenarios.SMALL, scenarios.STRONG


def check_policy(opened: Opened) -> None:
    """The page's policy is the one it was written with: its script and style by their hashes,
    nothing to connect to (and the drawing broke none of it: a violation logs an error)."""
    policy = opened.page.get_attribute("meta[http-equiv='Content-Security-Policy']", "content")
    assert policy == content_security_policy() and "unsafe-inline" not in policy


def badge_colors(page, model: str) -> set[str]:
    return set(page.eval_on_selector_all(
        f'.mbadge[data-model="{model}"]', "els => els.map(e => getComputedStyle(e).borderColor)"))


def test_a_cascade_page_shows_each_models_cost_and_the_escalation(runs, browser, tmp_path):
    result = runs["cascade"]
    opened = open_page(browser, tmp_path, result, "cascade")
    page = opened.page
    rows = page.locator("#models tr.model-row")
    assert rows.count() == 2
    small, strong = rows.nth(0).inner_text(), rows.nth(1).inner_text()
    assert SMALL in small and "generator" in small and "494M" in small and "130 GFLOPs" in small
    assert STRONG in strong and "strong" in strong and "1.54B" in strong and "355 GFLOPs" in strong
    assert page.inner_text("#total-flops") == "485 GFLOPs"
    # one colour per model, the same in every badge on the page, and two different colours
    small_colors, strong_colors = badge_colors(page, SMALL), badge_colors(page, STRONG)
    assert len(small_colors) == len(strong_colors) == 1 and small_colors != strong_colors
    assert page.inner_text("#cascade-verdict") == \
        f"agreement 0.50 < 0.75: escalated to {STRONG}"
    assert page.locator("#cascade-small .mvrow").count() == 3
    assert "144" in page.inner_text("#cascade-small .mvrow.lead")
    assert "72" in page.inner_text("#cascade-strong") and "★ taken" in page.inner_text(
        "#cascade-strong")
    # the chosen group is the strong model's answer, its one member marked with its model
    winner = page.locator(".group.winner")
    assert "strong model's answer" in winner.inner_text()
    winner.locator(".ghead").click()
    assert winner.locator(f'.member .mbadge[data-model="{STRONG}"]').count() == 1
    assert page.locator(f'.group:not(.winner) .member .mbadge[data-model="{SMALL}"]').count() == 4
    check_policy(opened)
    check_clean(opened)
    opened.close()


def test_a_cascade_that_did_not_escalate_says_so(runs, browser, tmp_path):
    opened = open_page(browser, tmp_path, runs["cascade-kept"], "kept")
    page = opened.page
    assert page.inner_text("#cascade-verdict") == \
        "agreement 0.75 ≥ 0.75: the small model's answer stands"
    assert page.is_visible("#not-escalated") and "not asked" in page.inner_text("#cascade-strong")
    assert page.locator("#models").count() == 0 and page.locator(".mbadge").count() == 1
    check_clean(opened)
    opened.close()


def test_verify_by_strong_pages_show_the_verdicts(runs, browser, tmp_path):
    opened = open_page(browser, tmp_path, runs["verify-by-strong"], "vbs")
    page = opened.page
    rows = page.locator("#verdicts .verdict-row")
    assert rows.count() == 3
    assert [rows.nth(k).get_attribute("data-answer") for k in range(3)] == ["144", "72", "48"]
    chosen = page.locator("#verdicts .verdict-row.winner")
    assert chosen.count() == 1 and "0.92" in chosen.inner_text() and "★ chosen" in \
        chosen.inner_text()
    assert "overrules the small model’s majority (144)" in page.inner_text("#verdicts")
    chosen.click()
    page.wait_for_selector("#drawer.open")
    assert page.inner_text("#drawer h3") == "judge" and "Yes" in page.inner_text("#node-text")
    check_clean(opened)
    opened.close()

    opened = open_page(browser, tmp_path, runs["verify-by-strong-tournament"], "tour")
    page = opened.page
    matches = page.locator("#verdicts .match")
    assert matches.count() == 2
    first, second = matches.nth(0).inner_text(), matches.nth(1).inner_text()
    assert "A = 144, B = 72: said B → 72" in first and "A = 72, B = 144: said A → 72" in first
    assert "the challenger wins" in first
    assert page.locator("#verdicts .match.split").count() == 1 and "split verdict" in second
    assert "A = 48, B = 72: said A → 48" in second and "the champion stays" in second
    assert matches.nth(0).locator(".side.won").get_attribute("data-answer") == "72"
    assert "72" in page.inner_text("#champion") and "★ chosen" in page.inner_text("#champion")
    check_policy(opened)
    check_clean(opened)
    opened.close()


def test_a_debate_page_is_a_grid_of_rounds_with_the_changed_minds_marked(runs, browser,
                                                                      tmp_path):
    result = runs["debate"]
    opened = open_page(browser, tmp_path, result, "debate")
    page = opened.page
    grid = page.locator("#debate .debate-grid")
    assert grid.locator("tr[data-agent]").count() == 3
    heads = grid.locator("tr").first.locator("th")
    assert [heads.nth(k).inner_text().split("\n")[0] for k in range(5)] == [
        "agent", "round 0", "round 1", "round 2", "round 3"]
    assert "not run: stopped early" in heads.nth(4).inner_text()
    changes = {(c["agent"], n.data["round"]): c["from"] for n in result.trace.nodes
               if n.kind == "decision" for c in n.data.get("changes") or []}
    changed = grid.locator("td.cell.changed")
    assert changed.count() == len(changes) == 2
    replies = {(n.data["agent"], n.data["round"]): n for n in result.trace.nodes
               if n.kind == "generate"}
    for (agent, number), before in changes.items():
        cell = grid.locator(f'td.cell.changed[data-node-id="{replies[agent, number].id}"]')
        assert cell.count() == 1 and f"was {before}" in cell.inner_text()
    assert grid.locator("td.cell.skipped").count() == 3 and grid.locator("td.cell.voted").count() \
        == 3
    assert page.inner_text("#stopped-early").endswith(
        "all 3 agents answer 72 after round 2: stop early")
    assert "72 ×3" in page.inner_text("#debate-vote")
    assert grid.locator(f'tr[data-agent="2"] .mbadge[data-model="{STRONG}"]').count() == 1
    changed.first.click()
    page.wait_for_selector("#drawer.open")
    assert page.inner_text("#node-text") == replies[1, 1].data["text"]
    check_policy(opened)
    check_clean(opened)
    opened.close()


def test_a_mixture_of_agents_page_shows_the_layers_and_the_aggregator(runs, browser, tmp_path):
    opened = open_page(browser, tmp_path, runs["mixture-of-agents"], "moa")
    page = opened.page
    grid = page.locator("#layers .moa-grid")
    assert grid.locator("tr[data-proposer]").count() == 2
    first = grid.locator('tr[data-proposer="1"] td.cell')
    assert [first.nth(k).locator(".chip").all_inner_texts() for k in range(2)] == [
        ["144", "48"], ["72", "144"]]
    assert grid.locator("td.cell .chip").count() == 8
    assert grid.locator("td.cell .chip.final").count() == 4  # the responses that said 72
    assert page.inner_text("#aggregator-agrees") == "✓ agrees with the majority (72)"
    assert STRONG in page.inner_text("#aggregator") and "72" in page.inner_text(
        "#aggregator .chip")
    assert "vote over layer 2: 72 ×3 (75%) · 144 ×1 (25%)" in page.inner_text("#moa-vote")
    check_policy(opened)
    check_clean(opened)
    opened.close()


def test_a_particle_filtering_page_draws_the_population_step_by_step(runs, browser, tmp_path):
    """tests/view_scenarios.py's particle filter: four particles over three steps, the dropped
    ones dashed, each cell's weight as a bar, the picked answer's line outlined."""
    result = runs["particle-filtering"]
    opened = open_page(browser, tmp_path, result, "particles")
    page = opened.page
    grid = page.locator("#particles .particle-grid")
    assert grid.locator("tr[data-slot]").count() == 4
    heads = grid.locator("tr").first.locator("th")
    steps = [n for n in result.trace.nodes if n.label.startswith("particles step")]
    assert [heads.nth(k).inner_text().split("\n")[0] for k in range(4)] == [
        "particle", "step 1", "step 2", "step 3"]
    assert heads.nth(1).inner_text().split("\n")[1] == \
        f"ESS {steps[0].data['ess']:.2f} of 4 · multinomial resampling"
    assert heads.nth(3).inner_text().split("\n")[1].endswith(
        "not resampled: every particle finished")
    # two first steps dropped at step 1, two particles at step 2, none at step 3
    dropped = grid.locator("td.cell.dropped")
    assert dropped.count() == 4
    assert {dropped.nth(k).get_attribute("data-node-id") for k in range(4)} == {
        str(steps[0].data["particles"][2]), str(steps[0].data["particles"][3]),
        str(steps[1].data["particles"][1]), str(steps[1].data["particles"][3])}
    first = grid.locator('tr[data-slot="1"] td.cell')
    assert first.nth(0).locator(".copies").inner_text() == "×3"
    assert "score 0.93 · weight 0.375" in first.nth(0).inner_text()
    assert first.nth(2).locator(".ans").inner_text() == "72"
    # the weight bar's width is the particle's share (0.375 of the cell's bar)
    bar, track = (first.nth(0).locator(sel).bounding_box() for sel in (".wbar i", ".wbar"))
    assert bar["width"] / track["width"] == pytest.approx(0.375, abs=0.01)
    assert grid.locator("td.cell.chosen").count() == 3  # slot 1's line, picked
    assert grid.locator('tr[data-slot="1"] td.cell.chosen').count() == 3
    assert page.inner_text("#particles-pick") == "pick: best: 72"
    first.nth(1).click()
    page.wait_for_selector("#drawer.open")
    node = next(n for n in result.trace.nodes if n.id == steps[1].data["particles"][0])
    assert page.inner_text("#node-text") == node.data["text"]
    check_policy(opened)
    check_clean(opened)
    opened.close()


def test_hostile_model_names_and_answers_in_a_debate_stay_text(runs, browser, tmp_path):
    opened = open_page(browser, tmp_path, runs["hostile-debate"], "hostile-debate")
    page = opened.page
    assert page.locator("#debate td.cell").count() == 6
    assert HOSTILE in page.inner_text("#models") and HOSTILE in page.inner_text("#debate")
    assert page.locator("img").count() == 0 and opened.dialogs == []
    check_clean(opened)
    opened.close()


def test_runs_of_several_models_drawn_half_way_have_no_errors(runs, browser, tmp_path):
    """What a live page shows mid-run: each many-model trace cut in half and at its first
    decision, one page with a tab each."""
    views = []
    for name in ("cascade", "verify-by-strong", "verify-by-strong-tournament", "debate",
                 "mixture-of-agents"):
        nodes = runs[name].trace.to_dict()["nodes"]
        first = next(k for k, n in enumerate(nodes) if n["kind"] in ("decision", "score"))
        for cut in sorted({first + 1, len(nodes) // 2}):
            views.append(build_view(nodes=nodes[:cut], strategy=runs[name].strategy,
                                    label=f"{name} {cut}", model=SMALL, status="running"))
    path = tmp_path / "partial.html"
    path.write_text(render_page(views), encoding="utf-8")
    opened = Opened(browser, path.as_uri())
    page = opened.page
    for k, view in enumerate(views):
        page.click(f"nav.tabs button >> nth={k}")
        page.wait_for_selector("#final-answer")
        for section in ("cascade", "verdicts", "debate", "layers"):
            if section in view["sections"]:
                assert page.locator(f"#{section}").count() == 1, view["label"]
    assert opened.errors == [] and opened.dialogs == []
    opened.close()


def test_a_live_page_follows_the_search_until_it_is_done(browser):
    import httpx
    from test_view_server import ASK, GatedBackend, Live, arithmetic

    backend = GatedBackend(arithmetic)
    with Live(backend) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        body = {**ASK, "model": "ponder-adaptive-consistency", "stream": True,
                "ponder": {"trace": True, "options": {"wave": 2, "max_n": 4,
                                                      "threshold": 0.99}}}
        with http.stream("POST", "/v1/chat/completions", json=body) as stream:
            lines = stream.iter_lines()
            first = json.loads(next(line for line in lines if line.startswith("data: "))[6:])
            opened = Opened(browser, first["ponder"]["view_url"])
            page = opened.page
            page.wait_for_selector("#live")
            assert "running" in page.inner_text("header")
            backend.gate.set()
            "".join(lines)
            page.wait_for_selector("#live", state="detached", timeout=10_000)
            page.wait_for_selector("#waves-chart")
            assert page.inner_text("#final-answer") == "5"
            assert opened.errors == [] and opened.dialogs == []
            assert all(u.startswith(server.url + "/ui/") for u in opened.requests)
            assert any(u.endswith("/data") for u in opened.requests)  # it polled
            opened.close()


def test_a_live_page_shows_candidates_as_they_finish(browser):
    import httpx
    from test_view_server import ASK, Live, TrickleBackend, arithmetic

    backend = TrickleBackend(arithmetic)
    with Live(backend) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        with http.stream("POST", "/v1/chat/completions", json={**ASK, "stream": True}) as stream:
            lines = stream.iter_lines()
            first = json.loads(next(line for line in lines if line.startswith("data: "))[6:])
            opened = Opened(browser, first["ponder"]["view_url"])
            page = opened.page
            # two of the three samples are in, the third waits: the page polls until it has them
            deadline = time.monotonic() + 10  # (the page's policy allows no script of ours)
            while "2 candidates in 1 group" not in page.inner_text("body"):
                assert time.monotonic() < deadline, page.inner_text("body")
                page.wait_for_timeout(50)
            assert page.locator("#live").count() == 1
            assert page.locator(".group").count() == 1
            assert page.locator(".group .ganswer").inner_text() == "5"
            assert page.locator(".group.winner").count() == 0  # nothing voted yet
            backend.gate.set()
            "".join(lines)
            page.wait_for_selector("#live", state="detached", timeout=10_000)
            assert "3 candidates in 1 group" in page.inner_text("body")
            assert page.locator(".group.winner").count() == 1
            assert page.inner_text("#final-answer") == "5"
            assert opened.errors == [] and opened.dialogs == []
            opened.close()
