"""The jail's caps on processes and memory where rlimits alone fall short — as root (containers,
CI), where the kernel exempts uid 0 from RLIMIT_NPROC, and System V shared memory, which no
RLIMIT_AS counts once detached — and the numbers the seccomp filter is built from, checked
against the kernel's own tables and libseccomp's: a wrong number denies some other system call
and lets the one meant through, and nothing else would notice."""

import errno
import os
import re
import shutil
import subprocess
import threading

import pytest
from test_jail import attack

from ponder.sandbox import Limits, Sandbox, jail, seccomp

# what .ci/run installs so that the table checks run in CI
CI_PACKAGES = "apt-get install -y seccomp linux-libc-dev"

needs_jail = pytest.mark.skipif(jail.unavailable() is not None,
                                reason=f"no jail on this host: {jail.unavailable()}")
needs_root_jail = pytest.mark.skipif(
    os.geteuid() != 0 or jail.unavailable() is not None,
    reason=f"needs root and a jail (root: {os.geteuid() == 0}, jail: {jail.unavailable()})")


def skip_outside_ci(why):
    """A missing reference skips on a developer's machine; in CI it is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{why}; CI must install it: {CI_PACKAGES}")
    pytest.skip(why)


# -- processes and memory, as root ---------------------------------------------------------------


FORKS = """
import time
found["kids"], found["errno"] = 0, None
for _ in range(200):
    try:
        pid = os.fork()
    except OSError as exc:
        found["errno"] = exc.errno
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    found["kids"] += 1
"""


@needs_root_jail
def test_the_process_cap_binds_as_root():
    """The jail's uid must not be host uid 0 (exempt from RLIMIT_NPROC): 200 forks with
    ``processes=11`` get at most 11, and the twelfth fails. The second run joins the user
    namespace the first gave back: none of the first run's processes counts against it."""
    sandbox = Sandbox(Limits(wall_seconds=20, cpu_seconds=10, memory_mb=256, disk_mb=16,
                             processes=11), workers=1, isolation="jail")
    first, second = attack(sandbox, FORKS), attack(sandbox, FORKS)
    assert first["errno"] == errno.EAGAIN, first
    assert 9 <= first["kids"] <= 11, first
    assert second == first


@needs_root_jail
def test_runs_leave_no_descriptor_behind():
    sandbox = Sandbox(Limits(wall_seconds=10), workers=1, isolation="jail")
    sandbox.run_sync("x = 1", as_main=True)
    before = len(os.listdir("/proc/self/fd"))
    for code in ("x = 1", "import os\nos._exit(3)", "while True: pass"):
        sandbox.run_sync(code, as_main=True)
    assert len(os.listdir("/proc/self/fd")) <= before


def test_the_process_cap_counts_what_the_kernel_counts(monkeypatch):
    """Linux counts RLIMIT_NPROC per user namespace (so per run) from 5.14 on; before, per host
    user, across the runs under way. As root the runner is the namespace's init (no bwrap
    init): two of the jail's own processes, not three."""
    for release, root, expected in (("6.1.0-18-amd64", False, 11), ("6.1.0", True, 10),
                                    ("5.14.0", True, 10), ("5.10.0-28-amd64", False, 44),
                                    ("4.18.0-513.el8.x86_64", True, 40)):
        monkeypatch.setattr(jail.platform, "release", lambda r=release: r)
        monkeypatch.setattr(jail, "remaps_root", lambda r=root: r)
        jail._per_namespace_nproc.cache_clear()
        assert jail.process_limit(8, 4) == expected, release
    monkeypatch.undo()
    jail._per_namespace_nproc.cache_clear()


@needs_root_jail
def test_a_killed_runs_namespace_is_closed_not_reused():
    """A run the host kills (output cap, wall clock) may leave processes dying in its
    namespace, which would count against the next run's cap: only a run that ended on its own
    gives its namespace back."""
    sandbox = Sandbox(Limits(wall_seconds=5, output_bytes=10_000), workers=1, isolation="jail")
    sandbox.run_sync("x = 1", as_main=True)
    spare = list(jail._spare)
    assert spare  # the run that ended gave its namespace back
    flood = "while True:\n    print('x' * 1000, flush=True)\n"
    assert sandbox.run_sync(flood, as_main=True).status == "output-limit"
    assert jail._spare == spare[:-1]  # the killed run's namespace was closed


def host_shmem():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Shmem:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no Shmem in /proc/meminfo")


SYSV_SHM = """
import ctypes, time
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
libc.shmdt.argtypes = [ctypes.c_void_p]
found["segments"] = []
for _ in range(3):  # each made, attached, touched, detached and kept: no RLIMIT_AS counts it
    ident = libc.shmget(0, SIZE, 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600
    if ident < 0:
        found["segments"].append(-ctypes.get_errno())
        continue
    address = libc.shmat(ident, None, 0)
    if address is None or address == ctypes.c_void_p(-1).value:
        found["segments"].append(-ctypes.get_errno())
        continue
    ctypes.memset(address, 1, SIZE)
    libc.shmdt(address)
    found["segments"].append(ident)
time.sleep(1.0)  # held while the host looks
"""


@needs_jail
def test_sysv_shared_memory_cannot_outgrow_the_memory_limit():
    """SysV shared memory, detached but kept, is charged to no process's RLIMIT_AS: 3 x 160 MiB
    under a 256 MB limit must not raise the host's Shmem past the limit."""
    limits = Limits(wall_seconds=20, test_seconds=10, cpu_seconds=10, memory_mb=256, disk_mb=16)
    sandbox = Sandbox(limits, workers=1, isolation="jail")
    before = host_shmem()
    peak = [before]
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], host_shmem())
            done.wait(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        found = attack(sandbox, SYSV_SHM.replace("SIZE", str(160 * 2**20)))
    finally:
        done.set()
        watcher.join()
    assert found["segments"] == [-errno.EPERM] * 3, found
    assert peak[0] - before < limits.memory_mb * 2**20, (before, peak[0])


# -- the system call numbers ---------------------------------------------------------------------

ARCHES = ("x86_64", "aarch64")
HEADERS = {  # Debian's linux-libc-dev on x86-64 carries both
    "x86_64": ("/usr/include/x86_64-linux-gnu/asm/unistd_64.h", "/usr/include/asm/unistd_64.h"),
    "aarch64": ("/usr/include/asm-generic/unistd.h",),
}
ELF_MACHINES = {"x86_64": "EM_X86_64", "aarch64": "EM_AARCH64"}


def test_every_name_has_a_number_on_every_architecture():
    for arch in ARCHES:
        _, numbers = seccomp.ARCHES[arch]
        assert set(seccomp.DENIED) <= set(numbers), arch
        assert seccomp.build_filter(arch)  # every number the filter uses is there
    assert set(seccomp._X86_64[1]) == set(seccomp._AARCH64[1])


@pytest.mark.parametrize("arch", ARCHES)
def test_the_numbers_are_libseccomp_s(arch):
    """libseccomp's resolver knows every architecture's table, whatever this machine is."""
    tool = shutil.which("scmp_sys_resolver")
    if tool is None:
        skip_outside_ci("scmp_sys_resolver (Debian's seccomp package) is not installed")
    _, numbers = seccomp.ARCHES[arch]
    theirs = {name: int(subprocess.run([tool, "-a", arch, name], capture_output=True,
                                       text=True, check=True).stdout)
              for name in numbers}
    assert theirs == numbers


@pytest.mark.parametrize("arch", ARCHES)
def test_the_numbers_are_the_kernel_headers(arch):
    """The kernel's own unistd headers, and the audit architecture from its ELF machine."""
    header = next((p for p in HEADERS[arch] if os.path.exists(p)), None)
    elf = "/usr/include/linux/elf-em.h"
    if header is None or not os.path.exists(elf):
        skip_outside_ci(f"no kernel headers for {arch} (Debian's linux-libc-dev)")
    with open(header) as f:
        defined = {m[1]: int(m[2]) for m in re.finditer(r"#define\s+__NR_(\w+)\s+(\d+)\b",
                                                          f.read())}
    audit_arch, numbers = seccomp.ARCHES[arch]
    assert {name: defined.get(name) for name in numbers} == numbers
    with open(elf) as f:
        machine = int(re.search(rf"#define\s+{ELF_MACHINES[arch]}\s+(\d+)", f.read())[1])
    assert audit_arch == 0x80000000 | 0x40000000 | machine  # __AUDIT_ARCH_64BIT | _LE
