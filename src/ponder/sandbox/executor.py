"""Run untrusted Python and report what each test did, in a jail the kernel enforces.

``isolation="jail"`` (the default; ``PONDER_SANDBOX`` overrides it): every run executes in the
bubblewrap jail of :mod:`ponder.sandbox.jail` — its own user, PID, mount and network
namespaces as uid 65534, a read-only root with only the interpreter in it, a size-capped tmpfs
as work directory, a seccomp filter — under rlimits on memory, CPU, processes and file size,
with its output and its result channel capped by the host, and killed whole at the wall clock.
Inside, the program under test and the tests run in two processes (:mod:`ponder.sandbox.runner`),
so a program cannot forge its own verdict. Where no jail can be made, a run raises
:class:`~ponder.errors.SandboxUnavailable` saying why.

``isolation="none"`` (``--sandbox none``, ``PONDER_SANDBOX=none``) runs the same two processes
as a plain child of this one: a new network namespace where the kernel allows it, user
``nobody`` or no capabilities as root, rlimits, and an audit hook that refuses forks, signals,
sockets, ctypes and writes outside the work directory. That is a seat belt for wrong code, not a
boundary for hostile code (plain Python can remove an audit hook): every such run logs a
warning.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import os
import shutil
import signal
import stat
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ponder.errors import ConfigError, SandboxUnavailable
from ponder.sandbox import jail

log = logging.getLogger("ponder.sandbox")
NOBODY = 65534
Isolation = Literal["jail", "none"]
ISOLATIONS = ("jail", "none")
RUNNER = (Path(__file__).parent / "runner.py").read_text(encoding="utf-8")

TestStatus = Literal["passed", "failed", "error", "timeout", "memory", "killed"]
ExecStatus = Literal["ok", "error", "failed", "timeout", "memory", "killed", "output-limit"]
TEST_STATUSES = ("passed", "failed", "error", "timeout", "memory", "killed")
PROGRAM_STATUSES = ("ok", "error", "failed", "timeout", "memory")


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
    disk_mb: int = 64
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


# POSIX only (absent on Windows, where no code runs: see Sandbox.run)
_SIGNAL_STATUS: dict[int, ExecStatus] = {
    number: status for name, status in (("SIGXCPU", "timeout"), ("SIGXFSZ", "killed"))
    if (number := getattr(signal, name, None)) is not None}


class Sandbox:
    """Runs candidates, at most ``workers`` at a time (default: the CPU count), in the jail
    (``isolation="jail"``) or, when asked, without one (``"none"``); None reads
    ``PONDER_SANDBOX`` (default ``jail``) at each run.

    >>> sandbox = Sandbox()
    >>> run = sandbox.run_sync("def f(x): return x + 1", [TestCase("t", "assert f(1) == 2")])
    >>> run.status, run.fraction
    ('ok', 1.0)
    """

    def __init__(self, limits: Limits | None = None, workers: int | None = None,
                 isolation: Isolation | None = None) -> None:
        self.limits = limits or Limits()
        self.workers = max(1, workers or os.cpu_count() or 1)
        if isolation is not None and isolation not in ISOLATIONS:
            raise ConfigError(f"unknown sandbox isolation {isolation!r}; valid: jail, none")
        self.isolation = isolation
        self._slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}
        self.runs = 0
        self.seconds = 0.0

    @property
    def mode(self) -> Isolation:
        """The isolation the next run gets."""
        if self.isolation is not None:
            return self.isolation
        chosen = os.environ.get("PONDER_SANDBOX", "jail").strip().lower() or "jail"
        if chosen not in ISOLATIONS:
            raise ConfigError(f"PONDER_SANDBOX={chosen!r}: valid values are jail, none")
        return chosen  # type: ignore[return-value]

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
                  stdin: str = "", as_main: bool = False, expose: Sequence[str] = ()
                  ) -> Execution:
        """Run ``code``, then ``setup`` (test helpers), then each test. ``as_main``: the program
        runs as ``__main__`` (scripts that print their answer).

        The tests see Python's real built-ins and reach the program only through the names
        they read without defining them (``f`` in ``assert f(1) == 2``), never a built-in's
        name, and through ``expose`` (the task's entry point: exposed even where it is a
        built-in's name)."""
        mode = self.mode
        if not hasattr(os, "fork"):
            raise SandboxUnavailable(
                f"model-written code cannot run on {sys.platform}: the sandbox needs POSIX "
                "processes (Linux for the jail); run ponder on Linux, or in WSL or a container")
        if mode == "jail":
            why = await asyncio.to_thread(jail.unavailable)
            if why is not None:
                raise SandboxUnavailable(
                    f"model-written code runs only in a jail, and none can be made here: {why}. "
                    "To run it WITHOUT isolation, pass --sandbox none (PONDER_SANDBOX=none)")
        else:
            log.warning("running model-written code WITHOUT a jail (sandbox isolation 'none'): "
                        "it can read your files and reach your network")
        async with self._slot():
            started = time.monotonic()
            try:
                return await self._run(code, tests, setup, stdin, as_main, mode,
                                       tuple(expose))
            finally:
                self.runs += 1
                self.seconds += time.monotonic() - started

    async def _run(self, code: str, tests: Sequence[TestCase], setup: str, stdin: str,
                   as_main: bool, mode: Isolation, expose: tuple[str, ...] = ()) -> Execution:
        limits = self.limits
        read_fd, write_fd = os.pipe()
        jail_fds: tuple[int, ...] = ()
        workdir = None
        proc = None
        started = time.monotonic()
        rlimits = {"memory_bytes": limits.memory_mb * 2**20, "cpu_seconds": limits.cpu_seconds,
                   "file_bytes": limits.file_bytes}
        try:
            runner_setup: dict[str, Any] = {"channel": write_fd, "network": limits.network,
                                            "packages": _site_packages()}
            if mode == "jail":
                bwrap = jail.find_bwrap()
                assert bwrap is not None  # unavailable() said so
                prefix, jail_fds = await jail.prepare_async(
                    bwrap, disk_bytes=limits.disk_mb * 2**20, network=limits.network)
                runner_setup.update(
                    jailed=True, isolation=[*jail.features(), f"tmpfs-{limits.disk_mb}MB"],
                    limits={**rlimits, "processes": jail.process_limit(limits.processes,
                                                                       self.workers)})
                cwd, pass_fds = None, (write_fd, *jail_fds)
            else:
                workdir = tempfile.mkdtemp(prefix="ponder-sandbox-")
                as_nobody = os.geteuid() == 0 and _python_readable_by_others()
                if as_nobody:
                    os.chown(workdir, NOBODY, NOBODY)
                prefix = []
                runner_setup.update(
                    jailed=False, drop_to_nobody=as_nobody,
                    limits={**rlimits, "processes": _process_allowance(
                        limits.processes + 2, self.workers, as_nobody)})
                cwd, pass_fds = workdir, (write_fd,)
            spec = {"code": code, "setup": setup, "stdin": stdin, "as_main": as_main,
                    "expose": list(expose),
                    "tests": [{"name": t.name, "source": t.source,
                               **({"capture": t.capture} if t.capture else {})} for t in tests],
                    "test_timeout": limits.test_seconds}
            home = workdir or jail.WORKDIR
            proc = await asyncio.create_subprocess_exec(
                *prefix, sys.executable, "-I", "-S", "-c", RUNNER, json.dumps(runner_setup),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, pass_fds=pass_fds, cwd=cwd,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": home, "TMPDIR": home},
                start_new_session=True,
            )
            os.close(write_fd)
            write_fd = -1
            return await self._collect(proc, read_fd, json.dumps(spec).encode(), tests, started)
        finally:
            if write_fd >= 0:
                os.close(write_fd)
            if jail_fds:
                jail.release(jail_fds, ended=proc is not None and proc.returncode == 0)
            if proc is not None:
                _kill_group(proc.pid)
            if workdir is not None:
                shutil.rmtree(workdir, onerror=_force_remove)

    async def _collect(self, proc: asyncio.subprocess.Process, read_fd: int, spec: bytes,
                       tests: Sequence[TestCase], started: float) -> Execution:
        limits = self.limits
        loop = asyncio.get_running_loop()
        channel = asyncio.StreamReader(limit=2**22)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(channel), os.fdopen(read_fd, "rb"))
        out, err, verdicts = bytearray(), bytearray(), bytearray()
        overflow = asyncio.Event()

        async def drain(reader: asyncio.StreamReader, sink: bytearray, cap: int,
                        is_output: bool) -> None:
            while chunk := await reader.read(65536):
                room = cap - len(sink)
                sink.extend(chunk[: max(room, 0)])
                if len(chunk) > room:  # stop reading: the jail ends now
                    if is_output:
                        overflow.set()
                    _kill_group(proc.pid)
                    return

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
            feed(), drain(proc.stdout, out, limits.output_bytes, True),
            drain(proc.stderr, err, limits.output_bytes, True),
            drain(channel, verdicts, channel_cap(tests), False), proc.wait())]
        try:
            _, pending = await asyncio.wait(tasks, timeout=limits.wall_seconds)
            timed_out = bool(pending)
            if timed_out:
                _kill_group(proc.pid)
                await asyncio.wait(tasks, timeout=5)
        finally:
            for task in tasks:
                task.cancel()
            transport.close()
            pipes = getattr(proc, "_transport", None)  # its pipes, when we stopped reading early
            if pipes is not None:
                pipes.close()
        lines = bytes(verdicts).decode("utf-8", "replace").splitlines()
        return _assemble(lines, tests, proc.returncode, timed_out, overflow.is_set(),
                         bytes(out), bytes(err), time.monotonic() - started)


def channel_cap(tests: Sequence[TestCase]) -> int:
    """The most the host reads of the verdicts: generous for honest records (messages are cut at
    2,000 characters, captured values at 1,000), small enough to never matter."""
    return 16_384 + 8_192 * len(tests)


def _text(value: Any, width: int) -> str:
    return value[:width] if isinstance(value, str) else ""


def _seconds(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) \
        and not isinstance(value, bool) else 0.0


def _assemble(lines: list[str], tests: Sequence[TestCase], returncode: int | None,
              timed_out: bool, overflow: bool, out: bytes, err: bytes, seconds: float
              ) -> Execution:
    """The execution from the checker's records. A record that is not what the checker writes
    (not JSON, a wrong name or status, out of order) ends the reading: the tests it should
    have decided fail, they are never an error here."""
    isolation: tuple[str, ...] = ()
    program: dict | None = None
    outcomes: list[TestOutcome] = []
    for line in lines:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            break
        if not isinstance(record, dict):
            break
        if "isolation" in record and isinstance(record["isolation"], list):
            isolation = tuple(str(x)[:40] for x in record["isolation"][:20])
        elif "program" in record and record["program"] in PROGRAM_STATUSES:
            program = record
        elif (len(outcomes) < len(tests) and record.get("name") == tests[len(outcomes)].name
              and record.get("status") in TEST_STATUSES):
            value = record.get("value")
            outcomes.append(TestOutcome(
                tests[len(outcomes)].name, record["status"], _text(record.get("message"), 2000),
                _seconds(record.get("seconds")),
                value[:1000] if isinstance(value, str) else None))
        else:
            break
    status: ExecStatus
    message = ""
    if overflow:
        status, message = "output-limit", "output exceeded the limit"
    elif timed_out:
        status, message = "timeout", "wall-clock limit"
    elif program is not None and program["program"] != "ok":
        status, message = program["program"], _text(program.get("message"), 2000)
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
    rest: TestStatus = "error" if status in ("ok", "error", "failed") else (
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
def _site_packages() -> list[str]:
    """Where the program under test may import installed packages from (numpy, sympy...): the
    interpreter starts without ``site`` (faster, and no ``.pth`` file runs), so they are put
    on its path by hand."""
    paths = sysconfig.get_paths()
    return sorted({paths["purelib"], paths["platlib"]})


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
