"""One `longbow sync`: open the stores, plan every pair into the job database while workers
execute the jobs, and report what happened. The CLI renders; this module decides."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from s3longbow.config import Settings, TransferSettings
from s3longbow.errors import ConfigError, FatalError, LongbowError
from s3longbow.jobs.sqlite import InvocationSamples, JobDatabase, SqliteQueue, new_owner_id
from s3longbow.meter import RequestMeter
from s3longbow.pairs import (
    PairRuntime,
    check_versioned,
    open_pairs,
    run_signature,
    use_current_versions,
)
from s3longbow.plan import probe
from s3longbow.plan.diff import Decision
from s3longbow.plan.filters import Filters
from s3longbow.plan.ignore import IgnoreRules
from s3longbow.plan.inventory_listing import inventory_snapshots
from s3longbow.plan.ledger import LedgerSink, plan_options
from s3longbow.plan.planner import CountingSink, PlanCounts, PlanTotals, plan_pair
from s3longbow.plan.preflight import Estimate
from s3longbow.progress.exposition import MetricsExport, sync_exposition
from s3longbow.progress.sampling import Sampler
from s3longbow.progress.stats import Stats
from s3longbow.transfer.bandwidth import BandwidthLimit
from s3longbow.transfer.budget import ByteBudget
from s3longbow.transfer.engine import Copier
from s3longbow.transfer.properties import PropertyReport, PropertyUpdater
from s3longbow.worker.concurrency import (
    Controller,
    Limits,
    controller_for,
    limits_for,
    part_window,
)
from s3longbow.worker.loop import Worker
from s3longbow.worker.stopping import RunLimits

log = logging.getLogger(__name__)


@dataclass
class FailedJob:
    key: str
    dst_key: str
    reason: str


@dataclass
class SyncReport(PlanTotals):
    """Everything a view needs to summarise a sync (or a dry run)."""

    dry_run: bool
    run_id: int | None = None
    resumed: bool = False
    jobs: dict[str, int] = field(default_factory=dict)
    job_bytes: dict[str, int] = field(default_factory=dict)
    objects_copied: int = 0
    bytes_copied: int = 0
    bytes_sent: int = 0
    bytes_reused: int = 0
    failed: list[FailedJob] = field(default_factory=list)
    # Keys the destination was found unable to store: never copied again while the source
    # stays as it is, and not a success.
    unstorable: list[FailedJob] = field(default_factory=list)
    # Keys an inventory report listed that the source deleted since (skipped, not failed).
    source_gone: list[FailedJob] = field(default_factory=list)
    # --no-overwrite: keys that appeared at the destination during their copy (left as they
    # were); those present when planned are counted in objects_not_replaced.
    not_replaced: list[FailedJob] = field(default_factory=list)
    # Objects copied without their Object Lock, by destination bucket without Object Lock.
    locks_not_kept: dict[str, int] = field(default_factory=dict)
    # Archived sources, not copied and not failed: those still needing a restore, and those
    # whose restore was asked for (or is under way); a later run copies them once readable.
    needs_restore: list[FailedJob] = field(default_factory=list)
    restore_requested: list[FailedJob] = field(default_factory=list)
    verification: dict[str, int] = field(default_factory=dict)
    objects_extra: int = 0  # destination objects the source no longer has
    objects_at_destination: int = 0
    extra_samples: list[str] = field(default_factory=list)
    deleted: int = 0
    delete_refused: str | None = None
    delete_failed: list[FailedJob] = field(default_factory=list)
    elapsed: float = 0.0
    fatal: LongbowError | None = None
    interrupted: bool = False
    stopped_by: str | None = None  # the limit that stopped it: "max-duration", "max-transfer"
    memory_limit: int = 0
    concurrency: int = 0  # objects in flight allowed when the run ended (the tuned number)
    concurrency_highest: int = 0
    parts_per_object: int = 0  # parts in flight per object (--part-threads, or fewer: near)
    samples: list[Decision] = field(default_factory=list)
    properties: PropertyReport | None = None  # with --update-properties
    estimate: Estimate | None = None  # a dry run's pre-flight estimate

    @property
    def ok(self) -> bool:
        """True when every job of the run is done (or skipped, but not for a key the
        destination cannot store, or archived: waiting for a restore is no failure) and
        nothing stopped the run."""
        if self.fatal or self.interrupted:
            return False
        if self.dry_run:
            return True
        if self.delete_refused or self.delete_failed:
            return False
        if self.properties is not None and self.properties.failed:
            return False
        if self.unstorable:
            return False
        return not any(self.jobs.get(s, 0) for s in ("failed", "pending", "in_progress"))

    def add_counts(self, counts: PlanCounts) -> None:
        """Add one pair's counts, with its extras and samples."""
        super().add_counts(counts)
        self.objects_extra += counts.extra
        self.objects_at_destination += counts.destination
        self.extra_samples.extend(counts.extra_samples)
        self.samples.extend(counts.samples)

    def to_json(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "run_id": self.run_id,
            "resumed": self.resumed,
            "ok": self.ok,
            "jobs": self.jobs,
            "copied": {"objects": self.objects_copied, "bytes": self.bytes_copied},
            "bytes_sent": self.bytes_sent,
            "bytes_reused": self.bytes_reused,
            **self.totals_json(),
            "verification": self.verification,
            "extra": {"objects": self.objects_extra, "deleted": self.deleted},
            "delete_refused": self.delete_refused,
            "delete_failed": [{"key": f.key, "reason": f.reason} for f in self.delete_failed],
            "failed": _listed(self.failed),
            "unstorable": _listed(self.unstorable),
            "archived": {
                "needs_restore": _listed(self.needs_restore),
                "restore_requested": _listed(self.restore_requested),
            },
            "source_gone": [{"key": f.key, "reason": f.reason} for f in self.source_gone],
            "not_replaced_during_copy": _listed(self.not_replaced),
            "object_lock_not_kept": self.locks_not_kept,
            "error": None
            if self.fatal is None
            else {"message": self.fatal.message, "hint": self.fatal.hint},
            "interrupted": self.interrupted,
            "stopped_by": self.stopped_by,
            "elapsed_seconds": round(self.elapsed, 3),
            "memory_limit_bytes": self.memory_limit,
            "concurrency": {
                "final": self.concurrency,
                "highest": self.concurrency_highest,
                "parts_per_object": self.parts_per_object,
            },
            "properties": None
            if self.properties is None
            else {
                "checked": self.properties.checked,
                "updated": self.properties.updated,
                "failed": [{"key": k, "reason": r} for k, r in self.properties.failed],
            },
            "estimate": None if self.estimate is None else self.estimate.to_json(),
        }

    def counts_json(self) -> dict[str, object]:
        """`to_json` with each list of keys replaced by its length: what an invocation's
        record keeps of its summary (its duration is the record's own)."""
        return {
            name: _counted(value)
            for name, value in self.to_json().items()
            if name != "elapsed_seconds"
        }


def _counted(value: object) -> object:
    """A JSON value with every list in it replaced by its length."""
    if isinstance(value, list):
        return len(value)
    if isinstance(value, dict):
        return {name: _counted(inner) for name, inner in value.items()}
    return value


def _listed(jobs: list[FailedJob]) -> list[dict[str, str]]:
    return [{"key": f.key, "dst_key": f.dst_key, "reason": f.reason} for f in jobs]


def dry_run(settings: Settings, stats: Stats, *, samples: int = 20) -> SyncReport:
    """Plan every pair without writing anything anywhere; count what would be copied, and
    estimate what copying it would take (requests, bytes, duration from a short probe that
    only reads, and AWS cost)."""
    started = time.monotonic()
    report = SyncReport(dry_run=True, memory_limit=settings.transfer.memory_limit)
    settings.transfer.validate()
    table, explicit = probe.price_table(settings.price_table)  # a bad file stops it here
    ignore = IgnoreRules(settings.ignore_patterns)
    filters = Filters(settings.filters, now=time.time())
    with (
        MetricsExport(sync_exposition(stats, None), settings.telemetry),
        open_pairs(settings, read_only=True) as pairs,
    ):
        estimator = probe.start(pairs, settings.transfer)
        sink = CountingSink(stats, extras=settings.delete, estimator=estimator)
        for pair in pairs:
            counts = plan_pair(
                pair,
                ignore,
                sink,
                keep_samples=samples,
                stats=stats,
                listing_threads=settings.transfer.listing_threads,
                compare=settings.transfer.planning_compare,
                overwrite=not settings.transfer.no_overwrite,
                filters=filters,
                delete_excluded=settings.delete_excluded,
            )
            report.add_counts(counts)
            if settings.delete:
                estimator.pairs[pair.index].delete(counts.extra)
        stats.planning_done()
        report.estimate = probe.finish(
            estimator,
            pairs,
            table,
            explicit=explicit,
            planning_seconds=time.monotonic() - started,
        )
    report.elapsed = time.monotonic() - started
    return report


def run_sync(
    settings: Settings,
    stats: Stats,
    stop: threading.Event,
    *,
    retry_failed: bool = False,
) -> SyncReport:
    """Plan and copy every pair; continue the same run when one exists in the database.

    The counters are served and kept in a file in Prometheus' format where the settings'
    telemetry asks for it; the port is bound and the file written before any store is opened.

    Raises:
        ConfigError: The settings, or the metrics port or file, cannot be used.
        LongbowError: A store or the job database cannot be used.
    """
    started = time.monotonic()
    t = settings.transfer
    t.validate()
    report = SyncReport(dry_run=False, memory_limit=t.memory_limit)
    meter = RequestMeter()  # the stores' replies, which the workers' concurrency weighs
    limits = limits_for(t)
    controller = controller_for(t, limits)
    watch = RunLimits(settings, stats, stop, started)
    with (
        watch,
        MetricsExport(sync_exposition(stats, meter), settings.telemetry),
        # The objects a run starts with on a near path: connections for them are opened
        # ahead on a long one. (Not the more a far path starts with: a run of fewer objects
        # would pay for handshakes it never uses.)
        open_pairs(
            settings, meter=meter, connections=limits.connections, open_ahead=controller.limit
        ) as pairs,
    ):
        _check_options(pairs, t)
        # The buckets' checks timed the paths: a far one starts with more objects in flight.
        controller.path(meter.round_trip())
        # So does the number of parts each object has in flight: fewer where servers are near.
        window = part_window(t, meter.round_trip())
        report.parts_per_object = window
        db = JobDatabase(settings.db_path)
        try:
            _run(
                db,
                pairs,
                settings,
                stats,
                stop,
                report,
                meter,
                limits,
                controller,
                window,
                retry_failed=retry_failed,
            )
        finally:
            db.close()
    report.elapsed = time.monotonic() - started
    report.stopped_by = watch.reached if report.interrupted else None
    log.info(
        "run %s ended: %d object(s) copied, %d failed",
        report.run_id,
        report.objects_copied,
        len(report.failed),
        extra={"fields": _end_fields(report)},
    )
    return report


def _end_fields(report: SyncReport) -> dict[str, object]:
    """The fields of the log line that ends a run (event "end")."""
    return {
        "event": "end",
        "run_id": report.run_id,
        "ok": report.ok,
        "interrupted": report.interrupted,
        "objects_copied": report.objects_copied,
        "bytes_copied": report.bytes_copied,
        "bytes_sent": report.bytes_sent,
        "bytes_reused": report.bytes_reused,
        "objects_failed": len(report.failed),
        "jobs": report.jobs,
        "elapsed_seconds": round(report.elapsed, 3),
        "error": None if report.fatal is None else report.fatal.message,
    }


def _check_options(pairs: list[PairRuntime], t: TransferSettings) -> None:
    """Refuse options the pairs' stores cannot honour, before anything is copied."""
    if t.all_versions:
        check_versioned(pairs)
    if t.compare == "version":
        use_current_versions(pairs)
    if t.update_properties and not all(p.dst_store.capabilities.keeps_properties for p in pairs):
        raise ConfigError(
            "--update-properties needs an S3 destination: files keep no properties",
            hint="leave --update-properties out for a local destination",
        )


def _run(
    db: JobDatabase,
    pairs: list[PairRuntime],
    settings: Settings,
    stats: Stats,
    stop: threading.Event,
    report: SyncReport,
    meter: RequestMeter,
    limits: Limits,
    controller: Controller,
    window: int,
    *,
    retry_failed: bool,
) -> None:
    """Open or continue the run, plan on a thread while workers copy, then fill the report."""
    snapshots = inventory_snapshots(pairs)  # a bad report stops the run before any job
    t = settings.transfer
    run, report.resumed = db.open_run(
        run_signature(settings),
        {"pairs": [[p.src, p.dst] for p in settings.pairs]},
    )
    report.run_id = run.id
    log.info(
        "run %d %s",
        run.id,
        "continued" if report.resumed else "started",
        extra={
            "fields": {
                "event": "start",
                "run_id": run.id,
                "resumed": report.resumed,
                "pairs": [[p.src, p.dst] for p in settings.pairs],
            }
        },
    )
    # Each invocation is recorded, with its samples and its summary, for `longbow report`.
    invocation = db.begin_invocation(run.id)
    try:
        released = db.release_dead_leases(run.id)
        if released:
            log.info("took back %d job(s) left in progress by a stopped process", released)
        if retry_failed:
            db.retry_failed(run.id)
        totals = db.totals(run.id)
        carried = [totals[s] for s in ("pending", "in_progress")]
        stats.add_work(sum(n for n, _ in carried), sum(b for _, b in carried))

        budget = ByteBudget(t.memory_limit)
        bandwidth = BandwidthLimit(t.bandwidth_limit) if t.bandwidth_limit else None
        planning_done = threading.Event()
        jobs = SqliteQueue(
            db, run.id, new_owner_id(), t.lease_seconds, planning_done, claim_ahead=t.workers
        )
        copying = dataclasses.replace(t, part_threads=window)
        with ThreadPoolExecutor(limits.parts, thread_name_prefix="part") as parts:
            copiers = {
                p.index: Copier(
                    p.src_store,
                    p.dst_store,
                    ledger=jobs,
                    settings=copying,
                    budget=budget,
                    part_pool=parts,
                    stats=stats,
                    stop=stop,
                    bandwidth=bandwidth,
                    snapshot=snapshots.get(p.index),
                )
                for p in pairs
            }
            planner = threading.Thread(
                target=plan_all,
                args=(jobs, pairs, settings, stats, stop, report),
                name="planner",
                daemon=True,
            )
            planner.start()
            worker = Worker(
                jobs,
                lambda job: copiers[job.pair],
                t,
                stats,
                stop,
                controller=controller,
                meter=meter,
            )
            with Sampler(stats, InvocationSamples(db, invocation)):
                outcome = worker.run()
            planner.join()
        if outcome.fatal and report.fatal is None:
            report.fatal = outcome.fatal
        report.interrupted = outcome.interrupted and report.fatal is None

        totals = db.totals(run.id)
        report.jobs = {state: n for state, (n, _) in totals.items()}
        report.unstorable = [FailedJob(*row) for row in db.unstorable_jobs(run.id)]
        report.source_gone = [FailedJob(*row) for row in db.gone_jobs(run.id)]
        report.not_replaced = [FailedJob(*row) for row in db.not_replaced_jobs(run.id)]
        for key, dst_key, reason, restoring in db.archived_jobs(run.id):
            waiting = report.restore_requested if restoring else report.needs_restore
            waiting.append(FailedJob(key, dst_key, reason))
        if settings.delete and report.ok:
            _delete_extras(db, run.id, pairs, settings, report)
        report.job_bytes = {state: b for state, (_, b) in totals.items()}
        report.failed = [FailedJob(*row) for row in db.failed_jobs(run.id)]
        report.verification = db.verification(run.id)
        snap = stats.snapshot()
        report.objects_copied = snap.objects_copied
        report.bytes_copied = snap.bytes_copied
        report.bytes_sent = snap.bytes_sent
        report.bytes_reused = snap.bytes_reused
        report.concurrency = snap.concurrency
        report.concurrency_highest = snap.concurrency_highest
        report.objects_not_replaced = snap.objects_not_replaced
        report.locks_not_kept = dict(snap.locks_not_kept)
    finally:
        db.end_invocation(invocation, report.counts_json())


def plan_all(
    jobs: SqliteQueue,
    pairs: list[PairRuntime],
    settings: Settings,
    stats: Stats,
    stop: threading.Event,
    report: SyncReport,
) -> None:
    """The planning thread: plan every pair into the run's jobs while workers run them.
    Called with no worker running, it is a sync's planning alone (bench/scale.py)."""
    ignore = IgnoreRules(settings.ignore_patterns)
    filters = Filters(settings.filters, now=time.time())  # ages: from when planning starts
    t = settings.transfer
    checker = ThreadPoolExecutor(t.workers, thread_name_prefix="properties")
    updater = (
        PropertyUpdater(
            checker,
            copy_tags=t.copy_tags,
            storage_class=t.storage_class,
            content_types=t.content_type_map,
            metadata=t.set_metadata,
        )
        if t.update_properties
        else None
    )
    try:
        sink = LedgerSink(
            jobs,
            stats,
            checker,
            max_attempts=t.max_attempts,
            extras=settings.delete,
            updater=updater,
            options=plan_options(settings),
        )
        if sink.resumed:
            log.info("going on with the listing a stopped run had begun")
        for pair in pairs:
            counts = plan_pair(
                pair,
                ignore,
                sink,
                stats=stats,
                should_stop=stop.is_set,
                listing_threads=t.listing_threads,
                compare=t.planning_compare,
                overwrite=not t.no_overwrite,
                filters=filters,
                delete_excluded=settings.delete_excluded,
            )
            report.add_counts(counts)
        if updater is not None:
            report.properties = updater.wait()
        if not stop.is_set():
            skipped = sink.finish()
            if skipped:
                log.info("%d earlier job(s) are no longer needed", skipped)
    except LongbowError as exc:
        report.fatal = exc if isinstance(exc, FatalError | ConfigError) else FatalError(str(exc))
        stop.set()
    except Exception as exc:
        log.exception("planning failed")
        report.fatal = FatalError(f"planning failed: {exc!r}")
        stop.set()
    finally:
        checker.shutdown(wait=True, cancel_futures=True)
        stats.planning_done()
        jobs.planning_done.set()
        jobs.new_work.set()


def _delete_extras(
    db: JobDatabase,
    run_id: int,
    pairs: list[PairRuntime],
    settings: Settings,
    report: SyncReport,
) -> None:
    """--delete: remove destination objects the source no longer has, once every copy is
    done, unless they are more than the allowed share of the destination (without --force).
    """
    if not report.objects_extra:
        return
    share = report.objects_extra / max(report.objects_at_destination, 1)
    if share > settings.max_delete_fraction and not settings.force:
        report.delete_refused = (
            f"refusing to delete {report.objects_extra} of {report.objects_at_destination} "
            f"destination objects ({share:.0%}, more than the allowed "
            f"{settings.max_delete_fraction:.0%}); check the pairs, then rerun with --force "
            "or a higher --max-delete"
        )
        return
    for pair in pairs:
        for keys in db.extras(run_id, pair.index):
            failed = pair.dst_store.delete_objects(keys)
            report.deleted += len(keys) - len(failed)
            report.delete_failed += [FailedJob(k, k, reason) for k, reason in failed]
    log.info("deleted %d object(s) the source no longer has", report.deleted)
