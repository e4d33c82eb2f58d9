"""The jail's seccomp filter, assembled here as a classic BPF program (no libseccomp needed).

It denies, with EPERM, the system calls a program under test has no use for and an escape would:
tracing and reading other processes (``ptrace``, ``process_vm_*``, ``pidfd_*``), anonymous
memory files (``memfd_*``), the kernel keyring, ``bpf``, ``perf_event_open``, ``userfaultfd``,
``io_uring``, mounting and namespaces (``mount``, ``unshare``, ``setns``, the new mount API,
``clone`` with namespace flags), module loading, ``kexec``, clock and system settings, and System
V IPC: a shared memory segment, once detached, is charged to no process's ``RLIMIT_AS``, so kept
segments would grow to the host's memory (nothing a program under test needs uses System V IPC;
Python's ``multiprocessing`` uses POSIX semaphores, and the jail's ``/dev`` is read-only anyway).
``clone3`` answers ENOSYS (its flags sit in memory a filter cannot read), so the C library falls
back to ``clone``.

Sockets open only in the families the jail has a use for: ``AF_UNIX`` (socket pairs, asyncio),
and ``AF_INET``/``AF_INET6`` when the run may use the network. Any other family answers
EAFNOSUPPORT, as on a kernel without it: the network namespace does not cover them all —
``AF_VSOCK`` reaches the hypervisor on a virtual machine, netlink the kernel.

A system call of another ABI (32-bit or x32 on x86-64) kills the process. bubblewrap installs the
program (``--seccomp FD``) just before it starts the interpreter.
"""

from __future__ import annotations

import errno
import platform
import struct

# BPF instruction classes and fields (linux/filter.h, linux/bpf_common.h)
_LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x05 | 0x10 | 0x00  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x05 | 0x30 | 0x00  # BPF_JMP | BPF_JGE | BPF_K
_JSET_K = 0x05 | 0x40 | 0x00  # BPF_JMP | BPF_JSET | BPF_K
_RET_K = 0x06 | 0x00  # BPF_RET | BPF_K

SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000

# Offsets in struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6]
_NR, _ARCH, _ARG0_LOW = 0, 4, 16

# clone flags that make namespaces: NEWTIME, NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID,
# NEWNET
NAMESPACE_FLAGS = 0x00000080 | 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 \
    | 0x20000000 | 0x40000000

DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_open", "pidfd_send_signal",
    "pidfd_getfd", "memfd_create", "memfd_secret", "keyctl", "add_key", "request_key", "bpf",
    "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "mount", "umount2", "unshare", "setns", "pivot_root", "chroot", "fsopen", "fsconfig",
    "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr", "open_by_handle_at",
    "name_to_handle_at", "init_module", "finit_module", "delete_module", "kexec_load",
    "kexec_file_load", "syslog", "acct", "swapon", "swapoff", "reboot", "settimeofday",
    "clock_settime", "personality", "quotactl", "vmsplice",
    "shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl", "msgget",
    "msgsnd", "msgrcv", "msgctl",
)

AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10

# (audit arch, system call numbers); the generic table serves aarch64
_X86_64 = (0xC000003E, {
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "pidfd_open": 434,
    "pidfd_send_signal": 424, "pidfd_getfd": 438, "memfd_create": 319, "memfd_secret": 447,
    "keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321, "perf_event_open": 298,
    "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "mount": 165, "umount2": 166, "unshare": 272, "setns": 308, "pivot_root": 155, "chroot": 161,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "move_mount": 429,
    "open_tree": 428, "mount_setattr": 442, "open_by_handle_at": 304, "name_to_handle_at": 303,
    "init_module": 175, "finit_module": 313, "delete_module": 176, "kexec_load": 246,
    "kexec_file_load": 320, "syslog": 103, "acct": 163, "swapon": 167, "swapoff": 168,
    "reboot": 169, "settimeofday": 164, "clock_settime": 227, "personality": 135,
    "quotactl": 179, "vmsplice": 278, "shmget": 29, "shmat": 30, "shmdt": 67, "shmctl": 31,
    "semget": 64, "semop": 65, "semtimedop": 220, "semctl": 66, "msgget": 68, "msgsnd": 69,
    "msgrcv": 70, "msgctl": 71, "socket": 41, "socketpair": 53, "clone": 56, "clone3": 435,
})
_AARCH64 = (0xC00000B7, {
    "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "pidfd_open": 434,
    "pidfd_send_signal": 424, "pidfd_getfd": 438, "memfd_create": 279, "memfd_secret": 447,
    "keyctl": 219, "add_key": 217, "request_key": 218, "bpf": 280, "perf_event_open": 241,
    "userfaultfd": 282, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "mount": 40, "umount2": 39, "unshare": 97, "setns": 268, "pivot_root": 41, "chroot": 51,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "move_mount": 429,
    "open_tree": 428, "mount_setattr": 442, "open_by_handle_at": 265, "name_to_handle_at": 264,
    "init_module": 105, "finit_module": 273, "delete_module": 106, "kexec_load": 104,
    "kexec_file_load": 294, "syslog": 116, "acct": 89, "swapon": 224, "swapoff": 225,
    "reboot": 142, "settimeofday": 170, "clock_settime": 112, "personality": 92,
    "quotactl": 60, "vmsplice": 75, "shmget": 194, "shmat": 196, "shmdt": 197, "shmctl": 195,
    "semget": 190, "semop": 193, "semtimedop": 192, "semctl": 191, "msgget": 186, "msgsnd": 189,
    "msgrcv": 188, "msgctl": 187, "socket": 198, "socketpair": 199, "clone": 220, "clone3": 435,
})
ARCHES = {"x86_64": _X86_64, "amd64": _X86_64, "aarch64": _AARCH64, "arm64": _AARCH64}
X32_BIT = 0x40000000


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def supported(machine: str | None = None) -> bool:
    return (machine or platform.machine()).lower() in ARCHES


def build_filter(machine: str | None = None, *, network: bool = False) -> bytes:
    """The filter for this machine's architecture, as bytes of ``struct sock_filter``;
    ``network``: the run may open internet sockets."""
    arch, numbers = ARCHES[(machine or platform.machine()).lower()]
    deny = SECCOMP_RET_ERRNO | errno.EPERM
    program = [
        _insn(_LD_W_ABS, 0, 0, _ARCH),
        _insn(_JEQ_K, 1, 0, arch),
        _insn(_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
        _insn(_LD_W_ABS, 0, 0, _NR),
    ]
    if arch == _X86_64[0]:  # the x32 ABI shares the arch value: numbers with bit 30 set
        program += [_insn(_JGE_K, 0, 1, X32_BIT), _insn(_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS)]
    for name in DENIED:
        program += [_insn(_JEQ_K, 0, 1, numbers[name]), _insn(_RET_K, 0, 0, deny)]
    program += [
        _insn(_JEQ_K, 0, 1, numbers["clone3"]),
        _insn(_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.ENOSYS),
    ]
    program += _socket_families(numbers, (AF_UNIX, AF_INET, AF_INET6) if network else (AF_UNIX,))
    program += [
        _insn(_JEQ_K, 0, 3, numbers["clone"]),
        _insn(_LD_W_ABS, 0, 0, _ARG0_LOW),  # clone's flags (low 32 bits)
        _insn(_JSET_K, 0, 1, NAMESPACE_FLAGS),
        _insn(_RET_K, 0, 0, deny),
        _insn(_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]
    return b"".join(program)


def _socket_families(numbers: dict[str, int], allowed: tuple[int, ...]) -> list[bytes]:
    """``socket`` and ``socketpair`` in a family of ``allowed`` (their first argument, an int:
    the low 32 bits) pass, any other answers EAFNOSUPPORT; other calls fall through."""
    check = [_insn(_LD_W_ABS, 0, 0, _ARG0_LOW)]
    for i, family in enumerate(allowed):  # a match jumps to the ALLOW at the end
        check.append(_insn(_JEQ_K, len(allowed) - i, 0, family))
    check += [_insn(_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.EAFNOSUPPORT),
              _insn(_RET_K, 0, 0, SECCOMP_RET_ALLOW)]
    return [_insn(_JEQ_K, 1, 0, numbers["socket"]),
            _insn(_JEQ_K, 0, len(check), numbers["socketpair"]), *check]
