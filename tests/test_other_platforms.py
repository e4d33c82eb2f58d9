"""ponder on other operating systems, simulated here: the POSIX-only names removed and
``sys.platform`` patched before ponder is imported, in a fresh interpreter. Every strategy that
runs no code works; running code says in one line why it cannot."""

import subprocess
import sys

import pytest

# ponder's dependencies are imported first, as the real platform: the point is ponder's own code
DEPENDENCIES = """
import sysconfig, pydantic, pydantic.main, openai, numpy, rich, starlette, jinja2
sysconfig.get_config_vars()
"""
WINDOWS = DEPENDENCIES + """
import os, signal, sys
sys.platform = "win32"
for name in ("SIGXCPU", "SIGXFSZ", "SIGKILL", "SIGALRM"):
    if hasattr(signal, name):
        delattr(signal, name)
for name in ("fork", "geteuid", "getuid", "killpg", "setsid"):
    if hasattr(os, name):
        delattr(os, name)
sys.modules["resource"] = None
sys.modules["fcntl"] = None
"""
MACOS = DEPENDENCIES + 'import sys\nsys.platform = "darwin"\n'
CHECK = """
import asyncio, ponder
from ponder.errors import SandboxUnavailable
from ponder.sandbox import jail
fake = ponder.ScriptedBackend(lambda request, i: "2 + 3 = 5. The answer is 5.")
for name in ("cot", "self-consistency", "best-of-n", "self-refine", "budget-forcing",
             "adaptive-consistency", "deepconf", "router", "beam-search", "dvts", "mcts"):
    result = ponder.solve("What is 2 + 3?", name, backend=fake)
    assert result.answer is not None and result.usage.calls >= 1, name
print("jail:", jail.unavailable())
try:
    ponder.solve("What is 2 + 3?", "program-of-thought", n=1, backend=ponder.ScriptedBackend(
        ["```python\\nprint(5)\\n```"]))
    print("code: ran")
except SandboxUnavailable as exc:
    print("code:", exc)
"""


def run(prelude):
    out = subprocess.run([sys.executable, "-c", prelude + CHECK], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_windows_imports_and_runs_everything_but_code():
    out = run(WINDOWS)
    assert "jail: the jail needs Linux namespaces and this is win32" in out
    assert "code: model-written code cannot run on win32: the sandbox needs POSIX" in out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="simulates macOS on Linux")
def test_macos_runs_everything_and_refuses_the_jail_in_one_line():
    out = run(MACOS)
    assert "jail: the jail needs Linux namespaces and this is darwin" in out
    assert ("code: model-written code runs only in a jail, and none can be made here: the jail "
            "needs Linux namespaces and this is darwin. To run it WITHOUT isolation") in out
