"""Run untrusted Python in a separate, limited process and report what each test did.

What is isolated (Linux):

- a separate process in its own session, killed as a whole group when it ends or overruns the
  wall clock; CPU time, address space (memory), file size, open files and process count are
  capped with rlimits; stdout and stderr are capped (the process is killed past the cap);
- a fresh temporary working directory, removed afterwards; an empty environment (no variable of
  the caller reaches the candidate); ``python -I`` (no user site, no PYTHON* variables);
- no network: a new network namespace (as root, or through an unprivileged user namespace where
  the kernel allows one); when running as root the candidate also drops to user ``nobody``, so it
  cannot write outside its directory or signal ponder;
- everywhere, an audit hook refuses forks, subprocesses, signals, sockets, ctypes, and writes,
  renames or deletions outside the working directory.

What is not: without root or user namespaces (e.g. macOS, locked-down containers) the network
and filesystem rules rest on the audit hook alone, which a determined attacker with a native
extension could get around; reads of world-readable files are allowed everywhere. Run ponder in
a container or VM when the code may be hostile rather than merely wrong.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import signal
import stat
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

NOBODY = 65534
RUNNER = (Path(__file__).parent / "runner.py").read_text(encoding="utf-8")

TestStatus = Literal["passed", "failed", "error", "timeout", "memory", "killed"]
ExecStatus = Literal["ok", "error", "timeout", "memory", "killed", "output-limit"]


@dataclass(frozen=True)
class Limits:
    """Per-execution limits. ``test_seconds`` bounds the program's top level and each test."""

    wall_seconds: float = 10.0
    test_seconds: float = 3.0
    cpu_seconds: int = 10
    memory_mb: int = 1024
    processes: int = 8
    output_bytes: int = 1_000_000
    file_bytes: int = 16_000_000
    network: bool = False


@dataclass(frozen=True)
class TestCase:
    """Python statements run in the program's namespace (an ``assert``, ``check(f)``...).
    ``capture``: an expression whose ``repr`` is reported back (execution-based voting)."""

    __test__ = False  # not a pytest test class

    name: str
    source: str = "pass"
    capture: str | None = None


@dataclass(frozen=True)
class TestOutcome:
    __test__ = False

    name: str
    status: TestStatus
    message: str = ""
    seconds: float = 0.0
    value: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass(frozen=True)
class Execution:
    """What happened: the program's status, one outcome per test, its (capped) output."""

    status: ExecStatus
    tests: tuple[TestOutcome, ...] = ()
    stdout: str = ""
    stderr: str = ""
    message: str = ""
    seconds: float = 0.0
    isolation: tuple[str, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> int:
        return sum(t.passed for t in self.tests)

    @property
    def fraction(self) -> float | None:
        """Fraction of tests passed (None without tests)."""
        return self.passed / len(self.tests) if self.tests else None

    @property
    def ok(self) -> bool:
        return self.status == "ok" and all(t.passed for t in self.tests)

    def failures(self) -> list[TestOutcome]:
        return [t for t in self.tests if not t.passed]


_SIGNAL_STATUS: dict[int, ExecStatus] = {signal.SIGXCPU: "timeout", signal.SIGXFSZ: "killed"}


class Sandbox:
    """Runs candidates, at most ``workers`` at a time (default: the CPU count).

    >>> sandbox = Sandbox()
    >>> run = sandbox.run_sync("def f(x): return x + 1", [TestCase("t", "assert f(1) == 2")])
    >>> run.status, run.fraction
    ('ok', 1.0)
    """

    def __init__(self, limits: Limits | None = None, workers: int | None = None) -> None:
        self.limits = limits or Limits()
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}
        self.runs = 0
        self.seconds = 0.0

    def _slot(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if loop not in self._slots:
            self._slots = {k: v for k, v in self._slots.items() if not k.is_closed()}
            self._slots[loop] = asyncio.Semaphore(self.workers)
        return self._slots[loop]

    def run_sync(self, code: str, tests: Sequence[TestCase] = (), **kwargs: object
                 ) -> Execution:
        return asyncio.run(self.run(code, tests, **kwargs))  # type: ignore[arg-type]

    async def run(self, code: str, tests: Sequence[TestCase] = (), *, setup: str = "",
                  stdin: str = "", as_main: bool = False) -> Execution:
        """Run ``code``, then ``setup`` (test helpers), then each test. ``as_main``: the program
        runs as ``__main__`` (scripts that print their answer)."""
        async with self._slot():
            started = time.monotonic()
            try:
                return await self._run(code, tests, setup, stdin, as_main)
            finally:
                self.runs += 1
                self.seconds += time.monotonic() - started

    async def _run(self, code: str, tests: Sequence[TestCase], setup: str, stdin: str,
                   as_main: bool) -> Execution:
        limits = self.limits
        workdir = tempfile.mkdtemp(prefix="ponder-sandbox-")
        read_fd, write_fd = os.pipe()
        proc = None
        started = time.monotonic()
        try:
            as_nobody = os.geteuid() == 0 and _python_readable_by_others()
            if as_nobody:
                os.chown(workdir, NOBODY, NOBODY)
            spec = {
                "code": code, "setup": setup, "stdin": stdin, "as_main": as_main,
                "tests": [{"name": t.name, "source": t.source,
                           **({"capture": t.capture} if t.capture else {})} for t in tests],
                "test_timeout": limits.test_seconds, "network": limits.network,
                "channel": write_fd, "drop_to_nobody": as_nobody,
                "limits": {
                    "memory_bytes": limits.memory_mb * 2**20,
                    "cpu_seconds": limits.cpu_seconds,
                    "processes": _process_allowance(limits.processes, self.workers, as_nobody),
                    "file_bytes": limits.file_bytes,
                },
            }
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-c", RUNNER,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, pass_fds=(write_fd,), cwd=workdir,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir,
                     "TMPDIR": workdir},
                start_new_session=True,
            )
            os.close(write_fd)
            write_fd = -1
            return await self._collect(proc, read_fd, json.dumps(spec).encode(), tests, started)
        finally:
            if write_fd >= 0:
                os.close(write_fd)
            if proc is not None:
                _kill_group(proc.pid)
            shutil.rmtree(workdir, onerror=_force_remove)

    async def _collect(self, proc: asyncio.subprocess.Process, read_fd: int, spec: bytes,
                       tests: Sequence[TestCase], started: float) -> Execution:
        limits = self.limits
        loop = asyncio.get_running_loop()
        channel = asyncio.StreamReader(limit=2**22)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(channel), os.fdopen(read_fd, "rb"))
        out, err = bytearray(), bytearray()
        overflow = asyncio.Event()

        async def drain(reader: asyncio.StreamReader, sink: bytearray) -> None:
            while chunk := await reader.read(65536):
                room = limits.output_bytes - len(sink)
                sink.extend(chunk[: max(room, 0)])
                if len(chunk) > room:
                    overflow.set()
                    _kill_group(proc.pid)

        async def feed() -> None:
            assert proc.stdin is not None
            try:
                proc.stdin.write(spec)
                await proc.stdin.drain()
                proc.stdin.close()
            except (BrokenPipeError, ConnectionResetError):
                pass

        assert proc.stdout is not None and proc.stderr is not None
        tasks = [asyncio.ensure_future(x) for x in (
            feed(), drain(proc.stdout, out), drain(proc.stderr, err), channel.read(), proc.wait())]
        try:
            _, pending = await asyncio.wait(tasks, timeout=limits.wall_seconds)
            timed_out = bool(pending)
            if timed_out:
                _kill_group(proc.pid)
                await asyncio.wait(tasks, timeout=5)
            lines = tasks[3].result().decode("utf-8", "replace").splitlines() \
                if tasks[3].done() else []
        finally:
            for task in tasks:
                task.cancel()
            transport.close()
        return _assemble(lines, tests, proc.returncode, timed_out, overflow.is_set(),
                         bytes(out), bytes(err), time.monotonic() - started)


def _assemble(lines: list[str], tests: Sequence[TestCase], returncode: int | None,
              timed_out: bool, overflow: bool, out: bytes, err: bytes, seconds: float
              ) -> Execution:
    isolation: tuple[str, ...] = ()
    program: dict | None = None
    outcomes: list[TestOutcome] = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a candidate writing garbage to the channel forfeits its claims
        if not isinstance(record, dict):
            continue
        if "isolation" in record:
            isolation = tuple(record["isolation"])
        elif "program" in record:
            program = record
        elif "name" in record and len(outcomes) < len(tests):
            outcomes.append(TestOutcome(
                str(record["name"]), record.get("status", "error"),
                str(record.get("message", "")), float(record.get("seconds", 0.0)),
                record.get("value")))
    status: ExecStatus
    message = ""
    if overflow:
        status, message = "output-limit", "output exceeded the limit"
    elif timed_out:
        status, message = "timeout", "wall-clock limit"
    elif program is not None and program["program"] != "ok":
        status, message = program["program"], program.get("message", "")
    elif returncode is not None and returncode < 0:
        status = _SIGNAL_STATUS.get(-returncode, "killed")
        message = f"killed by {signal.Signals(-returncode).name}" if -returncode in set(
            signal.Signals) else f"killed by signal {-returncode}"
    elif program is None or len(outcomes) < len(tests):
        status = "error" if returncode else "killed"
        message = (err.decode("utf-8", "replace").strip().splitlines() or
                   [f"the process exited with code {returncode}"])[-1]
    else:
        status = "ok"
    rest: TestStatus = "error" if status in ("ok", "error") else (
        status if status in ("timeout", "memory") else "killed")
    for test in tests[len(outcomes):]:
        outcomes.append(TestOutcome(test.name, rest, message))
    return Execution(status, tuple(outcomes), out.decode("utf-8", "replace"),
                     err.decode("utf-8", "replace"), message, seconds, isolation)


def _process_allowance(extra: int, workers: int, as_nobody: bool) -> int:
    """RLIMIT_NPROC counts every process of the user. As nobody the only ones are sandboxes;
    otherwise the user's current tasks count too."""
    if as_nobody:
        return extra + workers
    uid = str(os.getuid())
    tasks = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if fields.get("Uid", "").split()[:1] == [uid]:
            tasks += int(fields.get("Threads", "1").strip() or 1)
    return tasks + extra + workers


@functools.cache
def _python_readable_by_others() -> bool:
    """Can user nobody run this interpreter's standard library (e.g. not under /root)?"""
    for start in (Path(os.__file__).resolve().parent, Path(sys.executable).resolve().parent):
        for path in (start, *start.parents):
            mode = path.stat().st_mode
            if not mode & stat.S_IXOTH or (path == start and not mode & stat.S_IROTH):
                return False
    return True


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _force_remove(func, path, exc_info) -> None:  # type: ignore[no-untyped-def]
    """A candidate may have made its files read-only; we still remove them."""
    try:
        os.chmod(os.path.dirname(path), stat.S_IRWXU)
        os.chmod(path, stat.S_IRWXU)
        func(path)
    except OSError:
        pass
