"""``ponder eval --ray`` on a local Ray cluster: the same store and accuracies as one process,
and a worker killed with SIGKILL mid-run loses and duplicates nothing."""

import asyncio
import functools
import os
import random
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from ponder.backends.fake import ScriptedBackend
from ponder.eval.harness import Harness
from ponder.eval.store import Store
from ponder.types import Problem

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[1]
PROBLEMS = [Problem(f"What is {a} + {b}?", str(a + b), id=f"p{a}")
            for a, b in [(a, 7 * a % 13) for a in range(1, 15)]]


def sums(delay: float, request, index):
    """A seeded arithmetic model: right 60% of the time, by the seed of the sample."""
    time.sleep(delay)
    question = request.messages[-1].content
    a, b = (int(x) for x in question.removeprefix("What is ").rstrip("?").split(" + "))
    seed = request.params.seed
    rng = random.Random(f"{seed}|{index}|{question}")
    return f"The answer is {a + b if rng.random() < 0.6 else a + b + 1}."


def factory(delay: float = 0.0):
    return ScriptedBackend(functools.partial(sums, delay))


@pytest.fixture(scope="module")
def cluster():
    # the workers import ponder and this module as the driver does
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    if old is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old


def harness(backend, path):
    return Harness(backend, Store(path), PROBLEMS, ["self-consistency"], [1, 4], seed=3)


def stored(path):
    db = sqlite3.connect(path)
    try:
        return sorted(db.execute("SELECT sample_key, problem_id, idx, text, correct "
                                 "FROM samples").fetchall())
    finally:
        db.close()


def accuracies(h):
    return [(p["strategy"], p["budget"], p["accuracy"]) for p in h.curves(draws=50)["points"]]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    path = tmp_path_factory.mktemp("single") / "samples.sqlite"
    h = harness(factory(), path)
    asyncio.run(h.run())
    curves = accuracies(h)
    h.store.close()
    return stored(path), curves


def test_ray_eval_stores_what_one_process_stores(cluster, single, tmp_path):
    from ponder.eval.ray_eval import RayEval

    path = tmp_path / "samples.sqlite"
    h = harness(None, path)
    seen = []
    h.on_update = lambda s: seen.append(s.problems_done)
    workers = RayEval(h, factory, workers=2, per_worker=2)
    try:
        workers.run()
    finally:
        workers.close()
    assert accuracies(h) == single[1]
    h.store.close()
    assert stored(path) == single[0]
    assert seen[-1] == len(PROBLEMS) and h.status.samples >= 4 * len(PROBLEMS)


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(cluster, single, tmp_path):
    from ponder.eval.ray_eval import RayEval

    path = tmp_path / "samples.sqlite"
    h = harness(None, path)
    workers = RayEval(h, functools.partial(factory, 0.05), workers=2, per_worker=1)
    victim = workers.pids()[1]

    def update(status):
        if status.problems_done == 3:
            os.kill(victim, signal.SIGKILL)

    h.on_update = update
    try:
        workers.run()
    finally:
        workers.close()
    assert workers.dead == {1}
    assert accuracies(h) == single[1]
    h.store.close()
    rows = stored(path)
    assert rows == single[0]  # every sample once: same keys, same texts
    per_problem = {}
    for key, pid, idx, *_ in rows:
        per_problem.setdefault((key, pid), []).append(idx)
    assert all(len(v) == len(set(v)) for v in per_problem.values())


def test_ray_resumes_a_partial_store(cluster, single, tmp_path):
    """Half the problems run in one process, the rest on Ray: the same store."""
    from ponder.eval.ray_eval import RayEval

    path = tmp_path / "samples.sqlite"
    first = Harness(factory(), Store(path), PROBLEMS[:5], ["self-consistency"], [1, 4], seed=3)
    asyncio.run(first.run())
    first.store.close()
    h = harness(None, path)
    workers = RayEval(h, factory, workers=2)
    try:
        workers.run()
    finally:
        workers.close()
    h.store.close()
    assert stored(path) == single[0]


def test_the_cli_on_ray_gives_the_report_one_process_gives(cluster, tmp_path):
    import json
    import subprocess
    import sys

    from test_pool import PROBLEMS as SUMS
    from test_pool import Replica

    replica = Replica(tmp_path, "r", "--ttft", "0.02")
    data = tmp_path / "sums.jsonl"
    data.write_text("\n".join(json.dumps(p) for p in SUMS[:10]) + "\n")
    try:
        reports = []
        for name, extra in (("one", []), ("ray", ["--ray", "--ray-workers", "2"])):
            proc = subprocess.run(
                [sys.executable, "-m", "ponder", "eval", "--dataset", str(data), "-m", "sim",
                 "--base-url", replica.url, "--strategies", "self-consistency",
                 "--budgets", "1,4", "--out", str(tmp_path / name), *extra],
                capture_output=True, text=True, timeout=300,
                env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"})
            assert proc.returncode == 0, proc.stderr
            reports.append(json.loads((tmp_path / name / "report.json").read_text()))
    finally:
        replica.kill()
    one, on_ray = ([(p["strategy"], p["budget"], p["accuracy"]) for p in r["points"]]
                   for r in reports)
    assert one == on_ray and len(one) == 3


def test_without_ray_one_clear_error(monkeypatch):
    import sys

    from ponder.errors import MissingDependency
    from ponder.eval.ray_eval import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingDependency, match=r"pip install 'ponder\[ray\]'"):
        import_ray()


def bundled(path: str):
    from ponder.backends.llamacpp import LlamaCppBackend

    return LlamaCppBackend(path, n_ctx=2048, n_seq_max=4, n_threads=1)


@pytest.mark.model
def test_ray_with_the_bundled_model_stores_what_one_process_stores(cluster, model_path, tmp_path):
    """Each Ray worker loads the bundled GGUF; one problem in flight per worker and in the
    single process, so every problem decodes alone and the samples are the same."""
    from ponder.eval.ray_eval import RayEval

    problems = PROBLEMS[:3]
    options = {"max_tokens": 24}

    def make(backend, path):
        return Harness(backend, Store(path), problems, ["self-consistency"], [1, 2], seed=5,
                       options=options, greedy=False)

    one = make(bundled(str(model_path)), tmp_path / "one.sqlite")
    asyncio.run(one.run())
    expected = accuracies(one)
    one.backend.close()
    one.store.close()
    h = make(None, tmp_path / "ray.sqlite")
    workers = RayEval(h, functools.partial(bundled, str(model_path)), workers=2, per_worker=1)
    try:
        workers.run()
    finally:
        workers.close()
    assert accuracies(h) == expected
    h.store.close()
    rows = stored(tmp_path / "ray.sqlite")
    assert rows == stored(tmp_path / "one.sqlite")
    assert len(rows) == 2 * len(problems)  # two samples per problem, each stored once
