"""`longbow send`: stream each pair's diff with bounded memory, skip jobs already queued or
running, record the rest as pending in the job table, and send them in checked batches.

Order per batch of up to 100 copies: one BatchGetItem filters out jobs already queued, a
conditional write per remaining job records it as pending (the condition repeats the filter
atomically, so two senders at once still queue a job once), and only then is its message
sent. An object above the fan-out threshold is queued once and sent as one message per range
of its parts (see `fanout`). A message that cannot be sent marks its jobs failed with the
reason, so a later send queues them again; nothing is left pending without a message.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from s3longbow.config import with_inventory
from s3longbow.errors import FatalError
from s3longbow.model import needs_restore
from s3longbow.pairs import PairRuntime, open_pairs
from s3longbow.plan import probe
from s3longbow.plan.diff import Decision
from s3longbow.plan.estimate import Estimator
from s3longbow.plan.filters import Filters
from s3longbow.plan.ignore import IgnoreRules
from s3longbow.plan.inventory_listing import load_manifest
from s3longbow.plan.planner import PlanSink, PlanTotals, plan_pair
from s3longbow.plan.preflight import Estimate
from s3longbow.progress.stats import Stats

from .aws import ControlPlane, Parameters
from .dynamodb import JobTable, should_queue
from .fanout import FanoutRule, ObjectRecords
from .messages import JobSpec, MessagePacker, Packed, fan_out
from .settings import ClusterConfig, resolve_credentials, resolve_pairs
from .sqs import BATCH_ENTRIES, MessageQueue, SendFailed, batches

log = logging.getLogger(__name__)

CHECK_BATCH = 100  # copies looked up in the job table at once (one BatchGetItem)
_WRITE_THREADS = 8


@dataclass
class SendReport(PlanTotals):
    """What one `longbow send` found and queued (or would queue, in a dry run)."""

    dry_run: bool
    pairs: int = 0
    objects_queued: int = 0
    bytes_queued: int = 0
    objects_already_queued: int = 0
    objects_fanned_out: int = 0
    ranges_queued: int = 0
    messages_sent: int = 0
    table_missing: bool = False
    interrupted: bool = False
    elapsed: float = 0.0
    estimate: Estimate | None = None  # a dry run's pre-flight estimate of the workers' copy

    def to_json(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "pairs": self.pairs,
            **self.totals_json(),
            "queued": {"objects": self.objects_queued, "bytes": self.bytes_queued},
            "already_queued": self.objects_already_queued,
            "fanned_out": {"objects": self.objects_fanned_out, "ranges": self.ranges_queued},
            "messages_sent": self.messages_sent,
            "table_missing": self.table_missing,
            "interrupted": self.interrupted,
            "elapsed_seconds": round(self.elapsed, 3),
            "estimate": None if self.estimate is None else self.estimate.to_json(),
        }


class _Outbox:
    """Records jobs as pending, packs them into messages and sends them ten at a time."""

    def __init__(
        self,
        *,
        table: JobTable | None,
        queue: MessageQueue | None,
        packer: MessagePacker,
        report: SendReport,
        stale_before: float,
        requeue: bool,
        retry_failed: bool,
        fanout: FanoutRule,
        estimator: Estimator | None = None,
    ) -> None:
        self.estimator = estimator
        self.table = table
        self.fanout = fanout
        self.records = ObjectRecords(table) if table is not None else None
        self.queue = queue
        self.packer = packer
        self.report = report
        self.stale_before = stale_before
        self.requeue = requeue
        self.retry_failed = retry_failed
        self.send_id = uuid.uuid4().hex
        self._ready: list[Packed] = []
        self._pool = ThreadPoolExecutor(_WRITE_THREADS, thread_name_prefix="queue-write")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def offer(
        self,
        copies: list[tuple[JobSpec, str]],
        listed_at: float,
        pair: int = 0,
        archived: frozenset[str] = frozenset(),
    ) -> None:
        """Queue the copies (of pair `pair`) that are not already queued or running.
        `archived`: the source keys among them that wait for a restore (a dry run's
        estimate leaves them out: no worker reads them before it)."""
        now = time.time()
        items = self.table.get_many(s.id for s, _ in copies) if self.table else {}
        wanted = [
            (spec, why)
            for spec, why in copies
            if should_queue(
                items.get(spec.id),
                spec,
                now=now,
                listed_at=listed_at,
                stale_before=self.stale_before,
                requeue=self.requeue,
                retry_failed=self.retry_failed,
            )
        ]
        self.report.objects_already_queued += len(copies) - len(wanted)
        if self.queue is None or self.table is None:  # a dry run
            self.report.objects_queued += len(wanted)
            self.report.bytes_queued += sum(s.size or 0 for s, _ in wanted)
            for spec, _ in wanted:
                self._count_fanout(spec, self.fanout.ranges(spec.size))
            if self.estimator is not None:
                for spec, _ in wanted:
                    if spec.src_key not in archived:
                        self.estimator.add(pair, spec.src_key, spec.size or 0, spec.etag)
            return
        table = self.table

        records = self.records
        assert records is not None

        def record(copy: tuple[JobSpec, str]) -> bool:
            spec, why = copy
            ranges = self.fanout.ranges(spec.size)
            written = table.queue_job(
                spec,
                why=why,
                send_id=self.send_id,
                listed_at=listed_at,
                stale_before=self.stale_before,
                requeue=self.requeue,
                retry_failed=self.retry_failed,
                ranges=ranges,
            )
            if written and ranges is not None:
                # Ranges of an earlier round (the object is queued again) must run again.
                earlier = items.get(spec.id)
                records.forget_ranges(spec.id, max(ranges, (earlier.ranges or 0) if earlier else 0))
            return written

        for (spec, _), written in zip(wanted, self._pool.map(record, wanted), strict=True):
            if not written:  # another sender or a worker got there between read and write
                self.report.objects_already_queued += 1
                continue
            ranges = self.fanout.ranges(spec.size)
            for job in fan_out(spec, ranges) if ranges is not None else [spec]:
                self._ready.extend(self.packer.add(job))
                if len(self._ready) >= BATCH_ENTRIES:
                    self._send()

    def flush(self) -> None:
        """Send everything packed so far."""
        self._ready.extend(self.packer.flush())
        while self._ready:
            self._send()

    def _send(self) -> None:
        assert self.queue is not None
        # Ten messages and 256 KiB at most per call (bodies are small, so usually ten).
        first = batches([p.body for p in self._ready])[0]
        chunk, self._ready = self._ready[: len(first)], self._ready[len(first) :]
        try:
            self.queue.send_batch([p.body for p in chunk])
        except SendFailed as exc:
            unsent = [chunk[i] for i in exc.unsent]
            self.abandon(f"its job message could not be sent: {exc.message}", extra=unsent)
            raise
        self.report.messages_sent += len(chunk)
        for packed in chunk:
            for job in packed.jobs:
                # An object sent as ranges counts once, with its first range.
                if job.part_range is None or job.part_range.index == 0:
                    self.report.objects_queued += 1
                    self.report.bytes_queued += job.size or 0
                if job.part_range is not None:
                    self._count_fanout(job, job.part_range.count)

    def _count_fanout(self, spec: JobSpec, ranges: int | None) -> None:
        if ranges is None:
            return
        self.report.ranges_queued += 1 if spec.part_range is not None else ranges
        if spec.part_range is None or spec.part_range.index == 0:
            self.report.objects_fanned_out += 1

    def abandon(self, reason: str, extra: list[Packed] | None = None) -> None:
        """Jobs recorded as pending whose messages will not be sent: mark them failed, so the
        next send queues them again."""
        if self.table is None or self.queue is None:
            return
        left = [*(extra or []), *self._ready, *self.packer.flush()]
        self._ready = []
        for packed in left:
            for spec in packed.jobs:
                try:
                    self.table.unqueue(spec, send_id=self.send_id, reason=reason)
                except Exception as exc:  # noqa: BLE001 - best effort; reported below
                    log.error("could not mark %s as not queued: %s", spec.src_key, exc)


class QueueSink(PlanSink):
    """`longbow send`'s planning sink for one pair: each copy becomes a job spec offered to
    the outbox (recorded as pending unless already queued or running, then sent).

    Args:
        outbox: Where the copies go.
        listed_at: When the pair's listing began: a job finished after it may postdate it.
        inventory: When the inventory report the pair is planned from was made (None: the
            source is listed); its jobs carry it, so a source gone since is skipped as gone.
    """

    def __init__(
        self, outbox: _Outbox, *, listed_at: float, inventory: float | None = None
    ) -> None:
        self.outbox = outbox
        self.listed_at = listed_at
        self.inventory = inventory

    def copies(self, pair: PairRuntime, batch: list[Decision]) -> None:
        src_bucket, dst_bucket = pair.src.bucket, pair.dst.bucket
        specs = [
            (
                JobSpec(
                    src_bucket=src_bucket,
                    src_key=d.src.key,
                    dst_bucket=dst_bucket,
                    dst_key=d.dst_key,
                    size=d.src.size,
                    etag=d.src.etag,
                    version_id=d.src.version_id,
                    last_modified=d.src.last_modified,
                    inventory=self.inventory,
                ),
                d.reason,
            )
            for d in batch
        ]
        archived = frozenset(
            d.src.key for d in batch if needs_restore(d.src.storage_class, d.src.restore)
        )
        self.outbox.offer(specs, self.listed_at, pair.index, archived)


def send_jobs(
    config: ClusterConfig,
    control: ControlPlane,
    *,
    dry_run: bool = False,
    requeue: bool = False,
    retry_failed: bool = False,
    stop: threading.Event | None = None,
    stats: Stats | None = None,
    src_inventory: str | None = None,
    report: SendReport | None = None,
) -> SendReport:
    """Queue a job for every object of every pair that the destination lacks or differs in.

    Objects the filters leave out (the config file's, or `send`'s flags) are not queued; they
    are counted as filtered.

    Args:
        config: The deployment's settings (SSM parameters are read here).
        control: SQS, DynamoDB and SSM clients.
        dry_run: Count only; write nothing, send nothing.
        requeue: Send jobs already pending again (after a sender died between recording and
            sending them); duplicates are harmless, the workers skip finished jobs.
        retry_failed: Queue failed jobs again.
        stop: Set to stop listing; what was recorded is still sent.
        stats: Counters of the planning (objects already present, ignored).
        src_inventory: The manifest of an S3 Inventory report that every pair reads instead
            of listing its source (over the pairs' own `src_inventory`).
        report: The report to fill, for a caller that reads its counts as they grow.
    """
    started = time.monotonic()
    stop = stop or threading.Event()
    report = report or SendReport(dry_run=dry_run)
    report.dry_run = dry_run
    parameters = Parameters(control.ssm)
    config = resolve_credentials(config, parameters)
    pairs = with_inventory(resolve_pairs(config, parameters), src_inventory)
    settings = config.settings(pairs)
    cluster = config.cluster
    table: JobTable | None = JobTable(control.dynamodb, cluster.table)
    queue: MessageQueue | None = None
    assert table is not None
    if dry_run:
        try:
            table.check()
        except FatalError:
            log.info("job table %s not found: counting every copy as new", cluster.table)
            report.table_missing, table = True, None
    else:
        table.check()
        queue = MessageQueue.open(control.sqs, cluster)
    retention = queue.retention_seconds if queue else 4 * 24 * 3600
    outbox = _Outbox(
        table=table,
        queue=queue,
        packer=MessagePacker(
            objects_per_message=cluster.objects_per_message,
            large_threshold=config.transfer.resumable_threshold,
        ),
        report=report,
        stale_before=time.time() - retention,
        requeue=requeue,
        retry_failed=retry_failed,
        fanout=FanoutRule.of(cluster, config.transfer),
    )
    ignore = IgnoreRules(settings.ignore_patterns)
    filters = Filters(settings.filters, now=time.time())
    # A dry run estimates the workers' copy; a bad price table stops it before any listing.
    prices = probe.price_table(settings.price_table) if dry_run else None
    try:
        with open_pairs(settings, read_only=dry_run) as runtimes:
            report.pairs = len(runtimes)
            if prices is not None:
                outbox.estimator = probe.start(runtimes, config.transfer)
            # Bad reports stop the send here, before anything is queued.
            reports = {p.index: load_manifest(p).created for p in runtimes if p.inventory}
            for pair in runtimes:
                # A job finished after this moment was copied after the destination was listed.
                sink = QueueSink(outbox, listed_at=time.time(), inventory=reports.get(pair.index))
                counts = plan_pair(
                    pair,
                    ignore,
                    sink,
                    batch_size=CHECK_BATCH,
                    stats=stats,
                    should_stop=stop.is_set,
                    listing_threads=config.transfer.listing_threads,
                    compare=config.transfer.planning_compare,
                    overwrite=not config.transfer.no_overwrite,
                    filters=filters,
                )
                report.add_counts(counts)
                log.info(
                    "%s -> %s: %d to copy (%d bytes), %d already present",
                    pair.src,
                    pair.dst,
                    counts.copy,
                    counts.copy_bytes,
                    counts.same,
                )
                if stop.is_set():
                    report.interrupted = True
                    break
            if queue is not None:
                outbox.flush()
            if prices is not None and outbox.estimator is not None and not report.interrupted:
                report.estimate = probe.finish(
                    outbox.estimator,
                    runtimes,
                    prices[0],
                    explicit=prices[1],
                    planning_seconds=time.monotonic() - started,
                    parallel_lists=False,  # the workers copy what the sender has queued
                )
    except SendFailed:
        raise
    except BaseException as exc:
        outbox.abandon(f"the sender stopped before sending its job message: {exc}")
        raise
    finally:
        outbox.close()
    report.elapsed = time.monotonic() - started
    return report


__all__ = ["QueueSink", "SendReport", "send_jobs"]
