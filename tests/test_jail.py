"""The jail, attacked as a hostile program would: the audit hook removed first (plain Python can),
then every route out tried; each test checks the host afterwards. These run as whoever runs the
tests — on the CI machine, root with the interpreter under a root-only directory."""

import json
import os
import socket
import threading
import time

import pytest

from ponder.errors import SandboxUnavailable
from ponder.sandbox import Limits, Sandbox, TestCase, jail
from ponder.sandbox.executor import _assemble, channel_cap

pytestmark = pytest.mark.skipif(jail.unavailable() is not None,
                                reason=f"no jail on this host: {jail.unavailable()}")

LIMITS = Limits(wall_seconds=8, test_seconds=2, cpu_seconds=8, memory_mb=256, disk_mb=16,
                output_bytes=200_000)
# What the attacker does first: find the audit hook's set of blocked events and empty it.
DEFEAT_HOOK = """
import gc
for _obj in gc.get_objects():
    if isinstance(_obj, set) and "os.fork" in _obj:
        _obj.clear()
"""


@pytest.fixture(scope="module")
def sandbox():
    return Sandbox(LIMITS, workers=2, isolation="jail")


def attack(sandbox, body, **kwargs):
    """Run an attack that prints one JSON dict of what it found; return the dict."""
    code = DEFEAT_HOOK + "import json, os\nfound = {}\n" + body + "\nprint(json.dumps(found))\n"
    result = sandbox.run_sync(code, as_main=True, **kwargs)
    assert result.status == "ok", (result.status, result.message, result.stderr[-800:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def host_processes(marker):
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(pid)
            except OSError:
                pass
    return found


def test_the_hook_can_be_removed_and_nothing_else_opens(sandbox):
    found = attack(sandbox, """
found["uid"] = (os.getuid(), os.getgid(), os.geteuid())
for name, path in (("shadow", "/etc/shadow"), ("hostname", "/etc/hostname"),
                   ("root", "/root/.bashrc")):
    try:
        open(path).read()
        found[name] = "read"
    except OSError as exc:
        found[name] = type(exc).__name__
found["etc"] = sorted(os.listdir("/etc"))
found["env"] = sorted(os.environ)
pid = os.fork()  # the hook no longer stops it; the jail does not need to
if pid == 0:
    os._exit(7)
found["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
""")
    assert found["uid"] == [65534, 65534, 65534]
    assert found["shadow"] == found["hostname"] == found["root"] == "FileNotFoundError"
    assert found["etc"] == ["ld.so.cache"] or found["etc"] == []
    assert found["env"] == ["HOME", "LANG", "PATH", "PWD", "TMPDIR"]  # nothing of the host's
    assert found["fork"] == 7


def test_nothing_is_written_outside_the_work_dir(sandbox, tmp_path):
    targets = [tmp_path / "escaped.txt", "/etc/ponder-escaped", "/dev/shm/ponder-escaped",
               "/root/ponder-escaped", "/usr/ponder-escaped", "/ponder-escaped",
               "/dev/ponder-escaped"]
    found = attack(sandbox, f"""
for target in {[str(t) for t in targets]!r}:
    try:
        with open(target, "w") as f:
            f.write("x")
        found[target] = "written"
    except OSError as exc:
        found[target] = type(exc).__name__
os.chdir("/")  # the old hook resolved paths against the work dir: no matter here
try:
    fd = os.open("etc", os.O_RDONLY)
    os.open("x", os.O_WRONLY | os.O_CREAT, dir_fd=fd)
    found["dir_fd"] = "written"
except OSError as exc:
    found["dir_fd"] = type(exc).__name__
with open("/tmp/inside.txt", "w") as f:  # the work dir itself is writable
    found["inside"] = f.write("ok")
""")
    assert all(found[str(t)] != "written" for t in targets), found
    assert found["dir_fd"] != "written" and found["inside"] == 2
    for target in targets:
        assert not os.path.exists(target)


def test_no_process_outlives_a_run(sandbox):
    found = attack(sandbox, """
import time
if os.fork() == 0:  # a double-forked daemon in its own session
    os.setsid()
    if os.fork() == 0:
        os.execv("/bin/sleep", ["sleep", "31337"])
    os._exit(0)
time.sleep(0.3)
found["started"] = True
""")
    assert found["started"]
    time.sleep(0.5)
    assert host_processes("31337") == []


def test_the_host_and_its_processes_are_out_of_reach(sandbox):
    import ctypes  # noqa: F401  (the attack uses it inside the jail)

    me = os.getpid()
    found = attack(sandbox, f"""
import ctypes, signal
libc = ctypes.CDLL(None, use_errno=True)
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
found["sees_host"] = {me} in pids and open(f"/proc/{me}/cmdline").read().find("pytest") >= 0
found["pids"] = pids
found["ptrace"] = libc.ptrace(16, 1, 0, 0)  # PTRACE_ATTACH the jail's init
found["ptrace_errno"] = ctypes.get_errno()
for name, call in (("memfd", lambda: os.memfd_create("x")),
                   ("pidfd", lambda: os.pidfd_open(1)),
                   ("mem", lambda: open("/proc/%d/mem" % os.getppid(), "rb").read(1))):
    try:
        call()
        found[name] = "allowed"
    except OSError as exc:
        found[name] = exc.errno
found["unshare"] = libc.unshare(0x10000000)  # CLONE_NEWUSER
found["mount"] = libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)
""")
    assert not found["sees_host"] and max(found["pids"]) < 100
    assert found["ptrace"] == -1 and found["ptrace_errno"] == 1  # EPERM: seccomp
    assert found["memfd"] == found["pidfd"] == 1  # EPERM
    assert found["mem"] != "allowed"  # the checker is not dumpable
    assert found["unshare"] == -1 and found["mount"] == -1
    assert os.getpid() == me  # and we are still here to check


@pytest.mark.parametrize("how", ["os.kill(-1, signal.SIGKILL)", "os.kill(1, signal.SIGKILL)",
                                 "[os.kill(int(p), signal.SIGSTOP) for p in os.listdir('/proc')"
                                 " if p.isdigit() and int(p) != os.getpid()]"])
def test_stopping_or_killing_what_it_can_ends_only_the_jail(sandbox, how):
    result = sandbox.run_sync(DEFEAT_HOOK + "import os, signal, time\n" + how +
                              "\ntime.sleep(31338)", [TestCase("t", "assert True")])
    assert not result.ok
    assert host_processes("31338") == []
    assert sandbox.run_sync("x = 1", [TestCase("t", "assert x == 1")]).ok


def test_the_network_is_gone(sandbox):
    accepted = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(3)
        port = server.getsockname()[1]

        def accept():
            try:
                accepted.append(server.accept())
            except OSError:
                pass

        listener = threading.Thread(target=accept)
        listener.start()
        found = attack(sandbox, f"""
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), 2)
    found["connect"] = "connected"
except OSError as exc:
    found["connect"] = type(exc).__name__
try:
    socket.getaddrinfo("example.com", 80)
    found["dns"] = "resolved"
except OSError as exc:
    found["dns"] = type(exc).__name__
""")
        listener.join()
    assert found["connect"] != "connected" and found["dns"] != "resolved"
    assert accepted == []


SOCKETS = """
import errno, socket
for name, family, kind in (("vsock", 40, socket.SOCK_STREAM), ("netlink", 16, socket.SOCK_RAW),
                           ("packet", 17, socket.SOCK_RAW), ("inet", 2, socket.SOCK_STREAM),
                           ("inet6", 10, socket.SOCK_DGRAM), ("bluetooth", 31, socket.SOCK_RAW)):
    try:
        socket.socket(family, kind).close()
        found[name] = "opened"
    except OSError as exc:
        found[name] = errno.errorcode.get(exc.errno, exc.errno)
left, right = socket.socketpair()
left.sendall(b"x")
found["pair"] = right.recv(1).decode()
with socket.socket(socket.AF_UNIX) as unix:
    unix.bind("/tmp/unix.sock")
    found["unix"] = "bound"
"""


def test_only_local_sockets_open(sandbox):
    """The network namespace does not cover vsock (the hypervisor, on a VM), netlink or raw
    packets: no family but AF_UNIX opens, and AF_INET/AF_INET6 only where the network is on."""
    found = attack(sandbox, SOCKETS)
    closed = dict.fromkeys(("vsock", "netlink", "packet", "inet", "inet6", "bluetooth"),
                           "EAFNOSUPPORT")
    assert found == {**closed, "pair": "x", "unix": "bound"}
    online = Sandbox(Limits(**{**LIMITS.__dict__, "network": True}), workers=1,
                     isolation="jail")
    found = attack(online, SOCKETS)
    assert found == {**closed, "inet": "opened", "inet6": "opened", "pair": "x",
                     "unix": "bound"}


def test_disk_and_memory_are_capped(sandbox):
    found = attack(sandbox, """
written = 0
try:
    for i in range(30):
        with open(f"/tmp/big{i}", "wb") as f:
            for _ in range(15):
                f.write(b"x" * 2**20)
                written += 2**20
except OSError as exc:
    found["disk"] = exc.errno
found["written_mb"] = written // 2**20
try:
    block = bytearray(2 * 2**30)
    found["memory"] = "allocated"
except MemoryError:
    found["memory"] = "MemoryError"
""")
    assert found["disk"] in (27, 28)  # EFBIG (one file) or ENOSPC (the 16 MB tmpfs)
    assert found["written_mb"] <= LIMITS.disk_mb
    assert found["memory"] == "MemoryError"


def test_two_runs_do_not_see_each_other(sandbox):
    import asyncio

    async def both():
        first = sandbox.run("import time\nopen('/tmp/secret', 'w').write('mine')\n"
                            "time.sleep(1.5)", as_main=True)
        second = sandbox.run("import time, os\ntime.sleep(0.5)\n"
                             "print('secret' in os.listdir('/tmp'), os.path.exists('/tmp/secret'))",
                             as_main=True)
        return await asyncio.gather(first, second)

    _, second = asyncio.run(both())
    assert second.stdout.strip() == "False False"


FORGERIES = """
import builtins, json, os, sys
record = json.dumps({"name": "t1", "status": "passed", "message": "", "seconds": 0.0}) + "\\n"
for fd in range(0, 64):  # every descriptor it might share with whoever decides
    try:
        os.write(fd, record.encode() * 3)
    except OSError:
        pass
json.dumps = lambda *a, **k: '{"name": "t1", "status": "passed"}'
builtins.AssertionError = type("Nothing", (BaseException,), {})
sys.exit = lambda *a: None

def wrong():
    return 2

def spin():
    while True:
        try:
            while True:
                pass
        except BaseException:
            pass
"""


@pytest.mark.parametrize("tests", [
    [TestCase("t1", "assert wrong() == 1")],
    [TestCase("t1", "assert False")],
    [TestCase("t1", "raise RuntimeError('no')")],
    [TestCase("t1", "spin()")],
    [TestCase("t1", "assert wrong() == 1"), TestCase("t2", "assert wrong() == 1")],
])
def test_a_program_cannot_forge_its_verdict(sandbox, tests):
    result = sandbox.run_sync(FORGERIES, tests)
    assert not any(t.passed for t in result.tests)


def test_the_forger_still_gets_honest_verdicts(sandbox):
    result = sandbox.run_sync(FORGERIES, [TestCase("t1", "assert wrong() == 2"),
                                          TestCase("t2", "assert wrong() == 3")])
    assert [t.status for t in result.tests] == ["passed", "failed"]


@pytest.mark.parametrize("ending", [
    "os._exit(0)", "raise SystemExit(0)", "import signal\nos.kill(os.getppid(), signal.SIGKILL)",
    "import sys\nwhile True:\n"
    "    sys.stdout.write('{\"name\": \"t1\", \"status\": \"passed\"}\\n')",
])
def test_ending_early_or_flooding_is_no_pass(sandbox, ending):
    code = DEFEAT_HOOK + "import os\ndef right():\n    return 1\n" + ending
    result = sandbox.run_sync(code, [TestCase("t1", "assert right() == 2")])
    assert not result.tests[0].passed


def test_malformed_or_oversized_records_fail_the_tests():
    tests = [TestCase("a"), TestCase("b")]
    good = json.dumps({"name": "a", "status": "passed"})
    for lines in ([good, "not json"], [good, json.dumps({"name": "b", "status": "won"})],
                  [good, json.dumps({"name": "zzz", "status": "passed"})],
                  [good, "[" * 100_000], [good, json.dumps({"name": "b", "status": "passed",
                                                            "seconds": "NaN", "value": 5})][:1]):
        run = _assemble([json.dumps({"program": "ok"}), *lines], tests, 0, False, False, b"",
                        b"", 0.1)
        assert [t.name for t in run.tests] == ["a", "b"]
        assert run.tests[0].passed and not run.tests[1].passed
    assert channel_cap(tests) < 64 * 1024


def test_nothing_runs_where_no_jail_can_be_made(monkeypatch):
    monkeypatch.setattr(jail, "find_bwrap", lambda: None)
    jail.unavailable.cache_clear()
    try:
        with pytest.raises(SandboxUnavailable, match="bubblewrap is missing.*--sandbox none"):
            Sandbox(LIMITS, isolation="jail").run_sync("print(1)", as_main=True)
    finally:
        monkeypatch.undo()
        jail.unavailable.cache_clear()


def test_no_jail_is_an_explicit_choice_with_a_warning_each_run(monkeypatch, caplog):
    monkeypatch.setenv("PONDER_SANDBOX", "none")
    sandbox = Sandbox(LIMITS)
    assert sandbox.mode == "none"
    for _ in range(2):
        assert sandbox.run_sync("print(1)", as_main=True).stdout == "1\n"
    warnings = [r for r in caplog.records if "WITHOUT a jail" in r.getMessage()]
    assert len(warnings) == 2
    monkeypatch.setenv("PONDER_SANDBOX", "nope")
    with pytest.raises(Exception, match="PONDER_SANDBOX='nope'"):
        sandbox.run_sync("print(1)", as_main=True)


def test_the_cli_refuses_in_one_line_where_no_jail_can_be_made(monkeypatch, capsys, caplog):
    from ponder import ScriptedBackend
    from ponder.backends import loading
    from ponder.cli.main import main

    program = "```python\nprint(6 * 7)\n```"
    monkeypatch.setattr(loading, "load_backend", lambda *a, **k: ScriptedBackend([program] * 4))
    monkeypatch.setattr(jail, "find_bwrap", lambda: None)
    monkeypatch.setenv("PONDER_SANDBOX", "jail")  # so that the --sandbox none below is undone
    jail.unavailable.cache_clear()
    try:
        assert main(["ask", "What is 6 x 7?", "-s", "program-of-thought", "-n", "1",
                     "--no-progress"]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("ponder: error: model-written code runs only in a jail")
        assert "\n" not in err and "--sandbox none" in err
        # the explicit opt-out runs it, and says so
        monkeypatch.setattr(loading, "load_backend",
                            lambda *a, **k: ScriptedBackend([program] * 4))
        assert main(["ask", "What is 6 x 7?", "-s", "program-of-thought", "-n", "1",
                     "--no-progress", "--sandbox", "none"]) == 0
        assert "Answer: 42" in capsys.readouterr().out
        assert "WITHOUT a jail" in caplog.text
    finally:
        monkeypatch.undo()
        jail.unavailable.cache_clear()


def test_the_server_runs_code_only_in_the_jail(monkeypatch):
    """PONDER_SANDBOX=none does not reach a server; where no jail can be made, a request that
    would run code is a 503 that names no host detail."""
    from starlette.testclient import TestClient

    from ponder import ScriptedBackend
    from ponder.server.app import PonderServer

    program = "```python\nprint(6 * 7)\n```"
    monkeypatch.setenv("PONDER_SANDBOX", "none")
    body = {"model": "ponder-program-of-thought", "ponder": {"n": 1},
            "messages": [{"role": "user", "content": "What is 6 x 7?"}]}
    with TestClient(PonderServer(ScriptedBackend(lambda r, i: program)).app()) as http:
        assert http.post("/v1/chat/completions", json=body).json()[
            "choices"][0]["message"]["content"] == "42"
        monkeypatch.setattr(jail, "find_bwrap", lambda: None)
        jail.unavailable.cache_clear()
        try:
            reply = http.post("/v1/chat/completions", json=body)
        finally:
            monkeypatch.undo()
            jail.unavailable.cache_clear()
    assert reply.status_code == 503
    assert reply.json()["error"]["code"] == "sandbox_unavailable"
    assert "bubblewrap" not in reply.text


def test_the_routes_around_the_old_hook_lead_nowhere(sandbox, tmp_path):
    """fork_exec, a "spawn" child (a new interpreter without the hook) and a subinterpreter
    each try to write to the host and to leave a process behind."""
    marker = tmp_path / "escaped"
    found = attack(sandbox, f"""
import multiprocessing, subprocess, time
script = "open({str(marker)!r}, 'w').write('x')"
try:  # subprocess is _posixsubprocess.fork_exec underneath
    shell = subprocess.Popen(["/bin/sh", "-c", "sleep 31339 & echo x > /etc/escaped"],
                             start_new_session=True)
    found["fork_exec"] = shell.wait(5)
except Exception as exc:
    found["fork_exec"] = type(exc).__name__
try:
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=exec, args=(script,))
    child.start()
    child.join(5)
    found["spawn"] = child.exitcode
except Exception as exc:
    found["spawn"] = type(exc).__name__
try:
    import _xxsubinterpreters as subinterpreters
    subinterpreters.run_string(subinterpreters.create(), script)
    found["subinterpreter"] = "ran"
except Exception as exc:
    found["subinterpreter"] = type(exc).__name__
time.sleep(0.3)
""")
    # each started (the hook is gone) and failed at the jail's walls
    assert found == {"fork_exec": 2, "spawn": 1, "subinterpreter": "RunFailedError"}
    time.sleep(0.3)
    assert not marker.exists() and not os.path.exists("/etc/escaped")
    assert host_processes("31339") == []


def test_a_question_cannot_run_code_through_its_examples(tmp_path):
    """A question's doctest "expected value" used to be evaluated by the checker: through the
    server, a client could run code with no model involved."""
    from starlette.testclient import TestClient

    from ponder import ScriptedBackend
    from ponder.server.app import PonderServer

    marker = tmp_path / "pwned"
    question = ("def f(x):\n    '''\n    >>> f(1)\n"
                f"    __import__('pathlib').Path({str(marker)!r}).write_text('x')\n    '''\n")
    server = PonderServer(ScriptedBackend(lambda r, i: "```python\ndef f(x):\n    return x\n```"
                                          if i == 0 else "Yes"), api_key="key-never-echoed")
    with TestClient(server.app()) as http:
        reply = http.post("/v1/chat/completions", headers={"Authorization": "Bearer "
                                                                             "key-never-echoed"},
                          json={"model": "ponder-best-of-n",
                                "ponder": {"n": 2, "verifier": "code-tests", "trace": True},
                                "messages": [{"role": "user", "content": question}]})
    assert reply.status_code == 200, reply.text
    assert not marker.exists()
    assert "key-never-echoed" not in reply.text


def test_as_an_ordinary_user_too(tmp_path):
    """The same jail for a user who is not root, where the host has a Python that user can run
    (here: the system's, with ponder's source and packages on its path)."""
    import shutil
    import subprocess
    import sys

    system = "/usr/bin/python3"
    probe = subprocess.run([system, "-c", "import sys; print(sys.version_info[:2])"],
                           capture_output=True, text=True) if os.path.exists(system) else None
    if (os.geteuid() != 0 or shutil.which("setpriv") is None or probe is None
            or probe.stdout.strip() != str(tuple(sys.version_info[:2]))):
        pytest.skip("needs root (to become another user), setpriv and a system Python "
                    "of this version")
    import ponder

    src = os.path.dirname(os.path.dirname(ponder.__file__))
    packages = [p for p in sys.path if p.endswith("site-packages")]
    outside = tmp_path / "open"
    outside.mkdir(mode=0o777)
    outside.chmod(0o777)
    code = (f"import os\nopen({str(outside / 'x')!r}, 'w').write('x')" + "\n")
    script = ("import json, os\nfrom ponder.sandbox import Sandbox\n"
              f"r = Sandbox(isolation='jail').run_sync({code!r} + 'print(os.getuid())', "
              "as_main=True)\n"
              "print(json.dumps([os.getuid(), r.status, r.stdout, r.message]))\n")
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          system, "-c", script], capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                              "PYTHONPATH": os.pathsep.join([src, *packages])})
    uid, status, stdout, message = json.loads(out.stdout.strip().splitlines()[-1])
    assert uid == 65534 and status == "error" and "No such file" in message
    assert not (outside / "x").exists()


def test_an_interpreter_under_tmp_is_bound_over_the_work_dir():
    """A virtual environment under /tmp (a CI checkout) must not be hidden by the jail's own
    /tmp: the work dir's tmpfs is mounted first, the interpreter's directories on top."""
    import sys

    args = jail.command("bwrap", disk_bytes=1 << 20, network=False, seccomp_fd=9)
    tmpfs = args.index("--tmpfs")
    binds = [i for i, a in enumerate(args) if a == "--ro-bind" and args[i + 1] == sys.prefix]
    assert args[tmpfs + 1] == jail.WORKDIR and binds and binds[0] > tmpfs
