"""One way to open a run folder, for every command that keeps a resumable store: ``ponder eval``,
``tune``, ``distill --dataset`` and the bench scripts.

A run folder holds one store (``samples.sqlite``) and what was written from it. Opening one:

- **What the run is**: :func:`identify` resolves the model (a GGUF's sha256; a served model,
  which has no file, is known after its probe by what its server reports) and the dataset (its
  file's sha256, or its name: ``hf:...``, ``humaneval``), and the other models by role (each
  one's sha256, or a served one's redacted ``URL#NAME``).
- **The folder**: ``--fresh`` removes the store and everything written from it; a folder that
  holds files but no store is refused (it is not a ponder run); the store is opened and
  *claimed*: a folder written by another model, dataset, seed, decoding mode or role model
  refuses the run, naming what differs.
- **The backend**: :meth:`RunFolder.probe` probes it and, for a served model, claims what the
  server reports (a folder claimed by one served model refuses another).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from ponder.backends.base import Backend
from ponder.backends.endpoints import endpoint_specs, shown_urls
from ponder.backends.loading import role_identity
from ponder.backends.models import ModelSpec, file_sha256, resolve_model
from ponder.errors import ConfigError
from ponder.eval.store import Store

STORE = "samples.sqlite"
SERVED = "n/a (server)"  # a served model's model_sha256: it is claimed by its probe instead


@dataclass(frozen=True)
class RunIdentity:
    """What a run is: its model, its dataset and its other models by role."""

    spec: ModelSpec
    model_id: str  # how reports name the model: its file, or the servers (redacted) and name
    model_hash: str  # a file's sha256, or SERVED
    dataset: str  # an absolute path, or a name (hf:..., humaneval)
    dataset_hash: str  # a file's sha256, or the name
    roles: Mapping[str, str] = field(default_factory=dict)  # role -> how it was named

    def claims(self, seed: int, deterministic: bool) -> dict[str, str]:
        """What the store records of this run, to refuse a different one."""
        return {"model_sha256": self.model_hash, "dataset_sha256": self.dataset_hash,
                "seed": str(seed), "deterministic": str(deterministic).lower(),
                **{f"model_sha256:{role}": role_identity(named)
                   for role, named in self.roles.items()}}


def identify(model: str | None, base_url: str | list[str] | None, endpoints: str | None,
             dataset: str, roles: Mapping[str, str] | None = None) -> RunIdentity:
    """The run's identity from what names its model (a GGUF, ``hf:``, or a served model's name
    at ``base_url`` / ``endpoints``), its dataset and its other models by role."""
    specs = endpoint_specs(base_url, endpoints)
    urls = [s.url for s in specs]
    model = model or next((s.model for s in specs if s.model), None)
    spec = resolve_model(model, urls[0] if urls else None)
    # a report is shared: the servers are named by their redacted URLs
    model_id = ",".join(shown_urls(urls)) + "#" + spec.name if spec.backend == "openai" \
        else str(spec.path)
    model_hash = file_sha256(spec.path) if spec.path else SERVED
    return RunIdentity(spec, model_id, model_hash, *identify_dataset(dataset), dict(roles or {}))


def identify_dataset(dataset: str) -> tuple[str, str]:
    """(the dataset as reports name it: an absolute path or ``hf:...``/``humaneval``; its
    file's sha256, or that name)."""
    named = dataset if dataset.startswith(("hf:", "humaneval")) else str(Path(dataset).resolve())
    return named, file_sha256(Path(named)) if Path(named).is_file() else named


class RunFolder:
    """A run folder, open: its store claimed for one run. Use it as a context manager (the
    store is closed on exit)."""

    def __init__(self, out: Path, identity: RunIdentity, *, seed: int, deterministic: bool,
                 fresh: bool = False, outputs: Iterable[str] = ()) -> None:
        """``outputs``: the files and folders written from the store (removed with it by
        ``fresh``)."""
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} is a file, not a folder")
        if fresh:
            for name in (STORE, f"{STORE}-wal", f"{STORE}-shm", *outputs):
                path = out / name
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        elif out.is_dir() and any(out.iterdir()) and not (out / STORE).exists():
            raise ConfigError(f"--out {out} holds files but no ponder run; choose another "
                              "folder")
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.identity = identity
        self.store = Store(out / STORE)
        try:
            self.store.claim(identity.claims(seed, deterministic))
        except BaseException:
            self.store.close()
            raise

    async def probe(self, backend: Backend) -> None:
        """Probe the run's backend; a served model claims the folder by what its server says
        it is (another served model, or the same name on another server, is refused)."""
        await backend.probe()
        if self.identity.spec.backend == "openai":
            self.claim_served(backend.identity())

    def claim_served(self, identity: Any) -> None:
        """Claim the folder for the served model ``identity`` (what its servers report)."""
        self.store.claim({"served_model": json.dumps(identity, sort_keys=True)})

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
