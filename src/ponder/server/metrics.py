"""``GET /metrics``: the server's counters in the Prometheus text format, written by
``prometheus_client`` into a registry of the server's own (two servers in one process never
share a series).

The request counters and the latency histogram are the library's own metrics; the gauges (queue
depth, requests in flight) and an endpoint pool's per-endpoint figures are read when the page is
scraped, by a collector over the values the server keeps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from ponder.backends.endpoints import shown_urls

disable_created_metrics()  # no *_created series: a scrape shows counts, not creation times

# upper bounds of the latency buckets, in seconds (the library adds +Inf)
BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """What ``/metrics`` shows of one server. ``in_flight`` and ``queued`` are the server's
    own counts (it changes them as requests come and go); ``endpoints`` gives a pool's
    per-endpoint figures (``EndpointPool.endpoint_stats``), if the server has one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("ponder_requests", "Chat completion requests by HTTP status.",
                                ["status"], registry=self.registry)
        self.tokens = Counter("ponder_tokens", "Tokens spent by every internal call.", ["kind"],
                              registry=self.registry)
        for kind in ("prompt", "completion"):
            self.tokens.labels(kind=kind)  # both series from the start, at 0
        self.latency = Histogram("ponder_request_seconds", "Latency of answered requests.",
                                 buckets=BUCKETS, registry=self.registry)
        self.in_flight = 0
        self.queued = 0
        self.endpoints: Callable[[], list[dict[str, Any]]] | None = None
        self.registry.register(_Scraped(self))

    def observe(self, status: int, seconds: float | None = None) -> None:
        """One answered (or refused) request: its status and, when answered, its latency."""
        self.requests.labels(status=str(status)).inc()
        if seconds is not None:
            self.latency.observe(seconds)

    def add_tokens(self, prompt: int, completion: int) -> None:
        self.tokens.labels(kind="prompt").inc(prompt)
        self.tokens.labels(kind="completion").inc(completion)

    def render(self) -> str:
        """The exposition, in the Prometheus text format."""
        with self._lock:
            return generate_latest(self.registry).decode()


class _Scraped(Collector):
    """The values read at each scrape: the queue, the requests in flight, a pool's endpoints."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return []  # read at scrape time: nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        yield GaugeMetricFamily("ponder_queue_depth", "Requests waiting for a slot.",
                                value=m.queued)
        yield GaugeMetricFamily("ponder_requests_in_flight", "Requests being answered.",
                                value=m.in_flight)
        if m.endpoints is not None:
            yield from endpoint_families(m.endpoints())


ENDPOINT_COUNTERS = (
    ("requests", "ponder_endpoint_requests", "counter", "Calls sent to each endpoint."),
    ("samples", "ponder_endpoint_samples", "counter", "Samples each endpoint returned."),
    ("errors", "ponder_endpoint_errors", "counter",
     "Failures (refused, 5xx, timeout) that took an endpoint out."),
    ("retried_samples", "ponder_endpoint_retried_samples", "counter",
     "Samples lost on an endpoint and asked for on another."),
    ("outstanding", "ponder_endpoint_outstanding", "gauge", "Samples in flight per endpoint."),
    ("up", "ponder_endpoint_up", "gauge", "1 while an endpoint is in the pool."),
)


def endpoint_families(endpoints: list[dict[str, Any]]) -> list[Metric]:
    """A pool's per-endpoint figures as metric families, each endpoint labelled by its redacted
    URL (scheme, host, port, path: never its userinfo or query, which anyone who can read
    /metrics would see), whatever the figures' source gave."""
    labels = shown_urls([e["url"] for e in endpoints])
    families: list[Metric] = []
    for field, name, kind, text in ENDPOINT_COUNTERS:
        family: Metric = (CounterMetricFamily(name, text, labels=["endpoint"]) if kind == "counter"
                          else GaugeMetricFamily(name, text, labels=["endpoint"]))
        for label, e in zip(labels, endpoints, strict=True):
            family.add_metric([label], float(e[field]))
        families.append(family)
    seconds = SummaryMetricFamily("ponder_endpoint_request_seconds",
                                  "Seconds of the calls each endpoint answered.",
                                  labels=["endpoint"])
    for label, e in zip(labels, endpoints, strict=True):
        seconds.add_metric([label], count_value=float(e["latency_count"]),
                           sum_value=float(e["latency_sum_s"]))
    families.append(seconds)
    tokens = CounterMetricFamily("ponder_endpoint_tokens",
                                 "Tokens each endpoint evaluated and generated.",
                                 labels=["endpoint", "kind"])
    for label, e in zip(labels, endpoints, strict=True):
        for kind in ("prompt", "completion"):
            tokens.add_metric([label, kind], float(e[kind + "_tokens"]))
    families.append(tokens)
    return families
