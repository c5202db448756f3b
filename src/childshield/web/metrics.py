"""Prometheus metrics of the service, whatever its number of workers.

With several workers (``serve --workers N``) each process counts in files of its own under
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode, which ``serve`` sets up per run:
``childshield.web.multiproc``), and a scrape, answered by any worker, adds up every worker's files.
The queue depths are read from the database at each scrape, so they are never kept in files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from childshield.web.multiproc import ENV_VAR

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
log = logging.getLogger("childshield.web")


def multiprocess_dir() -> str | None:
    """The folder every worker counts in, or None when this process counts in memory.  The client
    chose at import (from the environment then); a folder named only later is not used, and said so."""
    path = os.environ.get(ENV_VAR)
    if not getattr(values.ValueClass, "_multiprocess", False):
        if path:
            log.warning("%s was set after prometheus_client was imported: metrics are this worker's", ENV_VAR)
        return None
    return path or None


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.scans = Counter("childshield_scans", "Media scanned", ["outcome"], registry=self.registry)
        self.matches = Counter(
            "childshield_matches", "Matches found", ["bank", "check"], registry=self.registry
        )
        self.lookups = Counter("childshield_lookup_signals", "Signals looked up", registry=self.registry)
        self.scans_in_flight = Gauge(
            "childshield_scans_in_flight",
            "Scans received and not yet answered (waiting for a scan slot, or being hashed)",
            registry=self.registry,
            multiprocess_mode="livesum",  # every live worker's, added up
        )
        self.latency = Histogram(
            "childshield_request_seconds",
            "Request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.directory = multiprocess_dir()

    def exposition(self, review_items: Mapping[str, int], webhook_deliveries: Mapping[str, int]) -> bytes:
        """The text a scrape answers: every worker's counts, and the queue depths given."""
        counted = self.registry
        if self.directory is not None:
            counted = CollectorRegistry()
            MultiProcessCollector(counted, path=self.directory)  # type: ignore[no-untyped-call]
        depths = CollectorRegistry()
        depths.register(
            _Depths(
                [
                    ("childshield_review_items", "Review items by state (read at scrape)", review_items),
                    (
                        "childshield_webhook_deliveries",
                        "Webhook deliveries by state (read at scrape)",
                        webhook_deliveries,
                    ),
                ]
            )
        )
        return generate_latest(counted) + generate_latest(depths)


class _Depths(Collector):
    """Gauges read at scrape time (never in the workers' files: each scrape reads the database)."""

    def __init__(self, gauges: Iterable[tuple[str, str, Mapping[str, int]]]) -> None:
        self.gauges = list(gauges)

    def collect(self) -> Iterator[Metric]:
        for name, documentation, by_state in self.gauges:
            family = GaugeMetricFamily(name, documentation, labels=["state"])
            for state, count in sorted(by_state.items()):
                family.add_metric([state], count)
            yield family
