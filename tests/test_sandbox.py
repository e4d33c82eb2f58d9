"""The sandbox: every attack contained, the suite keeps running, nothing left behind."""

import asyncio
import dataclasses
import os
import tempfile

import pytest

from ponder.domains.code_problems import assemble_program, hidden_tests
from ponder.eval.datasets import load_humaneval
from ponder.sandbox import Limits, Sandbox, TestCase

SMALL = Limits(wall_seconds=4, test_seconds=1.5, cpu_seconds=4, memory_mb=512,
               output_bytes=100_000)
ONE = [TestCase("t", "assert True")]


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A sandbox whose working directories go under tmp_path, so leftovers can be seen."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    yield Sandbox(SMALL, workers=2)
    assert list((tmp_path / "tmp").iterdir()) == [], "a working directory was left behind"


def run(sandbox, code, tests=ONE, **kwargs):
    return sandbox.run_sync(code, tests, **kwargs)


def no_process_left(marker):
    for status in os.listdir("/proc"):
        if status.isdigit():
            try:
                with open(f"/proc/{status}/cmdline", "rb") as f:
                    assert marker.encode() not in f.read()
            except OSError:
                pass


def test_passing_and_failing_tests_are_told_apart(sandbox):
    result = run(sandbox, "def f(x):\n    return x * 2",
                 [TestCase("ok", "assert f(2) == 4"), TestCase("bad", "assert f(2) == 5, 'no'"),
                  TestCase("raises", "f(None)")])
    assert result.status == "ok"
    assert [t.status for t in result.tests] == ["passed", "failed", "error"]
    assert result.tests[1].message == "AssertionError: no"
    assert "TypeError" in result.tests[2].message
    assert result.fraction == pytest.approx(1 / 3)


def test_infinite_loop_times_out_and_later_tests_still_run(sandbox):
    result = run(sandbox, "def spin():\n    while True:\n        pass",
                 [TestCase("loop", "spin()"), TestCase("after", "assert 1 + 1 == 2")])
    assert [t.status for t in result.tests] == ["timeout", "passed"]


def test_loop_that_swallows_the_timeout_hits_the_wall_clock(sandbox):
    code = "while True:\n    try:\n        while True: pass\n    except BaseException: pass"
    result = run(sandbox, code)
    assert result.status == "timeout" and result.tests[0].status == "timeout"
    assert result.seconds < SMALL.wall_seconds + 3


def test_fork_bomb_is_refused(sandbox):
    result = run(sandbox, "import os\nwhile True:\n    os.fork()")
    assert result.status == "error" and "os.fork is not allowed" in result.message
    no_process_left("os.fork()")


def test_ctypes_route_around_the_hook_is_refused(sandbox):
    result = run(sandbox, "import ctypes\nctypes.CDLL(None).fork()")
    assert result.status == "error" and "not allowed" in result.message


def test_allocating_10_gb_is_a_memory_error(sandbox):
    result = run(sandbox, "block = bytearray(10 * 1024 ** 3)")
    assert result.status == "memory" and result.tests[0].status == "memory"


def test_writing_outside_the_working_directory_is_refused(sandbox, tmp_path):
    target = tmp_path / "escaped.txt"
    result = run(sandbox, f"open({str(target)!r}, 'w').write('x')")
    assert result.status == "error"  # the jail has no such directory; the audit hook refuses
    assert not target.exists()
    result = run(sandbox, "import os\nos.remove('/etc/hostname')")
    assert result.status == "error"
    assert os.path.exists("/etc/hostname")


def test_the_callers_environment_is_not_visible(sandbox, monkeypatch):
    monkeypatch.setenv("PONDER_TEST_SECRET", "hunter2")
    result = run(sandbox, "import os\nprint(sorted(os.environ))", as_main=True)
    assert result.status == "ok" and "PONDER_TEST_SECRET" not in result.stdout
    result = run(sandbox, "import os\nprint(open(f'/proc/{os.getppid()}/environ').read())",
                 as_main=True)
    assert "hunter2" not in result.stdout and "not allowed" in result.message


def test_network_connections_fail(sandbox):
    result = run(sandbox, "import socket\nsocket.create_connection(('127.0.0.1', 9), 1)")
    assert result.status == "error"
    assert "not allowed" in result.message or "Error" in result.message


def test_printing_gigabytes_is_cut_off(sandbox):
    result = run(sandbox, "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)",
                 as_main=True)
    assert result.status == "output-limit"
    assert len(result.stdout) <= SMALL.output_bytes


def test_killing_the_parent_is_refused(sandbox):
    result = run(sandbox, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)")
    assert result.status == "error" and "os.kill is not allowed" in result.message
    assert run(sandbox, "x = 1").status == "ok"  # we are alive and the sandbox still works


def test_deleting_its_own_files_is_harmless(sandbox):
    code = ("import os, shutil\nopen('a.txt', 'w').write('x')\nos.mkdir('d')\n"
            "open('d/b.txt', 'w').write('y')\nos.chmod('d', 0)\n"
            "shutil.rmtree(os.getcwd(), ignore_errors=True)")
    # where the checkout (and its virtual environment) lives under /tmp, the jail binds the
    # interpreter under its work dir, and the rmtree walks all of it (about 1 s here): more time
    patient = Sandbox(dataclasses.replace(SMALL, test_seconds=10, wall_seconds=20), workers=2)
    result = run(patient, code)
    assert result.status in ("ok", "error")  # whatever it managed, the fixture checks cleanup


def test_exit_and_crash_paths(sandbox):
    assert run(sandbox, "import sys\nsys.exit(3)").status == "error"
    assert run(sandbox, "import os\nos._exit(3)").status == "error"
    assert run(sandbox, "def f(:").message.startswith("SyntaxError")


def test_many_candidates_in_parallel(sandbox):
    async def many():
        return await asyncio.gather(*(sandbox.run(f"print({i})", as_main=True)
                                      for i in range(12)))

    results = asyncio.run(many())
    assert [r.stdout.strip() for r in results] == [str(i) for i in range(12)]


def test_captured_values_for_execution_voting(sandbox):
    result = run(sandbox, "def f(x):\n    return [x] * 2",
                 [TestCase("a", capture="f(1)"), TestCase("b", capture="f(None) + 1")])
    assert [t.value for t in result.tests] == ["[1, 1]", "<TypeError>"]


@pytest.mark.parametrize("task", ["HumanEval/0", "HumanEval/12", "HumanEval/33"])
def test_humaneval_known_good_and_known_bad(sandbox, task):
    problem = next(p for p in load_humaneval(40) if p.id == task)
    setup, tests = hidden_tests(problem)
    good = assemble_program(problem, problem.question + problem.answer)
    assert run(sandbox, good, tests, setup=setup).ok
    bad = assemble_program(problem, problem.question + "    return None\n")
    result = run(sandbox, bad, tests, setup=setup)
    assert not result.ok and result.tests[0].status in ("failed", "error")
