"""An endpoint pool: one backend over several OpenAI-compatible servers serving one model.

- Each endpoint is an :class:`~ponder.backends.openai_http.OpenAIBackend`, probed on its own
  (n, logprobs, prefill); a request that needs logprobs goes only where they come back, and
  ``n`` is fanned out into single requests where an endpoint ignores it.
- Routing: requests that share a prompt prefix (the n samples of one question, the siblings of
  one beam or MCTS depth, which differ only in their prefill, the judge calls of one problem)
  have one preferred endpoint (weighted rendezvous hashing on the prefix). Samples wait in the
  pool, not in an endpoint's queue: a request goes to its preferred endpoint when that has
  free slots (``max_concurrent``), else to an endpoint with free slots that no waiting request
  prefers (the less loaded of two, power of two choices on outstanding samples / weight), else
  it waits for a slot. So no replica idles while work waits (placement by hash alone left 43 to
  83 samples per replica of 8), and a freed slot goes first to the requests whose prefix that
  replica caches.
- Health: an endpoint that refuses, answers 5xx/429 or times out is taken out with an
  exponential backoff and checked back in (its ``/models``) when the backoff ends. The samples of
  a request in flight on it that had not come back are asked for on another endpoint; each
  sample index is delivered once (``on_sample`` included), so no sample is counted twice. When
  every endpoint is down for longer than ``patience`` seconds: one clear error.
- Figures per endpoint (requests, samples, tokens, errors, latency) for ``/metrics``, ``--json``
  and the eval report: :meth:`EndpointPool.endpoint_stats`. An endpoint is named there, and in
  every error, by its redacted URL (no userinfo, no query: ``endpoints.redact_url``).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ponder.backends.base import (
    Backend,
    Capabilities,
    ProgressCallback,
    generate_each,
    parameter_count,
)
from ponder.backends.endpoints import EndpointSpec, redact_urls, shown_urls
from ponder.backends.loops import PerLoop
from ponder.errors import BackendTimeout, BackendUnavailable, ConfigError
from ponder.types import Completion, GenerationRequest

# Characters of the last message that count towards the affinity key: enough to tell problems
# apart when a judge prompt starts with the problem and ends with a candidate.
AFFINITY_CHARS = 512
BACKOFF_START, BACKOFF_MAX = 1.0, 30.0
ROUTINGS = ("affinity", "least-loaded")  # least-loaded: power of two choices alone


def agreed(values: Sequence[Any], what: str) -> Any:
    """The one value the endpoints of a pool give for ``what`` (None: none gives it); the
    replicas of one model cannot differ in it."""
    given = {v for v in values if v is not None}
    if len(given) > 1:
        raise ConfigError(f"the endpoints give different {what} values ({len(given)}): a pool "
                          "serves one model")
    return next(iter(given), None)


def affinity_key(request: GenerationRequest, chars: int = AFFINITY_CHARS) -> str:
    """What requests that share a prompt prefix have in common: every message but the last in
    full, and the start of the last one. The prefill is left out, so the siblings of one search
    depth (one prompt, different partial answers) share the key. A request's own ``affinity``
    (the judge calls of one problem) wins."""
    h = hashlib.blake2b(digest_size=16)
    if request.affinity:
        h.update(b"affinity\x00" + request.affinity.encode())
        return h.hexdigest()
    messages = request.messages
    for m in messages[:-1]:
        h.update(f"{m.role}\x00{m.content}\x01".encode())
    if messages:
        last = messages[-1]
        h.update(f"{last.role}\x00{last.content[:chars]}".encode())
    return h.hexdigest()


@dataclass
class EndpointStats:
    requests: int = 0  # calls sent (a fanned-out n counts once per call the pool made)
    samples: int = 0  # completions delivered
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: int = 0
    retried_samples: int = 0  # samples that failed here and were asked for elsewhere
    affinity_hits: int = 0  # requests routed to their preferred endpoint
    latency_sum: float = 0.0
    latency_count: int = 0


@dataclass
class Endpoint:
    spec: EndpointSpec
    backend: Any  # OpenAIBackend
    shown: str = ""  # its URL as shown (redacted, told apart): shown_urls
    outstanding: int = 0  # samples sent and not yet back
    up: bool = True
    failures: int = 0
    retry_at: float = 0.0
    reason: str = ""
    checking: bool = False  # a check that it is back is under way
    stats: EndpointStats = field(default_factory=EndpointStats)

    @property
    def url(self) -> str:
        return self.spec.url

    def rank(self, key: str) -> float:
        """Weighted rendezvous score of ``key`` here: the highest wins."""
        digest = hashlib.blake2b(f"{key}|{self.url}".encode(), digest_size=8).digest()
        u = (int.from_bytes(digest, "big") + 1) / (2**64 + 2)
        return -self.spec.weight / math.log(u)


class _Attempt:
    """One call on one endpoint for some of a request's sample indices; once it has failed, a
    late sample from it is dropped (the index is asked for elsewhere)."""

    def __init__(self, indices: list[int], delivered: dict[int, Completion],
                 request: GenerationRequest) -> None:
        self.indices = indices
        self.delivered = delivered
        self.request = request
        self.closed = False

    def on_sample(self, local: int, completion: Completion) -> None:
        index = self.indices[local]
        if self.closed or index in self.delivered:
            return
        self.delivered[index] = completion
        if self.request.on_sample is not None:
            self.request.on_sample(index, completion)

    def monitor(self, local: int, text: str, token: Any) -> bool:
        assert self.request.monitor is not None
        return bool(self.request.monitor(self.indices[local], text, token))


class EndpointPool(Backend):
    """Generates over ``endpoints`` (specs without a model use ``model``)."""

    name = "openai"

    def __init__(self, model: str, endpoints: Sequence[EndpointSpec], *,
                 api_key: str | None = None, patience: float = 10.0, seed: int = 0,
                 max_retries: int = 0, routing: str = "affinity", **options: Any) -> None:
        from ponder.backends.openai_http import OpenAIBackend

        if not endpoints:
            raise ConfigError("an endpoint pool needs at least one endpoint")
        self.model = model
        self.patience = patience
        if routing not in ROUTINGS:
            raise ConfigError(f"routing must be one of {', '.join(ROUTINGS)}, got {routing!r}")
        self.routing = routing
        self._rng = random.Random(seed)
        self.parameters = parameter_count(options.get("parameters")) or agreed(
            [s.parameters for s in endpoints], "parameters")
        # prices from the endpoints file (a -B price option given to load_backend wins)
        self.prices = agreed([s.price for s in endpoints], "price")
        self.priced_by_endpoints = self.prices is not None
        options.pop("max_concurrency", None)  # per endpoint: its max_concurrent
        names = shown_urls([spec.url for spec in endpoints])
        self.endpoints = [
            Endpoint(spec, OpenAIBackend(spec.model or model, spec.url,
                                         api_key=spec.api_key or api_key,
                                         max_concurrency=spec.max_concurrent,
                                         max_retries=max_retries, **options), shown=name)
            for spec, name in zip(endpoints, names, strict=True)
        ]
        self._caps = Capabilities()
        self._probed = False
        # a lock and an event belong to the loop they first wait on: one of each per loop
        self._probe_locks: PerLoop[asyncio.Lock] = PerLoop(asyncio.Lock)
        self._events: PerLoop[asyncio.Event] = PerLoop(asyncio.Event)
        self._revivals: set[asyncio.Task] = set()
        self._wanted: dict[str, int] = {}  # url -> waiting requests that prefer that endpoint

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    @property
    def base_url(self) -> str:
        """The endpoints' URLs as given (secrets included): for requests, never for text."""
        return ",".join(e.url for e in self.endpoints)

    @property
    def shown_url(self) -> str:
        """The endpoints' URLs as shown (redacted)."""
        return ",".join(e.shown for e in self.endpoints)

    @property
    def _changed(self) -> asyncio.Event:
        """Set when a slot frees or an endpoint comes back (the running loop's event)."""
        return self._events.get()

    # -- probing ---------------------------------------------------------------------------

    async def probe(self) -> Capabilities:
        """Probe every endpoint on its own. One that cannot be reached starts out of the pool
        (checked back in later); a wrong model or key anywhere is an error now."""
        async with self._probe_locks.get():
            if self._probed:
                return self._caps
            outcomes = await asyncio.gather(*(e.backend.probe() for e in self.endpoints),
                                            return_exceptions=True)
            for endpoint, outcome in zip(self.endpoints, outcomes, strict=True):
                if isinstance(outcome, BackendUnavailable):
                    self._take_out(endpoint, outcome)
                elif isinstance(outcome, BaseException):
                    raise outcome
            probed = [e for e in self.endpoints if e.backend._probed]
            if not probed:
                raise BackendUnavailable(self._all_down())
            self._caps = self._pool_caps(probed)
            self._probed = True
            return self._caps

    @staticmethod
    def _pool_caps(probed: list[Endpoint]) -> Capabilities:
        caps = [e.backend.capabilities for e in probed]
        contexts = [c.max_context for c in caps if c.max_context]
        return Capabilities(
            parallel_n=all(c.parallel_n for c in caps),
            logprobs=any(c.logprobs for c in caps),  # requests needing them go there only
            prefill=True, early_stop=True,
            max_context=min(contexts) if contexts else 0,
        )

    def identity(self) -> dict[str, Any]:
        """The model as the endpoints report it; not their URLs or number, so that a run can be
        resumed on another set of replicas of the same model."""
        probed = [e for e in self.endpoints if e.backend._probed]
        first = probed[0].backend.identity() if probed else {}
        return {"backend": self.name, "model": self.model,
                "models": sorted({e.backend.model for e in self.endpoints}),
                "served": first.get("served", {}), "pool": True,
                "logprobs": self._caps.logprobs}

    async def count_prompt_tokens(self, request: GenerationRequest) -> int | None:
        for endpoint in self.endpoints:
            if endpoint.up and endpoint.backend.tokenize_url:
                return await endpoint.backend.count_prompt_tokens(request)
        return None

    # -- health ----------------------------------------------------------------------------

    def _take_out(self, endpoint: Endpoint, exc: BaseException) -> None:
        endpoint.stats.errors += 1
        if endpoint.up:
            endpoint.up = False
        endpoint.failures += 1
        endpoint.reason = redact_urls(str(exc))  # ponder's errors are; another's may quote one
        delay = min(BACKOFF_MAX, BACKOFF_START * 2 ** (endpoint.failures - 1))
        endpoint.retry_at = time.monotonic() + delay

    def _revive_due(self) -> None:
        now = time.monotonic()
        for endpoint in self.endpoints:
            if not endpoint.up and endpoint.retry_at <= now and not endpoint.checking:
                endpoint.checking = True
                task = asyncio.ensure_future(self._check(endpoint))
                self._revivals.add(task)
                task.add_done_callback(self._revivals.discard)

    async def _check(self, endpoint: Endpoint) -> None:
        """Is a downed endpoint back? Its ``/models`` (and, never probed, its capabilities)."""
        try:
            if endpoint.backend._probed:
                await endpoint.backend._check_model()
            else:
                await endpoint.backend.probe()
                self._caps = self._pool_caps([e for e in self.endpoints if e.backend._probed])
        except BackendUnavailable as exc:
            self._take_out(endpoint, exc)
        except Exception as exc:  # noqa: BLE001 - a wrong answer keeps it out, with the reason
            self._take_out(endpoint, exc)
        else:
            endpoint.up, endpoint.failures, endpoint.reason = True, 0, ""
        finally:
            endpoint.checking = False
            self._changed.set()

    def _all_down(self) -> str:
        return "every endpoint is down: " + "; ".join(
            f"{e.shown} ({e.reason or 'unreachable'})" for e in self.endpoints)

    # -- routing ---------------------------------------------------------------------------

    def _load(self, endpoint: Endpoint) -> float:
        return endpoint.outstanding / endpoint.spec.weight

    def _live(self, needs_logprobs: bool) -> list[Endpoint]:
        return [e for e in self.endpoints if e.up and e.backend._probed
                and (not needs_logprobs or e.backend.capabilities.logprobs)]

    @staticmethod
    def _free(endpoint: Endpoint, cost: int) -> bool:
        """Room for ``cost`` more samples (a request larger than all its slots: when idle)."""
        return endpoint.outstanding == 0 or \
            endpoint.outstanding + cost <= endpoint.spec.max_concurrent

    def _two_choices(self, endpoints: list[Endpoint]) -> Endpoint:
        if len(endpoints) == 1:
            return endpoints[0]
        a, b = self._rng.sample(endpoints, 2)
        return a if self._load(a) <= self._load(b) else b

    def _pick(self, live: list[Endpoint], key: str, cost: int) -> Endpoint | None:
        """Where a request goes now; None: every slot it could use is taken (wait)."""
        if self.routing == "least-loaded":
            return self._two_choices(live)
        preferred = max(live, key=lambda e: e.rank(key))
        if self._free(preferred, cost):
            preferred.stats.affinity_hits += 1
            return preferred
        spare = [e for e in live if e is not preferred and self._free(e, cost)
                 and not self._wanted.get(e.url)]
        return self._two_choices(spare) if spare else None

    async def _route(self, key: str, cost: int, needs_logprobs: bool) -> Endpoint:
        deadline = time.monotonic() + self.patience
        wanted: str | None = None
        try:
            while True:
                self._revive_due()
                live = self._live(needs_logprobs)
                if live:
                    deadline = time.monotonic() + self.patience  # busy is not down
                    endpoint = self._pick(live, key, cost)
                    if endpoint is not None:
                        return endpoint
                    url = max(live, key=lambda e: e.rank(key)).url
                    if wanted != url:  # count this request as waiting for its preferred one
                        if wanted is not None:
                            self._wanted[wanted] -= 1
                        wanted = url
                        self._wanted[url] = self._wanted.get(url, 0) + 1
                elif needs_logprobs and not any(e.backend.capabilities.logprobs
                                                for e in self.endpoints):
                    raise ConfigError("no endpoint of the pool returns logprobs")
                now = time.monotonic()
                if not live and now >= deadline:
                    raise BackendUnavailable(self._all_down())
                waits = [e.retry_at - now for e in self.endpoints if not e.up]
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(),
                                           max(0.05, min([deadline - now, *waits])))
                except asyncio.TimeoutError:
                    pass
        finally:
            if wanted is not None:
                self._wanted[wanted] -= 1
                self._changed.set()

    # -- generation ------------------------------------------------------------------------

    async def generate(
        self,
        requests: Sequence[GenerationRequest],
        on_progress: ProgressCallback | None = None,
    ) -> list[list[Completion]]:
        await self.probe()
        return await generate_each(requests, on_progress, self._one)

    async def _one(self, request: GenerationRequest, progress: ProgressCallback
                   ) -> list[Completion]:
        key = affinity_key(request)
        needs_logprobs = request.params.logprobs is not None
        delivered: dict[int, Completion] = {}
        while len(delivered) < request.n:
            missing = [i for i in range(request.n) if i not in delivered]
            endpoint = await self._route(key, len(missing), needs_logprobs)
            attempt = _Attempt(missing, delivered, request)
            await self._attempt(endpoint, attempt, progress)
        return [delivered[i] for i in range(request.n)]

    def _sub_requests(self, attempt: _Attempt) -> list[GenerationRequest]:
        request = attempt.request
        changes: dict[str, Any] = {"on_sample": attempt.on_sample}
        if request.monitor is not None:
            changes["monitor"] = attempt.monitor
        if len(attempt.indices) == request.n:
            return [request.replace(**changes)]
        # the samples left of a request, one call each, seeded as the backend seeds sample i
        seed = request.params.seed
        out = []
        for local, index in enumerate(attempt.indices):
            params = request.params if seed is None else request.params.replace(seed=seed + index)

            def on_sample(_: int, c: Completion, local: int = local) -> None:
                attempt.on_sample(local, c)

            def monitor(_: int, text: str, token: Any, local: int = local) -> bool:
                return attempt.monitor(local, text, token)

            out.append(request.replace(
                params=params, n=1, on_sample=on_sample,
                monitor=monitor if request.monitor is not None else None))
        return out

    async def _attempt(self, endpoint: Endpoint, attempt: _Attempt,
                       progress: ProgressCallback) -> None:
        subs = self._sub_requests(attempt)
        cost = len(attempt.indices)
        endpoint.outstanding += cost
        endpoint.stats.requests += len(subs)
        started = time.monotonic()
        try:
            rows = await endpoint.backend.generate(subs, None)
        except (BackendUnavailable, BackendTimeout) as exc:
            attempt.closed = True
            lost = sum(1 for i in attempt.indices if i not in attempt.delivered)
            endpoint.stats.retried_samples += lost
            self._take_out(endpoint, exc)
            return
        finally:
            endpoint.outstanding -= cost
            self._changed.set()
        endpoint.stats.latency_sum += time.monotonic() - started
        endpoint.stats.latency_count += 1
        flat = [c for row in rows for c in row]
        for local, completion in enumerate(flat[:cost]):
            attempt.on_sample(local, completion)  # a backend that skipped on_sample
        attempt.closed = True
        for completion in flat[:cost]:
            endpoint.stats.samples += 1
            endpoint.stats.prompt_tokens += completion.usage.prompt_tokens
            endpoint.stats.completion_tokens += completion.usage.completion_tokens
            progress(completion.usage.completion_tokens)

    # -- figures ---------------------------------------------------------------------------

    def endpoint_stats(self) -> list[dict[str, Any]]:
        """Per endpoint: its URL as shown (redacted) and state, and what it served."""
        out = []
        for e in self.endpoints:
            s = e.stats
            out.append({
                "url": e.shown, "model": e.backend.model, "up": e.up, "weight": e.spec.weight,
                "outstanding": e.outstanding, "requests": s.requests, "samples": s.samples,
                "prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens,
                "errors": s.errors, "retried_samples": s.retried_samples,
                "affinity_hits": s.affinity_hits,
                "latency_mean_s": round(s.latency_sum / s.latency_count, 4)
                if s.latency_count else None,
                "latency_sum_s": round(s.latency_sum, 4), "latency_count": s.latency_count,
            })
        return out

    async def aclose(self) -> None:
        for task in list(self._revivals):
            task.cancel()
        await asyncio.gather(*self._revivals, return_exceptions=True)
        for e in self.endpoints:
            await e.backend.aclose()
