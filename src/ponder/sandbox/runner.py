"""The program the sandbox runs in its child process (standard library only).

It reads a JSON spec on stdin, cuts itself off (network namespace, unprivileged user, resource
limits, an audit hook), runs the candidate program and then each test in the program's namespace,
and writes one JSON line per test to file descriptor 3 as soon as the test ends, so a later crash
loses nothing already decided. The parent never trusts it to end: it enforces the wall clock and
output caps itself and kills the whole process group.
"""

import json
import os
import resource
import signal
import sys
import time

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
NOBODY = 65534
PR_SET_NO_NEW_PRIVS = 38
CAPABILITY_VERSION_3 = 0x20080522
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
BLOCKED_EVENTS = {
    "os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
    "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill",
    "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto",
    "ctypes.dlopen", "ctypes.dlsym", "ctypes.call_function", "ctypes.cdata", "ctypes.addressof",
    "os.setuid", "os.setgid", "os.chroot", "os.unshare", "sys.remote_exec", "mmap.__new__",
}
PATH_EVENTS = {
    "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.link",
    "os.symlink", "os.truncate", "os.utime", "shutil.rmtree", "shutil.copyfile", "shutil.move",
    "os.chflags", "os.lchflags", "os.mkfifo", "os.mknod", "os.setxattr", "os.removexattr",
}


class SandboxViolation(PermissionError):
    pass


class TestTimeout(BaseException):  # BaseException: a candidate's `except Exception` can't eat it
    pass


def isolate(spec, channel):
    """Cut the network and drop privileges where the platform allows; report what held."""
    import ctypes

    isolation = []
    libc = ctypes.CDLL(None, use_errno=True)
    if not spec["network"]:
        flags = CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWUSER | CLONE_NEWNET
        if libc.unshare(flags) == 0:
            isolation.append("network-namespace")
    if os.geteuid() == 0:
        if spec["drop_to_nobody"]:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            isolation.append("user-nobody")
        elif drop_capabilities(ctypes, libc):
            isolation.append("no-capabilities")
    limits = spec["limits"]
    for name, value in (
        ("RLIMIT_AS", limits["memory_bytes"]),
        ("RLIMIT_CPU", limits["cpu_seconds"]),
        ("RLIMIT_NPROC", limits["processes"]),
        ("RLIMIT_FSIZE", limits["file_bytes"]),
        ("RLIMIT_CORE", 0),
        ("RLIMIT_NOFILE", 256),
    ):
        resource.setrlimit(getattr(resource, name), (value, value))
    isolation.append("rlimits")
    sys.modules.pop("ctypes", None)
    channel.write(json.dumps({"isolation": isolation}) + "\n")
    channel.flush()


def drop_capabilities(ctypes, libc):
    """Root that cannot become nobody (its Python lives where nobody cannot read) still gives
    up every capability, so rlimits bind and root-only powers are gone."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    header = Header(CAPABILITY_VERSION_3, 0)
    data = (Data * 2)()
    return libc.capset(ctypes.byref(header), data) == 0


def install_audit_hook(workdir, spec):
    """Refuse what a candidate has no business doing, even where the OS layer is missing.

    An audit hook cannot be removed from Python code; ctypes (the usual way around it) is
    refused too. It is a second layer, not the boundary: see the sandbox docs."""
    blocked = set(BLOCKED_EVENTS)
    if spec["network"]:
        blocked -= {e for e in blocked if e.startswith("socket.")}
    own = str(os.getpid())
    root = os.path.realpath(workdir)

    def inside(path):
        if isinstance(path, int):
            return True
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        full = os.path.realpath(os.path.join(root, str(path)))
        return full == root or full.startswith(root + os.sep)

    def hook(event, args):
        if event in blocked:
            raise SandboxViolation(f"sandbox: {event} is not allowed")
        if event == "open":
            path, mode, flags = args
            if path is None or isinstance(path, int):
                return
            text = os.fsdecode(path) if isinstance(path, bytes) else str(path)
            if text.startswith("/proc/") and text.split("/")[2] not in ("self", own):
                raise SandboxViolation(f"sandbox: reading {text} is not allowed")
            writing = (flags & WRITE_FLAGS) if isinstance(flags, int) and flags >= 0 else (
                isinstance(mode, str) and any(c in mode for c in "wax+"))
            if writing and not inside(path):
                raise SandboxViolation(f"sandbox: writing {text} (outside the sandbox) "
                                       "is not allowed")
        elif event in PATH_EVENTS:
            for arg in args[:2]:
                if isinstance(arg, (str, bytes, os.PathLike)) and not inside(os.fspath(arg)):
                    raise SandboxViolation(f"sandbox: {event} outside the sandbox is not allowed")

    sys.addaudithook(hook)


def describe(exc):
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:2000]


def status_of(exc):
    if isinstance(exc, TestTimeout):
        return "timeout"
    if isinstance(exc, MemoryError):
        return "memory"
    if isinstance(exc, AssertionError):
        return "failed"
    return "error"


def on_alarm(signum, frame):
    raise TestTimeout("time limit")


def run(spec, namespace, channel):
    import io

    sys.stdin = io.StringIO(spec.get("stdin", ""))
    signal.signal(signal.SIGALRM, on_alarm)
    timeout = spec["test_timeout"]
    started = time.monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout)
        exec(compile(spec["code"], "<candidate>", "exec"), namespace)
        if spec.get("setup"):
            exec(compile(spec["setup"], "<tests>", "exec"), namespace)
        signal.setitimer(signal.ITIMER_REAL, 0)
    except BaseException as exc:  # the program itself failed: every test inherits it
        signal.setitimer(signal.ITIMER_REAL, 0)
        if isinstance(exc, SystemExit) and not exc.code:
            exc = None
        if exc is not None:
            channel.write(json.dumps({"program": status_of(exc), "message": describe(exc),
                                      "seconds": time.monotonic() - started}) + "\n")
            channel.flush()
            return
    sys.stdout.flush()
    channel.write(json.dumps({"program": "ok", "seconds": time.monotonic() - started}) + "\n")
    channel.flush()
    for test in spec["tests"]:
        started = time.monotonic()
        outcome = {"name": test["name"], "status": "passed", "message": ""}
        try:
            signal.setitimer(signal.ITIMER_REAL, timeout)
            exec(compile(test["source"], f"<test {test['name']}>", "exec"), namespace)
            signal.setitimer(signal.ITIMER_REAL, 0)
        except BaseException as exc:
            signal.setitimer(signal.ITIMER_REAL, 0)
            outcome.update(status=status_of(exc), message=describe(exc))
        outcome["seconds"] = time.monotonic() - started
        if "capture" in test:  # an expression whose value the caller compares across programs
            outcome["value"] = capture(test["capture"], namespace, timeout)
        channel.write(json.dumps(outcome) + "\n")
        channel.flush()


def capture(expression, namespace, timeout):
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout)
        value = repr(eval(compile(expression, "<input>", "eval"), namespace))[:1000]
        signal.setitimer(signal.ITIMER_REAL, 0)
        return value
    except BaseException as exc:
        signal.setitimer(signal.ITIMER_REAL, 0)
        return f"<{type(exc).__name__}>"


def main():
    spec = json.loads(sys.stdin.read())
    channel = os.fdopen(spec["channel"], "w")
    isolate(spec, channel)
    install_audit_hook(os.getcwd(), spec)
    name = "__main__" if spec["as_main"] else "candidate"
    namespace = {"__name__": name, "__builtins__": __builtins__}
    run(spec, namespace, channel)
    channel.close()
    sys.stdout.flush()
    os._exit(0)  # no atexit handlers or finalizers from the candidate


main()
