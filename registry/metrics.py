"""Prometheus metrics of the registry. Each failure reason is counted under its own label value."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

__all__ = ["ATTESTATION_FAILURES", "HTTP_LATENCY", "HTTP_REQUESTS"]

HTTP_REQUESTS = Counter(
    "registry_http_requests_total", "HTTP requests by route and status", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "registry_http_request_seconds",
    "HTTP request latency by route",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
ATTESTATION_FAILURES = Counter(
    "registry_attestation_failures_total", "Refused identity attestations by reason", ["code"]
)
