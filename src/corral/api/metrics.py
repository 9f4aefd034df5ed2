"""Prometheus metrics, named after the model servers people already scrape.

Triton's ``nv_inference_*`` and MLServer's ``model_infer_*`` counters become
``corral_inference_*`` with Prometheus units (seconds, ``_total``), labelled by
deployment, model and version.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from corral.serving.batching import BatchStats

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class ServingMetrics:
    """The server's metrics in their own registry (one per app, so tests do not collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}
        labels = ("deployment", "model", "version")
        self.success = Counter(
            "corral_inference_request_success", "Inference requests answered", labels, registry=self.registry
        )
        self.failure = Counter(
            "corral_inference_request_failure",
            "Inference requests refused or failed",
            ("deployment", "status"),
            registry=self.registry,
        )
        self.duration = Histogram(
            "corral_inference_request_duration_seconds",
            "Time from request to answer inside the server",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rows = Counter("corral_inference_count", "Rows scored", labels, registry=self.registry)
        self.executions = Counter(
            "corral_inference_exec_count", "Model calls (batches)", labels, registry=self.registry
        )
        self.batch_size = Histogram(
            "corral_inference_batch_size", "Rows per model call", labels, buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.queue = Histogram(
            "corral_inference_queue_duration_seconds",
            "Time a request waited for its batch",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.compute = Histogram(
            "corral_inference_compute_duration_seconds",
            "Time in the model per call",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.loaded_gauge = Gauge(
            "corral_model_loaded",
            "1 while a version is loaded and serving",
            labels,
            registry=self.registry,
            multiprocess_mode="max",
        )
        self.shadow_dropped_total = Counter(
            "corral_shadow_dropped",
            "Request copies a shadow dropped unscored (its queue was full, or it was taken off with copies queued)",
            labels,
            registry=self.registry,
        )
        self.audit_unrecorded = Counter(
            "corral_audit_unrecorded_rows",
            "Answered rows (async audit mode) the prediction log could not record",
            registry=self.registry,
        )
        self.http = Histogram(
            "corral_http_request_duration_seconds",
            "HTTP requests by route and status",
            ("method", "route", "status"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def exposition(self, multiprocess_dir: str | None) -> bytes:
        """The text format; with several worker processes, every process's samples added up."""
        if multiprocess_dir is None:
            return bytes(generate_latest(self.registry))
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=multiprocess_dir)  # type: ignore[no-untyped-call]
        return bytes(generate_latest(merged))

    # ServingObserver -----------------------------------------------------------------

    def request(self, deployment: str, model: str, version: int, rows: int, seconds: float) -> None:
        success, counted, duration = self._per_request(deployment, model, version)
        success.inc()
        counted.inc(rows)
        duration.observe(seconds)

    def batch(self, deployment: str, model: str, version: int, stats: BatchStats) -> None:
        labels = (deployment, model, str(version))
        self.executions.labels(*labels).inc()
        self.batch_size.labels(*labels).observe(stats.rows)
        self.queue.labels(*labels).observe(stats.queue_seconds)
        self.compute.labels(*labels).observe(stats.run_seconds)

    def _per_request(self, deployment: str, model: str, version: int) -> tuple[Any, Any, Any]:
        """The labelled children of the per-request metrics, looked up once per version (hot path)."""
        key = (deployment, model, version)
        children = self._children.get(key)
        if children is None:
            labels = (deployment, model, str(version))
            children = (self.success.labels(*labels), self.rows.labels(*labels), self.duration.labels(*labels))
            self._children[key] = children
        return children

    def loaded(self, deployment: str, model: str, version: int, loaded: bool) -> None:
        self.loaded_gauge.labels(deployment, model, str(version)).set(1 if loaded else 0)

    def shadow_dropped(self, deployment: str, model: str, version: int, count: int) -> None:
        self.shadow_dropped_total.labels(deployment, model, str(version)).inc(count)

    def unrecorded(self, rows: int) -> None:
        """Answered rows the audit log lost (its ``on_lost`` hook)."""
        self.audit_unrecorded.inc(rows)

    # HTTP ----------------------------------------------------------------------------------

    def failed(self, deployment: str, status: int) -> None:
        self.failure.labels(deployment, str(status)).inc()
