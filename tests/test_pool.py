"""The endpoint pool against real OpenAI-compatible servers on localhost: simulated replicas
(bench/sim_replica.py, a scripted server) and the bundled model behind llama-cpp-python's."""

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from conftest import free_port, start_llama_server, stop_server
from helpers import scraped

from ponder.backends.endpoints import EndpointSpec, read_endpoints
from ponder.backends.loading import load_backend
from ponder.backends.pool import EndpointPool, affinity_key
from ponder.cli.main import main
from ponder.errors import BackendUnavailable, ConfigError
from ponder.server.metrics import Metrics
from ponder.types import GenerationRequest, Message, SamplingParams

SIM = Path(__file__).resolve().parents[1] / "bench" / "sim_replica.py"
PROBLEMS = [{"question": f"What is {a} + {b}?", "answer": f"#### {a + b}"}
            for a, b in [(a, 3 * a % 11) for a in range(2, 26)]]


class Replica:
    def __init__(self, tmp: Path, name: str, *flags: str) -> None:
        self.name, self.port = name, free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = tmp / f"{name}.jsonl"
        self.proc = subprocess.Popen(
            [sys.executable, str(SIM), "--port", str(self.port), "--name", name,
             "--log", str(self.log), *flags],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/models", timeout=1)
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"replica {name} did not start") from None
                time.sleep(0.1)

    def requests(self, generation_only: bool = True) -> list[dict]:
        if not self.log.exists():
            return []
        rows = [json.loads(line) for line in self.log.read_text().splitlines() if line]
        # the capability probe's own requests ("Say yes.", "Count from 1 to 10") are not work
        return [r for r in rows if not generation_only or r["prompt_tokens"] > 0
                and r["key"] not in PROBE_KEYS]

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _key(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:12]


PROBE_KEYS = {_key("Say yes."), _key("Count from 1 to 10, separated by commas and spaces.")}


@pytest.fixture
def replicas(tmp_path):
    started: list[Replica] = []

    def start(name: str, *flags: str) -> Replica:
        replica = Replica(tmp_path, name, *flags)
        started.append(replica)
        return replica

    yield start
    for replica in started:
        if replica.proc.poll() is None:
            replica.kill()


def ask(question: str, n: int = 1, prefill: str = "", seed: int = 7, **params) -> GenerationRequest:
    return GenerationRequest((Message("user", question),),
                             SamplingParams(max_tokens=64, seed=seed, **params), n=n,
                             prefill=prefill)


def pool_of(*urls: str, slots: int = 4, **options) -> EndpointPool:
    return EndpointPool("sim", [EndpointSpec(u, max_concurrent=slots) for u in urls], **options)


def test_samples_spread_over_both_and_each_question_stays_on_one(replicas):
    a, b = replicas("a"), replicas("b")

    async def go():
        pool = pool_of(a.url, b.url)
        try:
            rows = await pool.generate([ask(p["question"], n=4) for p in PROBLEMS])
            return rows, pool.endpoint_stats()
        finally:
            await pool.aclose()

    rows, stats = asyncio.run(go())
    assert [len(r) for r in rows] == [4] * len(PROBLEMS)
    on = defaultdict(set)
    for replica in (a, b):
        for r in replica.requests():
            on[r["key"]].add(replica.name)
    assert len(on) == len(PROBLEMS)
    assert all(len(servers) == 1 for servers in on.values())  # affinity: n samples together
    served = Counter(next(iter(s)) for s in on.values())
    assert min(served["a"], served["b"]) >= len(PROBLEMS) // 6  # balance across questions
    assert sum(s["samples"] for s in stats) == 4 * len(PROBLEMS)
    assert {s["url"] for s in stats} == {a.url, b.url}


def test_siblings_of_one_depth_and_judge_calls_share_an_endpoint(replicas):
    a, b = replicas("a"), replicas("b")
    questions = [p["question"] for p in PROBLEMS[:10]]

    async def go():
        # slots enough that the load bound never moves a request: affinity alone decides
        pool = pool_of(a.url, b.url, slots=64)
        try:
            # a search's depth: every node of one question continued from its own partial answer
            await pool.generate([ask(q, n=2, prefill=f"Step {k}: ") for q in questions
                                 for k in range(3)])
            # a judge's calls for one problem: one prompt per candidate, one affinity
            await pool.generate([GenerationRequest(
                (Message("user", f"Problem:\n{q}\n\nProposed solution:\n{c}"),),
                SamplingParams(max_tokens=4), affinity=q) for q in questions for c in "xyz"])
        finally:
            await pool.aclose()

    asyncio.run(go())
    siblings, judged = defaultdict(set), defaultdict(set)
    for replica in (a, b):
        for r in replica.requests():
            (siblings if r["prefill"] else judged)[r["key"]].add(replica.name)
    assert len(siblings) == 10 and all(len(s) == 1 for s in siblings.values())
    assert len(judged) == 30  # each judge prompt differs...
    by_problem = defaultdict(set)
    for replica in (a, b):
        for r in replica.requests():
            if not r["prefill"]:
                by_problem[r["key"]].add(replica.name)
    # ...yet one problem's three calls landed together
    judge_servers = defaultdict(set)
    for q in questions:
        for c in "xyz":
            judge_servers[q] |= by_problem[_key(f"Problem:\n{q}\n\nProposed solution:\n{c}")]
    assert all(len(s) == 1 for s in judge_servers.values())


def test_affinity_key_ignores_the_prefill_and_tells_questions_apart():
    assert affinity_key(ask("What is 1 + 2?", prefill="a")) == \
        affinity_key(ask("What is 1 + 2?", prefill="b"))
    assert affinity_key(ask("What is 1 + 2?")) != affinity_key(ask("What is 1 + 3?"))


def test_n_is_fanned_out_where_ignored_and_logprobs_go_where_they_come_back(replicas):
    plain, full = replicas("plain", "--no-n", "--no-logprobs"), replicas("full")

    async def go():
        pool = pool_of(plain.url, full.url)
        try:
            caps = await pool.probe()
            wide = await pool.generate([ask(p["question"], n=3) for p in PROBLEMS[:12]])
            with_lp = await pool.generate([ask(p["question"], n=2, logprobs=1)
                                           for p in PROBLEMS[:12]])
            return caps, wide, with_lp
        finally:
            await pool.aclose()

    caps, wide, with_lp = asyncio.run(go())
    assert caps.logprobs and not caps.parallel_n
    assert all(len(r) == 3 for r in wide) and all(len(r) == 2 for r in with_lp)
    assert all(c.logprobs for r in with_lp for c in r)
    plain_rows = plain.requests()
    assert plain_rows and all(r["n"] == 1 for r in plain_rows)  # n fanned out one by one
    assert not any(r["logprobs"] for r in plain_rows)  # it cannot serve those
    assert sum(r["logprobs"] for r in full.requests()) == 12


def test_same_samples_as_one_server_and_identical_across_routes(replicas):
    a, b = replicas("a"), replicas("b")

    async def go(urls):
        backend = load_backend("sim", urls)
        try:
            await backend.probe()
            rows = await backend.generate([ask(p["question"], n=3) for p in PROBLEMS[:8]])
            return [[c.text for c in r] for r in rows]
        finally:
            await backend.aclose()

    assert asyncio.run(go([a.url, b.url])) == asyncio.run(go([a.url]))


def test_a_replica_killed_mid_request_loses_nothing_and_counts_nothing_twice(replicas):
    a = replicas("a", "--ttft", "0.3", "--slots", "64")
    b = replicas("b", "--ttft", "0.3", "--slots", "64")
    seen: list[tuple[int, int]] = []

    async def go():
        pool = pool_of(a.url, b.url)
        try:
            await pool.probe()
            requests = [ask(p["question"], n=4).replace(
                on_sample=lambda i, c, q=q: seen.append((q, i)))
                for q, p in enumerate(PROBLEMS)]
            task = asyncio.ensure_future(pool.generate(requests))
            await asyncio.sleep(0.15)  # every request is in flight on a or b
            b.kill()
            rows = await task
            return rows, pool.endpoint_stats()
        finally:
            await pool.aclose()

    rows, stats = asyncio.run(go())
    assert [len(r) for r in rows] == [4] * len(PROBLEMS)
    assert sorted(seen) == sorted({(q, i) for q in range(len(PROBLEMS)) for i in range(4)})
    by_url = {s["url"]: s for s in stats}
    assert not by_url[b.url]["up"] and by_url[b.url]["errors"] >= 1
    assert by_url[b.url]["retried_samples"] > 0
    assert by_url[a.url]["samples"] == 4 * len(PROBLEMS)


def test_every_endpoint_down_is_one_clear_error(capsys):
    urls = [f"http://127.0.0.1:{free_port()}/v1", f"http://127.0.0.1:{free_port()}/v1"]
    code = main(["ask", "What is 2 + 3?", "-m", "sim", "--base-url", urls[0], "--base-url",
                 urls[1], "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert err[0].startswith("ponder: error: every endpoint is down:")
    assert urls[0] in err[0] and urls[1] in err[0]


def test_a_downed_endpoint_is_checked_back_in(replicas, tmp_path):
    a = replicas("a")
    port = free_port()
    late = f"http://127.0.0.1:{port}/v1"

    async def go():
        pool = pool_of(a.url, late)
        try:
            await pool.probe()
            assert [e.up for e in pool.endpoints] == [True, False]
            proc = subprocess.Popen(
                [sys.executable, str(SIM), "--port", str(port), "--name", "late"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                deadline = time.monotonic() + 30
                while not pool.endpoints[1].up and time.monotonic() < deadline:
                    await pool.generate([ask("What is 1 + 1?")])
                    await asyncio.sleep(0.2)
                return pool.endpoints[1].up, pool.capabilities
            finally:
                proc.kill()
                proc.wait()
        finally:
            await pool.aclose()

    up, caps = asyncio.run(go())
    assert up and caps.logprobs


def test_eval_over_two_replicas_with_one_killed_stores_every_sample_once(replicas, tmp_path):
    a = replicas("a", "--ttft", "0.08", "--slots", "8")
    b = replicas("b", "--ttft", "0.08", "--slots", "8")
    data = tmp_path / "sums.jsonl"
    data.write_text("\n".join(json.dumps(p) for p in PROBLEMS) + "\n")

    def run(out, *urls):
        flags = [x for u in urls for x in ("--base-url", u)]
        return subprocess.Popen(
            [sys.executable, "-m", "ponder", "eval", "--dataset", str(data), "-m", "sim",
             *flags, "--strategies", "self-consistency", "--budgets", "1,4",
             "--concurrency", "6", "--out", str(out), "--no-greedy"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    proc = run(tmp_path / "pool", a.url, b.url)
    deadline = time.monotonic() + 60
    while len(b.requests()) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    b.kill()  # mid-eval: some of its requests are in flight
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert len(a.requests()) > 0 and len(b.requests()) >= 4
    db = sqlite3.connect(tmp_path / "pool" / "samples.sqlite")
    rows = db.execute("SELECT problem_id, idx FROM samples").fetchall()
    db.close()
    per_problem = defaultdict(list)
    for pid, idx in rows:
        per_problem[pid].append(idx)
    assert len(per_problem) == len(PROBLEMS)
    assert all(sorted(v) == [0, 1, 2, 3] for v in per_problem.values())
    report = json.loads((tmp_path / "pool" / "report.json").read_text())
    endpoints = {e["url"]: e for e in report["config"]["endpoints"]}
    assert endpoints[b.url]["errors"] >= 1 and not endpoints[b.url]["up"]
    assert "| endpoint | up |" in (tmp_path / "pool" / "report.md").read_text()
    # the same run on one replica: the same samples, so the same accuracies
    single = run(tmp_path / "single", a.url)
    single.communicate(timeout=300)
    assert single.returncode == 0
    one = json.loads((tmp_path / "single" / "report.json").read_text())
    assert [(c["strategy"], c["budget"], c["accuracy"]) for c in one["points"]] == \
        [(c["strategy"], c["budget"], c["accuracy"]) for c in report["points"]]


def test_endpoints_file_and_its_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("GPU2_KEY", "secret")
    path = tmp_path / "endpoints.yaml"
    path.write_text("- url: http://gpu1:8000/v1\n  model: qwen\n  weight: 2\n"
                    "  max_concurrent: 32\n- {url: http://gpu2:8000/v1, key_env: GPU2_KEY}\n")
    specs = read_endpoints(path)
    assert specs == [EndpointSpec("http://gpu1:8000/v1", "qwen", None, 2.0, 32),
                     EndpointSpec("http://gpu2:8000/v1", None, "secret", 1.0, 64)]
    backend = load_backend(None, endpoints=path)
    assert isinstance(backend, EndpointPool) and backend.model == "qwen"
    asyncio.run(backend.aclose())
    bad = tmp_path / "bad.json"
    for text, message in [
        ('[{"url": "gpu1"}]', "url must be an http(s) URL"),
        ('[{"url": "http://a/v1", "wieght": 2}]', "unknown field(s) wieght"),
        ('[{"url": "http://a/v1", "key_env": "NOPE_NOT_SET"}]', "NOPE_NOT_SET is not set"),
        ('[{"url": "http://a/v1", "max_concurrent": 0}]', "max_concurrent must be"),
        ("[]", "non-empty list"),
    ]:
        bad.write_text(text)
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            read_endpoints(bad)


def test_metrics_and_ask_json_show_each_endpoint(replicas, capsys):
    a, b = replicas("a"), replicas("b")
    code = main(["ask", "What is 2 + 3?", "-m", "sim", "--base-url", a.url, "--base-url", b.url,
                 "-n", "4", "--json", "--no-progress", "--seed", "1"])
    assert code == 0
    usage = json.loads(capsys.readouterr().out)["usage"]
    endpoints = usage["endpoints"]
    assert {e["url"] for e in endpoints} == {a.url, b.url}
    assert sum(e["samples"] for e in endpoints) == 4
    assert sum(e["completion_tokens"] for e in endpoints) == usage["completion_tokens"]
    metrics = Metrics()
    metrics.endpoints = lambda: endpoints
    text = metrics.render()
    values = scraped(text)
    for e in endpoints:
        assert values[("ponder_endpoint_samples_total", (("endpoint", e["url"]),))] == \
            e["samples"]
        assert values[("ponder_endpoint_tokens_total",
                       (("endpoint", e["url"]), ("kind", "completion")))] == e["completion_tokens"]
        assert values[("ponder_endpoint_request_seconds_count", (("endpoint", e["url"]),))] == \
            e["latency_count"]


def test_all_down_during_a_run_raises_after_patience(replicas):
    a = replicas("a")

    async def go():
        pool = pool_of(a.url, patience=0.5)
        try:
            await pool.probe()
            a.kill()
            await pool.generate([ask("What is 1 + 1?")])
        finally:
            await pool.aclose()

    with pytest.raises(BackendUnavailable, match="every endpoint is down"):
        asyncio.run(go())


@pytest.mark.model
def test_a_real_llama_server_and_a_scripted_one_share_an_eval(replicas, model_path, tmp_path):
    sim = replicas("sim", "--ttft", "0.2")
    proc, url = start_llama_server(model_path, "smol", tmp_path / "llama.log")
    try:
        endpoints = tmp_path / "endpoints.json"
        # one slot each: whichever server the questions prefer, the third and fourth of the
        # four in flight overflow to the other (bounded load), so both serve samples
        endpoints.write_text(json.dumps([{"url": url, "model": "smol", "max_concurrent": 1},
                                         {"url": sim.url, "model": "sim", "max_concurrent": 1}]))
        data = tmp_path / "sums.jsonl"
        data.write_text("\n".join(json.dumps(p) for p in PROBLEMS[:8]) + "\n")
        out = tmp_path / "run"
        code = main(["eval", "--dataset", str(data), "--endpoints", str(endpoints),
                     "--strategies", "self-consistency", "--budgets", "2", "--max-tokens", "24",
                     "--concurrency", "4", "--out", str(out), "--no-greedy"])
        assert code == 0
        report = json.loads((out / "report.json").read_text())
        served = {e["url"]: e["samples"] for e in report["config"]["endpoints"]}
        assert served[url] > 0 and served[sim.url] > 0
        assert sum(served.values()) == 2 * 8
        db = sqlite3.connect(out / "samples.sqlite")
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT problem_id || '/' || idx) "
                          "FROM samples").fetchone() == (16, 16)
        db.close()
    finally:
        stop_server(proc)
    assert os.path.exists(tmp_path / "llama.log")


def test_work_waits_in_the_pool_and_no_replica_idles_while_it_waits(replicas):
    """Four questions that all prefer replica a, two slots per replica: a takes what fits and
    b, which no waiting question prefers, takes the rest instead of idling (placement by hash
    alone would queue all four on a)."""
    a, b = replicas("a", "--ttft", "0.2"), replicas("b", "--ttft", "0.2")

    async def go():
        pool = pool_of(a.url, b.url, slots=2)
        try:
            def prefers_a(question: str) -> bool:
                key = affinity_key(ask(question, n=2))
                return max(pool.endpoints, key=lambda e: e.rank(key)).url == a.url

            questions = [p["question"] for p in PROBLEMS if prefers_a(p["question"])][:4]
            assert len(questions) == 4
            rows = await pool.generate([ask(q, n=2) for q in questions])
            return rows, pool.endpoint_stats()
        finally:
            await pool.aclose()

    rows, stats = asyncio.run(go())
    assert [len(r) for r in rows] == [2] * 4
    samples = {s["url"]: s["samples"] for s in stats}
    assert samples[a.url] >= 2 and samples[b.url] >= 2 and sum(samples.values()) == 8
    assert {s["url"]: s["affinity_hits"] for s in stats}[b.url] == 0  # b only took overflow
    assert max(s["outstanding"] for s in stats) == 0
