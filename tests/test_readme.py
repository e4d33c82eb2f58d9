"""The README tells the truth: its commands that need no model or network run as written and
print what it shows, and every flag and `-o` option it names exists."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ponder import registry
from ponder.cli.main import build_parser

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
# Flags of other tools the README's recipes use (pip, vLLM, SGLang, llama.cpp's server).
OTHER_TOOLS = {"--no-cache-dir", "--force-reinstall", "--model-path", "--upgrade", "--runner",
               "--trust-remote-code", "--pooler-config"}


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


def run(command: str) -> subprocess.CompletedProcess:
    argv = shlex.split(command)
    assert argv[0] == "ponder"
    return subprocess.run([sys.executable, "-m", "ponder", *argv[1:]], capture_output=True,
                          text=True, timeout=120)


def test_the_bad_input_examples_print_what_the_readme_shows():
    block = next(b for b in code_blocks() if '$ ponder ask "q" --strategy nope' in b)
    lines = block.strip().splitlines()
    checked = 0
    for i, line in enumerate(lines):
        if line.startswith("$ ponder") and "--base-url" not in line:  # no server here
            out = run(line[2:])
            assert out.returncode != 0
            assert out.stderr.strip() == lines[i + 1]
            checked += 1
    assert checked >= 1


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
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "pip install -e '.[dev]' && python -m pytest -q" in README
    assert "python -m pip install --quiet -e '.[dev]'" in ci and "python -m pytest -q" in ci
