"""What a run needs of its backends beyond loading them: the options of a throughput run,
whether its samples are reproducible, and an endpoint pool's figures as reports show them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ponder.backends.base import Backend
from ponder.backends.endpoints import ROLE_PREFIX, shown_urls
from ponder.backends.loading import role_identity
from ponder.backends.models import ModelSpec


def batch_options(spec: ModelSpec, options: dict[str, Any], deterministic: bool = False
                  ) -> dict[str, Any]:
    """Backend options for a throughput run: an in-process model decodes more sequences at once
    than for interactive use (``llamacpp.batch_sequences``) unless ``-B n_seq_max`` says, and
    decodes batch-invariantly with ``deterministic`` (unless ``-B deterministic=`` says)."""
    if spec.backend == "llamacpp":
        from ponder.backends.llamacpp import batch_sequences

        options = {**options}
        options.setdefault("n_seq_max", batch_sequences())
        options.setdefault("deterministic", deterministic)
    return options


def determinism(backend: Backend | None, deterministic: bool = True) -> dict[str, Any]:
    """Whether a run's samples are reproducible, and why (for its report): an in-process model
    in deterministic mode is checked once on this CPU's kernels; a server's batching is its
    own."""
    if backend is None:  # Ray: every worker loads its own model
        return {"deterministic": False, "why": "Ray workers decode batch-invariantly, unchecked "
                "from here" if deterministic else "--no-deterministic on Ray workers"}
    if getattr(backend, "deterministic", None) is None:
        return {"deterministic": False,
                "why": "a served model: its server's batching decides its numbers"}
    if not backend.deterministic:  # type: ignore[attr-defined]
        return {"deterministic": False, "why": "--no-deterministic: a sample's numbers depend "
                "on what decoded beside it"}
    if not backend.batch_invariant():  # type: ignore[attr-defined]
        note = getattr(backend, "invariance_note", None)  # an engine that cannot, and why
        return {"deterministic": False, "why": note or "the batch-invariance check failed on "
                "this CPU's kernels (or a sequence's context, under 64 tokens, cannot hold it)"}
    return {"deterministic": True, "why": "batch-invariant decoding, checked on this CPU"}


def endpoint_stats(backend: Backend) -> list[dict[str, Any]] | None:
    """A pool's per-endpoint figures, each endpoint named by its redacted URL (they are printed
    by ``ask --json`` and kept in eval reports); None for any other backend."""
    stats = getattr(backend, "endpoint_stats", None)
    if not callable(stats):
        return None
    figures = stats()
    names = shown_urls([e["url"] for e in figures])
    return [{**e, "url": name} for e, name in zip(figures, names, strict=True)]


def determinism_of(backend: Backend | None, others: Mapping[str, Backend], deterministic: bool
                   ) -> dict[str, Any]:
    """Whether a run's samples are reproducible: every model of it must be."""
    first = determinism(backend, deterministic)
    for role, model in others.items():
        theirs = determinism(model, deterministic)
        if first["deterministic"] and not theirs["deterministic"]:
            return {"deterministic": False, "why": f"the {role} model: {theirs['why']}"}
    return first


def shown_model(named: str) -> str:
    """A role's model as a report shows it: a file's path, a served model's redacted URL."""
    if named.startswith(ROLE_PREFIX):  # an endpoints file's servers: redacted, and the model
        return role_identity(named)
    if named.startswith(("http://", "https://")):
        url, _, name = named.rpartition("#")
        return f"{shown_urls([url])[0]}#{name}"
    return named
