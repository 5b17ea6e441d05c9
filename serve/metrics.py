"""`/metrics` in the Prometheus text format (prometheus-client).

Per server process (with `--workers N` each worker counts its own requests; scrape them
through one port and the numbers are those of whichever worker answered — run one worker per
port, or sum over instances, for exact totals). Store gauges are read from the catalog at
most every `STORE_EVERY` seconds (the same counts as `assetfs stats`).
"""

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from cas.stats import collect_stats
from cas.store import Store

STORE_EVERY = 30.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class StoreCollector(Collector):
    """Objects, blobs, logical and physical bytes of the store, from a cached `collect_stats`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.read_at = 0.0
        self.total: dict = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if time.monotonic() - self.read_at > STORE_EVERY:
            self.total = collect_stats(self.store)["total"]
            self.read_at = time.monotonic()
        for key, help_text in (("objects", "live objects"), ("trashed_objects", "objects in the trash"),
                               ("blobs", "distinct contents stored"), ("logical_bytes", "bytes of live objects"),
                               ("physical_bytes", "bytes of blob files")):
            yield GaugeMetricFamily(f"assetfs_store_{key}", f"The store's {help_text}.", value=self.total[key])


class Metrics:
    def __init__(self, store: Store) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("assetfs_http_requests", "HTTP requests answered.", ["route", "method", "status"],
                                registry=self.registry)
        self.bytes_in = Counter("assetfs_http_received_bytes", "Request body bytes received.", ["route"],
                                registry=self.registry)
        self.bytes_out = Counter("assetfs_http_sent_bytes", "Response body bytes sent.", ["route"],
                                 registry=self.registry)
        self.latency = Histogram("assetfs_http_request_seconds", "Time to answer a request.", ["route"],
                                 registry=self.registry)
        self.uploads = Gauge("assetfs_uploads_in_flight", "Uploads whose body is streaming in.", registry=self.registry)
        self.registry.register(StoreCollector(store))
        self._requests: dict[tuple[str, str, int], Counter] = {}
        self._by_route: dict[str, tuple[Counter, Counter, Histogram]] = {}

    def record(self, route: str, method: str, status: int, bytes_in: int, bytes_out: int, seconds: float) -> None:
        # `labels()` checks and looks up its arguments each call (a few µs); the children of a
        # route are kept here instead (prometheus-client keeps them forever too)
        requests = self._requests.get((route, method, status))
        if requests is None:
            requests = self._requests[route, method, status] = self.requests.labels(route, method, str(status))
        by_route = self._by_route.get(route)
        if by_route is None:
            by_route = self._by_route[route] = (self.bytes_in.labels(route), self.bytes_out.labels(route),
                                                self.latency.labels(route))
        requests.inc()
        if bytes_in:
            by_route[0].inc(bytes_in)
        by_route[1].inc(bytes_out)
        by_route[2].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
