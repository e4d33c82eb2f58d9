"""Counters for ``GET /metrics`` in the Prometheus text format (no client library needed)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from ponder.backends.endpoints import shown_urls

BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, float("inf"))


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # by HTTP status
        self.tokens: Counter[str] = Counter()  # prompt / completion
        self.latency_counts = [0] * len(BUCKETS)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.in_flight = 0
        self.queued = 0
        # an endpoint pool's per-endpoint figures (``EndpointPool.endpoint_stats``), if any
        self.endpoints: Callable[[], list[dict[str, Any]]] | None = None

    def observe(self, status: int, seconds: float | None = None) -> None:
        with self._lock:
            self.requests[str(status)] += 1
            if seconds is not None:
                self.latency_sum += seconds
                self.latency_count += 1
                for i, bound in enumerate(BUCKETS):
                    if seconds <= bound:
                        self.latency_counts[i] += 1

    def add_tokens(self, prompt: int, completion: int) -> None:
        with self._lock:
            self.tokens["prompt"] += prompt
            self.tokens["completion"] += completion

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP ponder_requests_total Chat completion requests by HTTP status.",
                "# TYPE ponder_requests_total counter",
                *(f'ponder_requests_total{{status="{s}"}} {n}'
                  for s, n in sorted(self.requests.items())),
                "# HELP ponder_tokens_total Tokens spent by every internal call.",
                "# TYPE ponder_tokens_total counter",
                *(f'ponder_tokens_total{{kind="{k}"}} {self.tokens[k]}'
                  for k in ("prompt", "completion")),
                "# HELP ponder_request_seconds Latency of answered requests.",
                "# TYPE ponder_request_seconds histogram",
                *(f'ponder_request_seconds_bucket{{le="{"+Inf" if b == float("inf") else b}"}} '
                  f"{c}" for b, c in zip(BUCKETS, self.latency_counts, strict=True)),
                f"ponder_request_seconds_sum {self.latency_sum:.6f}",
                f"ponder_request_seconds_count {self.latency_count}",
                "# HELP ponder_queue_depth Requests waiting for a slot.",
                "# TYPE ponder_queue_depth gauge",
                f"ponder_queue_depth {self.queued}",
                "# HELP ponder_requests_in_flight Requests being answered.",
                "# TYPE ponder_requests_in_flight gauge",
                f"ponder_requests_in_flight {self.in_flight}",
            ]
        if self.endpoints is not None:
            lines += endpoint_lines(self.endpoints())
        return "\n".join(lines) + "\n"


ENDPOINT_COUNTERS = (
    ("requests", "ponder_endpoint_requests_total", "counter", "Calls sent to each endpoint."),
    ("samples", "ponder_endpoint_samples_total", "counter", "Samples each endpoint returned."),
    ("errors", "ponder_endpoint_errors_total", "counter",
     "Failures (refused, 5xx, timeout) that took an endpoint out."),
    ("retried_samples", "ponder_endpoint_retried_samples_total", "counter",
     "Samples lost on an endpoint and asked for on another."),
    ("latency_sum_s", "ponder_endpoint_request_seconds_sum", "counter",
     "Seconds of the calls each endpoint answered."),
    ("latency_count", "ponder_endpoint_request_seconds_count", "counter",
     "Calls each endpoint answered."),
    ("outstanding", "ponder_endpoint_outstanding", "gauge", "Samples in flight per endpoint."),
    ("up", "ponder_endpoint_up", "gauge", "1 while an endpoint is in the pool."),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def endpoint_lines(endpoints: list[dict[str, Any]]) -> list[str]:
    """A pool's per-endpoint figures in the Prometheus text format, each endpoint labelled by
    its redacted URL (scheme, host, port, path: never its userinfo or query, which anyone who
    can read /metrics would see), whatever the figures' source gave."""
    labels = [_label(u) for u in shown_urls([e["url"] for e in endpoints])]
    lines: list[str] = []
    for field, name, kind, text in ENDPOINT_COUNTERS:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        lines += [f'{name}{{endpoint="{label}"}} {float(e[field]):g}'
                  for label, e in zip(labels, endpoints, strict=True)]
    name = "ponder_endpoint_tokens_total"
    lines += [f"# HELP {name} Tokens each endpoint evaluated and generated.",
              f"# TYPE {name} counter"]
    for label, e in zip(labels, endpoints, strict=True):
        for kind in ("prompt", "completion"):
            lines.append(f'{name}{{endpoint="{label}",kind="{kind}"}} {e[kind + "_tokens"]}')
    return lines
