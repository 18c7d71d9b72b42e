"""The Prometheus exposition of a run's counters: the exact text for known counts, names that
Prometheus accepts and that match the cluster's CloudWatch metrics, the endpoint on
127.0.0.1 and the file node_exporter reads."""

from __future__ import annotations

import re
import socket
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from s3longbow.cluster.metrics import (
    CLUSTER_METRICS,
    METRICS,
    ClusterCounters,
    worker_exposition,
)
from s3longbow.errors import ConfigError
from s3longbow.meter import MeterTotals, RequestMeter
from s3longbow.progress.exposition import (
    COPY_METRICS,
    PLAN_METRICS,
    Exposition,
    MetricsExport,
    exposition_text,
    sync_exposition,
)
from s3longbow.progress.stats import Stats
from s3longbow.telemetry import TelemetrySettings

# The exposition format's rules (prometheus.io, "Metric names and labels").
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def known_stats() -> tuple[Stats, RequestMeter]:
    stats = Stats()
    stats.add_work(6, 6000)
    stats.add_same(2, 200)
    stats.add_ignored(3)
    stats.add_unsupported(1)
    stats.set_concurrency(8)
    for _ in range(6):
        stats.started()
    stats.sent(1000)
    stats.finished(1000, ok=True, progressed=1000)
    stats.reused(400)
    stats.sent(600)
    stats.finished(1000, ok=True, progressed=1000)
    stats.finished(1000, ok=False, progressed=0)
    stats.finished(1000, ok=False, progressed=0, skipped=True)
    stats.finished(1000, ok=False, progressed=0, archived=True)
    meter = RequestMeter()
    for _ in range(7):
        meter.record(0.01)
    meter.throttle()
    meter.throttle()
    meter.take()  # the controller's readings do not reset the totals
    meter.record(0.01)
    return stats, meter


EXPECTED = """\
# HELP longbow_objects_copied_total Objects copied.
# TYPE longbow_objects_copied_total counter
longbow_objects_copied_total 2.0
# HELP longbow_bytes_copied_total Bytes of the objects copied.
# TYPE longbow_bytes_copied_total counter
longbow_bytes_copied_total 2000.0
# HELP longbow_objects_failed_total Objects whose copy failed for good.
# TYPE longbow_objects_failed_total counter
longbow_objects_failed_total 1.0
# HELP longbow_objects_skipped_total Objects not copied, by reason: ignored (ignore rules), \
unsupported (the destination cannot store them), archived (waiting for a restore), gone \
(deleted from the source since it was listed).
# TYPE longbow_objects_skipped_total counter
longbow_objects_skipped_total{reason="ignored"} 3.0
longbow_objects_skipped_total{reason="unsupported"} 1.0
longbow_objects_skipped_total{reason="archived"} 1.0
longbow_objects_skipped_total{reason="gone"} 1.0
# HELP longbow_bytes_sent_total Bytes the destination accepted, parts or whole objects.
# TYPE longbow_bytes_sent_total counter
longbow_bytes_sent_total 1600.0
# HELP longbow_bytes_reused_total Bytes an earlier attempt had uploaded, not sent again.
# TYPE longbow_bytes_reused_total counter
longbow_bytes_reused_total 400.0
# HELP longbow_jobs_in_flight Objects being copied now.
# TYPE longbow_jobs_in_flight gauge
longbow_jobs_in_flight 1.0
# HELP longbow_concurrency_limit Most objects allowed in flight now (the number the run tunes).
# TYPE longbow_concurrency_limit gauge
longbow_concurrency_limit 8.0
# HELP longbow_requests_total Replies from the stores' data plane.
# TYPE longbow_requests_total counter
longbow_requests_total 8.0
# HELP longbow_requests_throttled_total Replies that asked to slow down (503 SlowDown, 429).
# TYPE longbow_requests_throttled_total counter
longbow_requests_throttled_total 2.0
# HELP longbow_objects_planned_total Objects the run has to copy, as the listing finds them \
(with those an earlier run left).
# TYPE longbow_objects_planned_total counter
longbow_objects_planned_total 6.0
# HELP longbow_bytes_planned_total Bytes of the objects planned.
# TYPE longbow_bytes_planned_total counter
longbow_bytes_planned_total 6000.0
# HELP longbow_objects_already_present_total Objects the destination already holds, not copied.
# TYPE longbow_objects_already_present_total counter
longbow_objects_already_present_total 2.0
# HELP longbow_bytes_already_present_total Bytes of the objects already present.
# TYPE longbow_bytes_already_present_total counter
longbow_bytes_already_present_total 200.0
"""


def test_the_exposition_of_known_counters_is_exactly_this_text() -> None:
    stats, meter = known_stats()
    assert exposition_text(sync_exposition(stats, meter)) == EXPECTED


def test_the_meter_totals_outlive_its_readings() -> None:
    _, meter = known_stats()
    assert meter.totals() == MeterTotals(requests=8, throttled=2)
    assert meter.take().requests == 1  # only what came since the last reading


@pytest.mark.parametrize(
    "metrics", [COPY_METRICS + PLAN_METRICS, COPY_METRICS + CLUSTER_METRICS], ids=["sync", "worker"]
)
def test_every_name_is_valid_and_follows_prometheus_conventions(metrics: tuple) -> None:
    names = [m.name for m in metrics]
    assert len(set(names)) == len(names)
    for m in metrics:
        assert METRIC_NAME.fullmatch(m.name), m.name
        assert m.name.startswith("longbow_") and "__" not in m.name
        # A counter's name ends in _total, a gauge's never does.
        assert m.name.endswith("_total") == (m.kind == "counter"), m.name
        if m.label is not None:
            assert LABEL_NAME.fullmatch(m.label) and not m.label.startswith("__")
        assert m.help and "\n" not in m.help


def snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def test_the_names_match_the_cluster_cloudwatch_metrics() -> None:
    named = {m.cloudwatch: m for m in COPY_METRICS + CLUSTER_METRICS if m.cloudwatch}
    # Every CloudWatch count has its Prometheus twin; a rate is Prometheus' rate() of bytes.
    assert set(named) == set(METRICS) - {"Throughput"}
    for cloudwatch, m in named.items():
        suffix = "_total" if m.kind == "counter" else ""
        assert m.name == f"longbow_{snake(cloudwatch)}{suffix}"


def test_a_worker_exposes_its_messages_and_counts_failures_as_its_emf_lines_do() -> None:
    stats, meter = known_stats()
    counters = ClusterCounters()
    counters.add(
        messages_received=5,
        messages_deleted=4,
        messages_moved_aside=1,
        jobs_duplicate=2,
        jobs_failed=3,
        errors=1,
        attempts_failed=2,
    )
    values = worker_exposition(stats, counters, meter).read()
    assert values["longbow_objects_failed_total"] == 1 + 3
    assert values["longbow_errors_total"] == 1 + 2
    assert (
        values["longbow_messages_received_total"],
        values["longbow_messages_deleted_total"],
        values["longbow_messages_moved_aside_total"],
        values["longbow_duplicate_jobs_total"],
    ) == (5, 4, 1, 2)
    text = exposition_text(worker_exposition(stats, counters, meter))
    assert "longbow_messages_received_total 5.0\n" in text
    assert "longbow_objects_planned_total" not in text  # a worker plans nothing


def counting() -> tuple[Exposition, Stats]:
    stats = Stats()
    return sync_exposition(stats, RequestMeter()), stats


def sample(text: str, name: str) -> float:
    (value,) = re.findall(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(value)


def test_the_endpoint_serves_the_counts_of_the_moment_on_this_machine() -> None:
    exposition, stats = counting()
    telemetry = TelemetrySettings(metrics_port=0)
    with MetricsExport(exposition, telemetry) as export:
        assert export.url is not None and export.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(export.url, timeout=10) as reply:
            assert reply.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            assert sample(reply.read().decode(), "longbow_objects_copied_total") == 0
        stats.started()
        stats.sent(10)
        stats.finished(10, ok=True, progressed=10)
        with urllib.request.urlopen(export.url, timeout=10) as reply:
            assert sample(reply.read().decode(), "longbow_objects_copied_total") == 1
        url = export.url
    with pytest.raises(OSError):  # closed with the command
        urllib.request.urlopen(url, timeout=2)


def test_a_port_in_use_is_a_config_error_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as caught:
            MetricsExport(counting()[0], TelemetrySettings(metrics_port=port)).__enter__()
    assert f"127.0.0.1 port {port}" in caught.value.message
    assert "--metrics-port" in (caught.value.hint or "")


class CountedExport(MetricsExport):
    """An export that tells when it has written the file `wanted` more times."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wanted = 0
        self.written = threading.Event()

    def _write(self, path: Path) -> None:
        super()._write(path)
        self.wanted -= 1
        if self.wanted <= 0:
            self.written.set()


def test_the_file_is_written_at_once_rewritten_and_holds_the_final_counts(tmp_path: Path) -> None:
    exposition, stats = counting()
    path = tmp_path / "longbow.prom"
    with CountedExport(exposition, TelemetrySettings(metrics_file=path), interval=0.01) as export:
        assert sample(path.read_text(), "longbow_objects_copied_total") == 0
        stats.started()
        stats.sent(10)
        stats.finished(10, ok=True, progressed=10)
        export.wanted, _ = 2, export.written.clear()
        assert export.written.wait(30)  # a write begun after the copy: the writer goes on
        assert sample(path.read_text(), "longbow_objects_copied_total") == 1
        # After one more write the writer waits an hour: only leaving writes the file again.
        export.interval = 3600.0
        export.wanted, _ = 1, export.written.clear()
        assert export.written.wait(30)
        stats.started()
        stats.sent(5)
        stats.finished(5, ok=True, progressed=5)
    assert sample(path.read_text(), "longbow_objects_copied_total") == 2
    assert sample(path.read_text(), "longbow_bytes_sent_total") == 15
    assert [p.name for p in tmp_path.iterdir()] == ["longbow.prom"]  # no temporary file left


def test_a_file_that_cannot_be_written_is_a_config_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "longbow.prom"
    with pytest.raises(ConfigError) as caught:
        MetricsExport(counting()[0], TelemetrySettings(metrics_file=path)).__enter__()
    assert str(path) in caught.value.message and "--metrics-file" in (caught.value.hint or "")


def test_without_a_port_or_a_file_nothing_is_started() -> None:
    with MetricsExport(counting()[0], TelemetrySettings()) as export:
        assert export.url is None and export._registry is None
