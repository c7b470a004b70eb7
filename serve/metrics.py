"""Prometheus metrics that add up across gunicorn workers.

Under gunicorn, `prometheus_client` runs in multiprocess mode: every worker
writes its samples to memory-mapped files in `PROMETHEUS_MULTIPROC_DIR`
(set and emptied by `serve/gunicorn_conf.py` before any worker starts) and
`/metrics` merges the files of all workers. Built without an instance
directory (in-process tests) the app keeps its own registry instead.

Metric objects are created per app, not at import, so building several apps
in one process never registers a name twice.
"""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
# Label values a client chooses are kept only from these sets; anything else
# is counted as OTHER, so made-up methods cannot grow the series without bound.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
STATUSES = frozenset(str(s.value) for s in HTTPStatus)
OTHER = "other"


class Metrics:
    """The service's metrics, and their exposition."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, multiprocess_dir: Path | None) -> None:
        if multiprocess_dir is not None and values.ValueClass is values.MutexValue:
            raise RuntimeError(
                "prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set; "
                "start the service with `python -m serve` (serve/gunicorn_conf.py sets it)"
            )
        self._multiprocess_dir = multiprocess_dir
        # In multiprocess mode samples live in files, not in a registry.
        registry = None if multiprocess_dir is not None else CollectorRegistry()
        self._registry = registry
        self.requests = Counter(
            "vgsales_http_requests_total", "HTTP requests by endpoint and status",
            ["endpoint", "method", "status"], registry=registry,
        )
        self.latency = Histogram(
            "vgsales_http_request_duration_seconds", "Time spent answering, by endpoint",
            ["endpoint"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.predictions = Counter(
            "vgsales_predictions_total", "Rows predicted, by model and version",
            ["model", "version"], registry=registry,
        )
        self.unseen = Counter(
            "vgsales_unseen_categories_total", "Request values unseen in training, by field",
            ["model", "field"], registry=registry,
        )
        self.model_version = Gauge(
            "vgsales_model_version", "Model version served, per live worker",
            ["model"], multiprocess_mode="liveall", registry=registry,
        )
        self.log_written = Counter(
            "vgsales_prediction_log_written_total", "Predictions appended to the Redis stream",
            registry=registry,
        )
        self.log_dropped = Counter(
            "vgsales_prediction_log_dropped_total",
            "Predictions not logged: Redis unavailable, queue full or stream at its byte cap",
            registry=registry,
        )

    def count_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request. `endpoint` is a route rule (or
        "unmatched"), so a bounded set already; method and status are bounded here."""
        status_label = str(status) if str(status) in STATUSES else OTHER
        self.requests.labels(endpoint, method if method in METHODS else OTHER,
                             status_label).inc()
        self.latency.labels(endpoint).observe(seconds)

    def exposition(self) -> bytes:
        """The text exposition format, merged across workers when needed."""
        if self._multiprocess_dir is None:
            return generate_latest(self._registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(self._multiprocess_dir))
        return generate_latest(registry)
