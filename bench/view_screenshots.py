"""Screenshots of `ponder view` pages for the scripted runs of tests/view_scenarios.py, taken in
Debian's headless Chromium: bench/results/view-<strategy>-<date>.png.

    .venv/bin/python bench/view_screenshots.py [STRATEGY ...]

A search's page is shot with one node opened (a pruned one where there is one), the others whole.
"""

from __future__ import annotations

import asyncio
import datetime
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import view_scenarios as scenarios  # noqa: E402

from ponder.view import render_page, view_of_result  # noqa: E402

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DEFAULT = ["beam-search", "mcts", "self-debug", "self-consistency", "dvts", "deepconf",
           "adaptive-consistency", "program-of-thought", "self-refine", "router"]


def main(names: list[str]) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("no chromium: apt-get install -y chromium")
    day = datetime.date.today().isoformat()
    out = ROOT / "bench" / "results"
    pages = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:  # every run before the browser's event loop starts
            result = scenarios.SCENARIOS[name]()
            path = Path(tmp) / f"{name}.html"
            path.write_text(render_page([view_of_result(result.to_dict())]), encoding="utf-8")
            pages[name] = path
        assert not asyncio.iscoroutinefunction(main)
        with sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(
                str(Path(tmp) / "profile"), executable_path=chromium, args=FLAGS,
                headless=True, viewport={"width": 1440, "height": 1000})
            for name, path in pages.items():
                page = browser.new_page()
                page.goto(path.as_uri())
                page.wait_for_selector("#final-answer")
                target = out / f"view-{name}-{day}.png"
                node = page.query_selector(".tnode.pruned") or page.query_selector(
                    ".tnode.answer") or None
                if node is not None:
                    node.click()
                    page.wait_for_selector("#drawer.open")
                    page.wait_for_timeout(250)
                    page.screenshot(path=str(target))
                else:
                    page.screenshot(path=str(target), full_page=True)
                print(target.relative_to(ROOT))
                page.close()
            browser.close()


if __name__ == "__main__":
    main(sys.argv[1:] or DEFAULT)
