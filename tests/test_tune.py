"""``ponder tune`` end to end on the scripted backend: the known-best configuration is found, the
held-out confirmation reads only held-out problems, and the presets it writes run in ask, eval
and serve."""

import asyncio
import collections
import json
import os
import re
import signal
import sqlite3
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import ponder.cli.endpoints as endpoints_cli
import ponder.cli.tune as tune_cli
import ponder.eval.session as session
import ponder.tune.search as search
from ponder import registry
from ponder.backends import loading
from ponder.backends.fake import ScriptedBackend
from ponder.backends.models import ModelSpec
from ponder.cli.main import main
from ponder.errors import ConfigError
from ponder.eval.store import Store
from ponder.presets import load_preset, register_preset
from ponder.server.app import PonderServer
from ponder.strategies.prompts import PROGRAM_SYSTEM
from ponder.types import Completion, Problem, TokenLogprob

PROBLEMS = 12
BAD = "Working it out. The answer is: 999"


def gold(i: int) -> str:
    return str(10 + i)


def question(i: int) -> str:
    return f"Problem {i}: what is the secret number?"


def _said(text: str, logprob: float) -> Completion:
    return Completion(text=text, logprobs=tuple(TokenLogprob(w, logprob) for w in text.split()))


SEEN: collections.Counter = collections.Counter()  # samples drawn per problem and setting


@pytest.fixture(autouse=True)
def _fresh_counts():
    SEEN.clear()


def respond(request, index):
    """At T=1 no answer at all; at T=0.7 every four samples of a problem hold one right answer,
    confident, and three copies of a wrong one, unsure: the majority is always wrong, the
    confidence-weighted vote right whenever the right sample is among those it sees. (Counted
    per problem and setting, not per call: tune draws a first sample, then the rest.)"""
    words = request.messages[-1].content.split()
    i = int(words[1].rstrip(":"))
    if request.params.temperature == 1.0:
        return _said("I am not sure here", -3.0)
    key = (i, request.params.temperature, request.messages[0].content)
    position, SEEN[key] = SEEN[key], SEEN[key] + 1
    if position % 4 == i % 4:
        return _said(f"Working it out. The answer is: {gold(i)}", -0.05)
    return _said(BAD, -2.0)


@pytest.fixture
def dev(tmp_path):
    path = tmp_path / "dev.jsonl"
    path.write_text("".join(json.dumps({"question": question(i), "answer": f"#### {gold(i)}"})
                            + "\n" for i in range(PROBLEMS)))
    return path


@pytest.fixture
def scripted(monkeypatch):
    for module in (endpoints_cli, session):
        monkeypatch.setattr(module, "resolve_model",
                            lambda *a, **k: ModelSpec("scripted", "scripted"))
    monkeypatch.setattr(endpoints_cli, "load_backend", lambda *a, **k: ScriptedBackend(respond))
    monkeypatch.setattr(loading, "load_backend", lambda *a, **k: ScriptedBackend(respond))
    registry.strategies.names()  # loaded before the copy that a preset registers into
    monkeypatch.setattr(registry.strategies, "_items", dict(registry.strategies._items))


def test_tune_finds_the_known_best_and_confirms_it_on_held_out_problems_only(
        dev, tmp_path, scripted, monkeypatch, capsys):
    scored: list[set[str]] = []
    real = search.Scoring

    def spy(store, problems, plans, seed):
        scored.append({p.id for p in problems})
        return real(store, problems, plans, seed)

    monkeypatch.setattr(search, "Scoring", spy)
    out = tmp_path / "tuned"
    argv = ["tune", "--dataset", str(dev), "--budget", "15,30", "--samples", "1,2,4",
            "--temperatures", "0.7,1.0", "--concurrency", "1", "--out", str(out)]
    assert main(argv) == 0
    data = json.loads((out / "tune.json").read_text())
    tuning, held = set(data["tuning_ids"]), set(data["held_out_ids"])
    assert len(tuning) == len(held) == 6 and not tuning & held
    assert tuning | held == {str(i) for i in range(PROBLEMS)}
    # every replay read one part only; the confirmation exactly the held-out part
    assert all(ids <= tuning or ids <= held for ids in scored) and held in scored
    assert [s["label"] for s in data["settings"]] == ["chain T0.7", "chain T1"]
    small, large = data["choices"]
    # 7 tokens a sample: 15 tokens buy 2 samples, 30 buy 4
    assert (small["chosen"]["label"], small["reference"]["label"]) == (
        "chain T0.7 · confidence · n=2", "chain T0.7 · majority · n=2")
    assert small["chosen"]["accuracy"] == pytest.approx(0.5)  # 3 of the 6 pairs hold the right
    assert (large["chosen"]["label"], large["reference"]["label"]) == (
        "chain T0.7 · confidence · n=4", "chain T0.7 · majority · n=4")
    assert (large["chosen"]["accuracy"], large["reference"]["accuracy"]) == (1.0, 0.0)
    assert large["tuning"]["difference"] == 1.0 and large["tuning"]["p_value"] == 2 / 64
    assert large["confirm_problem_ids"] == sorted(held)
    confirm = large["held_out"]
    assert (confirm["problems"], confirm["difference"], confirm["verdict"]) == (6, 1.0, "better")
    assert (large["held_out_chosen"]["accuracy"], large["held_out_reference"]["accuracy"]) == (
        1.0, 0.0)
    assert large["chosen"]["label"] in data["front"]
    # the ceiling (a right answer among the samples voted over): one right in every four, so
    # all of 4 samples hold it; of 2, half the pairs drawn from 4 on the tuning part, and on the
    # held-out part's first two samples the problems whose right one comes first or second
    both = {"tuning": 1.0, "held_out": 1.0}
    assert large["ceiling"] == {"chosen": both, "reference": both}
    firsts = sum(int(i) % 4 < 2 for i in held) / len(held)
    assert small["ceiling"]["chosen"] == {"tuning": pytest.approx(0.5), "held_out": firsts}
    assert small["held_out_chosen"]["accuracy"] == firsts  # the choice misses none of them
    cv = data["selector_cv"]
    assert cv["folds"] == 5 and cv["learned"] >= cv["majority"]
    learned = json.loads((out / "selector.json").read_text())
    assert learned["weights"]["confidence"] > 0 and set(learned) >= {"weights", "intercept"}
    for name in ("tune.md", "tune.html", "pareto.png", "preset-15.json", "preset-30.json"):
        assert (out / name).is_file(), name
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "tune.md").read_text()
    assert "| 30 | chain T0.7 · confidence · n=4 | 28 | chain T0.7 · majority · n=4 |" in md
    assert ("Ceiling at 30: a right answer is among the samples the choice votes over for "
            "100.0% tuning, 100.0% held-out problems") in md
    assert "Ceiling at 30" in (out / "tune.html").read_text()
    preset = load_preset(out / "preset-30.json")
    assert (preset.strategy, preset.options) == ("self-consistency", {
        "temperature": 0.7, "mode": "chain", "n": 4, "selector": "confidence"})
    assert "preset-30.json" in capsys.readouterr().out

    # resumable: a second run generates nothing new and chooses the same
    calls = []
    monkeypatch.setattr(endpoints_cli, "load_backend",
                        lambda *a, **k: calls.append(1) or ScriptedBackend([]))
    assert main(argv) == 0
    again = json.loads((out / "tune.json").read_text())
    assert [c["chosen"]["label"] for c in again["choices"]] == [small["chosen"]["label"],
                                                                large["chosen"]["label"]]


def _preset(tmp_path, options):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"strategy": "self-consistency", "options": options}))
    return path


def test_a_preset_runs_in_ask_eval_and_serve(dev, tmp_path, scripted, capsys, monkeypatch):
    sel = tmp_path / "sel.json"
    sel.write_text(json.dumps({"weights": {"confidence": 3.0, "votes": -1.0}, "intercept": 0}))
    path = _preset(tmp_path, {"n": 4, "temperature": 0.7, "selector": "sel.json"})
    assert load_preset(path).options["selector"] == str(sel.resolve())  # next to the preset

    assert main(["ask", question(5), "--preset", str(path), "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["answer"] == gold(5) and result["config"]["n"] == 4
    assert result["config"]["selector"] == str(sel.resolve())
    assert main(["ask", question(5), "--preset", str(path), "-n", "1", "--json",
                 "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["n"] == 1  # -n wins

    out = tmp_path / "ev"
    assert main(["eval", "--dataset", str(dev), "--strategies", f"preset:{path}", "--budgets",
                 "4", "--no-greedy", "--concurrency", "1", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    [point] = [p for p in report["points"] if p["strategy"] == f"preset:{path}"]
    assert (point["budget"], point["accuracy"]) == (4, 1.0)

    class Stop(Exception):
        pass

    def stop(self, **settings):
        raise Stop

    monkeypatch.setattr(endpoints_cli, "load_backend", lambda *a, **k: ScriptedBackend(respond))
    monkeypatch.setattr(PonderServer, "uvicorn_config", stop)
    with pytest.raises(Stop):
        main(["serve", "--preset", f"tuned={path}", "--port", "0"])
    assert "tuned" in registry.strategies
    with TestClient(PonderServer(ScriptedBackend(respond)).app()) as http:
        models = [m["id"] for m in http.get("/v1/models").json()["data"]]
        reply = http.post("/v1/chat/completions", json={
            "model": "ponder-tuned", "messages": [{"role": "user", "content": question(6)}]})
    assert "ponder-tuned" in models
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"].strip() == gold(6)
    config = reply.json()["ponder"][0]["config"]
    assert (config["n"], config["temperature"]) == (4, 0.7)
    assert main(["serve", "--preset", "broken", "--port", "0"]) == 1
    assert "--preset expects NAME=FILE" in capsys.readouterr().err


def test_bad_presets_are_one_clear_error(tmp_path):
    path = _preset(tmp_path, {"n": 0})
    with pytest.raises(ConfigError, match="invalid options for self-consistency: n"):
        load_preset(path)
    path.write_text(json.dumps({"strategy": "self-consistency", "extra": 1}))
    with pytest.raises(ConfigError, match="unknown key extra"):
        load_preset(path)
    with pytest.raises(ConfigError, match="cannot read preset"):
        load_preset(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="already a strategy"):
        register_preset("cot", load_preset(_preset(tmp_path, {"n": 2})))


def test_split_and_grid():
    problems = [Problem(question(i), gold(i), id=str(i)) for i in range(10)]
    tuning, held = search.split(problems, 0.3, seed=1)
    assert len(held) == 3 and {p.id for p in tuning}.isdisjoint({p.id for p in held})
    assert search.split(problems, 0.3, seed=1) == (tuning, held)  # seeded
    with pytest.raises(ConfigError, match="cannot be split"):
        search.split(problems[:1], 0.5, seed=0)
    settings = search.grid([0.3, 0.7], ["chain", "program"], min_ps=(0.0, 0.05))
    assert [s.label for s in settings][:3] == ["chain T0.7", "chain T0.3",
                                               "chain T0.3 min-p0.05"]
    assert len(settings) == 8  # the reference is one of the 2 x 2 x 2
    with pytest.raises(ConfigError, match="--shots needs --examples"):
        search.grid([0.7], ["chain"], shots=(0, 2))


def test_tune_refuses_exemplars_drawn_from_the_dev_set(dev, tmp_path):
    from ponder.eval.store import Store

    examples = tmp_path / "ex.jsonl"
    examples.write_text(json.dumps({"question": "What is 2 + 2?", "answer": "4"}) + "\n"
                        + json.dumps({"question": question(3), "answer": gold(3)}) + "\n")
    problems = [Problem(question(i), gold(i), id=str(i)) for i in range(4)]
    settings = search.grid([0.7], ["chain"], shots=(0, 1), examples=str(examples))
    assert [s.label for s in settings] == ["chain T0.7", "chain T0.7 1-shot"]
    store = Store(tmp_path / "s.sqlite")
    try:
        with pytest.raises(ConfigError, match=r"holds 1 of the problems being evaluated \(3\)"):
            search.Tuner(ScriptedBackend(respond), store, problems, settings, [1], [10],
                         out=tmp_path)
        search.Tuner(ScriptedBackend(respond), store, problems[:3], settings, [1], [10],
                     out=tmp_path)  # without problem 3: accepted
    finally:
        store.close()


def test_held_out_problems_get_only_the_chosen_settings_up_to_the_chosen_n(
        dev, tmp_path, scripted, monkeypatch, capsys):
    """Stage 1 draws every setting on the tuning part up to what 30 tokens afford (4 samples of
    7 or of 5 tokens, not the 8 that --samples allows); the choice uses 4 samples at T=0.7, so
    stage 2 sends the held-out problems T=0.7 only, 4 samples each."""
    sent: list[tuple[int, float]] = []

    def spy(request, index):
        sent.append((int(request.messages[-1].content.split()[1].rstrip(":")),
                     request.params.temperature))
        return respond(request, index)

    monkeypatch.setattr(endpoints_cli, "load_backend", lambda *a, **k: ScriptedBackend(spy))
    out = tmp_path / "tuned"
    argv = ["tune", "--dataset", str(dev), "--budget", "30", "--samples", "1,2,4,8",
            "--temperatures", "0.7,1.0", "--holdout", "5", "--no-learn", "--concurrency", "2",
            "--out", str(out)]
    assert main(argv) == 0
    data = json.loads((out / "tune.json").read_text())
    tuning = {int(i) for i in data["tuning_ids"]}
    held = {int(i) for i in data["held_out_ids"]}
    assert (len(tuning), len(held)) == (7, 5)  # --holdout 5: a count of problems
    [choice] = data["choices"]
    assert choice["chosen"]["setting"] == choice["reference"]["setting"] == "chain T0.7"
    assert choice["chosen"]["n"] == choice["reference"]["n"] == 4  # 4 x 7 tokens fit 30
    assert data["held_out_generated"] == [{"setting": "chain T0.7", "n": 4}]
    per = {}
    for pair in sent:
        per[pair] = per.get(pair, 0) + 1
    assert {p: k for p, k in per.items() if p[0] in held} == {(i, 0.7): 4 for i in held}
    assert {p: k for p, k in per.items() if p[0] in tuning} == {
        **{(i, 0.7): 4 for i in tuning}, **{(i, 1.0): 4 for i in tuning}}
    # confirmed on the first 4 held-out samples: one of them right and confident
    assert choice["held_out_chosen"]["accuracy"] == 1.0
    assert choice["held_out_reference"]["accuracy"] == 0.0
    assert choice["held_out"]["problems"] == 5
    assert choice["held_out_chosen"]["tokens"] == 28
    md = (out / "tune.md").read_text()
    assert "Held-out part: generated chain T0.7 (n=4); nothing else." in md
    assert "the other configurations have no held-out samples" in md
    err = capsys.readouterr().err  # the progress: the total grows when stage 2 starts
    assert "tune: stage 1/2 · tuning part, every setting (pricing a sample of each): 7/7" in err
    assert "tune: stage 1/2 · tuning part, every setting (each up to what the budget affords): " \
        "7/7 problems" in err
    assert "tune: stage 2/2 · held-out part, the chosen and the references: 12/12 problems" in err
    db = sqlite3.connect(out / tune_cli.STORE)  # what the store holds per problem
    try:
        stored = {pid: (n, pools) for pid, n, pools in db.execute(
            "SELECT problem_id, COUNT(*), COUNT(DISTINCT sample_key) FROM samples "
            "GROUP BY problem_id")}
    finally:
        db.close()
    assert stored == {str(i): (4, 1) if i in held else (8, 2) for i in range(PROBLEMS)}

    # resumable: a rerun sends nothing; a larger budget affords 8 samples: the tuning part's
    # settings and the held-out pool are topped up to 8, 4 more each
    before = len(sent)
    assert main(argv) == 0
    assert len(sent) == before
    assert main([*argv[:4], "60", *argv[5:]]) == 0
    again = json.loads((out / "tune.json").read_text())
    assert again["choices"][0]["chosen"]["n"] == 8
    assert sorted(sent[before:]) == sorted(
        [(i, t) for i in tuning for t in (0.7, 1.0) for _ in range(4)]
        + [(i, 0.7) for i in held for _ in range(4)])


@pytest.mark.parametrize("value, message", [
    ("1.5", "expected a share between 0 and 1 or a count of problems"),
    ("0", "expected a share between 0 and 1 or a count of problems"),
    ("half", "expected a share (0.5) or a count of problems (100)"),
])
def test_holdout_is_a_share_or_a_count(dev, tmp_path, value, message, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["tune", "--dataset", str(dev), "--budget", "30", "--holdout", value,
              "--out", str(tmp_path / "o")])
    assert exit.value.code != 0 and message in capsys.readouterr().err
    problems = [Problem(question(i), gold(i), id=str(i)) for i in range(4)]
    assert [len(part) for part in search.split(problems, 3, seed=0)] == [1, 3]
    with pytest.raises(ConfigError, match="--holdout 4 leaves no tuning problems of 4"):
        search.split(problems, 4, seed=0)


EXEMPLARS = Path(__file__).resolve().parent.parent / "bench" / "gsm8k_exemplars.jsonl"


def test_tune_poses_the_bench_exemplars_as_chains_and_as_programs(dev, tmp_path, scripted,
                                                                  monkeypatch):
    """``--shots 4 --examples bench/gsm8k_exemplars.jsonl``: chains see the first four worked
    solutions as earlier turns, programs the first four programs; zero-shot sees none."""
    rows = [json.loads(line) for line in EXEMPLARS.read_text().splitlines()]
    asked: list[tuple[str, list[tuple[str, str]]]] = []

    def spy(request, index):
        mode = "program" if request.messages[0].content == PROGRAM_SYSTEM else "chain"
        asked.append((mode, [(m.role, m.content) for m in request.messages[1:-1]]))
        return _program("print(10)") if mode == "program" else respond(request, index)

    monkeypatch.setattr(endpoints_cli, "load_backend", lambda *a, **k: ScriptedBackend(spy))
    assert main(["tune", "--dataset", str(dev), "--budget", "100", "--samples", "1",
                 "--modes", "chain,program", "--shots", "0,4", "--examples", str(EXEMPLARS),
                 "--no-learn", "--concurrency", "1", "--out", str(tmp_path / "t")]) == 0
    chain_turns, program_turns = [], []
    for row in rows[:4]:
        worked = re.sub(r"<<[^>]*>>", "", row["answer"].rpartition("####")[0]).strip()
        number = row["answer"].rpartition("####")[2].strip()
        chain_turns += [("user", row["question"]),
                        ("assistant", f"{worked}\nThe answer is: {number}")]
        program_turns += [("user", row["question"]),
                          ("assistant", f"```python\n{row['program']}\n```")]
    seen = {(mode, tuple(turns)) for mode, turns in asked}
    assert seen == {("chain", ()), ("chain", tuple(chain_turns)), ("program", ()),
                    ("program", tuple(program_turns))}
    assert "13" in chain_turns[1][1] and "<<" not in chain_turns[1][1]


def _program(body: str) -> str:
    return f"Let me compute it.\n```python\n{body}\n```\n"  # 7 words


def test_tune_finds_mixed_voting_where_chains_and_programs_each_fail_half(
        dev, tmp_path, scripted, monkeypatch):
    """Even problems: every chain is right, the programs print distinct wrong numbers; odd
    problems the other way round. Chains alone or programs alone are right on half of them;
    a mixed vote of 2 chains + 2 programs always holds two equal right answers, so it is always
    right. The programs really run in the sandbox."""
    wrong = iter(range(500, 10_000))

    def respond(request, index):
        i = int(request.messages[-1].content.split()[1].rstrip(":"))
        right = (i % 2 == 1) if request.messages[0].content == PROGRAM_SYSTEM else (i % 2 == 0)
        answer = gold(i) if right else str(next(wrong))
        if request.messages[0].content == PROGRAM_SYSTEM:
            return _program(f"print({answer})")
        return f"The answer is: {answer}"  # 4 words

    monkeypatch.setattr(endpoints_cli, "load_backend", lambda *a, **k: ScriptedBackend(respond))
    out = tmp_path / "mixed"
    assert main(["tune", "--dataset", str(dev), "--budget", "22", "--samples", "1,2,4",
                 "--modes", "chain,program,mixed", "--selectors", "majority", "--no-learn",
                 "--concurrency", "2", "--out", str(out)]) == 0
    data = json.loads((out / "tune.json").read_text())
    by = {c["label"]: c for c in data["candidates"]}
    # tokens: 4 a chain, 7 a program; mixed n=4 is 2 chains + 2 programs, n=1 one chain
    assert by["mixed T0.7 · majority · n=4"]["tokens"] == 2 * 4 + 2 * 7
    assert by["mixed T0.7 · majority · n=2"]["tokens"] == 4 + 7
    assert by["mixed T0.7 · majority · n=1"]["tokens"] == 4
    assert by["program T0.7 · majority · n=2"]["tokens"] == 14
    assert "program T0.7 · majority · n=4" not in by  # 28 tokens: no budget affords it
    tuning = data["tuning_ids"]
    evens = sum(int(i) % 2 == 0 for i in tuning) / len(tuning)
    assert by["chain T0.7 · majority · n=4"]["accuracy"] == pytest.approx(evens)
    assert by["program T0.7 · majority · n=2"]["accuracy"] == pytest.approx(1 - evens)
    assert by["mixed T0.7 · majority · n=4"]["accuracy"] == 1.0
    [choice] = data["choices"]
    assert choice["chosen"]["label"] == "mixed T0.7 · majority · n=4"  # 22 tokens fit 22
    assert choice["reference"]["label"] == "chain T0.7 · majority · n=4"
    held = data["held_out_ids"]
    assert (choice["held_out_chosen"]["accuracy"], choice["held_out_chosen"]["tokens"]) == (
        1.0, 22)
    assert choice["held_out_reference"]["accuracy"] == pytest.approx(
        sum(int(i) % 2 == 0 for i in held) / len(held))
    assert data["held_out_generated"] == [{"setting": "mixed T0.7", "n": 4},
                                          {"setting": "chain T0.7", "n": 4}]
    db = sqlite3.connect(out / tune_cli.STORE)
    try:
        stored = dict(db.execute("SELECT problem_id, COUNT(*) FROM samples GROUP BY problem_id"))
        programs = db.execute("SELECT meta FROM samples WHERE meta LIKE '%program%'").fetchall()
    finally:
        db.close()
    # tuning: 4 chains + 2 programs (the mixed setting shares both pools; 4 programs, 28
    # tokens, fit no budget); held-out: the reference's 4 chains and the mixed choice's 2
    assert stored == {i: 6 for i in map(str, range(PROBLEMS))}
    assert programs and all('"output"' in m or '"program"' in m for (m,) in programs)
    preset = load_preset(out / "preset-22.json")
    assert (preset.options["mode"], preset.options["n"]) == ("mixed", 4)


def test_tune_and_distill_take_the_endpoint_flags(dev, tmp_path, monkeypatch, capsys):
    """Repeated ``--base-url`` and ``--endpoints FILE`` reach the backend loader as a pool, and
    the model is named by ``--model`` or the endpoints file."""
    calls: list[tuple[str | None, object, object]] = []

    def load(model, base_url=None, *, api_key=None, endpoints=None, **options):
        calls.append((model, base_url, endpoints))
        return ScriptedBackend(respond)

    monkeypatch.setattr(endpoints_cli, "load_backend", load)
    base = ["tune", "--dataset", str(dev), "--budget", "30", "--samples", "1", "--no-learn",
            "--selectors", "majority"]
    urls = ["--base-url", "http://gpu1:8000/v1", "--base-url", "http://gpu2:8000/v1"]
    assert main([*base, *urls, "--model", "served", "--out", str(tmp_path / "a")]) == 0
    assert calls[-1] == ("served", ["http://gpu1:8000/v1", "http://gpu2:8000/v1"], None)
    assert json.loads((tmp_path / "a" / "tune.json").read_text())["config"]["model"] == "served"

    file = tmp_path / "endpoints.json"
    file.write_text(json.dumps([{"url": "http://gpu1:8000/v1", "model": "from-file"},
                                {"url": "http://gpu2:8000/v1"}]))
    assert main([*base, "--endpoints", str(file), "--out", str(tmp_path / "b")]) == 0
    assert calls[-1] == (None, None, str(file))
    assert json.loads((tmp_path / "b" / "tune.json").read_text())["config"]["model"] == \
        "from-file"

    assert main([*base, *urls, "--out", str(tmp_path / "c")]) == 1  # which model?
    assert "--base-url needs --model NAME" in capsys.readouterr().err

    distilled = tmp_path / "d"
    assert main(["distill", "--dataset", str(dev), "-n", "2", *urls, "--model", "served",
                 "--concurrency", "1", "--out", str(distilled)]) == 0
    assert calls[-1] == ("served", ["http://gpu1:8000/v1", "http://gpu2:8000/v1"], None)
    assert main(["distill", "--dataset", str(dev), "-n", "2", "--endpoints", str(file),
                 "--concurrency", "1", "--out", str(tmp_path / "e")]) == 0
    assert calls[-1] == (None, None, str(file))


@pytest.fixture
def ctrl_c():
    """SIGINT raises, as in a terminal (a shell's background job starts with it ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_an_interrupted_confirmation_resumes_where_it_stopped(ctrl_c, dev, tmp_path, scripted,
                                                              monkeypatch):
    problems = [Problem(question(i), gold(i), id=str(i)) for i in range(PROBLEMS)]
    held = [int(p.id) for p in search.split(problems, 0.5, seed=0)[1]]
    sent: list[int] = []

    pressed: list[int] = []

    def interrupted(request, index):
        i = int(request.messages[-1].content.split()[1].rstrip(":"))
        if i == held[2]:  # the third held-out problem: Ctrl-C, as a person presses it
            if not pressed:
                pressed.append(i)
                os.kill(os.getpid(), signal.SIGINT)
            return respond(request, index)
        sent.append(i)
        return respond(request, index)

    def resumed(request, index):
        sent.append(int(request.messages[-1].content.split()[1].rstrip(":")))
        return respond(request, index)

    argv = ["tune", "--dataset", str(dev), "--budget", "30", "--samples", "1,2,4",
            "--temperatures", "0.7,1.0", "--no-learn", "--concurrency", "1",
            "--out", str(tmp_path / "t")]
    monkeypatch.setattr(endpoints_cli, "load_backend",
                        lambda *a, **k: ScriptedBackend(interrupted))
    assert main(argv) == 130
    assert [i for i in sent if i in held] == [held[0]] * 4 + [held[1]] * 4
    # what it found so far is written: the choice, confirmed on the 2 held-out problems done
    partial = json.loads((tmp_path / "t" / "tune.json").read_text())
    assert partial["partial"] is True
    assert partial["choices"][0]["held_out"]["problems"] == 2
    assert partial["choices"][0]["chosen"]["label"] == "chain T0.7 · confidence · n=4"
    assert "Partial: interrupted" in (tmp_path / "t" / "tune.md").read_text()
    assert not list((tmp_path / "t").glob("preset-*.json"))
    sent.clear()
    monkeypatch.setattr(endpoints_cli, "load_backend", lambda *a, **k: ScriptedBackend(resumed))
    assert main(argv) == 0
    assert sent == [i for i in held[2:] for _ in range(4)]  # the rest, T=0.7 only, 4 each
    data = json.loads((tmp_path / "t" / "tune.json").read_text())
    assert data["choices"][0]["held_out"]["problems"] == len(held)
    assert "partial" not in data and (tmp_path / "t" / "preset-30.json").is_file()


def test_a_reference_budget_and_what_each_lever_bought(dev, tmp_path, scripted, capsys):
    out = tmp_path / "t"
    argv = ["tune", "--dataset", str(dev), "--budget", "ref@4", "--samples", "1,2,4",
            "--temperatures", "0.7,1.0", "--selectors", "majority,confidence", "--no-learn",
            "--concurrency", "1", "--out", str(out)]
    assert main(argv) == 0
    data = json.loads((out / "tune.json").read_text())
    (choice,) = data["choices"]
    # 7 tokens a sample: self-consistency@4 spends 28 a problem, and so may the choice
    assert choice["budget"] == 28 and data["budgets"] == [28]
    assert choice["reference"]["label"] == "chain T0.7 · majority · n=4"
    assert choice["chosen"]["label"] == "chain T0.7 · confidence · n=4"
    rows = [(r["lever"], r["configuration"]["label"], r["tuning"]["difference"])
            for r in choice["levers"]]
    # a weighted vote alone: right on every problem (+100 points); temperature alone (T=1, no
    # answer): nothing, at the reference's n among equals; then the best of all, whose only
    # lever is the weighted vote
    assert rows == [("weighted vote", "chain T0.7 · confidence · n=4", 1.0),
                    ("temperature", "chain T1 · majority · n=4", 0.0),
                    ("all together (best of all): weighted vote",
                     "chain T0.7 · confidence · n=4", 1.0)]
    assert choice["budget_spec"] == "ref@4"
    md = (out / "tune.md").read_text()
    assert "## What each lever bought (tuning part)" in md
    assert "| 28 (ref@4) | temperature | chain T1 · majority · n=4 | 20 | 0.0% vs 0.0% |" in md
    assert "| 28 (ref@4) | chain T0.7 · confidence · n=4 |" in md
    assert "What each lever bought" in (out / "tune.html").read_text()
    capsys.readouterr()
    for budget, message in (("ref@3", "must be one of --samples (1, 2, 4)"),
                            ("ref@x", "expected token counts or ref@N"),
                            ("0", "positive token counts or ref@N")):
        bad = [*argv[:4], budget, *argv[5:-1], str(tmp_path / budget)]
        assert main(bad) == 1
        assert message in capsys.readouterr().err
        assert not (tmp_path / budget).exists()  # refused before a store was made


def test_levers_of_names_every_difference_from_the_reference():
    ref = search.Candidate(search.Setting("chain T0.7", {"temperature": 0.7, "mode": "chain"}),
                           "majority", 8)
    other = search.Candidate(search.Setting("mixed T0.3 4-shot", {
        "temperature": 0.3, "mode": "mixed", "shots": 4, "examples": "x.jsonl"}), "learned", 8)
    assert search.levers_of(other, ref) == ("temperature", "mixed mode", "few-shot",
                                            "learned selector")
    assert search.levers_of(ref, ref) == ()


def test_a_mean_a_hair_above_a_whole_budget_still_fits_it():
    ref = search.Candidate(search.Setting("chain T0.7", {"temperature": 0.7, "mode": "chain"}),
                           "majority", 6, tokens=1234.0000000000002)
    assert search.reference_at([ref], ref.setting, 1234) is ref
    assert search.best_at([ref], 1233) is None


def test_each_setting_is_drawn_as_far_as_the_budget_affords_it(dev, tmp_path, scripted,
                                                                monkeypatch):
    """A cheap setting (1 token a sample at T=1) is tried with 16 samples; a dear one (7 tokens
    at T=0.7) only up to 4: 8 of them would cost 56, more than the 30 a problem may spend."""
    def cheap(request, index):
        if request.params.temperature == 1.0:
            return _said("No", -1.0)
        return respond(request, index)

    monkeypatch.setattr(endpoints_cli, "load_backend", lambda *a, **k: ScriptedBackend(cheap))
    out = tmp_path / "t"
    assert main(["tune", "--dataset", str(dev), "--budget", "30", "--samples", "1,2,4,8,16",
                 "--temperatures", "0.7,1.0", "--no-learn", "--concurrency", "3",
                 "--out", str(out)]) == 0
    data = json.loads((out / "tune.json").read_text())
    ns = {}
    for c in data["candidates"]:
        if c["selector"] == "majority":
            ns.setdefault(c["setting"], []).append(c["n"])
    assert ns == {"chain T0.7": [1, 2, 4], "chain T1": [1, 2, 4, 8, 16]}
    db = sqlite3.connect(out / tune_cli.STORE)
    try:
        drawn = sorted(n for (n,) in db.execute(
            "SELECT COUNT(*) FROM samples WHERE problem_id = ? GROUP BY sample_key",
            (data["tuning_ids"][0],)))
    finally:
        db.close()
    assert drawn == [4, 16]


class _InFlight(ScriptedBackend):
    """Counts the problems with a call in flight, per phase of stage 1."""

    def __init__(self) -> None:
        super().__init__(respond)
        self.live: collections.Counter = collections.Counter()
        self.peak: dict[str, int] = {}
        self.tuner: search.Tuner | None = None

    async def generate(self, requests, on_progress=None):
        ids = {r.messages[-1].content.split()[1] for r in requests}
        self.live.update(ids)
        phase = self.tuner._phase if self.tuner else ""
        self.peak[phase] = max(self.peak.get(phase, 0), len(+self.live))
        try:
            await asyncio.sleep(0.001)  # the others start meanwhile
            return await super().generate(requests, on_progress)
        finally:
            self.live.subtract(ids)


def test_pricing_a_first_sample_takes_more_problems_at_once(tmp_path):
    """Pricing asks one sample per setting of a problem, not n: with --concurrency 1 and up to 4
    samples, it takes 4 problems at once (the sequences the next phase keeps decoding), then
    the next phase takes 1."""
    problems = [Problem(question(i), gold(i), f"p{i}") for i in range(PROBLEMS)]
    backend = _InFlight()
    store = Store(tmp_path / "s.sqlite")
    tuner = search.Tuner(backend, store, problems, search.grid([0.7], ["chain"]), [1, 2, 4],
                         [100], learned=False, out=tmp_path, concurrency=1)
    backend.tuner = tuner
    try:
        asyncio.run(tuner.generate())
    finally:
        store.close()
    assert backend.peak == {" (pricing a sample of each)": 4,
                            " (each up to what the budget affords)": 1}
    assert tuner.harness.concurrency == 1


def test_a_difference_rounding_to_zero_reads_plus_zero():
    from ponder.tune.report import _pts

    assert [_pts(x) for x in (-1e-17, -0.0004, 0.05, -0.125, None)] == [
        "+0.0", "+0.0", "+5.0", "-12.5", "—"]


def _cut_run(dev, tmp_path, monkeypatch, capsys, respond_to):
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(endpoints_cli, "load_backend",
                        lambda *a, **k: ScriptedBackend(respond_to))
    out = tmp_path / "cut"
    assert main(["tune", "--dataset", str(dev), "--budget", "40", "--samples", "1,2",
                 "--temperatures", "0.7", "--selectors", "majority,confidence", "--no-learn",
                 "--max-tokens", "6", "--concurrency", "2", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    return json.loads((out / "tune.json").read_text()), captured, out


def _long_on_odd(request, index):
    """A right answer in 4 tokens on even problems; on odd ones 10 tokens, which
    --max-tokens 6 cuts before the answer."""
    i = int(request.messages[-1].content.split()[1].rstrip(":"))
    if i % 2:
        return _said(f"Let me think about it slowly. The answer is: {gold(i)}", -0.1)
    return _said(f"The answer is: {gold(i)}", -0.1)


def test_tune_warns_when_the_token_limit_cut_many_samples(dev, tmp_path, scripted, monkeypatch,
                                                          capsys):
    """Half the problems' samples stop at --max-tokens before their answer: the run says how
    many were cut, of how many, and which flag to raise, in one line on stderr and in tune.md."""
    data, captured, out = _cut_run(dev, tmp_path, monkeypatch, capsys, _long_on_odd)
    cut = data["samples_cut"]
    assert cut["max_tokens"] == 6 and cut["cut"] * 2 == cut["samples"] > 0
    warning = [line for line in captured.err.splitlines() if "warning" in line]
    assert warning == [f"ponder: warning: {cut['cut']} of {cut['samples']} samples (50%) hit "
                       "the token limit of 6 new tokens and were cut short: their answers are "
                       "missing, so every accuracy here is lower than the model's; raise "
                       "--max-tokens."]
    assert f"**Warning:** {cut['cut']} of {cut['samples']} samples (50%)" in \
        (out / "tune.md").read_text()


def test_tune_says_plainly_when_nothing_beats_the_reference(dev, tmp_path, scripted,
                                                           monkeypatch, capsys):
    """Every configuration is right on the even problems only (the odd ones are cut): none is
    more accurate than the reference, so the output claims no choice over it."""
    data, captured, out = _cut_run(dev, tmp_path, monkeypatch, capsys, _long_on_odd)
    [choice] = data["choices"]
    assert choice["chosen"]["accuracy"] == choice["reference"]["accuracy"] == 0.5
    words = " ".join(captured.out.split())
    # n=1 is as accurate as the reference's n=2 at half its tokens: its preset is written
    line = ("At 40 tokens nothing beats the reference: chain T0.7 · majority · n=2 scores 50.0% "
            "on the tuning part and no configuration more; the preset written, chain T0.7 · "
            "majority · n=1, only matches it, at 7 tokens against 14.")
    assert line in words
    assert "40 nothing beats the reference (preset: chain T0.7" in words  # the table's row
    md = (out / "tune.md").read_text()
    assert "| 40 | nothing beats the reference (preset: chain T0.7 · majority · n=1) | 7 |" in md
    assert line in md
