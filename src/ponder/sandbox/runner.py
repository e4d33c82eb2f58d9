"""The program the sandbox runs (standard library only): two processes that share nothing.

Its first act is to fork. The child is the *candidate*: it receives the program under test over
a pipe, runs it, and answers calls to its functions with plain values (JSON; tuples, sets,
bytes, dicts with other keys and non-finite floats tagged). The parent is the *checker*: only
after the fork does it read the spec (the tests) from stdin, so the candidate never holds them;
it makes itself non-dumpable, so the candidate (same uid) cannot reach its memory or its file
descriptors through /proc; it runs the tests in its own interpreter against stubs that call the
candidate, and writes one JSON line per test to the host's channel (a descriptor the candidate
closed before running anything). The tests see the real built-ins and standard library: they
reach the candidate only through the names they read without defining them (never a built-in's
name) and the task's entry point, and a module the candidate imported is the checker's own
import of the standard module of that name. Whatever the candidate does in its own process —
patch json or builtins, write to any descriptor, exit, raise SystemExit, flood its output, loop —
it can turn a test into a failure, never into a pass.

``sys.argv[1]`` is the setup (JSON): the channel's descriptor, the limits, and, outside the jail,
whether to unshare the network and drop to user nobody. The host never trusts this program to
end: it enforces the wall clock and the output caps itself and kills the whole jail.
"""

import builtins
import importlib
import json
import math
import os
import resource
import select
import signal
import symtable
import sys
import time
import types

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
NOBODY = 65534
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
CAPABILITY_VERSION_3 = 0x20080522
GRACE = 1.0  # seconds a candidate gets past its deadline before it is killed
MAX_REPLY = 8 * 2**20  # bytes of one answer from the candidate
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


class CandidateError(Exception):
    """An exception of the candidate's that has no built-in counterpart, or its death."""


# -- plain values --------------------------------------------------------------------------


def encode(value, depth=0):
    """A plain value as JSON data; TypeError for anything else (objects, functions...)."""
    if depth > 200:
        raise TypeError("nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return value if type(value) in (bool, str, type(None)) else (
            bool(value) if isinstance(value, bool) else str(value))
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        value = float(value)
        return value if math.isfinite(value) else {"~f": repr(value)}
    if isinstance(value, complex):
        return {"~c": [encode(value.real), encode(value.imag)]}
    if isinstance(value, (bytes, bytearray)):
        return {"~b": bytes(value).hex()}
    if isinstance(value, list):
        return [encode(v, depth + 1) for v in value]
    if isinstance(value, tuple):
        return {"~t": [encode(v, depth + 1) for v in value]}
    if isinstance(value, (set, frozenset)):
        return {"~s": [encode(v, depth + 1) for v in value], "frozen": isinstance(value, frozenset)}
    if isinstance(value, dict):
        return {"~d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    raise TypeError(f"a {type(value).__name__} is not a plain value")


def decode(data):
    """The inverse of :func:`encode`; ValueError for anything it would not have written."""
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [decode(v) for v in data]
    if isinstance(data, dict) and len(data) >= 1:
        if "~t" in data:
            return tuple(decode(v) for v in data["~t"])
        if "~s" in data:
            items = [decode(v) for v in data["~s"]]
            return frozenset(items) if data.get("frozen") else set(items)
        if "~d" in data:
            return {decode(k): decode(v) for k, v in data["~d"]}
        if "~f" in data and data["~f"] in ("inf", "-inf", "nan"):
            return float(data["~f"])
        if "~b" in data:
            return bytes.fromhex(data["~b"])
        if "~c" in data:
            return complex(decode(data["~c"][0]), decode(data["~c"][1]))
    raise ValueError("not a plain value")


# -- the pipe between the two processes --------------------------------------------------------


def send(fd, message, dumps=json.dumps):
    data = (dumps(message) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


class Replies:
    """Lines from the candidate, read with a deadline and a size cap."""

    def __init__(self, fd):
        self.fd = fd
        self.buffer = b""

    def next(self, deadline):
        """The next message, or None when the candidate is silent past ``deadline``, ended, or
        wrote something that is not one."""
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk or len(self.buffer) + len(chunk) > MAX_REPLY:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            return None
        return message if isinstance(message, dict) else None


# -- limits and isolation -------------------------------------------------------------------


def apply_limits(limits):
    for name, value in (
        ("RLIMIT_AS", limits["memory_bytes"]),
        ("RLIMIT_CPU", limits["cpu_seconds"]),
        ("RLIMIT_NPROC", limits["processes"]),
        ("RLIMIT_FSIZE", limits["file_bytes"]),
        ("RLIMIT_CORE", 0),
        ("RLIMIT_NOFILE", 256),
    ):
        resource.setrlimit(getattr(resource, name), (value, value))


def isolate(setup):
    """Outside the jail: cut the network and drop privileges where the platform allows."""
    import ctypes

    isolation = []
    libc = ctypes.CDLL(None, use_errno=True)
    unshare = getattr(libc, "unshare", None)  # Linux only
    if not setup["network"] and unshare is not None:
        flags = CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWUSER | CLONE_NEWNET
        if unshare(flags) == 0:
            isolation.append("network-namespace")
    if os.geteuid() == 0:
        if setup["drop_to_nobody"]:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            isolation.append("user-nobody")
        elif drop_capabilities(ctypes, libc):
            isolation.append("no-capabilities")
    return isolation


def drop_capabilities(ctypes, libc):
    """Root that cannot become nobody (its Python lives where nobody cannot read) still gives
    up every capability, so rlimits bind and root-only powers are gone."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    if not hasattr(libc, "capset"):  # not Linux
        return False
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    header = Header(CAPABILITY_VERSION_3, 0)
    data = (Data * 2)()
    return libc.capset(ctypes.byref(header), data) == 0


def non_dumpable():
    """Neither ptrace nor /proc/<pid>/{mem,fd,environ} of a non-dumpable process is open to a
    process without CAP_SYS_PTRACE, even of the same uid (Linux)."""
    import ctypes

    prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)
    return prctl is not None and prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0


def install_audit_hook(workdir, network):
    """A second layer, not the boundary (the jail is): refuse what a candidate has no business
    doing, for the sake of a clear message."""
    blocked = set(BLOCKED_EVENTS)
    if network:
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


def set_alarm(seconds):
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001) if seconds else 0)


class TimeLimit:
    """``with TimeLimit(seconds):`` raises TestTimeout in the block once ``seconds`` pass; the
    alarm is off again however the block ends."""

    def __init__(self, seconds):
        self.seconds = seconds

    def __enter__(self):
        set_alarm(self.seconds)

    def __exit__(self, *exc_info):
        set_alarm(0)


# -- the candidate ------------------------------------------------------------------------------


def candidate(requests, replies):
    """Run the program, then answer calls until told to stop. Nothing of the tests is here."""
    import io

    dumps, loads = json.dumps, json.loads  # ours, whatever the program patches
    reader = os.fdopen(requests, "rb")

    def answer(message):
        try:
            send(replies, message, dumps)
        except (TypeError, ValueError) as exc:  # e.g. a value too large to write as JSON
            send(replies, {"id": message.get("id"), "ok": False, "status": "error",
                           "type": "TypeError", "message": describe(exc)}, dumps)

    def failure(call_id, exc):
        return {"id": call_id, "ok": False, "status": status_of(exc),
                "type": type(exc).__name__, "message": describe(exc)}

    load = loads(reader.readline())
    sys.path.extend(load["packages"])
    apply_limits(load["limits"])
    signal.signal(signal.SIGALRM, on_alarm)
    sys.stdin = io.StringIO(load.get("stdin", ""))
    if load["audit_hook"]:
        install_audit_hook(os.getcwd(), load["network"])
    namespace = {"__name__": "__main__" if load["as_main"] else "candidate",
                 "__builtins__": builtins}
    started = time.monotonic()
    try:
        with TimeLimit(load["timeout"]):
            exec(compile(load["code"], "<candidate>", "exec"), namespace)
    except BaseException as exc:  # the program itself failed: every test inherits it
        if not (isinstance(exc, SystemExit) and not exc.code):
            sys.stdout.flush()
            answer({**failure(0, exc), "seconds": time.monotonic() - started})
            os._exit(0)
    sys.stdout.flush()
    names = {}
    for key, value in list(namespace.items()):
        if key.startswith("__"):
            continue
        if isinstance(value, types.ModuleType):
            names[key] = {"module": True}  # the checker imports its own copy, if standard
        elif callable(value):
            names[key] = {"callable": True}
        else:
            try:
                names[key] = {"value": encode(value)}
            except (TypeError, ValueError, RecursionError):
                pass  # modules and other objects stay in the candidate
    answer({"id": 0, "ok": True, "names": names, "seconds": time.monotonic() - started})
    while True:
        line = reader.readline()
        if not line:
            os._exit(0)
        call = loads(line)
        try:
            with TimeLimit(call["timeout"]):
                result = namespace[call["name"]](*decode(call["args"]), **decode(call["kwargs"]))
            out = {"id": call["id"], "ok": True, "value": encode(result)}
        except BaseException as exc:
            out = failure(call["id"], exc)
        sys.stdout.flush()
        answer(out)


# -- the checker --------------------------------------------------------------------------------


class Link:
    """The checker's side of the pipes: numbered calls with a deadline per test."""

    def __init__(self, pid, requests, replies):
        self.pid = pid
        self.requests = requests
        self.replies = Replies(replies)
        self.deadline = 0.0
        self.alive = True
        self.calls = 0

    def stop(self):
        if self.alive:
            self.alive = False
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def exchange(self, message):
        """Send a message, wait for its answer until the deadline (plus grace); a silent,
        dead or garbled candidate is stopped and gives None."""
        if not self.alive:
            return None
        try:
            send(self.requests, message)
        except OSError:
            self.stop()
            return None
        while True:
            reply = self.replies.next(self.deadline + GRACE)
            if reply is None:
                self.stop()
                return None
            if reply.get("id") == message.get("id", 0):
                return reply

    def call(self, name, args, kwargs):
        if not self.alive:
            raise CandidateError("the candidate is no longer running (it ended, or overran "
                                 "a time limit)")
        try:
            payload = {"args": encode(list(args)), "kwargs": encode(dict(kwargs))}
        except (TypeError, ValueError) as exc:
            raise TypeError(f"only plain values can be passed to the candidate: {exc}") from None
        self.calls += 1
        reply = self.exchange({"op": "call", "id": self.calls, "name": name,
                               "timeout": max(self.deadline - time.monotonic(), 0.001),
                               **payload})
        if reply is None:
            raise TestTimeout("time limit") if time.monotonic() >= self.deadline else \
                CandidateError("the candidate stopped answering")
        if reply.get("ok") is True and "value" in reply:
            try:
                return decode(reply["value"])
            except (ValueError, TypeError, KeyError, IndexError, RecursionError):
                raise CandidateError("the candidate's answer is not a plain value") from None
        raise rebuilt(reply)


def rebuilt(reply):
    """The candidate's exception, as one of ours: a built-in type by name, else CandidateError."""
    status, kind = reply.get("status"), str(reply.get("type", ""))
    message = str(reply.get("message", ""))[:2000]
    text = message.split(": ", 1)[1] if message.startswith(kind + ": ") else ""
    if status == "timeout":
        return TestTimeout("time limit")
    if status == "memory":
        return MemoryError(text)
    cls = getattr(builtins, kind, None)
    if isinstance(cls, type) and issubclass(cls, Exception) and cls is not StopIteration:
        try:
            return cls(text) if text else cls()
        except Exception:  # noqa: BLE001 - a built-in that wants other arguments
            pass
    return CandidateError(message or kind)


class Stub:
    """Stands in the checker for one of the candidate's functions."""

    def __init__(self, link, name):
        self.link = link
        self.__name__ = name

    def __call__(self, *args, **kwargs):
        return self.link.call(self.__name__, args, kwargs)

    def __repr__(self):
        return f"<candidate function {self.__name__}>"


def checker(setup, pid, requests, replies):
    channel = os.fdopen(setup["channel"], "w")

    def report(record):
        channel.write(json.dumps(record) + "\n")
        channel.flush()

    isolation = list(setup.get("isolation", []))
    if non_dumpable():
        isolation.append("checker-apart")
    spec = json.loads(sys.stdin.read())
    limits = setup["limits"]
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"],) * 2)
    isolation.append("rlimits")
    report({"isolation": isolation})
    signal.signal(signal.SIGALRM, on_alarm)
    timeout = spec["test_timeout"]
    link = Link(pid, requests, replies)
    link.deadline = time.monotonic() + timeout
    loaded = link.exchange({"op": "load", "code": spec["code"], "stdin": spec.get("stdin", ""),
                            "as_main": spec["as_main"], "timeout": timeout,
                            "limits": limits, "network": setup["network"],
                            "packages": setup["packages"],
                            "audit_hook": True})
    if loaded is None or loaded.get("ok") is not True:
        if loaded is None:
            status, message = ("timeout", "time limit") if time.monotonic() >= link.deadline \
                else ("error", exit_message(pid))
        else:
            status = loaded.get("status") if loaded.get("status") in (
                "error", "timeout", "memory", "failed") else "error"
            message = str(loaded.get("message", ""))[:2000]
        report({"program": status, "message": message})
        link.stop()
        return
    report({"program": "ok", "seconds": loaded.get("seconds", 0.0)})
    namespace = {"__name__": "tests", "__builtins__": builtins}
    names = loaded.get("names") if isinstance(loaded.get("names"), dict) else {}
    reachable = reachable_names(spec)
    for name, what in names.items():
        if not isinstance(what, dict) or name not in reachable:
            continue
        if what.get("module") is True:
            module = standard_module(name)
            if module is not None:
                namespace[name] = module
        elif what.get("callable") is True:
            namespace[name] = Stub(link, name)
        elif "value" in what:
            try:
                namespace[name] = decode(what["value"])
            except (ValueError, TypeError, KeyError, IndexError, RecursionError):
                pass
    if spec.get("setup"):
        try:
            with TimeLimit(timeout):
                exec(compile(spec["setup"], "<tests>", "exec"), namespace)
        except BaseException as exc:
            for test in spec["tests"]:
                report({"name": test["name"], "status": status_of(exc),
                        "message": "the tests' setup failed: " + describe(exc), "seconds": 0.0})
            link.stop()
            return
    for test in spec["tests"]:
        started = time.monotonic()
        link.deadline = started + timeout
        outcome = {"name": test["name"], "status": "passed", "message": ""}
        try:
            with TimeLimit(timeout + 2 * GRACE):
                exec(compile(test["source"], f"<test {test['name']}>", "exec"), namespace)
        except BaseException as exc:
            outcome.update(status=status_of(exc), message=describe(exc))
        outcome["seconds"] = time.monotonic() - started
        if "capture" in test:  # an expression whose value the caller compares across programs
            link.deadline = time.monotonic() + timeout
            outcome["value"] = capture(test["capture"], namespace, timeout)
        report(outcome)
    link.stop()


def reachable_names(spec):
    """The candidate's names the tests may reach: the task's own (``expose``: its entry point)
    and the globals the test code reads without binding them itself, never the name of a
    built-in. A candidate that defines ``abs`` or ``sorted`` next to a wrong answer leaves the
    tests' ``abs`` and ``sorted`` Python's own: it cannot pass a test by changing the checker's
    tools, only by computing what the task asks."""
    sources = [(spec.get("setup") or "", "exec")]
    sources += [(test["source"], "exec") for test in spec["tests"]]
    sources += [(test["capture"], "eval") for test in spec["tests"] if "capture" in test]
    read, bound = set(), set()
    for source, mode in sources:
        try:
            table = symtable.symtable(source, "<tests>", mode)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue  # the test itself reports its syntax error when it runs
        scopes = [table]
        while scopes:
            scope = scopes.pop()
            for symbol in scope.get_symbols():
                name = symbol.get_name()
                if scope is table and (symbol.is_assigned() or symbol.is_imported()):
                    bound.add(name)
                elif symbol.is_declared_global() and symbol.is_assigned():
                    bound.add(name)
                elif symbol.is_referenced() and (scope is table or symbol.is_global()):
                    read.add(name)
            scopes.extend(scope.get_children())
    task = {name for name in spec.get("expose", ()) if isinstance(name, str)}
    return {name for name in read - bound if not hasattr(builtins, name)} | task


def standard_module(name):
    """The real standard-library module a test reads by a name the program imported (MBPP's
    tests call ``math.isclose`` and rely on the solution's ``import math``), imported here:
    never the program's object, never anything outside the standard library."""
    if name not in getattr(sys, "stdlib_module_names", ()) or name in ("antigravity", "this"):
        return None  # (those two act when imported: open a browser, print)
    try:
        with TimeLimit(GRACE):
            return importlib.import_module(name)
    except BaseException:  # noqa: BLE001 - a module the jail cannot load: the test fails
        return None


def exit_message(pid):
    """Why the candidate went silent, when it ended on its own."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return "the program ended"
    if done and os.WIFEXITED(status):
        return f"the program exited with code {os.WEXITSTATUS(status)}"
    if done and os.WIFSIGNALED(status):
        return f"the program was killed by signal {os.WTERMSIG(status)}"
    return "the program stopped answering"


def capture(expression, namespace, timeout):
    try:
        with TimeLimit(timeout + 2 * GRACE):
            return repr(eval(compile(expression, "<input>", "eval"), namespace))[:1000]
    except BaseException as exc:
        return f"<{type(exc).__name__}>"


def main():
    setup = json.loads(sys.argv[1])
    if not setup["jailed"]:
        setup["isolation"] = isolate(setup)
    to_candidate, from_checker = os.pipe()[::-1]
    from_candidate, to_checker = os.pipe()
    pid = os.fork()
    if pid == 0:  # the candidate: keep only its two pipes (and stdout, stderr)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        keep = (from_checker, to_checker)
        for fd in os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else range(3, 256):
            if int(fd) > 2 and int(fd) not in keep:
                try:
                    os.close(int(fd))
                except OSError:
                    pass
        candidate(*keep)
        os._exit(0)
    os.close(from_checker)
    os.close(to_checker)
    try:
        checker(setup, pid, to_candidate, from_candidate)
    finally:
        sys.stdout.flush()
        os._exit(0)  # no atexit handlers or finalizers


main()
