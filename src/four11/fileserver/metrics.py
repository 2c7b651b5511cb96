"""The fileserver's metrics.

The per-request counts (requests by code, bytes, the duration histogram, in-flight,
watchers and open connections) are plain ints and floats updated on the event loop and turned into metric
families only when scraped: a prometheus-client Counter/Histogram takes a lock per update,
which cost about 8 % of the throughput of small answers. Label values are fixed and all
exported from the start.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from ..core.metrics import build_info

P = "four11_fileserver_"
CODES = (200, 304, 400, 403, 404, 405, 500, 503)
CHANNELS = ("get", "watch", "status", "metrics")
WATCH_RESULTS = ("changed", "timeout", "shutdown")
BUCKETS = (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
           2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Hist:
    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, v: float) -> None:
        self.counts[bisect_left(BUCKETS, v)] += 1
        self.sum += v


class FsMetrics(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        build_info(registry, "fileserver")
        self.requests = dict.fromkeys(CODES, 0)
        self.bytes = 0
        self.duration = {c: Hist() for c in CHANNELS}
        self.watch_answers = dict.fromkeys(WATCH_RESULTS, 0)
        self.in_flight = 0
        self.in_flight_peak = 0
        self.watchers = 0
        self.connections = 0  # open client TCP connections (protocol.FastHandler)
        self.connections_peak = 0
        self._gauges: list[tuple[str, str, Callable[[], float]]] = []
        registry.register(self)

    def count(self, status: int, sent: int, channel: str, seconds: float) -> None:
        r = self.requests
        r[status] = r.get(status, 0) + 1  # codes outside the fixed set still count (bounded by HTTP)
        self.bytes += sent
        self.duration[channel].observe(seconds)

    def gauge(self, name: str, doc: str, f: Callable[[], float]) -> None:
        Gauge(P + name, doc, registry=self.registry).set_function(f)

    def collect(self) -> Iterator:
        c = CounterMetricFamily(P + "requests", "HTTP requests answered, by status code", labels=["code"])
        for code, n in sorted(self.requests.items()):
            c.add_metric([str(code)], n)
        yield c
        yield CounterMetricFamily(P + "response_bytes", "Response body bytes sent", value=self.bytes)
        h = HistogramMetricFamily(P + "request_duration_seconds",
                                  "Time to answer a request (watch: includes the hold)", labels=["channel"])
        for ch, hist in self.duration.items():
            acc, buckets = 0, []
            for le, n in zip((*map(str, BUCKETS), "+Inf"), hist.counts, strict=True):
                acc += n
                buckets.append((le, acc))
            h.add_metric([ch], buckets, hist.sum)
        yield h
        w = CounterMetricFamily(P + "watch_answers", "Long-poll watches answered, by what ended them",
                                labels=["result"])
        for res, n in self.watch_answers.items():
            w.add_metric([res], n)
        yield w
        yield GaugeMetricFamily(P + "requests_in_flight", "Requests being answered now", value=self.in_flight)
        yield GaugeMetricFamily(P + "requests_in_flight_peak", "Most requests in flight at once since start",
                                value=self.in_flight_peak)
        yield GaugeMetricFamily(P + "watchers_open", "Long-poll watch requests being held",
                                value=self.watchers)
        yield GaugeMetricFamily(P + "connections_open", "Client TCP connections open now",
                                value=self.connections)
        yield GaugeMetricFamily(P + "connections_open_peak",
                                "Most client TCP connections open at once since start",
                                value=self.connections_peak)
