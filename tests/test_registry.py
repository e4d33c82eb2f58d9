"""The registry loads its built-ins once, and every thread sees them whole."""

import threading

from ponder import registry
from ponder.registry import Registry


def test_threads_racing_to_first_use_all_see_the_whole_registry(tmp_path, monkeypatch):
    # a built-ins module slow to import: the first caller is still loading when the others ask
    (tmp_path / "slow_builtins_for_the_race.py").write_text(
        "import time\nfrom ponder import registry\n"
        "time.sleep(0.3)\n"
        "registry.raced.register('cot', 'chain of thought')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    raced = Registry("strategy", "ponder.no-such-group", "slow_builtins_for_the_race")
    monkeypatch.setattr(registry, "raced", raced, raising=False)
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(raced.names())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [["cot"]] * 4
    assert raced.get("cot") == "chain of thought"
