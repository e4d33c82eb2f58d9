"""ponder eval end to end on the bundled model, including a run killed with SIGKILL."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from ponder.cli.main import main

PROBLEMS = [{"question": f"What is {a} + {b}?", "answer": f"{a} + {b} = {a + b}\n#### {a + b}"}
            for a, b in [(2, 3), (4, 4), (10, 5), (7, 1), (6, 6), (9, 3)]]


@pytest.fixture
def dataset(tmp_path):
    path = tmp_path / "tiny.jsonl"
    path.write_text("\n".join(json.dumps(p) for p in PROBLEMS) + "\n")
    return path


def eval_cmd(dataset, out, *extra):
    return [sys.executable, "-m", "ponder", "eval", "--dataset", str(dataset), "--strategies",
            "self-consistency", "--budgets", "1,2", "--max-tokens", "24", "--out", str(out),
            "--concurrency", "1", *extra]


@pytest.mark.model
def test_eval_writes_all_four_outputs(dataset, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(eval_cmd(dataset, out, "--limit", "3"), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    for name in ("report.md", "scaling.png", "report.html", "report.json", "samples.sqlite"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    labels = {(p["strategy"], p["budget"]) for p in report["points"]}
    assert labels == {("greedy", 1), ("self-consistency", 1), ("self-consistency", 2)}
    assert [p["budget"] for p in report["coverage"]] == [1, 2]
    assert report["config"]["model_sha256"] and report["config"]["problems"] == 3
    assert len(report["problems"]) == 3
    assert (out / "scaling.png").read_bytes()[:4] == b"\x89PNG"
    assert "data:image/png;base64," in (out / "report.html").read_text()
    assert "| self-consistency | 2 |" in (out / "report.md").read_text()


@pytest.mark.model
def test_killed_run_resumes_without_duplicates(dataset, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(eval_cmd(dataset, out), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    db = out / "samples.sqlite"
    deadline = time.monotonic() + 300
    stored = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(db) as con:
                    stored = con.execute("SELECT COUNT(DISTINCT problem_id) FROM samples"
                                         ).fetchone()[0]
            except sqlite3.OperationalError:
                stored = 0
            if stored >= 2:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2 <= stored < len(PROBLEMS)
    rerun = subprocess.run(eval_cmd(dataset, out), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    with sqlite3.connect(db) as con:
        per_problem = con.execute("SELECT problem_id, COUNT(*) FROM samples GROUP BY problem_id"
                                  ).fetchall()
        greedy = con.execute("SELECT problem_id, COUNT(*) FROM results GROUP BY problem_id"
                             ).fetchall()
    assert sorted(per_problem) == [(str(i), 2) for i in range(len(PROBLEMS))]
    assert sorted(greedy) == [(str(i), 1) for i in range(len(PROBLEMS))]
    report = json.loads((out / "report.json").read_text())
    assert all(p["problems"] == len(PROBLEMS) for p in report["points"])


@pytest.mark.parametrize("argv,message", [
    (["--budgets", "4,2"], "budgets must be increasing positive integers"),
    (["--strategies", "nope"], "unknown strategy 'nope'"),
    (["--format", "csv"], "invalid choice"),
    (["--strategies", "self-consistency", "-o", "weighting=logprob", "--no-greedy"],
     "is not supported there"),
    (["--strategies", "cot", "-o", "nope=1"], "invalid options for cot: nope: unknown option"),
    (["--strategies", "best-of-n", "--verifier", "nope"], "unknown verifier 'nope'"),
    (["--strategies", "self-consistency", "--reference", "self-consistency@9"],
     "self-consistency is evaluated at budgets 1, 2, 4, 8, 16 only"),
])
def test_eval_bad_input(capsys, dataset, tmp_path, argv, message):
    args = ["eval", "--dataset", str(dataset), "--out", str(tmp_path / "o"), *argv]
    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code
    assert code != 0
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "o").exists()  # refused before anything was created


def test_a_refused_fresh_run_discards_nothing(capsys, dataset, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "samples.sqlite").write_bytes(b"an earlier run")
    (out / "report.md").write_text("its report")
    code = main(["eval", "--dataset", str(dataset), "--out", str(out), "--fresh",
                 "--strategies", "nope"])
    assert code == 1 and "unknown strategy 'nope'" in capsys.readouterr().err
    assert (out / "samples.sqlite").read_bytes() == b"an earlier run"
    assert (out / "report.md").read_text() == "its report"


def test_eval_refuses_a_folder_of_another_run(capsys, dataset, tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "notes.txt").write_text("mine")
    code = main(["eval", "--dataset", str(dataset), "--out", str(tmp_path / "o")])
    assert code == 1
    assert "holds files but no ponder run" in capsys.readouterr().err


@pytest.mark.model
def test_a_folder_refuses_another_served_model(dataset, tmp_path, model_path, llama_server,
                                               capsys):
    """Stored samples are keyed by what produced them: pointed at a server that serves another
    model, a folder is refused in one line, not mixed."""
    from conftest import start_llama_server, stop_server

    out = tmp_path / "run"
    common = ["eval", "--dataset", str(dataset), "--limit", "2", "--strategies", "cot",
              "--budgets", "1", "--max-tokens", "8", "--no-greedy", "--out", str(out)]
    assert main([*common, "--base-url", llama_server, "--model", "smol"]) == 0
    capsys.readouterr()
    assert main([*common, "--base-url", llama_server, "--model", "smol"]) == 0  # resumes
    proc, other = start_llama_server(model_path, "other", tmp_path / "other.log")
    try:
        capsys.readouterr()
        assert main([*common, "--base-url", other, "--model", "other"]) == 1
    finally:
        stop_server(proc)
    err = capsys.readouterr().err.strip()
    assert err.startswith("ponder: error: ") and "holds a different run: served_model" in err
    assert "\n" not in err


ANSWER = "Two plus three makes five. The answer is 5"  # 9 tokens (the fake backend's words)


def _scripted(monkeypatch, respond=lambda request, index: ANSWER):
    import ponder.backends.loading as loading
    import ponder.cli.eval as cli
    import ponder.eval.session as session
    from ponder.backends.fake import ScriptedBackend
    from ponder.backends.models import ModelSpec

    monkeypatch.setattr(session, "resolve_model",
                        lambda *a, **k: ModelSpec("scripted", "scripted"))
    monkeypatch.setattr(loading, "load_backend", lambda *a, **k: ScriptedBackend(respond))
    return cli


def test_the_progress_counts_samples_and_tokens_before_a_problem_finishes(monkeypatch, tmp_path):
    """One problem, four samples drawn in one call: the progress display (the status it is
    drawn from) shows each finished sample and its tokens as it comes, while no problem is done
    yet; not only when the problem is."""
    cli = _scripted(monkeypatch)
    shown = []
    fields = cli._progress_fields

    def spy(status):
        shown.append((status.problems_done, status.samples, status.tokens))
        return fields(status)

    monkeypatch.setattr(cli, "_progress_fields", spy)
    dataset = tmp_path / "one.jsonl"
    dataset.write_text(json.dumps({"question": "What is 2 + 3?", "answer": "#### 5"}) + "\n")
    assert main(["eval", "--dataset", str(dataset), "--strategies", "self-consistency",
                 "--budgets", "4", "--no-greedy", "--concurrency", "1",
                 "--out", str(tmp_path / "o")]) == 0
    running = sorted({s for s in shown if s[0] == 0 and s[1] > 0})
    assert running == [(0, 1, 9), (0, 2, 18), (0, 3, 27), (0, 4, 36)]
    assert shown[-1] == (1, 4, 36)


def _printed_eval(monkeypatch, capsys, tmp_path, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    _scripted(monkeypatch)
    dataset = tmp_path / "two.jsonl"
    dataset.write_text("".join(json.dumps({"question": f"What is {a} + 3?",
                                           "answer": f"#### {a + 3}"}) + "\n" for a in (2, 4)))
    out = tmp_path / f"o{columns}"
    assert main(["eval", "--dataset", str(dataset), "--strategies",
                 "self-consistency,self-consistency[mode=mixed]", "--budgets", "1,2",
                 "--concurrency", "1", "--out", str(out)]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("columns", [80, 200])
def test_the_result_tables_fit_the_terminal_and_cut_no_header(monkeypatch, capsys, tmp_path,
                                                              columns):
    from ponder.eval.report import HEADER, PAIRED_HEADER

    printed = _printed_eval(monkeypatch, capsys, tmp_path, columns)
    lines = printed.splitlines()
    assert "…" not in printed
    assert max(len(line) for line in lines if not line.startswith("wrote ")) <= columns
    words = printed.split()
    # each header whole: on one line, or broken only at its spaces, after a "/", before an "@"
    for header in (*HEADER, *PAIRED_HEADER):
        assert all(part in words for part in header.split()) or all(
            part in words for part in re.sub(r"(?<=/)|(?=@)", " ", header).split()), header
    rows = [line.split() for line in lines]
    assert ["greedy", "1", "50.0%"] == rows[next(i for i, r in enumerate(rows)
                                                 if r[:1] == ["greedy"])][:3]
    if columns == 200:  # wide: every header and label on one line
        assert ["strategy", "budget", "accuracy", "95%", "CI", "tokens/problem"] in \
            [r[:6] for r in rows]
        assert ["self-consistency[mode=mixed]", "2", "50.0%"] in [r[:3] for r in rows]
    else:  # narrow: a long label broken before its options, not cut
        at = next(i for i, r in enumerate(rows) if r[1:3] == ["2", "50.0%"]
                  and r[0] == "self-consistency" and rows[i + 1][:1] == ["[mode=mixed]"])
        assert rows[at + 1] == ["[mode=mixed]", "100.0%"]
