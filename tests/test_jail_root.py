"""The numbers the seccomp filter is built from, checked against the kernel's own tables and
libseccomp's: a wrong number denies some other system call and lets the one meant through, and
nothing else would notice."""

import os
import re
import shutil
import subprocess

import pytest

from ponder.sandbox import seccomp

# what .ci/run installs so that the table checks run in CI
CI_PACKAGES = "apt-get install -y seccomp linux-libc-dev"


def skip_outside_ci(why):
    """A missing reference skips on a developer's machine; in CI it is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{why}; CI must install it: {CI_PACKAGES}")
    pytest.skip(why)


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
