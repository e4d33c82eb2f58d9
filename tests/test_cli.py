import json
import subprocess
import sys

import pytest

import ponder
from ponder.cli.main import main


def one_line_error(capsys, argv, code=1):
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("ponder: error: ") and "\n" not in err, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("argv,message", [
    (["ask", ""], "the question is empty"),
    (["ask", "q", "--strategy", "nope"],
     "unknown strategy 'nope'; valid: adaptive-consistency, beam-search, best-of-n"),
    (["ask", "q", "-n", "0"], "greater than or equal to 1"),
    (["ask", "q", "--max-tokens-total", "-3"], "must be positive"),
    (["ask", "q", "--model", "/no/such/model.gguf"], "model file not found"),
    (["ask", "q", "--base-url", "http://127.0.0.1:9/v1"], "needs --model"),
    (["ask", "q", "-o", "weighting=bogus"], "weighting"),
    (["ask", "q", "--model", "hf:only-owner"], "hf:OWNER/REPO/FILE.gguf"),
    (["ask", "q", "-B", "bogus=1"], "unknown llamacpp backend option bogus; valid: n_ctx"),
])
def test_bad_input_one_line_nonzero(capsys, argv, message):
    assert message in one_line_error(capsys, argv)


def test_corrupt_model_file(capsys, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x01" * 100)
    assert "corrupt" in one_line_error(capsys, ["ask", "q", "--model", str(bad)])


def test_unreachable_server(capsys):
    from conftest import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    err = one_line_error(capsys, ["ask", "q", "--base-url", url, "--model", "m"])
    assert "cannot reach the server" in err


def test_hub_model_offline_is_one_clear_line(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    err = one_line_error(capsys, ["ask", "q", "--model", "hf:owner/repo/model.gguf"])
    assert "no network and not in the local cache" in err


def test_argparse_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["ask", "q", "-n", "many"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ponder: error:") and "\n" not in err


def test_strategies_lists_every_strategy_with_effort(capsys):
    assert main(["strategies"]) == 0
    out = capsys.readouterr().out
    for name in ("cot", "self-consistency", "best-of-n", "self-refine", "budget-forcing"):
        assert name in out
    assert "n=16" in out


def test_models_lists_bundled_and_local_files(capsys, tmp_path):
    (tmp_path / "mine.gguf").write_bytes(b"GGUF")
    assert main(["models", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m-instruct" in out and "mine.gguf" in out


@pytest.mark.model
def test_ask_end_to_end_json(tmp_path):
    trace_file = tmp_path / "trace.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "ponder", "ask", "What is 2 + 3?", "-n", "3", "--seed", "1",
         "--max-tokens", "48", "--json", "--trace-out", str(trace_file)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["strategy"] == "self-consistency"
    assert len(result["candidates"]) == 3
    assert {"answer", "votes", "usage", "text"} <= set(result["candidates"][0])
    usage = result["usage"]
    assert usage["calls"] == 1 and usage["completion_tokens"] == sum(
        c["usage"]["completion_tokens"] for c in result["candidates"])
    kinds = [n["kind"] for n in result["trace"]["nodes"]]
    assert kinds.count("generate") == 3 and "vote" in kinds
    assert len(trace_file.read_text().splitlines()) == len(kinds)


@pytest.mark.model
def test_ask_show_trace_renders_a_tree():
    proc = subprocess.run(
        [sys.executable, "-m", "ponder", "ask", "What is 2 + 3?", "-s", "self-refine",
         "-o", "rounds=1", "--max-tokens", "32", "--show-trace"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "trace of self-refine" in proc.stdout and "draft" in proc.stdout
    assert "Answer:" in proc.stdout and "cost:" in proc.stdout


def test_public_api_is_exact():
    import types

    public = {name for name, value in vars(ponder).items()
              if not name.startswith("_") and not isinstance(value, types.ModuleType)
              and name != "annotations"}  # from __future__
    assert sorted(public | {"__version__", *ponder._LAZY}) == sorted(ponder.__all__)
    assert all(callable(getattr(ponder, name)) for name in ponder._LAZY)
