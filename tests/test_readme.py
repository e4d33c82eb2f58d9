"""The README tells the truth: its commands that need no model or network run as written and
print what it shows, its seeded examples on the bundled model print the lines it shows, and
every flag and `-o` option it names exists."""

import json
import os
import re
import shlex
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ponder import registry
from ponder.cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
# Flags of other tools the README's recipes use (pip, vLLM, SGLang, llama.cpp's server).
OTHER_TOOLS = {"--no-cache-dir", "--force-reinstall", "--model-path", "--upgrade", "--runner",
               "--trust-remote-code", "--pooler-config", "--options", "--no-deps"}


def code_blocks() -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", README, re.DOTALL)


def ponder_flags() -> set[str]:
    flags: set[str] = set()
    parser = build_parser()
    parsers = [parser]
    for action in parser._actions:  # the sub-commands' parsers
        if action.choices and isinstance(action.choices, dict):
            parsers += list(action.choices.values())
    for p in parsers:
        for action in p._actions:
            flags |= {s for s in action.option_strings if s.startswith("--")}
    return flags


def strategy_options() -> set[str]:
    return {name for _, cls in registry.strategies for name in cls.Config.model_fields}


def test_every_flag_the_readme_names_exists():
    named = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]+)", README))
    unknown = sorted(named - ponder_flags() - OTHER_TOOLS)
    assert unknown == []


def test_every_option_the_readme_names_exists():
    named = set(re.findall(r"-o ([a-z_]+)=", README))  # not the KEY=VALUE placeholder
    named |= {k for spec in re.findall(r"\w[\w-]*\[([^\]]+)\]", README)
              for k, _, _ in (item.partition("=") for item in spec.split(",")) if _}
    named -= {"budgets"}  # ponder eval's own per-strategy key, not a strategy option
    assert named and sorted(named - strategy_options()) == []


def test_every_effort_preset_in_the_table_is_the_strategies_own():
    """The strategies table shows each preset's values; they are the code's."""
    for name, cls in registry.strategies:
        row = next(line for line in README.splitlines() if line.startswith(f"| `{name}` |"))
        for preset in cls.effort_presets.values():
            for value in preset.values():
                assert str(value) in row, (name, value)


# -- running the README's commands -----------------------------------------------------------

def run(command: str, timeout: int = 120, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    argv = shlex.split(command)
    assert argv[0] == "ponder"
    return subprocess.run([sys.executable, "-m", "ponder", *argv[1:]], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, "COLUMNS": "120"})


def examples() -> list[tuple[str, list[str]]]:
    """The README's examples that show output: each `$ ` line's command (continuation lines
    joined) and the lines it shows, up to the next `$ ` line or the block's end."""
    found = []
    for block in code_blocks():
        lines = block.rstrip("\n").splitlines()
        i = 0
        while i < len(lines):
            if not lines[i].startswith("$ "):
                i += 1
                continue
            command = lines[i][2:]
            while command.endswith("\\"):
                i += 1
                command = command[:-1].rstrip() + " " + lines[i].strip()
            i += 1
            shown = []
            while i < len(lines) and not lines[i].startswith("$ "):
                shown.append(lines[i])
                i += 1
            found.append((command, shown))
    return found


def output_block(*parts: str) -> tuple[str, list[str]]:
    """The one example whose command holds every one of ``parts``."""
    [found] = [(c, shown) for c, shown in examples() if all(p in c for p in parts)]
    return found


SECONDS = re.compile(r"\b\d+\.\d\ds\b")  # wall time: the machine's, not the output's
ELIDED = re.compile(r"^[\s│]*…$")  # a line "…" (in a tree, indented): lines left out


def assert_shows(shown: list[str], printed: list[str]) -> None:
    """Every line the README shows is printed, in order. Without a `…` line the output is
    exactly the lines shown; a `…` line stands for printed lines left out, and the lines
    between two of them are consecutive printed lines. Seconds are not compared."""
    def norm(lines: list[str]) -> list[str]:
        return [SECONDS.sub("<seconds>", line.rstrip()) for line in lines]

    shown, printed = norm(shown), norm(printed)
    if not any(ELIDED.match(line) for line in shown):
        assert printed == shown
        return
    runs: list[list[str]] = [[]]
    for line in shown:
        if ELIDED.match(line):
            runs.append([])
        else:
            runs[-1].append(line)
    at = 0
    for lines in (r for r in runs if r):
        start = next((k for k in range(at, len(printed) - len(lines) + 1)
                      if printed[k:k + len(lines)] == lines), None)
        assert start is not None, (f"not printed after line {at}: {lines}\n--- printed:\n"
                                   + "\n".join(printed))
        at = start + len(lines)


class ModelsOnly(BaseHTTPRequestHandler):
    """An OpenAI-compatible server that serves one model, `smol`, and answers nothing else."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.rstrip("/").endswith("/models"):
            body = json.dumps({"object": "list", "data": [
                {"id": "smol", "object": "model", "created": 0, "owned_by": "me"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def smol_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ModelsOnly)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_the_bad_input_examples_print_what_the_readme_shows(smol_server):
    url = "http://localhost:8000/v1"  # the README's server: here a stub that serves `smol`
    for parts in [('"q" --strategy nope',), ("--model gpt-17",)]:
        command, shown = output_block(*parts)
        out = run(command.replace(url, smol_server))
        assert out.returncode != 0
        assert [out.stderr.strip()] == [line.replace(url, smol_server) for line in shown]


def test_serving_the_network_without_a_key_is_refused_as_the_readme_says():
    said = re.search(r"`--host 0\.0\.0\.0` stops with `([^`]+)…`", README)
    assert said
    out = run("ponder serve --host 0.0.0.0 --port 1")
    assert out.returncode != 0 and out.stderr.startswith(" ".join(said.group(1).split()))


def test_the_troubleshooting_messages_are_ponders_own():
    """The "you see" column quotes ponder's own messages as the code writes them."""
    table = README[README.index("| you see | because | do |"):]
    table = table[:table.index("\n\n")]
    source = "\n".join(p.read_text() for p in (ROOT / "src" / "ponder").rglob("*.py"))
    quoted = [re.match(r"\| `([^`]+)`", row).group(1) for row in table.splitlines()[2:]]
    ours = [q for q in quoted if not q.startswith(("error:", "Failed building", "Illegal"))]
    assert len(ours) == 6
    for message in ours:  # "…", 'X' and 0.0.0.0 stand for what the message fills in
        for piece in re.split(r"…|'X'|0\.0\.0\.0|[;:]", message):
            assert piece.strip() in source, (message, piece)


def test_distill_prints_what_the_readme_shows(tmp_path):
    """`ponder distill` of the committed store: nothing is generated, so every line holds."""
    command, shown = output_block("ponder distill bench/runs/distill-gsm8k-12")
    out = run(command.replace(" bench/", f" {ROOT}/bench/"), cwd=tmp_path)  # writes data/
    assert out.returncode == 0, out.stderr
    assert_shows(shown, out.stdout.splitlines())


# Seeded `ponder ask` on the bundled model: one request decodes the same way every time, so the
# README shows its real output. It was recorded on a 2-core x86-64 VM; another CPU's kernels
# may pick other tokens (then run the command and paste what it prints).
SEEDED = [("A farmer has 17 sheep", "--max-tokens 256"), ("What is 12 + 30?", "beam-search")]
BENCH_MODEL = ROOT / "bench" / "models" / "qwen2.5-coder-0.5b-instruct.gguf"


@pytest.mark.parametrize("parts", SEEDED, ids=["self-consistency", "beam-search"])
def test_a_seeded_example_on_the_bundled_model_prints_what_the_readme_shows(parts):
    command, shown = output_block(*parts)
    assert "--seed" in command and "--model" not in command
    out = run(command, timeout=300)
    assert out.returncode == 0, out.stderr
    assert_shows(shown, out.stdout.splitlines())


RUN_ID = re.compile(r"\b[0-9a-f]{32}\b")  # a run's random id


@pytest.mark.model
def test_the_mcp_example_prints_what_the_readme_shows():
    """The Python snippet drives `ponder mcp` over stdio with the SDK's client: the same seeded
    search as `ponder ask`'s example, its progress and its account (ids and seconds aside)."""
    snippet = next(b for b in code_blocks() if "from mcp import Client" in b)
    shown = re.search(r"```text\n(.*?)```", README[README.index(snippet):], re.DOTALL).group(1)
    command = 'command="ponder", args=["mcp"]'
    assert command in snippet
    code = snippet.replace(command, f'command={sys.executable!r}, args=["-m", "ponder", "mcp"]')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert_shows([RUN_ID.sub("<id>", line) for line in shown.splitlines()],
                 [RUN_ID.sub("<id>", line) for line in out.stdout.splitlines()])


@pytest.mark.model
def test_the_llm_example_prints_what_the_readme_shows(tmp_path):
    """`llm -m ponder-self-consistency`: the search's reasoning (stderr), then the answer."""
    command, shown = output_block("llm -m ponder-self-consistency")
    argv = shlex.split(command)
    assert argv[0] == "llm"
    env = {k: v for k, v in os.environ.items() if k != "PONDER_MODEL"}
    out = subprocess.run([sys.executable, "-m", "llm", *argv[1:]], capture_output=True,
                         text=True, timeout=300, env={**env, "LLM_USER_PATH": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert_shows(shown, out.stderr.splitlines() + out.stdout.splitlines())


@pytest.mark.skipif(not BENCH_MODEL.is_file(), reason="the benchmark model is not fetched "
                    "(python bench/fetch_model.py); the README marks this example illustrative")
def test_the_benchmark_model_example_prints_what_the_readme_shows():
    command, shown = output_block("A farmer has 17 sheep", "--seed 0", "--model bench/models/")
    out = run(command, timeout=300)
    assert out.returncode == 0, out.stderr
    assert_shows(shown, out.stdout.splitlines())


def test_every_example_that_shows_output_is_checked_here():
    """An example with output is run by a test in this file, or the README says it is
    illustrative and where it came from."""
    checked = [("A farmer has 17 sheep", "--max-tokens 256"), ("What is 12 + 30?",),
               ("--model bench/models/",), ("distill bench/runs/distill-gsm8k-12",),
               ('"q" --strategy nope',), ("--model gpt-17",),
               ("llm -m ponder-self-consistency",)]
    for command, shown in examples():
        assert shown, command
        assert any(all(p in command for p in parts) for parts in checked), command
    assert "illustrative: recorded on a 2-core x86-64 VM" in " ".join(README.split())


@pytest.mark.parametrize("command", ["ponder --help", "ponder ask --help", "ponder eval --help",
                                     "ponder serve --help", "ponder strategies",
                                     "ponder models"])
def test_commands_that_need_no_model_run(command):
    out = run(command)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
    if command == "ponder strategies":
        for name, _ in registry.strategies:
            assert name in out.stdout


def test_the_install_and_test_commands_are_the_ones_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -e '.[dev]' && python -m pytest -q" in README
    assert "python -m pip install --quiet -e '.[dev]'" in ci and "python -m pytest -q" in ci
