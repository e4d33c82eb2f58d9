"""Several models in one run: models by role, what each spent (tokens and FLOPs-equivalent),
and the strategies that use a second model (cascade, verify-by-strong), pinned on scripted
backends: who is asked what, in which order, and what wins."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys

import pytest

from ponder import asolve
from ponder.backends.fake import ScriptedBackend
from ponder.backends.loading import split_role
from ponder.errors import ConfigError
from ponder.strategies.verify_by_strong import prefers_a
from ponder.types import Completion, TokenLogprob
from ponder.view import view_of_result

Q = "A farmer has 17 sheep and buys 5 more. How many sheep does he have?"


def run(strategy: str, small: ScriptedBackend, strong: ScriptedBackend | None, **options):
    models = {"strong": strong} if strong is not None else None
    return asyncio.run(asolve(Q, strategy, backend=small, models=models, seed=1, **options))


def asked(backend: ScriptedBackend) -> list[str]:
    return [r.messages[-1].content for r in backend.history]


# -- roles ---------------------------------------------------------------------------------

def test_a_role_is_a_word_before_the_first_equals_sign():
    assert split_role("strong=models/q 1.5b.gguf") == ("strong", "models/q 1.5b.gguf")
    assert split_role("judge=http://h:8000/v1#qwen") == ("judge", "http://h:8000/v1#qwen")
    assert split_role("models/small.gguf") == (None, "models/small.gguf")
    assert split_role("./a=b.gguf") == (None, "./a=b.gguf")  # not a role: a path
    with pytest.raises(ConfigError, match="the strong model names nothing"):
        split_role("strong=")


def test_a_strategy_that_needs_a_strong_model_is_refused_without_one():
    small = ScriptedBackend(["The answer is 22."] * 4)
    with pytest.raises(ConfigError, match=r"needs a strong model .*--model strong=PATH.gguf"):
        run("cascade", small, None)
    assert small.history == []  # refused before anything ran


def test_a_role_that_is_not_a_word_is_refused():
    small = ScriptedBackend(["The answer is 22."])
    with pytest.raises(ConfigError, match="lower-case word"):
        asyncio.run(asolve(Q, "cot", backend=small, models={"Strong Model": small}))


# -- cost per model ---------------------------------------------------------------------------

def test_each_model_is_charged_its_own_tokens_and_flops():
    small = ScriptedBackend(["so 22. The answer is 22.", "The answer is 21.",
                             "The answer is 23.", "The answer is 22."],
                            model="small", parameters=500_000_000)
    strong = ScriptedBackend(["17 + 5 = 22. The answer is 22."], model="strong",
                             parameters=1_500_000_000)
    result = run("cascade", small, strong, n=4, threshold=0.75)
    assert set(result.models) == {"small", "strong"}
    s, b = result.models["small"], result.models["strong"]
    # the small model: one call, its prompt once and 6+4+4+4 words; the strong one: one call
    assert s.usage.completion_tokens == 18 and s.usage.calls == 1
    assert b.usage.completion_tokens == 9 and b.usage.calls == 1
    assert result.usage.total_tokens == s.usage.total_tokens + b.usage.total_tokens
    assert s.flops == 2 * 500_000_000 * s.usage.total_tokens
    assert b.flops == 2 * 1_500_000_000 * b.usage.total_tokens
    assert result.flops == s.flops + b.flops
    assert result.to_dict()["models"]["strong"]["parameters"] == 1_500_000_000


def test_a_model_of_unknown_size_leaves_the_flops_unknown():
    small = ScriptedBackend(["The answer is 22."], model="small")
    result = asyncio.run(asolve(Q, "cot", backend=small))
    assert result.models["small"].usage.completion_tokens == 4
    assert result.flops is None


# -- cascade -----------------------------------------------------------------------------------

def test_cascade_keeps_the_small_answer_when_the_samples_agree():
    small = ScriptedBackend(["The answer is 22."] * 3 + ["The answer is 21."], model="small")
    strong = ScriptedBackend([], model="strong")
    result = run("cascade", small, strong, n=4, threshold=0.75)
    assert result.answer == "22"
    assert strong.history == []  # 3 of 4 agree: 0.75 is not below the threshold
    [decision] = [n for n in result.trace.nodes if n.data.get("signal")]
    assert decision.data["evidence"] == 0.75 and decision.data["escalated"] is False


def test_cascade_escalates_a_split_vote_and_the_strong_answer_wins():
    small = ScriptedBackend(["The answer is 21.", "The answer is 21.", "The answer is 22.",
                             "The answer is 23."], model="small")
    strong = ScriptedBackend(["17 + 5 = 22. The answer is 22."], model="strong")
    result = run("cascade", small, strong, n=4, threshold=0.75, hints=True)
    assert result.answer == "22"  # the small vote said 21
    [request] = strong.history
    assert request.params.temperature == 0.0 and request.n == 1  # one greedy answer
    # the strong model sees the question and, with hints, what the small one answered
    assert Q in request.messages[-1].content
    assert "'21' (2x), '22' (1x), '23' (1x)" in request.messages[-1].content
    [decision] = [n for n in result.trace.nodes if n.data.get("signal")]
    assert decision.data["evidence"] == 0.5 and decision.data["escalated"] is True
    by = [c.metadata["model"] for c in result.candidates]
    assert by == ["small"] * 4 + ["strong"]


def test_cascade_margin_signal_and_the_small_vote_when_the_strong_model_has_no_answer():
    small = ScriptedBackend(["The answer is 21.", "The answer is 21.", "The answer is 21.",
                             "The answer is 22."], model="small")
    strong = ScriptedBackend(["I cannot tell."], model="strong")
    # margin (3 - 1) / 4 = 0.5 < 0.6: escalate; the strong reply has no answer: 21 stands
    result = run("cascade", small, strong, n=4, signal="margin", threshold=0.6)
    assert len(strong.history) == 1
    assert result.answer == "21"


def test_cascade_strong_n_votes_among_the_strong_samples():
    small = ScriptedBackend(["The answer is 21.", "The answer is 23."], model="small")
    strong = ScriptedBackend(["The answer is 22.", "The answer is 24.", "The answer is 22."],
                             model="strong")
    result = run("cascade", small, strong, n=2, strong_n=3, strong_temperature=0.5)
    assert result.answer == "22"
    [request] = strong.history
    assert request.n == 3 and request.params.temperature == 0.5


# -- verify-by-strong ----------------------------------------------------------------------

def test_verify_by_strong_asks_nothing_when_every_answer_agrees():
    small = ScriptedBackend(["The answer is 22."] * 3, model="small")
    strong = ScriptedBackend([], model="strong")
    result = run("verify-by-strong", small, strong, n=3)
    assert result.answer == "22" and strong.history == []


def test_verify_by_strong_pointwise_judges_one_per_group_and_the_best_score_wins():
    small = ScriptedBackend(["x 21. The answer is 21.", "The answer is 21.",
                             "y 22. The answer is 22.", "The answer is 21."], model="small")
    # judged in group order: 21 (3 votes) then 22 (1 vote); the strong model trusts only 22
    strong = ScriptedBackend(["No", "Yes"], model="strong")
    result = run("verify-by-strong", small, strong, n=4)
    assert result.answer == "22"
    assert len(strong.history) == 2
    # each judge prompt starts with the problem (a shared prefix) and shows one group's
    # representative: its first member
    first, second = (r.messages[-1].content for r in strong.history)
    assert first.startswith(f"Problem:\n{Q}") and second.startswith(f"Problem:\n{Q}")
    assert "x 21." in first and "y 22." in second
    scores = {c.answer: c.score for c in result.candidates if c.score is not None}
    assert scores == {"21": 0.0, "22": 1.0}


def yes(p: float) -> Completion:
    """A verdict whose first token puts P(yes) = p."""
    top = (("Yes", math.log(p)), ("No", math.log(1 - p)))
    return Completion("Yes" if p >= 0.5 else "No",
                      logprobs=(TokenLogprob("Yes" if p >= 0.5 else "No", 0.0, top),))


def test_verify_by_strong_weighted_multiplies_votes_by_verdicts():
    """Three votes for 21 judged 0.6, two for 22 judged 0.95, one for 23 judged 0.99: the best
    verdict picks 23; weighted, 22 (1.9 against 21's 1.8 and 23's 0.99)."""
    texts = ["The answer is 21."] * 3 + ["The answer is 22."] * 2 + ["The answer is 23."]
    trust = {"21": 0.6, "22": 0.95, "23": 0.99}

    def judge(request, index):
        proposed = request.messages[-1].content.split("Proposed final answer: ")[1].split()[0]
        return yes(trust[proposed])

    picks = {}
    for combine in ("best", "weighted"):
        small = ScriptedBackend(list(texts), model="small")
        strong = ScriptedBackend(judge, model="strong")
        result = run("verify-by-strong", small, strong, n=6, combine=combine)
        picks[combine] = result.answer
        assert len(strong.history) == 3  # one verdict per answer group either way
    assert picks == {"best": "23", "weighted": "22"}


def test_verify_by_strong_pointwise_ties_go_to_the_larger_group():
    small = ScriptedBackend(["The answer is 21.", "The answer is 22.", "The answer is 22."],
                            model="small")
    strong = ScriptedBackend(["Yes", "Yes"], model="strong")
    assert run("verify-by-strong", small, strong, n=3).answer == "22"


def test_verify_by_strong_tournament_meets_groups_by_votes_and_asks_both_orders():
    small = ScriptedBackend(["The answer is 21.", "The answer is 21.", "The answer is 21.",
                             "The answer is 22.", "The answer is 22.", "The answer is 23."],
                            model="small")
    # match 1: 21 (champion, 3 votes) vs 22; A=21 first: "B", then A=22: "A" -> 22 wins
    # match 2: 22 vs 23; A=22: "A", swapped A=23: "B" -> 22 stays
    strong = ScriptedBackend(["B", "A", "A", "B"], model="strong")
    result = run("verify-by-strong", small, strong, n=6, method="tournament")
    assert result.answer == "22"
    prompts = asked(strong)
    assert len(prompts) == 4
    assert "Final answer A: 21" in prompts[0] and "Final answer B: 22" in prompts[0]
    assert "Final answer A: 22" in prompts[1] and "Final answer B: 21" in prompts[1]
    assert "Final answer A: 22" in prompts[2] and "Final answer B: 23" in prompts[2]
    [decision] = [n for n in result.trace.nodes if n.data.get("wins") is not None]
    assert {w["answer"]: w["wins"] for w in decision.data["wins"]} == {"21": 0, "22": 2,
                                                                       "23": 0}


def test_a_split_pairwise_verdict_keeps_the_champion():
    small = ScriptedBackend(["The answer is 21.", "The answer is 21.", "The answer is 22."],
                            model="small")
    strong = ScriptedBackend(["A", "A"], model="strong")  # position bias: always A
    assert run("verify-by-strong", small, strong, n=3, method="tournament").answer == "21"


def test_a_pairwise_preference_reads_the_first_tokens_probabilities():
    import math

    top = (("A", math.log(0.2)), ("B", math.log(0.6)), (" b", math.log(0.2)))
    assert prefers_a("A", top) == pytest.approx(0.2)
    assert prefers_a("Answer: B", None) == 0.0
    assert prefers_a("neither", None) is None
    completion = Completion(text="A", logprobs=(TokenLogprob("A", -0.1, top),))
    assert completion.logprobs[0].top == top


# -- real models ---------------------------------------------------------------------------

def ask(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ponder", "ask", *args, "--no-progress"],
                          capture_output=True, text=True, timeout=600)


def test_two_in_process_models_in_one_cascade(model_path, kquant):
    """The bundled model generates, its Q4_K_M copy plays the strong model: threshold 1.0
    escalates any split vote; each model is charged its own tokens and its FLOPs."""
    proc = ask("What is 17 + 5?", "-s", "cascade", "-m", str(model_path),
               "-m", f"strong={kquant}", "-n", "3", "-o", "threshold=1.0",
               "--max-tokens", "48", "--seed", "3", "-o", "temperature=1.0", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    small, strong = data["models"][model_path.name], data["models"][kquant.name]
    assert small["calls"] == 1 and small["completion_tokens"] > 0
    [decision] = [n for n in data["trace"]["nodes"] if "escalated" in n.get("data", {})]
    if decision["data"]["escalated"]:
        assert strong["calls"] == 1 and strong["completion_tokens"] > 0
    else:  # three samples agreed
        assert strong["calls"] == 0
    # both files hold the same 135M-parameter network
    assert small["parameters"] == strong["parameters"] > 100_000_000
    assert small["flops"] == 2 * small["parameters"] * small["total_tokens"]
    assert data["flops"] == small["flops"] + strong["flops"]
    assert data["usage"]["total_tokens"] == small["total_tokens"] + strong["total_tokens"]


SHEEP = "A farmer has 17 sheep, buys 5 more and then sells 9. How many sheep does he have?"


@pytest.mark.parametrize("strategy, options", [
    ("verify-by-strong", ["-n", "4", "-o", "temperature=1.0"]),
    ("mixture-of-agents", ["-o", "proposers=generator,strong", "-o", "n_per_proposer=1",
                           "-o", "layers=1", "-o", "aggregator=strong"]),
    ("particle-filtering", ["-n", "2", "-o", "scorer_role=strong", "-o", "max_steps=2"]),
])
def test_two_real_models_play_their_roles_and_the_view_draws_the_run(model_path, kquant,
                                                                     strategy, options):
    """The bundled model generates, its Q4_K_M copy is the strong model: each call goes to the
    model its role names, each model is charged its own calls, and ponder view draws the run
    with the strategy's own section."""
    proc = ask(SHEEP, "-s", strategy, *options, "-m", str(model_path), "-m", f"strong={kquant}",
               "--max-tokens", "48", "--seed", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    small, strong = model_path.name, kquant.name
    nodes = data["trace"]["nodes"]
    by = {name: [n for n in nodes if n["kind"] == "generate"
                 and n.get("data", {}).get("model") == name] for name in (small, strong)}
    calls = {name: data["models"].get(name, {}).get("calls", 0) for name in (small, strong)}
    sections = view_of_result(data)["sections"]
    if strategy == "verify-by-strong":
        # four samples in one call; the strong model judges one member of each answer group
        # (nothing when all four agree)
        assert calls[small] == 1 and len(by[small]) == 4
        answers = {c["answer"] for c in data["candidates"]}
        judged = [n for n in by[strong] if n["label"].startswith("judge")]
        assert len(judged) == calls[strong] != 1  # one group alone is never judged
        assert len(judged) <= len(answers) and (len(answers) > 1 or not judged)
        assert ("verdicts" in sections) == bool(judged)
    elif strategy == "mixture-of-agents":
        # one layer: each proposer answers once, then the strong model aggregates
        assert [n["label"].split()[0] for n in by[small]] == ["proposer"]
        assert sorted(n["label"].split()[0] for n in by[strong]) == ["aggregator", "proposer"]
        assert (calls[small], calls[strong]) == (1, 2)
        assert "layers" in sections
    else:
        # the small model writes every step, the strong model judges every step
        steps = [n for n in by[small] if n["label"].startswith("step")]
        judged = [n for n in by[strong] if n["label"].startswith("judge step")]
        assert steps and len(judged) == len(steps) and by[small] == steps
        assert calls[strong] == len(judged)
        assert "particles" in sections
    assert data["usage"]["total_tokens"] == sum(
        m["total_tokens"] for m in data["models"].values())


def test_a_missing_role_is_one_line_on_the_command_line(model_path):
    proc = ask("What is 17 + 5?", "-s", "verify-by-strong", "-m", str(model_path))
    assert proc.returncode != 0
    assert "needs a strong model" in proc.stderr and "--model strong=" in proc.stderr
    assert "Traceback" not in proc.stderr
    twice = ask("What is 17 + 5?", "-s", "cascade", "-m", "a.gguf", "-m", "b.gguf")
    assert twice.returncode != 0 and "two generator models" in twice.stderr


def test_a_served_models_size_is_the_operators_and_a_gguf_knows_its_own(model_path):
    from ponder.backends.loading import load_role

    served = load_role("http://127.0.0.1:9/v1#qwen-7b", parameters="7.6e9")
    assert served.model == "qwen-7b" and served.parameters == 7_600_000_000
    local = load_role(str(model_path), parameters="7.6e9")  # ignored: the file says its size
    assert 100_000_000 < local.parameters < 200_000_000
    with pytest.raises(ConfigError, match="URL#NAME"):
        load_role("http://127.0.0.1:9/v1")
    with pytest.raises(ConfigError, match="positive number"):
        load_role("http://127.0.0.1:9/v1#q", parameters=-3)


# -- ponder eval with models by role ----------------------------------------------------------

def test_eval_charges_a_cascade_both_models_tokens_and_flops(tmp_path):
    from ponder.eval.harness import Harness
    from ponder.eval.store import Store
    from ponder.types import Problem

    problems = [Problem("a?", "5", "A"), Problem("b?", "4", "B")]
    small = ScriptedBackend(lambda request, i: ["The answer is 5", "The answer is 7"][i % 2],
                            model="small", parameters=500_000_000)
    strong = ScriptedBackend(lambda request, i: "The answer is 4", model="strong",
                             parameters=1_500_000_000)
    store = Store(tmp_path / "samples.sqlite")
    h = Harness(small, store, problems, ["cascade"], [2], greedy=False, models={"strong": strong})
    asyncio.run(h.run())
    # each problem: the small model's 2 samples split 5/7 (agreement 0.5 < 0.75): escalated
    assert len(small.history) == 2 and len(strong.history) == 2
    [point] = h.curves()["points"]
    assert point["tokens"] == 2 * 4 + 4  # both models' generated tokens, not the small one's
    flops = []
    for p in problems:
        row = store.result(h.plans[0].key, p.id, 2)
        assert set(row.models) == {"small", "strong"}
        s, b = row.models["small"], row.models["strong"]
        assert (s["completion_tokens"], b["completion_tokens"]) == (8, 4)
        flops.append(2 * 500_000_000 * s["total_tokens"] + 2 * 1_500_000_000 * b["total_tokens"])
    assert point["flops"] == pytest.approx(sum(flops) / 2)
    assert point["accuracy"] == 0.5  # the strong model said 4: right for B, wrong for A


def test_eval_flops_of_sampled_points_are_the_generators(tmp_path):
    from ponder.eval.harness import Harness
    from ponder.eval.store import Store
    from ponder.types import Problem

    problems = [Problem("a?", "5", "A")]
    fake = ScriptedBackend(lambda request, i: "so it is 5. The answer is 5", parameters=1000)
    store = Store(tmp_path / "samples.sqlite")
    h = Harness(fake, store, problems, ["self-consistency"], [1, 2], greedy=False)
    asyncio.run(h.run())
    rows = store.samples(h.plans[0].pools[0].key, "A")
    read = sum(r.prompt_tokens + r.completion_tokens for r in rows) / len(rows)
    points = {p["budget"]: p for p in h.curves()["points"]}
    assert rows[0].completion_tokens == 8  # the fake counts "5." as two tokens
    assert points[2]["tokens"] == 2 * 8
    assert points[1]["flops"] == pytest.approx(2 * 1000 * read)
    assert points[2]["flops"] == pytest.approx(2 * 1000 * 2 * read)
    unknown = Harness(ScriptedBackend(["The answer is 5"] * 2), Store(tmp_path / "u.sqlite"),
                      problems, ["self-consistency"], [2], greedy=False)
    asyncio.run(unknown.run())
    assert unknown.curves()["points"][0]["flops"] is None  # a model of unknown size


def eval_two(dataset, out, strong, *extra):
    return subprocess.run(
        [sys.executable, "-m", "ponder", "eval", "--dataset", str(dataset), "--strategies",
         "cascade[threshold=1.0]", "--budgets", "2", "--max-tokens", "16", "--no-greedy",
         "--concurrency", "1", "--out", str(out), *strong, *extra],
        capture_output=True, text=True, timeout=600)


def test_ponder_eval_runs_a_two_model_cascade_and_keeps_its_strong_model(model_path, kquant,
                                                                       tmp_path):
    import sqlite3

    from ponder.backends.models import file_sha256

    dataset = tmp_path / "tiny.jsonl"
    dataset.write_text("".join(json.dumps({"question": f"What is {a} + {b}?",
                                           "answer": f"#### {a + b}"}) + "\n"
                               for a, b in [(2, 3), (4, 4)]))
    missing = eval_two(dataset, tmp_path / "none", [])
    assert missing.returncode == 1 and "needs a strong model" in missing.stderr
    assert "Traceback" not in missing.stderr and not (tmp_path / "none").exists()

    out = tmp_path / "run"
    proc = eval_two(dataset, out, ["-m", str(model_path), "-m", f"strong={kquant}"])
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["roles"]["strong"]["sha256"] == file_sha256(kquant)
    [point] = report["points"]
    db = sqlite3.connect(out / "samples.sqlite")
    costs = [json.loads(m) for (m,) in db.execute("SELECT models FROM results")]
    assert len(costs) == 2
    for cost in costs:  # threshold 1.0: any split vote went to the strong model
        assert set(cost) <= {model_path.name, kquant.name} and model_path.name in cost
        for model in cost.values():
            assert model["flops"] == 2 * model["parameters"] * model["total_tokens"]
    mean = sum(sum(m["flops"] for m in c.values()) for c in costs) / 2
    assert point["flops"] == pytest.approx(mean)
    assert point["tokens"] == sum(sum(m["completion_tokens"] for m in c.values())
                                  for c in costs) / 2
    md = (out / "report.md").read_text()
    assert "FLOPs/problem" in md and f"The strong model: `{kquant}`" in md

    # the folder keeps its strong model: another one in that role is refused
    other = eval_two(dataset, out, ["-m", str(model_path), "-m", f"strong={model_path}"])
    assert other.returncode == 1 and "model_sha256:strong" in other.stderr


# -- ponder serve with models by role ---------------------------------------------------------

def test_ponder_serve_with_a_strong_model_answers_a_cascade(model_path, kquant):
    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "ponder", "serve", "-m", str(model_path),
                             "-m", f"strong={kquant}", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ponder serving ") and f"strong model {kquant.name}" in line, line
        url = line.split(" at ", 1)[1].split()[0]
        ids = [m["id"] for m in httpx.get(f"{url}/models", timeout=30).json()["data"]]
        assert "ponder-cascade" in ids and "ponder-verify-by-strong" in ids
        reply = httpx.post(f"{url}/chat/completions", timeout=300, json={
            "model": "ponder-cascade", "max_tokens": 24, "seed": 1,
            "ponder": {"n": 2, "options": {"threshold": 1.0}},
            "messages": [{"role": "user", "content": "What is 17 + 5?"}]})
        assert reply.status_code == 200, reply.text
        assert reply.json()["usage"]["completion_tokens"] > 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def test_ponder_serve_refuses_bad_roles_in_one_line(tmp_path):
    config = tmp_path / "serve.json"
    config.write_text(json.dumps({"models": {"Big Model": "x.gguf"}}))
    for args, said in ((["--config", str(config)], "models.Big Model"),
                       (["-m", "strong=/nowhere/big.gguf"], "model file not found"),
                       (["-m", "strong=http://127.0.0.1:9/v1"], "URL#NAME")):
        proc = subprocess.run([sys.executable, "-m", "ponder", "serve", "--port", "0", *args],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1 and said in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


# -- prices per million tokens ------------------------------------------------------------------

def test_prices_are_read_as_an_operator_writes_them():
    from ponder.backends.base import parse_prices
    from ponder.backends.loading import scoped_options
    from ponder.types import Prices

    assert parse_prices("0.15/0.60") == Prices(0.15, 0.6)
    assert parse_prices(2) == Prices(2.0, 2.0)
    assert parse_prices({"input": 1, "output": 4}) == Prices(1.0, 4.0)
    assert parse_prices(None) is None
    for bad in ("cheap", "1/2/3", "-1/2", {"input": 1}, "inf/1"):
        with pytest.raises(ConfigError, match="dollars per million"):
            parse_prices(bad)
    options = {"n_ctx": 4096, "price": "0.1/0.4", "strong.price": "2/8", "strong.n_ctx": 8192}
    assert scoped_options(options, None) == {"n_ctx": 4096, "price": "0.1/0.4"}
    assert scoped_options(options, "strong") == {"n_ctx": 8192, "price": "2/8"}
    assert scoped_options(options, "judge") == {"n_ctx": 4096}  # a price is never inherited


def test_a_priced_run_costs_each_models_tokens_at_its_prices():
    from ponder.types import Prices

    small = ScriptedBackend(["The answer is 22.", "The answer is 21."], model="small")
    strong = ScriptedBackend(["17 + 5 = 22. The answer is 22."], model="strong")
    small.prices, strong.prices = Prices(0.10, 0.40), Prices(2.0, 8.0)
    result = run("cascade", small, strong, n=2, threshold=0.75)
    s, b = result.models["small"], result.models["strong"]
    assert s.dollars == pytest.approx((s.usage.prompt_tokens * 0.10
                                       + s.usage.completion_tokens * 0.40) / 1e6)
    assert b.dollars == pytest.approx((b.usage.prompt_tokens * 2.0
                                       + b.usage.completion_tokens * 8.0) / 1e6)
    assert result.dollars == pytest.approx(s.dollars + b.dollars)
    assert result.to_dict()["models"]["strong"]["prices"] == {"input": 2.0, "output": 8.0}
    # one model unpriced: the run's dollars are unknown, not a guess
    unpriced = ScriptedBackend(["The answer is 22."], model="strong")
    small = ScriptedBackend(["The answer is 22.", "The answer is 21."], model="small")
    small.prices = Prices(0.10, 0.40)
    assert run("cascade", small, unpriced, n=2).dollars is None


def test_an_endpoints_file_prices_and_sizes_a_pool(tmp_path):
    from ponder.backends.loading import load_backend
    from ponder.types import Prices

    path = tmp_path / "endpoints.json"
    path.write_text(json.dumps([
        {"url": "http://127.0.0.1:9/v1", "price": "0.2/0.8", "parameters": 7.6e9},
        {"url": "http://127.0.0.1:10/v1", "price": {"input": 0.2, "output": 0.8}}]))
    pool = load_backend("qwen-7b", endpoints=str(path))
    assert pool.prices == Prices(0.2, 0.8) and pool.parameters == 7_600_000_000
    assert load_backend("qwen-7b", endpoints=str(path), price="1/1").prices == Prices(1.0, 1.0)
    path.write_text(json.dumps([{"url": "http://127.0.0.1:9/v1", "price": "0.2/0.8"},
                                {"url": "http://127.0.0.1:10/v1", "price": "0.3/0.8"}]))
    with pytest.raises(ConfigError, match="different price"):
        load_backend("qwen-7b", endpoints=str(path))
    path.write_text(json.dumps([{"url": "http://127.0.0.1:9/v1", "price": "free"}]))
    with pytest.raises(ConfigError, match="entry 1: price is dollars per million"):
        load_backend("qwen-7b", endpoints=str(path))


def test_eval_points_carry_dollars_where_the_generator_is_priced(tmp_path):
    from ponder.eval.harness import Harness
    from ponder.eval.report import header
    from ponder.eval.store import Store
    from ponder.types import Prices, Problem

    fake = ScriptedBackend(lambda request, i: "The answer is 5")
    fake.prices = Prices(1.0, 3.0)
    h = Harness(fake, Store(tmp_path / "s.sqlite"), [Problem("a?", "5", "A")],
                ["self-consistency"], [2], greedy=True)
    asyncio.run(h.run())
    data = h.curves()
    rows = h.store.samples(h.plans[1].pools[0].key, "A")
    prompt = sum(r.prompt_tokens for r in rows[:2])
    points = {p["strategy"]: p for p in data["points"]}
    assert points["self-consistency"]["dollars"] == pytest.approx((prompt * 1.0 + 8 * 3.0) / 1e6)
    greedy = h.store.result(h.plans[0].key, "A", 1)
    assert points["greedy"]["dollars"] == pytest.approx(
        (greedy.prompt_tokens * 1.0 + greedy.completion_tokens * 3.0) / 1e6)
    assert "$/problem" in header(data) and "FLOPs/problem" not in header(data)


def test_ponder_ask_prices_each_model_with_its_own_option(model_path, kquant):
    proc = ask("What is 17 + 5?", "-s", "cascade", "-m", str(model_path),
               "-m", f"strong={kquant}", "-n", "2", "-o", "threshold=1.0", "--max-tokens", "24",
               "-B", "price=0.1/0.4", "-B", "strong.price=2/8", "--seed", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    small = data["models"][model_path.name]
    assert small["prices"] == {"input": 0.1, "output": 0.4}
    assert small["dollars"] == pytest.approx((small["prompt_tokens"] * 0.1
                                              + small["completion_tokens"] * 0.4) / 1e6)
    strong = data["models"].get(kquant.name)
    if strong is not None:  # escalated (threshold 1.0: any split vote)
        assert strong["prices"] == {"input": 2.0, "output": 8.0}
        assert data["dollars"] == pytest.approx(small["dollars"] + strong["dollars"])


def test_a_store_from_before_costs_per_model_is_read_unchanged_and_written_with_them(tmp_path):
    import sqlite3

    from ponder.eval.store import SCHEMA, ResultRow, Store

    path = tmp_path / "samples.sqlite"
    old = sqlite3.connect(path)
    old.execute("PRAGMA journal_mode=WAL")  # as every store ponder writes
    old.executescript(SCHEMA)  # the results table as it was: no models column
    old.execute("INSERT INTO results VALUES ('k', 'A', 1, '5', 1, 10, 4, 1, 0.5, '[]')")
    old.commit()
    old.close()
    before = path.read_bytes()
    store = Store(path)
    row = store.result("k", "A", 1)
    assert (row.answer, row.models, row.flops) == ("5", None, None)
    store.close()
    assert path.read_bytes() == before  # a committed store opened to read stays as it was
    store = Store(path)
    store.add_result("k", "B", ResultRow(1, "4", True, 10, 4, 1, 0.5, [],
                                         {"m": {"flops": 28.0, "total_tokens": 14}}))
    assert store.result("k", "B", 1).flops == 28.0 and store.result("k", "A", 1).models is None
    store.close()


# -- an endpoints file names the servers of each role ------------------------------------------

def test_an_endpoints_file_names_each_roles_servers(tmp_path):
    from test_pool import Replica

    from ponder.backends.endpoints import endpoint_roles, endpoint_specs

    small, big = Replica(tmp_path, "a", "--model", "sim"), Replica(tmp_path, "b", "--model", "big")
    try:
        path = tmp_path / "endpoints.json"
        path.write_text(json.dumps([
            {"url": small.url, "model": "sim", "parameters": 5e8},
            {"url": big.url, "model": "big", "role": "strong", "parameters": 7e9,
             "price": "2/8"}]))
        assert [s.url for s in endpoint_specs(None, str(path))] == [small.url]  # the generator's
        assert endpoint_roles(str(path)) == {"strong": f"endpoints:{path}#strong"}
        proc = ask("What is 2 + 3?", "-s", "mixture-of-agents", "--endpoints", str(path),
                   "-o", "aggregator=strong", "-o", "layers=1", "-o", "n_per_proposer=1",
                   "--max-tokens", "16", "--json")
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        assert data["models"]["sim"]["parameters"] == 500_000_000
        strong = data["models"]["big"]
        assert strong["calls"] == 1 and strong["parameters"] == 7_000_000_000
        assert strong["dollars"] == pytest.approx((strong["prompt_tokens"] * 2
                                                   + strong["completion_tokens"] * 8) / 1e6)
        assert big.requests() and small.requests()  # each role's server was asked
    finally:
        small.kill()
        big.kill()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"url": "http://127.0.0.1:9/v1", "role": "Strong Model"}]))
    proc = ask("What is 2 + 3?", "--endpoints", str(bad))
    assert proc.returncode == 1 and "role must be a lower-case word" in proc.stderr
