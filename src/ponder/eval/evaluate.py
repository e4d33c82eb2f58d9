"""``ponder.evaluate``: the evaluation harness as one Python call — a dataset, strategies and
budgets in, the report's data out (and report.md, scaling.png, report.html, report.json and
the store in ``out``). ``ponder eval`` is this call with flags, a progress bar and tables.

The run is resumable as the command's is: the same call over the same folder generates only
what is missing; a folder written by another model, dataset, seed, decoding mode or role model
is refused (:mod:`ponder.eval.session`).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ponder import registry
from ponder.backends import loading
from ponder.backends.base import Backend
from ponder.backends.endpoints import ROLE_PREFIX
from ponder.backends.loading import opened_models, release, role_identity
from ponder.backends.models import ModelSpec
from ponder.backends.runs import (
    batch_options,
    determinism,
    determinism_of,
    endpoint_stats,
    shown_model,
)
from ponder.errors import ConfigError
from ponder.eval.comparisons import Reference, check_reference, paired_table, parse_reference
from ponder.eval.datasets import load_dataset
from ponder.eval.harness import Harness, Status
from ponder.eval.plans import GREEDY, parse_budgets
from ponder.eval.pools import split_specs
from ponder.eval.report import write_reports
from ponder.eval.session import RunFolder, RunIdentity, identify, identify_dataset
from ponder.eval.store import Store
from ponder.runner import check_roles
from ponder.types import Problem
from ponder.version import __version__

OUTPUTS = ("report.md", "scaling.png", "report.html", "report.json", "traces", "view")
DEFAULT_STRATEGIES = ("cot", "self-consistency", "best-of-n")
DEFAULT_BUDGETS = (1, 2, 4, 8, 16)


def evaluate(
    dataset: str | Path,
    strategies: str | Sequence[str] = DEFAULT_STRATEGIES,
    budgets: str | Sequence[int] = DEFAULT_BUDGETS,
    *,
    out: str | Path,
    model: str | None = None,
    models: Mapping[str, str] | None = None,
    backend: Backend | None = None,
    base_url: str | Sequence[str] | None = None,
    endpoints: str | None = None,
    api_key: str | None = None,
    backend_options: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    examples: str | Path | None = None,
    verifier: str | None = None,
    reference: str | None = None,
    format: str = "auto",
    question_field: str | None = None,
    answer_field: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    draws: int = 200,
    concurrency: int = 4,
    deterministic: bool = True,
    greedy: bool = True,
    fresh: bool = False,
    ray: str | None = None,
    ray_workers: int | None = None,
    on_update: Callable[[Status], None] | None = None,
) -> dict[str, Any]:
    """Evaluate ``strategies`` (names, specs such as ``"self-consistency[mode=mixed]"`` or
    ``"preset:FILE"``, or one comma-separated string) on ``dataset`` (a JSONL/JSON/CSV file,
    ``hf:...`` or ``humaneval``) at each of ``budgets``, against the greedy baseline; returns
    the report's data: ``points`` (accuracy, interval, tokens, FLOPs, dollars per strategy and
    budget), ``coverage``, ``paired`` (each strategy against ``reference``, ``LABEL@BUDGET``),
    ``problems`` (each one's answers), ``config`` and ``paths`` (the files written in ``out``).

    The model is ``model`` (a GGUF, ``hf:...``, or the served model's name at ``base_url`` /
    ``endpoints``), or ``backend`` (a backend of your own: its samples are keyed by its name
    and model); ``models`` names the other models by role (``{"strong": "big.gguf"}``).
    ``options`` apply to every strategy (``max_tokens``, ``temperature``...). ``on_update``
    is called with the progress (:class:`~ponder.eval.harness.Status`) as samples arrive."""
    budget_list = parse_budgets(budgets if isinstance(budgets, str)
                                else ",".join(str(b) for b in budgets))
    names = split_specs(strategies if isinstance(strategies, str) else ",".join(strategies))
    if not names:
        raise ConfigError("no strategies to evaluate")
    if draws < 1 or concurrency < 1:
        raise ConfigError("draws and concurrency must be positive")
    if backend is not None and (model or base_url or endpoints or ray is not None):
        raise ConfigError("give a backend, or the model that names one, not both")
    labels = ([GREEDY] if greedy else []) + names
    compared = parse_reference(reference, labels) if reference is not None else None
    roles = dict(models or {})
    all_options = dict(options or {})
    if examples:
        all_options["examples"] = str(Path(examples).resolve())
    problems = load_dataset(str(dataset), format, question_field=question_field,
                            answer_field=answer_field, limit=limit)
    check_plans(problems, names, budget_list, all_options, compared, list(roles),
                verifier=verifier, seed=seed, greedy=greedy, ray=ray is not None)
    identity = (identify_backend(backend, str(dataset), roles) if backend is not None
                else identify(model, base_url, endpoints, str(dataset), roles))
    spec, folder_path = identity.spec, Path(out)
    with RunFolder(folder_path, identity, seed=seed, deterministic=deterministic, fresh=fresh,
                   outputs=OUTPUTS) as folder:
        opts = batch_options(spec, dict(backend_options or {}), deterministic)
        # looked up when called: a test's (or a plugin's) replacement of the loader holds
        factory = functools.partial(loading.load_backend, model, base_url, api_key=api_key,
                                    endpoints=endpoints, **opts)
        generator = backend if backend is not None else (None if ray is not None
                                                         else factory())
        harness = Harness(
            generator, folder.store, problems,  # type: ignore[arg-type]
            names, budget_list, options=all_options, verifier=verifier, seed=seed,
            greedy=greedy, concurrency=concurrency, traces=folder_path, on_update=on_update)
        if compared is not None:
            check_reference(compared, {plan.label: plan.budgets for plan in harness.plans})
        endpoints_seen: list[dict[str, Any]] = []
        ran: list[dict[str, Any]] = []  # every model's determinism, once they ran
        if ray is not None:
            _on_ray(harness, folder, factory, ray, ray_workers, concurrency)
        else:
            asyncio.run(_run(harness, folder, roles, api_key, opts, deterministic,
                             owned=backend is None, seen=endpoints_seen, ran=ran))
        data = harness.curves(draws=draws)
        data["paired"] = paired_table(data["per_problem"],
                                      {plan.label: plan.name for plan in harness.plans},
                                      compared, seed=seed)
        config = _config(identity, harness, problems, budget_list, seed=seed, draws=draws,
                         verifier=verifier, reference=reference,
                         determinism={**(ran[0] if ran else determinism(generator, deterministic)),
                                      "samples_sha256": folder.store.fingerprint()})
        if endpoints_seen:
            config["endpoints"] = endpoints_seen
        paths = write_reports(folder_path, data, config)
    return {**data, "config": config, "paths": [str(p) for p in paths]}


async def _run(harness: Harness, folder: RunFolder, roles: Mapping[str, str],
               api_key: str | None, options: dict[str, Any], deterministic: bool, *,
               owned: bool, seen: list[dict[str, Any]], ran: list[dict[str, Any]]) -> None:
    try:
        await folder.probe(harness.backend)  # a served model: what its server reports
        async with opened_models(roles, api_key=api_key, options=options) as opened:
            harness.models = opened
            await harness.run()
            ran.append(determinism_of(harness.backend, opened, deterministic))
    finally:
        seen[:] = endpoint_stats(harness.backend) or []
        if owned:
            await release(harness.backend)


def _on_ray(harness: Harness, folder: RunFolder, factory: Callable[[], Backend],
            address: str, workers: int | None, per_worker: int) -> None:
    from ponder.eval.ray_eval import RayEval

    ray_eval = RayEval(harness, factory, address=address or None, workers=workers,
                       per_worker=per_worker)
    try:
        if folder.identity.spec.backend == "openai":
            folder.claim_served(ray_eval.identity())
        ray_eval.run()
    finally:
        ray_eval.close()


def _config(identity: RunIdentity, harness: Harness, problems: Sequence[Problem],
            budgets: Sequence[int], *, seed: int, draws: int, verifier: str | None,
            reference: str | None, determinism: dict[str, Any]) -> dict[str, Any]:
    """What report.json keeps of the run's configuration."""
    config: dict[str, Any] = {
        "dataset": identity.dataset, "dataset_sha256": identity.dataset_hash,
        "problems": len(problems), "model": identity.spec.name, "model_id": identity.model_id,
        "model_sha256": identity.model_hash,
        "strategies": {p.label: {"name": p.name, "key": p.key, "mode": p.mode,
                                 "budgets": p.budgets, "pools": [pool.key for pool in p.pools],
                                 "verifier": p.verifier,
                                 "config": p.build().config.model_dump()}
                       for p in harness.plans},
        "budgets": list(budgets), "seed": seed, "draws": draws, "verifier": verifier,
        "ponder_version": __version__, "reference": reference, "determinism": determinism,
    }
    if identity.roles:  # the other models by role: what they are (their costs are in the points)
        config["roles"] = {role: {"model": shown_model(named), "sha256": None if
                                  named.startswith(("http://", "https://", ROLE_PREFIX))
                                  else role_identity(named)}
                           for role, named in identity.roles.items()}
    return config


def check_plans(problems: Sequence[Problem], strategies: Sequence[str], budgets: Sequence[int],
                options: dict[str, Any], reference: Reference | None, roles: Sequence[str] = (),
                *, verifier: str | None = None, seed: int = 0, greedy: bool = True,
                ray: bool = False) -> None:
    """Every strategy, option, verifier, model role and the reference checked on a store in
    memory, so a bad one is refused before the folder is touched (no folder, no empty store,
    nothing discarded)."""
    if verifier is not None:
        registry.verifiers.get(verifier)
    store = Store(":memory:")
    try:
        harness = Harness(None, store, problems, strategies, budgets,  # type: ignore[arg-type]
                          options=options, verifier=verifier, seed=seed, greedy=greedy)
        if reference is not None:
            check_reference(reference, {plan.label: plan.budgets for plan in harness.plans})
        for plan in harness.plans:
            check_roles(plan.build(), roles)
        if ray:
            from ponder.eval.ray_eval import check_ray_plans

            check_ray_plans(harness.plans)
            if roles:
                raise ConfigError("--ray runs one model per worker: a run with --model "
                                  f"{roles[0]}=... runs without --ray")
    finally:
        store.close()


def identify_backend(backend: Backend, dataset: str, roles: Mapping[str, str]) -> RunIdentity:
    """The identity of a run on a backend given as an object: its samples are keyed by the
    backend's name and model."""
    named = identify_dataset(dataset)
    return RunIdentity(ModelSpec(backend.name, backend.model), backend.model,
                       f"{backend.name}:{backend.model}", *named, dict(roles))
