"""Prometheus metrics of the receiver (its own registry, served on /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

DELIVERIES = Counter(
    "cubepaas_webhook_deliveries",
    "Webhook deliveries by provider, event and outcome (created, duplicate, skipped, unauthorized...).",
    ["provider", "event", "outcome"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "cubepaas_webhook_request_seconds",
    "Time to answer a webhook delivery.",
    ["provider"],
    registry=REGISTRY,
)

__all__ = ["DELIVERIES", "LATENCY", "REGISTRY"]
