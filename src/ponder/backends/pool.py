"""An endpoint pool: one backend over several OpenAI-compatible servers serving one model.

- Each endpoint is an :class:`~ponder.backends.openai_http.OpenAIBackend`, probed on its own
  (n, logprobs, prefill); a request that needs logprobs goes only where they come back, and
  ``n`` is fanned out into single requests where an endpoint ignores it.
- Routing: requests that share a prompt prefix (the n samples of one question, the siblings of
  one beam or MCTS depth, which differ only in their prefill, the judge calls of one problem)
  have one preferred endpoint (weighted rendezvous hashing on the prefix), kept while its
  outstanding samples stay within 1.5 x the pool's average plus its own slots (bounded-load
  consistent hashing); otherwise the less loaded of two random endpoints (power of two choices
  on outstanding samples / weight).
- Health: an endpoint that refuses, answers 5xx/429 or times out is taken out with an
  exponential backoff and checked back in (its ``/models``) when the backoff ends. The samples of
  a request in flight on it that had not come back are asked for on another endpoint; each
  sample index is delivered once (``on_sample`` included), so no sample is counted twice. When
  every endpoint is down for longer than ``patience`` seconds: one clear error.
- Figures per endpoint (requests, samples, tokens, errors, latency) for ``/metrics``, ``--json``
  and the eval report: :meth:`EndpointPool.endpoint_stats`.
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

from ponder.backends.base import Backend, Capabilities, ProgressCallback
from ponder.backends.endpoints import EndpointSpec
from ponder.errors import BackendTimeout, BackendUnavailable, ConfigError
from ponder.types import Completion, GenerationRequest

# Characters of the last message that count towards the affinity key: enough to tell problems
# apart when a judge prompt starts with the problem and ends with a candidate.
AFFINITY_CHARS = 512
BACKOFF_START, BACKOFF_MAX = 1.0, 30.0
ROUTINGS = ("affinity", "least-loaded")  # least-loaded: power of two choices alone
LOAD_SLACK = 1.5  # the preferred endpoint is kept while its load <= this x the average + slots


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
        options.pop("max_concurrency", None)  # per endpoint: its max_concurrent
        self.endpoints = [
            Endpoint(spec, OpenAIBackend(spec.model or model, spec.url,
                                         api_key=spec.api_key or api_key,
                                         max_concurrency=spec.max_concurrent,
                                         max_retries=max_retries, **options))
            for spec in endpoints
        ]
        self._caps = Capabilities()
        self._probed = False
        self._probe_lock = asyncio.Lock()
        self._revivals: set[asyncio.Task] = set()
        self._changed = asyncio.Event()

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    @property
    def base_url(self) -> str:
        return ",".join(e.url for e in self.endpoints)

    # -- probing ---------------------------------------------------------------------------

    async def probe(self) -> Capabilities:
        """Probe every endpoint on its own. One that cannot be reached starts out of the pool
        (checked back in later); a wrong model or key anywhere is an error now."""
        async with self._probe_lock:
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
        endpoint.reason = str(exc)
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
            f"{e.url} ({e.reason or 'unreachable'})" for e in self.endpoints)

    # -- routing ---------------------------------------------------------------------------

    def _load(self, endpoint: Endpoint) -> float:
        return endpoint.outstanding / endpoint.spec.weight

    def _pick(self, key: str, cost: int, needs_logprobs: bool) -> Endpoint | None:
        live = [e for e in self.endpoints if e.up and e.backend._probed
                and (not needs_logprobs or e.backend.capabilities.logprobs)]
        if not live:
            return None
        preferred = max(live, key=lambda e: e.rank(key))
        if self.routing == "least-loaded":
            preferred = min(live, key=self._load) if len(live) == 1 else \
                min(self._rng.sample(live, 2), key=self._load)
            return preferred
        total = sum(e.outstanding for e in live) + cost
        mean = total / sum(e.spec.weight for e in live)
        # kept while it is at most LOAD_SLACK x the average load plus one set of its slots
        w = preferred.spec.weight
        if (preferred.outstanding + cost) / w <= LOAD_SLACK * mean \
                + preferred.spec.max_concurrent / w:
            preferred.stats.affinity_hits += 1
            return preferred
        if len(live) == 1:
            return live[0]
        a, b = self._rng.sample(live, 2)
        return a if self._load(a) <= self._load(b) else b

    async def _route(self, key: str, cost: int, needs_logprobs: bool) -> Endpoint:
        deadline = time.monotonic() + self.patience
        while True:
            self._revive_due()
            endpoint = self._pick(key, cost, needs_logprobs)
            if endpoint is not None:
                return endpoint
            if needs_logprobs and not any(e.backend.capabilities.logprobs
                                          for e in self.endpoints):
                raise ConfigError("no endpoint of the pool returns logprobs")
            now = time.monotonic()
            if now >= deadline:
                raise BackendUnavailable(self._all_down())
            waits = [e.retry_at - now for e in self.endpoints if not e.up]
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(),
                                       max(0.05, min([deadline - now, *waits])))
            except asyncio.TimeoutError:
                pass

    # -- generation ------------------------------------------------------------------------

    async def generate(
        self,
        requests: Sequence[GenerationRequest],
        on_progress: ProgressCallback | None = None,
    ) -> list[list[Completion]]:
        await self.probe()
        done = [0]

        def progress(tokens: int) -> None:
            done[0] += tokens
            if on_progress is not None:
                on_progress(done[0])

        rows = await asyncio.gather(*(self._one(r, progress) for r in requests))
        return list(rows)

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
        """Per endpoint: its URL and state, and what it served."""
        out = []
        for e in self.endpoints:
            s = e.stats
            out.append({
                "url": e.url, "model": e.backend.model, "up": e.up, "weight": e.spec.weight,
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
