"""The view in a real browser: Debian's Chromium, headless, driven by Playwright. For a beam
search, an MCTS run, a self-debug run and a self-consistency run (scripted, so every tree is
known): the page loads with no console error and no network request, draws exactly the trace's
tree nodes, shows a pruned node's text and why it was pruned, and marks the winner. Also: trace
text that looks like HTML stays text, and a server's live page follows a running search.

Skipped, with the reason, where Chromium or Playwright is not installed (.ci/run installs both).
"""

import json
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import view_scenarios as scenarios

from ponder.trace import Trace
from ponder.view import build_view, render_page, view_of_result

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
            for name in ("beam-search", "mcts", "self-debug", "self-consistency")}


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
