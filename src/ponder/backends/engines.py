"""Which llama.cpp engine runs an in-process GGUF model.

- ``native``: llama-cpp-python, built from source for this CPU (``pip install 'ponder[native]'``
  needs a C/C++ compiler and cmake; on x86-64 it uses AVX-512 where the CPU has it). Fastest.
- ``prebuilt``: xllamacpp, a prebuilt wheel (a base dependency: nothing to compile), built for
  AVX2. Issue 30 measured about half the native engine's tokens/s on a 2-core AVX-512 VM
  (54-58 against 100-107); bench/engines.py compares them side by side.

ponder prefers the fastest engine installed: native when ``llama_cpp`` imports, else prebuilt.
``-B engine=native|prebuilt`` (or ``$PONDER_ENGINE``) forces one.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ponder.errors import ConfigError

ENGINE_ENV = "PONDER_ENGINE"
ENGINES = ("native", "prebuilt")
MODULES = {"native": "llama_cpp", "prebuilt": "xllamacpp"}
INSTALL = {
    "native": "pip install 'ponder[native]' (builds llama.cpp from source: needs a C/C++ "
              "compiler and cmake, about 5-8 minutes)",
    "prebuilt": "pip install xllamacpp",
}
MISSING = {
    "native": "the native llama.cpp engine (llama_cpp) is not installed; run: pip install "
              "'ponder[native]' (builds llama.cpp from source: needs a C/C++ compiler and cmake, "
              "about 5-8 minutes)",
    "prebuilt": "the prebuilt llama.cpp engine (xllamacpp) is not installed; run: "
                "pip install xllamacpp",
}
# CPU features a llama.cpp build may use, as its system info names them -> /proc/cpuinfo flags
FEATURES = {"AVX": "avx", "AVX2": "avx2", "FMA": "fma", "F16C": "f16c", "AVX512": "avx512f",
            "AVX512_VBMI": "avx512vbmi", "AVX512_VNNI": "avx512_vnni",
            "AVX512_BF16": "avx512_bf16", "AVX_VNNI": "avx_vnni", "AMX_INT8": "amx_int8"}


def installed(engine: str) -> bool:
    """Whether ``engine``'s module imports (a module set to None in ``sys.modules`` does not)."""
    try:
        importlib.import_module(MODULES[engine])
    except ImportError:
        return False
    return True


def choose_engine(forced: str | None = None) -> str:
    """The engine to load: ``forced`` (an ``engine`` backend option), else ``$PONDER_ENGINE``,
    else the fastest installed (native, then prebuilt). A forced engine that is not installed
    is a one-line ConfigError naming its install command."""
    choice = forced if forced not in (None, "") else os.environ.get(ENGINE_ENV, "")
    choice = str(choice).strip().lower()
    if choice in ("", "auto"):
        for engine in ENGINES:
            if installed(engine):
                return engine
        raise ConfigError("no llama.cpp engine is installed; run: pip install xllamacpp "
                          "(prebuilt) or pip install 'ponder[native]' (faster, needs a compiler)")
    if choice not in ENGINES:
        raise ConfigError(f"engine must be native, prebuilt or auto, got {choice!r}")
    if not installed(choice):
        raise ConfigError(MISSING[choice])
    return choice


def system_info(engine: str) -> str:
    """The engine's llama.cpp system info (``CPU : SSE3 = 1 | AVX = 1 | ...``)."""
    if engine == "native":
        import llama_cpp

        info = llama_cpp.llama_print_system_info()
        return info.decode() if isinstance(info, bytes) else str(info)
    import xllamacpp

    return str(xllamacpp.get_system_info())


def built_features(info: str) -> list[str]:
    """The CPU features a system info line says the engine uses (``AVX2 = 1``), in
    :data:`FEATURES` order."""
    on = set(re.findall(r"([A-Z0-9_]+) = 1", info))
    return [name for name in FEATURES if name in on]


def cpu_flags(path: str | Path = "/proc/cpuinfo") -> set[str]:
    """This CPU's flags (empty where /proc/cpuinfo is not there)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return set()
    match = re.search(r"^flags\s*:(.*)$", text, re.M)
    return set(match.group(1).split()) if match else set()


@dataclass(frozen=True)
class EngineReport:
    """The engine in use and what it makes of this CPU, for ``ponder models`` and the hint."""

    engine: str
    version: str
    built: list[str]
    cpu: list[str]  # the FEATURES this CPU has
    faster: str | None  # the command that would make it faster, if any

    def line(self) -> str:
        unused = [f for f in self.cpu if f not in self.built]
        text = (f"engine: {self.engine} ({MODULES[self.engine]} {self.version}), built for "
                f"{', '.join(self.built) or 'no SIMD'}; this CPU has {', '.join(self.cpu) or '?'}")
        if unused:
            text += f" ({', '.join(unused)} unused)"
        if self.faster:
            text += f". Faster here: {self.faster}"
        return text


def engine_report(engine: str | None = None, flags: set[str] | None = None) -> EngineReport:
    """What ``engine`` (default: the one a run would choose) is built for against this CPU
    (``flags``: its /proc/cpuinfo flags, read when not given)."""
    engine = engine or choose_engine()
    module = importlib.import_module(MODULES[engine])
    version = str(getattr(module, "__version__", "?"))
    flags = cpu_flags() if flags is None else flags
    built = built_features(system_info(engine))
    cpu = [name for name, flag in FEATURES.items() if flag in flags]
    faster = None
    if engine == "prebuilt" and "AVX512" in cpu and "AVX512" not in built:
        faster = INSTALL["native"] + ", built for this CPU's AVX-512"
    return EngineReport(engine, version, built, cpu, faster)


def hint_once(report: EngineReport) -> str | None:
    """The faster-engine hint the first slow run prints (once per user: a marker file in the
    cache folder); None when there is no faster engine or it was shown before."""
    if report.faster is None:
        return None
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ponder"
    marker = cache / "engine-hint-shown"
    if marker.exists():
        return None
    try:
        cache.mkdir(parents=True, exist_ok=True)
        marker.write_text(report.line() + "\n")
    except OSError:
        pass
    return report.line()
