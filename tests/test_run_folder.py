"""One way to open a run folder (eval/session.py), and its promises held by every command that
keeps a store: ponder eval, tune and distill --dataset (against simulated OpenAI-compatible
servers: nothing is downloaded, the model is what the server reports)."""

import json
import sys
from pathlib import Path

import pytest
from test_pool import Replica

from ponder.cli.main import main
from ponder.errors import ConfigError
from ponder.eval.session import SERVED, STORE, RunFolder, identify

PROBLEMS = [{"question": f"What is {a} + 3?", "answer": f"#### {a + 3}"} for a in (2, 4)]


@pytest.fixture
def dataset(tmp_path):
    path = tmp_path / "tiny.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    return path


def command(kind: str, dataset, out, url: str, model: str) -> list[str]:
    served = ["--base-url", url, "-m", model, "--max-tokens", "8", "--concurrency", "1"]
    if kind == "eval":
        return ["eval", "--dataset", str(dataset), "--strategies", "cot", "--budgets", "1",
                "--no-greedy", "--out", str(out), *served]
    if kind == "tune":
        return ["tune", "--dataset", str(dataset), "--samples", "1", "--budget", "ref@1",
                "--no-learn", "--out", str(out), *served]
    return ["distill", "--dataset", str(dataset), "--strategies", "cot", "-n", "1",
            "--out", str(out), *served]


@pytest.mark.parametrize("kind", ["eval", "tune", "distill"])
def test_a_folder_claimed_by_one_served_model_refuses_another(kind, dataset, tmp_path, capsys,
                                                              monkeypatch):
    monkeypatch.setattr(sys, "argv", ["ponder"])
    first = Replica(tmp_path, "a", "--model", "sim")
    other = Replica(tmp_path, "b", "--model", "other")
    try:
        out = tmp_path / "run"
        assert main(command(kind, dataset, out, first.url, "sim")) == 0
        assert main(command(kind, dataset, out, first.url, "sim")) == 0  # resumes
        capsys.readouterr()
        assert main(command(kind, dataset, out, other.url, "other")) == 1
    finally:
        first.kill()
        other.kill()
    err = capsys.readouterr().err.strip()
    assert err.startswith("ponder: error: ") and "holds a different run: served_model" in err
    assert "\n" not in err


def test_fresh_removes_the_store_and_everything_written_from_it(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF-not-really")
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(PROBLEMS[0]) + "\n")
    identity = identify(str(model), None, None, str(data))
    out = tmp_path / "run"
    with RunFolder(out, identity, seed=0, deterministic=True) as folder:
        assert folder.store.path == out / STORE
    (out / "report.md").write_text("old")
    (out / "traces").mkdir()
    (out / "traces" / "t.json").write_text("{}")
    (out / "mine.txt").write_text("not written by ponder")
    with pytest.raises(ConfigError, match="holds a different run: seed '0' \\(now '1'\\)"):
        RunFolder(out, identity, seed=1, deterministic=True)
    with RunFolder(out, identity, seed=1, deterministic=True, fresh=True,
                   outputs=("report.md", "traces")):
        pass
    assert not (out / "report.md").exists() and not (out / "traces").exists()
    assert (out / "mine.txt").read_text() == "not written by ponder"


def test_a_folder_of_other_files_or_a_file_is_refused(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"x")
    identity = identify(str(model), None, None, "humaneval")
    assert identity.dataset == identity.dataset_hash == "humaneval"
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    with pytest.raises(ConfigError, match="holds files but no ponder run"):
        RunFolder(tmp_path / "notes", identity, seed=0, deterministic=True)
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        RunFolder(tmp_path / "f", identity, seed=0, deterministic=True)


def test_a_served_model_is_named_by_its_redacted_servers(tmp_path):
    identity = identify("qwen", ["http://u:pw@gpu1:8000/v1?k=1", "http://gpu2:8000/v1"], None,
                        "humaneval")
    assert identity.model_hash == SERVED
    assert identity.model_id == "http://***@gpu1:8000/v1?…,http://gpu2:8000/v1#qwen"


def test_evaluate_is_the_harness_as_one_python_call(dataset, tmp_path):
    import ponder
    from ponder import ScriptedBackend

    def respond(request, index):  # right on 2 + 3, wrong on 4 + 3
        return "2 + 3 is 5. The answer is 5"

    fake = ScriptedBackend(respond, model="fake-model")
    out = tmp_path / "run"
    report = ponder.evaluate(dataset, ["self-consistency"], [1, 2], out=out, backend=fake,
                             options={"max_tokens": 16}, reference="greedy")
    points = {(p["strategy"], p["budget"]): p["accuracy"] for p in report["points"]}
    assert points == {("greedy", 1): 0.5, ("self-consistency", 1): 0.5,
                      ("self-consistency", 2): 0.5}
    assert report["config"]["model"] == "fake-model" and report["config"]["problems"] == 2
    assert [r["strategy"] for r in report["paired"]] == ["self-consistency"] * 2
    assert {Path(p).name for p in report["paths"]} == {"report.md", "scaling.png",
                                                       "report.html", "report.json"}
    assert json.loads((out / "report.json").read_text())["points"] == report["points"]
    calls = len(fake.history)
    again = ponder.evaluate(dataset, "self-consistency", "1,2", out=out, backend=fake,
                            options={"max_tokens": 16})
    assert len(fake.history) == calls  # resumed: nothing generated again
    assert again["points"] == [p for p in report["points"]]
    with pytest.raises(ConfigError, match="holds a different run: model_sha256"):
        ponder.evaluate(dataset, "self-consistency", [1], out=out,
                        backend=ScriptedBackend(respond, model="another"))
    with pytest.raises(ConfigError, match="not both"):
        ponder.evaluate(dataset, "cot", [1], out=out, backend=fake, model="x.gguf")


@pytest.mark.model
@pytest.mark.parametrize("kind", ["tune", "distill"])
def test_real_servers_hold_the_promise_for_tune_and_distill(kind, dataset, tmp_path, model_path,
                                                            llama_server, capsys):
    """As ponder eval's test does with llama-cpp-python's own server: a folder written against
    one served model refuses a server serving another, in one line."""
    from conftest import start_llama_server, stop_server

    out = tmp_path / "run"
    assert main(command(kind, dataset, out, llama_server, "smol")) == 0
    proc, other = start_llama_server(model_path, "other", tmp_path / "other.log")
    try:
        capsys.readouterr()
        assert main(command(kind, dataset, out, other, "other")) == 1
    finally:
        stop_server(proc)
    err = capsys.readouterr().err.strip()
    assert err.startswith("ponder: error: ") and "holds a different run: served_model" in err
    assert "\n" not in err
