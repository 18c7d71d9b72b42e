"""What a cluster worker reports: counters of its messages and jobs, CloudWatch Embedded
Metric Format (EMF) lines emitted every N seconds and at the end, the same counts for a
Prometheus exposition, and the fields of its JSON log lines.

EMF lines are JSON objects written one a line to standard output; CloudWatch Logs (the agent
on an instance, or Lambda's own log capture) turns them into metrics of namespace `Longbow`.
Values are the change since the previous line, except `JobsInFlight` (a gauge).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from types import TracebackType
from typing import Protocol

from s3longbow.meter import RequestMeter
from s3longbow.model import Job, JobResult, JobState, outcome_fields
from s3longbow.periodic import Every
from s3longbow.progress.exposition import (
    COPY_METRICS,
    PLAN_METRICS,
    Exposition,
    MetricSpec,
    Values,
    copy_values,
    plan_values,
)
from s3longbow.progress.stats import Stats

from .messages import JobSpec

NAMESPACE = "Longbow"

# Metric name -> unit.
METRICS: dict[str, str] = {
    "BytesSent": "Bytes",
    "BytesReused": "Bytes",
    "Throughput": "Bytes/Second",
    "ObjectsCopied": "Count",
    "ObjectsFailed": "Count",
    "Errors": "Count",
    "MessagesReceived": "Count",
    "MessagesDeleted": "Count",
    "MessagesMovedAside": "Count",
    "DuplicateJobs": "Count",
    "JobsInFlight": "Count",
}


@dataclass
class ClusterCounters:
    """Counts of a worker's messages and jobs, updated from many threads."""

    messages_received: int = 0
    messages_deleted: int = 0
    messages_released: int = 0
    messages_moved_aside: int = 0
    test_events: int = 0
    jobs_duplicate: int = 0
    attempts_failed: int = 0
    jobs_failed: int = 0
    removals_applied: int = 0
    removals_skipped: int = 0
    events_ignored: int = 0
    errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "_lock"}


class MetricsEmitter:
    """Writes an EMF line every `interval` seconds while running, and one when closed.

    Args:
        stats: The worker's transfer counters.
        counters: The worker's message and job counters.
        write: Where a line goes (e.g. `sys.stdout.write`); flushed by the caller's stream.
        interval: Seconds between lines.
        dimensions: Dimension name -> value (keep it low-cardinality, e.g. the mode).
        properties: Extra searchable fields of every line (e.g. the worker id).
    """

    def __init__(
        self,
        stats: Stats,
        counters: ClusterCounters,
        write: Callable[[str], object],
        *,
        interval: float,
        dimensions: dict[str, str],
        properties: dict[str, str] | None = None,
    ) -> None:
        self.stats = stats
        self.counters = counters
        self.write = write
        self.interval = interval
        self.dimensions = dimensions
        self.properties = properties or {}
        self._last = self._totals()
        self._last_time = time.monotonic()
        self._every = Every(self.emit, lambda: self.interval, "metrics")
        self._lock = threading.Lock()

    def __enter__(self) -> MetricsEmitter:
        self._every.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._every.stop()
        self.emit()

    def _totals(self) -> dict[str, int]:
        snap = self.stats.snapshot()
        counts = self.counters.snapshot()
        return {
            "BytesSent": snap.bytes_sent,
            "BytesReused": snap.bytes_reused,
            "ObjectsCopied": snap.objects_copied,
            "ObjectsFailed": snap.objects_failed + counts["jobs_failed"],
            "Errors": counts["errors"] + counts["attempts_failed"],
            "MessagesReceived": counts["messages_received"],
            "MessagesDeleted": counts["messages_deleted"],
            "MessagesMovedAside": counts["messages_moved_aside"],
            "DuplicateJobs": counts["jobs_duplicate"],
        }

    def emit(self) -> dict[str, object]:
        """Write one line with the changes since the previous one; returns it."""
        with self._lock:
            now = time.monotonic()
            totals = self._totals()
            values: dict[str, float] = {k: totals[k] - self._last[k] for k in totals}
            seconds = max(now - self._last_time, 1e-6)
            values["Throughput"] = round(values["BytesSent"] / seconds, 1)
            values["JobsInFlight"] = self.stats.snapshot().in_flight
            self._last, self._last_time = totals, now
            line: dict[str, object] = {
                "_aws": {
                    "Timestamp": int(time.time() * 1000),
                    "CloudWatchMetrics": [
                        {
                            "Namespace": NAMESPACE,
                            "Dimensions": [sorted(self.dimensions)],
                            "Metrics": [{"Name": n, "Unit": u} for n, u in METRICS.items()],
                        }
                    ],
                },
                **self.dimensions,
                **self.properties,
                **values,
            }
            self.write(json.dumps(line, separators=(",", ":")) + "\n")
            return line


# A worker's own counts in the Prometheus exposition, named after their CloudWatch metrics.
CLUSTER_METRICS = (
    MetricSpec(
        "longbow_messages_received_total",
        "counter",
        "Queue messages received.",
        cloudwatch="MessagesReceived",
    ),
    MetricSpec(
        "longbow_messages_deleted_total",
        "counter",
        "Queue messages deleted once their jobs' outcomes were recorded.",
        cloudwatch="MessagesDeleted",
    ),
    MetricSpec(
        "longbow_messages_moved_aside_total",
        "counter",
        "Queue messages left for the dead-letter queue.",
        cloudwatch="MessagesMovedAside",
    ),
    MetricSpec(
        "longbow_duplicate_jobs_total",
        "counter",
        "Jobs already done or running elsewhere when their message came.",
        cloudwatch="DuplicateJobs",
    ),
    MetricSpec(
        "longbow_errors_total",
        "counter",
        "Failed attempts and errors of the queue or the job table.",
        cloudwatch="Errors",
    ),
)


def worker_exposition(stats: Stats, counters: ClusterCounters, meter: RequestMeter) -> Exposition:
    """What `longbow worker` exposes: the copy counts and its messages' (the same totals as
    its EMF lines, which carry their changes)."""

    def read() -> Values:
        snap, counts = stats.snapshot(), counters.snapshot()
        return {
            **copy_values(snap, meter.totals()),
            "longbow_objects_failed_total": snap.objects_failed + counts["jobs_failed"],
            "longbow_messages_received_total": counts["messages_received"],
            "longbow_messages_deleted_total": counts["messages_deleted"],
            "longbow_messages_moved_aside_total": counts["messages_moved_aside"],
            "longbow_duplicate_jobs_total": counts["jobs_duplicate"],
            "longbow_errors_total": counts["errors"] + counts["attempts_failed"],
        }

    return Exposition(COPY_METRICS + CLUSTER_METRICS, read)


# What `longbow send` counts besides its planning (PLAN_METRICS).
SEND_METRICS = (
    MetricSpec(
        "longbow_objects_queued_total",
        "counter",
        "Objects queued for the workers (in a dry run: that would be).",
    ),
    MetricSpec("longbow_bytes_queued_total", "counter", "Bytes of the objects queued."),
    MetricSpec(
        "longbow_objects_already_queued_total",
        "counter",
        "Objects whose job was pending or running already: not queued again.",
    ),
    MetricSpec("longbow_messages_sent_total", "counter", "Job messages sent to the queue."),
)


class SendCounts(Protocol):
    """The live counts of a send (its report, filled as it goes)."""

    objects_queued: int
    bytes_queued: int
    objects_already_queued: int
    messages_sent: int


def send_exposition(stats: Stats, report: SendCounts) -> Exposition:
    """What `longbow send` exposes: what its listing found present and what it has queued
    so far (its objects to copy are those queued and already queued)."""
    present = tuple(m for m in PLAN_METRICS if "already_present" in m.name)

    def read() -> Values:
        planned = plan_values(stats.snapshot())
        return {
            **{m.name: planned[m.name] for m in present},
            "longbow_objects_queued_total": report.objects_queued,
            "longbow_bytes_queued_total": report.bytes_queued,
            "longbow_objects_already_queued_total": report.objects_already_queued,
            "longbow_messages_sent_total": report.messages_sent,
        }

    return Exposition(present + SEND_METRICS, read)


def object_fields(spec: JobSpec) -> dict[str, object]:
    """The source and destination of a job, as log fields."""
    return {
        "src": f"s3://{spec.src_bucket}/{spec.src_key}",
        "dst": f"s3://{spec.dst_bucket}/{spec.dst_key}",
    }


def job_fields(
    spec: JobSpec, job: Job, state: JobState, result: JobResult | None, worker: str
) -> dict[str, object]:
    """The log fields of a job's outcome (event "job")."""
    return {**outcome_fields(job, state, result), "worker": worker, **object_fields(spec)}


__all__ = [
    "CLUSTER_METRICS",
    "METRICS",
    "NAMESPACE",
    "SEND_METRICS",
    "ClusterCounters",
    "MetricsEmitter",
    "SendCounts",
    "job_fields",
    "object_fields",
    "send_exposition",
    "worker_exposition",
]
