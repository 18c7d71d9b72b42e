"""`longbow report --cluster`: the run report of a deployment, from the samples its workers
wrote to the job table (see `samples`) and the job table itself."""

from __future__ import annotations

import time
from collections import Counter

from s3longbow.model import RunSample
from s3longbow.report.data import (
    CopiedObject,
    FailureGroup,
    HistoryRow,
    Outcome,
    ReportData,
    format_time,
    timeline,
)

from .aws import ControlPlane
from .config import ClusterSettings
from .dynamodb import JobItem, JobTable
from .samples import combined, read_samples

TOP_OBJECTS = 10
FAILURES_READ = 500  # failed items read for the groups by reason (the latest of them)
KEYS_PER_REASON = 20


def cluster_report(
    cluster: ClusterSettings,
    control: ControlPlane,
    *,
    hours: float = 24.0,
    now: float | None = None,
) -> ReportData:
    """The report of the deployment's last `hours`: throughput and concurrency summed over
    its workers, the job table's totals, the slowest and largest recent copies, the failures
    by reason and the verification of recent copies."""
    table = JobTable(control.dynamodb, cluster.table)
    table.check()
    until = time.time() if now is None else now
    since = until - hours * 3600
    by_worker = read_samples(control.dynamodb, table.name, since, until)
    step = cluster.metrics_interval
    series = combined(by_worker, step)
    first, last = (series[0], series[-1]) if series else (RunSample(at=since), RunSample(at=since))
    recent = table.done_since(since)
    totals = table.totals()
    notes = [
        f"Throughput and concurrency are summed over the {len(by_worker)} worker(s) that "
        f"recorded samples in the last {hours:g} h (longbow worker records one every "
        f"{step:g} s; the Lambda worker records none).",
        f"The slowest and largest copies and the verification are of the {len(recent)} "
        "latest copies of that window; the outcomes are the whole job table's.",
    ]
    if not by_worker:
        notes.insert(0, "No worker recorded samples in this window.")
    return ReportData(
        title=f"Longbow cluster {table.name}",
        facts=[
            ("Job table", table.name),
            ("Window", f"{format_time(since)} to {format_time(until)}"),
            ("Workers", str(len(by_worker))),
        ],
        objects_copied=last.objects_copied - first.objects_copied,
        bytes_copied=last.bytes_copied - first.bytes_copied,
        bytes_sent=last.bytes_sent - first.bytes_sent,
        seconds=last.at - first.at,
        timeline=timeline(series, first.at),
        outcomes=_outcomes(totals),
        slowest=_top(recent, by_duration=True),
        largest=_top(recent, by_duration=False),
        failures=failure_groups(table.failures(FAILURES_READ)),
        failed_objects=totals.get("failed", (0, 0))[0],
        verification=_verification(recent),
        history=[
            _worker_row(worker, samples, until, step) for worker, samples in by_worker.items()
        ],
        history_label="Workers",
        notes=notes,
    )


def _outcomes(totals: dict[str, tuple[int, int]]) -> list[Outcome]:
    out = []
    for state, label in (
        ("done", "copied"),
        ("failed", "failed"),
        ("skipped", "skipped"),
        ("archived", "archived"),
        ("pending", "queued"),
        ("in_progress", "in progress"),
    ):
        count, nbytes = totals.get(state, (0, 0))
        if count or state == "done":
            out.append(Outcome(label, count, nbytes, "items of the job table"))
    return out


def _top(items: list[JobItem], *, by_duration: bool) -> list[CopiedObject]:
    timed = [
        CopiedObject(
            item.src_key,
            item.dst_key,
            item.size or 0,
            max(0.0, (item.finished_at or 0.0) - (item.started_at or item.finished_at or 0.0)),
        )
        for item in items
        if item.finished_at is not None
    ]
    timed.sort(key=lambda o: (-(o.seconds if by_duration else o.size), o.key))
    return timed[:TOP_OBJECTS]


def _verification(items: list[JobItem]) -> list[tuple[str, int]]:
    counts = Counter(
        ("verified: " if item.verified else "unverified: ") + (item.verify or "") for item in items
    )
    return counts.most_common()


def failure_groups(items: list[JobItem]) -> list[FailureGroup]:
    """Failed items grouped by reason, the commonest first."""
    groups: dict[str, list[JobItem]] = {}
    for item in items:
        groups.setdefault(item.reason or "", []).append(item)
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return [
        FailureGroup(
            reason,
            len(members),
            sum(m.size or 0 for m in members),
            [m.src_key or m.id for m in members[:KEYS_PER_REASON]],
        )
        for reason, members in ordered
    ]


def _worker_row(worker: str, samples: list[RunSample], now: float, step: float) -> HistoryRow:
    first, last = samples[0], samples[-1]
    running = now - last.at <= 2 * step
    return HistoryRow(
        label=worker,
        started_at=first.at,
        seconds=last.at - first.at,
        objects_copied=last.objects_copied - first.objects_copied,
        bytes_copied=last.bytes_copied - first.bytes_copied,
        outcome="running" if running else f"last sample {format_time(last.at)}",
    )
