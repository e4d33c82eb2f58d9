"""What a GGUF file says about its model, read without loading it: the metadata key/values and
the parameter count (the sum of its tensors' elements, as ``llama_model_n_params`` counts).

The prebuilt engine (``xllamacpp``) exposes no model introspection to Python, so its backend
reads the chat template, special tokens, context length and size from here.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ponder.errors import ModelError

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class GGUFInfo:
    """A GGUF file's metadata (``general.architecture``, ``tokenizer.chat_template``, ...) and
    its parameter count."""

    metadata: dict[str, Any]
    parameters: int

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def arch(self, key: str, default: Any = None) -> Any:
        """``{architecture}.{key}``, e.g. ``context_length``."""
        return self.metadata.get(f"{self.architecture}.{key}", default)

    def token_text(self, key: str) -> str:
        """The text of the special token whose id is under ``tokenizer.ggml.{key}`` (``""``
        where there is none)."""
        tokens = self.metadata.get("tokenizer.ggml.tokens") or []
        token = self.metadata.get(f"tokenizer.ggml.{key}")
        if not isinstance(token, int) or not 0 <= token < len(tokens):
            return ""
        return str(tokens[token])


def _read(f: IO[bytes], n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise EOFError
    return data


def _scalar(f: IO[bytes], fmt: str) -> Any:
    return struct.unpack(fmt, _read(f, struct.calcsize(fmt)))[0]


def _string(f: IO[bytes]) -> str:
    return _read(f, _scalar(f, "<Q")).decode("utf-8", errors="replace")


def _value(f: IO[bytes], kind: int) -> Any:
    if kind == _STRING:
        return _string(f)
    if kind == _ARRAY:
        item, count = _scalar(f, "<I"), _scalar(f, "<Q")
        if item in _SCALARS:
            fmt = _SCALARS[item]
            size = struct.calcsize(fmt)
            return list(struct.unpack(f"<{count}{fmt[1]}", _read(f, size * count)))
        return [_value(f, item) for _ in range(count)]
    if kind not in _SCALARS:
        raise ValueError(f"unknown GGUF value type {kind}")
    return _scalar(f, _SCALARS[kind])


def read_gguf(path: str | Path) -> GGUFInfo:
    """Read a GGUF file's header: its metadata and the element count of its tensors."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                raise ModelError(f"not a GGUF model file: {path}")
            if _scalar(f, "<I") not in (2, 3):
                raise ValueError("unsupported GGUF version")
            n_tensors, n_kv = _scalar(f, "<Q"), _scalar(f, "<Q")
            metadata: dict[str, Any] = {}
            for _ in range(n_kv):
                key = _string(f)
                metadata[key] = _value(f, _scalar(f, "<I"))
            parameters = 0
            for _ in range(n_tensors):
                _string(f)
                dims = [_scalar(f, "<Q") for _ in range(_scalar(f, "<I"))]
                _read(f, 12)  # ggml type (u32), offset (u64)
                parameters += math.prod(dims)
    except (EOFError, ValueError, struct.error, MemoryError, OverflowError) as exc:
        raise ModelError(f"cannot load {path}: corrupt or unsupported GGUF file") from exc
    return GGUFInfo(metadata, parameters)
