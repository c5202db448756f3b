"""Prometheus metrics of one worker (with several workers, set PROMETHEUS_MULTIPROC_DIR)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.scans = Counter("childshield_scans", "Media scanned", ["outcome"], registry=self.registry)
        self.matches = Counter(
            "childshield_matches", "Matches found", ["bank", "check"], registry=self.registry
        )
        self.lookups = Counter("childshield_lookup_signals", "Signals looked up", registry=self.registry)
        self.latency = Histogram(
            "childshield_request_seconds",
            "Request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.review_queue = Gauge(
            "childshield_review_items",
            "Review items by state (read at scrape)",
            ["state"],
            registry=self.registry,
        )
        self.webhook_queue = Gauge(
            "childshield_webhook_deliveries",
            "Webhook deliveries by state (read at scrape)",
            ["state"],
            registry=self.registry,
        )
