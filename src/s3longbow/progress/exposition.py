"""The counters of a run in Prometheus' text exposition format (version 0.0.4): served over
HTTP for a scraper (`--metrics-port`) and kept in a file for node_exporter's textfile
collector (`--metrics-file`).

The counts are those the progress view shows, read from the run's `Stats` and `RequestMeter`
at each scrape (a collector, not a second set of counters), and named after the cluster's
CloudWatch metrics where those count the same thing: `ObjectsCopied` is
`longbow_objects_copied_total`, `JobsInFlight` is `longbow_jobs_in_flight`.

prometheus_client writes the format, serves it and replaces the file atomically; it is
imported only by a command that asks for metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

from s3longbow.errors import ConfigError
from s3longbow.meter import MeterTotals, RequestMeter
from s3longbow.periodic import Every
from s3longbow.progress.stats import Snapshot, Stats
from s3longbow.telemetry import TelemetrySettings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

log = logging.getLogger(__name__)

# Seconds between two writes of the metrics file (node_exporter reads it when scraped).
FILE_INTERVAL = 5.0


@dataclass(frozen=True)
class MetricSpec:
    """One metric of the exposition.

    Attributes:
        name: Its full name (a counter's ends in `_total`).
        kind: "counter" (only grows while the process lives) or "gauge".
        help: What it counts, for the HELP line.
        cloudwatch: The cluster's CloudWatch metric that counts the same, if one does.
        label: The label that splits it (its value is then a mapping label value -> count).
    """

    name: str
    kind: Literal["counter", "gauge"]
    help: str
    cloudwatch: str | None = None
    label: str | None = None


Values = Mapping[str, float | Mapping[str, float]]

# What every run that copies counts: `sync` and `worker`.
COPY_METRICS = (
    MetricSpec(
        "longbow_objects_copied_total", "counter", "Objects copied.", cloudwatch="ObjectsCopied"
    ),
    MetricSpec("longbow_bytes_copied_total", "counter", "Bytes of the objects copied."),
    MetricSpec(
        "longbow_objects_failed_total",
        "counter",
        "Objects whose copy failed for good.",
        cloudwatch="ObjectsFailed",
    ),
    MetricSpec(
        "longbow_objects_skipped_total",
        "counter",
        "Objects not copied, by reason: ignored (ignore rules), unsupported (the destination "
        "cannot store them), archived (waiting for a restore), gone (deleted from the source "
        "since it was listed).",
        label="reason",
    ),
    MetricSpec(
        "longbow_bytes_sent_total",
        "counter",
        "Bytes the destination accepted, parts or whole objects.",
        cloudwatch="BytesSent",
    ),
    MetricSpec(
        "longbow_bytes_reused_total",
        "counter",
        "Bytes an earlier attempt had uploaded, not sent again.",
        cloudwatch="BytesReused",
    ),
    MetricSpec(
        "longbow_jobs_in_flight", "gauge", "Objects being copied now.", cloudwatch="JobsInFlight"
    ),
    MetricSpec(
        "longbow_concurrency_limit",
        "gauge",
        "Most objects allowed in flight now (the number the run tunes).",
    ),
    MetricSpec("longbow_requests_total", "counter", "Replies from the stores' data plane."),
    MetricSpec(
        "longbow_requests_throttled_total",
        "counter",
        "Replies that asked to slow down (503 SlowDown, 429).",
    ),
)

# What a run that plans counts too: `sync`.
PLAN_METRICS = (
    MetricSpec(
        "longbow_objects_planned_total",
        "counter",
        "Objects the run has to copy, as the listing finds them (with those an earlier run left).",
    ),
    MetricSpec("longbow_bytes_planned_total", "counter", "Bytes of the objects planned."),
    MetricSpec(
        "longbow_objects_already_present_total",
        "counter",
        "Objects the destination already holds, not copied.",
    ),
    MetricSpec(
        "longbow_bytes_already_present_total",
        "counter",
        "Bytes of the objects already present.",
    ),
)


@dataclass(frozen=True)
class Exposition:
    """What a command exposes: its metrics, and how to read their values now."""

    metrics: tuple[MetricSpec, ...]
    read: Callable[[], Values]


def copy_values(snap: Snapshot, totals: MeterTotals) -> dict[str, float | Mapping[str, float]]:
    """The values of `COPY_METRICS` in one snapshot of the counters."""
    return {
        "longbow_objects_copied_total": snap.objects_copied,
        "longbow_bytes_copied_total": snap.bytes_copied,
        "longbow_objects_failed_total": snap.objects_failed,
        "longbow_objects_skipped_total": {
            "ignored": snap.objects_ignored,
            "unsupported": snap.objects_unsupported,
            "archived": snap.objects_archived,
            "gone": snap.objects_skipped,
        },
        "longbow_bytes_sent_total": snap.bytes_sent,
        "longbow_bytes_reused_total": snap.bytes_reused,
        "longbow_jobs_in_flight": snap.in_flight,
        "longbow_concurrency_limit": snap.concurrency,
        "longbow_requests_total": totals.requests,
        "longbow_requests_throttled_total": totals.throttled,
    }


def plan_values(snap: Snapshot) -> dict[str, float | Mapping[str, float]]:
    """The values of `PLAN_METRICS` in one snapshot of the counters."""
    return {
        "longbow_objects_planned_total": snap.objects_total,
        "longbow_bytes_planned_total": snap.bytes_total,
        "longbow_objects_already_present_total": snap.objects_same,
        "longbow_bytes_already_present_total": snap.bytes_same,
    }


def sync_exposition(stats: Stats, meter: RequestMeter | None) -> Exposition:
    """What `longbow sync` exposes (a dry run has no meter: it sends no request that counts)."""

    def read() -> Values:
        snap = stats.snapshot()
        totals = meter.totals() if meter is not None else MeterTotals()
        return {**copy_values(snap, totals), **plan_values(snap)}

    return Exposition(COPY_METRICS + PLAN_METRICS, read)


class _Collector:
    """prometheus_client's collector protocol over an `Exposition`, read at each scrape."""

    def __init__(self, exposition: Exposition) -> None:
        self.exposition = exposition

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        values = self.exposition.read()
        for spec in self.exposition.metrics:
            kind = CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
            value = values[spec.name]
            if spec.label is None:
                assert not isinstance(value, Mapping)
                yield kind(spec.name, spec.help, value=value)
                continue
            assert isinstance(value, Mapping)
            family = kind(spec.name, spec.help, labels=[spec.label])
            for label_value, count in value.items():
                family.add_metric([label_value], count)
            yield family


def registry_of(exposition: Exposition) -> CollectorRegistry:
    """A registry holding only this exposition's metrics."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(exposition))
    return registry


def exposition_text(exposition: Exposition) -> str:
    """The exposition now, as the endpoint serves it and the file holds it."""
    from prometheus_client import generate_latest

    return generate_latest(registry_of(exposition)).decode("utf-8")


class MetricsExport:
    """Serves an exposition over HTTP and keeps it in a file while a command runs.

    Entering binds the port and writes the file, so a port in use or a file that cannot be
    written stops the command before anything is copied. The file is then rewritten every
    `interval` seconds, each time whole under a temporary name and renamed over the old one
    (a reader never sees half a file), and a last time on leaving, with the final counts.

    Args:
        exposition: What to expose.
        telemetry: The port, address and file (neither: nothing is done).
        interval: Seconds between two writes of the file.
    """

    def __init__(
        self,
        exposition: Exposition,
        telemetry: TelemetrySettings,
        *,
        interval: float = FILE_INTERVAL,
    ) -> None:
        self.exposition = exposition
        self.telemetry = telemetry
        self.interval = interval
        self.url: str | None = None
        self._registry: CollectorRegistry | None = None
        self._server: Any = None
        self._writer: Every | None = None

    def __enter__(self) -> Self:
        t = self.telemetry
        if not t.exports_metrics:
            return self
        self._registry = registry_of(self.exposition)
        if t.metrics_port is not None:
            self._serve(t.metrics_address, t.metrics_port)
        if t.metrics_file is not None:
            try:
                self._write(t.metrics_file)
            except OSError as exc:
                self._close_server()
                raise ConfigError(
                    f"cannot write the metrics file {t.metrics_file}: {exc.strerror or exc}",
                    hint="give --metrics-file a path in a directory that exists and this user "
                    "may write to (node_exporter reads files named *.prom)",
                ) from None
            path = t.metrics_file
            self._writer = Every(
                lambda: self._write_safely(path), lambda: self.interval, "metrics-file"
            )
            self._writer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._writer is not None:
            self._writer.stop()
            assert self.telemetry.metrics_file is not None
            try:
                self._write(self.telemetry.metrics_file)
            except OSError as error:
                log.error("could not write the final metrics file: %s", error)
        self._close_server()

    def _serve(self, address: str, port: int) -> None:
        from prometheus_client import start_http_server

        assert self._registry is not None
        try:
            self._server, _ = start_http_server(port, address, self._registry)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {address} port {port}: {exc.strerror or exc}",
                hint="choose a free port with --metrics-port (0 takes any free one), or an "
                "address of this machine with --metrics-address",
            ) from None
        host, bound = self._server.server_address[:2]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{bound}/metrics"
        log.info("metrics served at %s", self.url, extra={"fields": {"metrics_url": self.url}})

    def _close_server(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _write(self, path: Path) -> None:
        from prometheus_client import write_to_textfile

        assert self._registry is not None
        write_to_textfile(str(path), self._registry)

    def _write_safely(self, path: Path) -> None:
        try:
            self._write(path)
        except OSError as exc:  # the next write may work; the last one is reported
            log.warning("could not write the metrics file %s: %s", path, exc)


__all__ = [
    "COPY_METRICS",
    "FILE_INTERVAL",
    "PLAN_METRICS",
    "Exposition",
    "MetricSpec",
    "MetricsExport",
    "Values",
    "copy_values",
    "exposition_text",
    "plan_values",
    "registry_of",
    "sync_exposition",
]
