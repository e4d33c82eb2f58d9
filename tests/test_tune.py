"""``ponder tune`` end to end on the scripted backend: the known-best configuration is found, the
held-out confirmation reads only held-out problems, and the presets it writes run in ask, eval
and serve."""

import json

import pytest
from starlette.testclient import TestClient

import ponder.cli.endpoints as endpoints_cli
import ponder.cli.eval as eval_cli
import ponder.cli.tune as tune_cli
import ponder.tune.search as search
from ponder import registry
from ponder.backends import loading
from ponder.backends.fake import ScriptedBackend
from ponder.backends.models import ModelSpec
from ponder.cli.main import main
from ponder.errors import ConfigError
from ponder.presets import load_preset, register_preset
from ponder.server.app import PonderServer
from ponder.types import Completion, Problem, TokenLogprob

PROBLEMS = 12
BAD = "Working it out. The answer is: 999"


def gold(i: int) -> str:
    return str(10 + i)


def question(i: int) -> str:
    return f"Problem {i}: what is the secret number?"


def _said(text: str, logprob: float) -> Completion:
    return Completion(text=text, logprobs=tuple(TokenLogprob(w, logprob) for w in text.split()))


def respond(request, index):
    """At T=1 no answer at all; at T=0.7 the four samples of a problem hold one right answer,
    confident, and three copies of a wrong one, unsure: the majority is always wrong, the
    confidence-weighted vote right whenever the right sample is among those it sees."""
    words = request.messages[-1].content.split()
    i = int(words[1].rstrip(":"))
    if request.params.temperature == 1.0:
        return _said("I am not sure here", -3.0)
    if index == i % 4:
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
    for module in (tune_cli, eval_cli):
        monkeypatch.setattr(module, "resolve_model",
                            lambda *a, **k: ModelSpec("scripted", "scripted"))
    for module in (tune_cli, endpoints_cli):
        monkeypatch.setattr(module, "load_backend", lambda *a, **k: ScriptedBackend(respond))
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
    cv = data["selector_cv"]
    assert cv["folds"] == 5 and cv["learned"] >= cv["majority"]
    learned = json.loads((out / "selector.json").read_text())
    assert learned["weights"]["confidence"] > 0 and set(learned) >= {"weights", "intercept"}
    for name in ("tune.md", "tune.html", "pareto.png", "preset-15.json", "preset-30.json"):
        assert (out / name).is_file(), name
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "tune.md").read_text()
    assert "| 30 | chain T0.7 · confidence · n=4 | 28 | chain T0.7 · majority · n=4 |" in md
    preset = load_preset(out / "preset-30.json")
    assert (preset.strategy, preset.options) == ("self-consistency", {
        "temperature": 0.7, "mode": "chain", "n": 4, "selector": "confidence"})
    assert "preset-30.json" in capsys.readouterr().out

    # resumable: a second run generates nothing new and chooses the same
    calls = []
    monkeypatch.setattr(tune_cli, "load_backend",
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
