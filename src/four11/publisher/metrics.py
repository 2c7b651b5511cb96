"""The publisher's Prometheus metrics (port 9411)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..core.metrics import build_info

RESULTS = ("ok", "unchanged", "error")  # a round that published, found nothing new, or failed
SOURCE_REASONS = ("io_error", "bad_format", "bad_path")
RELOAD_RESULTS = ("ok", "error")


class PublisherMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        build_info(r, "publisher")
        self.publishes = Counter("four11_publisher_publishes_total",
                                 "Publish rounds by result", ["result"], registry=r)
        self.duration = Histogram(
            "four11_publisher_publish_duration_seconds", "Time of a publish round that wrote",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120), registry=r)
        self.messages = Gauge("four11_publisher_messages", "Messages named by the current index",
                              registry=r)
        self.published = Counter("four11_publisher_messages_published_total",
                                 "Messages written (new serials)", registry=r)
        self.index_version = Gauge("four11_publisher_index_version", "Version of the current index",
                                   registry=r)
        self.index_expiry = Gauge("four11_publisher_index_expiry_timestamp_seconds",
                                  "When the current index expires", registry=r)
        self.last_success = Gauge("four11_publisher_last_success_timestamp_seconds",
                                  "End of the last publish round that did not fail", registry=r)
        self.source_errors = Counter("four11_publisher_source_errors_total",
                                     "Sources that could not be read or published", ["reason"],
                                     registry=r)
        self.reloads = Counter("four11_publisher_config_reloads_total",
                               "Re-reads of files.yaml by result", ["result"], registry=r)
        for x in RESULTS:
            self.publishes.labels(x)
        for x in SOURCE_REASONS:
            self.source_errors.labels(x)
        for x in RELOAD_RESULTS:
            self.reloads.labels(x)
