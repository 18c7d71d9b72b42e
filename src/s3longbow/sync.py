"""One `longbow sync`: open the stores, plan every pair into the job database while workers
execute the jobs, and report what happened. The CLI renders; this module decides."""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field

from s3longbow.config import Settings, TransferSettings
from s3longbow.errors import ConfigError, FatalError, LongbowError
from s3longbow.jobs.sqlite import (
    JobDatabase,
    PlannedCopy,
    SqliteQueue,
    UpsertCounts,
    new_owner_id,
)
from s3longbow.meter import RequestMeter
from s3longbow.model import ObjectInfo
from s3longbow.pairs import PairRuntime, open_pairs, run_signature
from s3longbow.plan.diff import Decision
from s3longbow.plan.filters import Filters
from s3longbow.plan.ignore import IgnoreRules
from s3longbow.plan.planner import CountingSink, PlanCounts, PlanSink, PlanTotals, plan_pair
from s3longbow.plan.unstorable import answers_for
from s3longbow.progress.stats import Stats
from s3longbow.stores.base import CurrentVersionListing
from s3longbow.transfer.bandwidth import BandwidthLimit
from s3longbow.transfer.budget import ByteBudget
from s3longbow.transfer.engine import Copier
from s3longbow.transfer.properties import PropertyReport, PropertyUpdater
from s3longbow.verdicts import renamed_reason
from s3longbow.worker.concurrency import Limits, controller_for, limits_for
from s3longbow.worker.loop import Worker

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
    memory_limit: int = 0
    concurrency: int = 0  # objects in flight allowed when the run ended (the tuned number)
    concurrency_highest: int = 0
    samples: list[Decision] = field(default_factory=list)
    properties: PropertyReport | None = None  # with --update-properties

    @property
    def ok(self) -> bool:
        """True when every job of the run is done (or skipped, but not for a key the
        destination cannot store) and nothing stopped the run."""
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
            "failed": [
                {"key": f.key, "dst_key": f.dst_key, "reason": f.reason} for f in self.failed
            ],
            "unstorable": [
                {"key": f.key, "dst_key": f.dst_key, "reason": f.reason} for f in self.unstorable
            ],
            "error": None
            if self.fatal is None
            else {"message": self.fatal.message, "hint": self.fatal.hint},
            "interrupted": self.interrupted,
            "elapsed_seconds": round(self.elapsed, 3),
            "memory_limit_bytes": self.memory_limit,
            "concurrency": {"final": self.concurrency, "highest": self.concurrency_highest},
            "properties": None
            if self.properties is None
            else {
                "checked": self.properties.checked,
                "updated": self.properties.updated,
                "failed": [{"key": k, "reason": r} for k, r in self.properties.failed],
            },
        }


def use_current_versions(pairs: list[PairRuntime]) -> None:
    """--compare version: every source is listed with the version ids of its current keys."""
    for pair in pairs:
        if not isinstance(pair.src_store, CurrentVersionListing):
            raise ConfigError(
                f"--compare version: the source {pair.src_store.describe()} is a directory, "
                "which has no versions",
                hint="use --compare size, etag or mtime for a local source",
            )
        pair.src_store.use_current_versions()


def check_versioned(pairs: list[PairRuntime]) -> None:
    """Copying histories needs versioning on both buckets: refuse before anything is copied."""
    for pair in pairs:
        for role, store in (("source", pair.src_store), ("destination", pair.dst_store)):
            status = store.versioning()
            if status != "Enabled" and not (role == "source" and status == "Suspended"):
                raise ConfigError(
                    f"--all-versions: versioning is not enabled on the {role} "
                    f"{store.describe()} (status: {status or 'never enabled'})",
                    hint="enable versioning on that bucket first, or copy without "
                    "--all-versions (current versions only)",
                )


def dry_run(settings: Settings, stats: Stats, *, samples: int = 20) -> SyncReport:
    """Plan every pair without writing anything anywhere; count what would be copied."""
    started = time.monotonic()
    report = SyncReport(dry_run=True, memory_limit=settings.transfer.memory_limit)
    settings.transfer.validate()
    ignore = IgnoreRules(settings.ignore_patterns)
    filters = Filters(settings.filters, now=time.time())
    sink = CountingSink(stats, extras=settings.delete)
    with open_pairs(settings, read_only=True) as pairs:
        for pair in pairs:
            counts = plan_pair(
                pair,
                ignore,
                sink,
                keep_samples=samples,
                stats=stats,
                listing_threads=settings.transfer.listing_threads,
                compare=settings.transfer.planning_compare,
                filters=filters,
            )
            report.add_counts(counts)
    stats.planning_done()
    report.elapsed = time.monotonic() - started
    return report


def run_sync(
    settings: Settings,
    stats: Stats,
    stop: threading.Event,
    *,
    retry_failed: bool = False,
) -> SyncReport:
    """Plan and copy every pair; continue the same run when one exists in the database."""
    started = time.monotonic()
    t = settings.transfer
    t.validate()
    report = SyncReport(dry_run=False, memory_limit=t.memory_limit)
    meter = RequestMeter()  # the stores' replies, which the workers' concurrency weighs
    limits = limits_for(t)
    with open_pairs(settings, meter=meter, connections=limits.connections) as pairs:
        _check_options(pairs, t)
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
                retry_failed=retry_failed,
            )
        finally:
            db.close()
    report.elapsed = time.monotonic() - started
    return report


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
    *,
    retry_failed: bool,
) -> None:
    """Open or continue the run, plan on a thread while workers copy, then fill the report."""
    t = settings.transfer
    run, report.resumed = db.open_run(
        run_signature(settings),
        {"pairs": [[p.src, p.dst] for p in settings.pairs]},
    )
    report.run_id = run.id
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
    with ThreadPoolExecutor(limits.parts, thread_name_prefix="part") as parts:
        copiers = {
            p.index: Copier(
                p.src_store,
                p.dst_store,
                ledger=jobs,
                settings=t,
                budget=budget,
                part_pool=parts,
                stats=stats,
                stop=stop,
                bandwidth=bandwidth,
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
            controller=controller_for(t, limits),
            meter=meter,
        )
        outcome = worker.run()
        planner.join()
    if outcome.fatal and report.fatal is None:
        report.fatal = outcome.fatal
    report.interrupted = outcome.interrupted and report.fatal is None

    totals = db.totals(run.id)
    report.jobs = {state: n for state, (n, _) in totals.items()}
    report.unstorable = [FailedJob(*row) for row in db.unstorable_jobs(run.id)]
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


class LedgerSink(PlanSink):
    """A sync's planning sink: copies become jobs of the run (new, reopened or left done),
    destination objects the source lacks are recorded for --delete, and objects already
    present go to the property updater (--update-properties).

    Args:
        jobs: The run's job queue (its database and run id; workers are woken through it).
        stats: The run's counters (work added).
        checker: Threads that look up finished copies a listing lacks.
        max_attempts: Attempts per job.
        extras: Record destination objects the source lacks (--delete).
        updater: Checks and fixes the properties of objects already present.
    """

    def __init__(
        self,
        jobs: SqliteQueue,
        stats: Stats,
        checker: Executor,
        *,
        max_attempts: int,
        extras: bool = False,
        updater: PropertyUpdater | None = None,
    ) -> None:
        self.jobs = jobs
        self.db, self.run_id = jobs.db, jobs.run_id
        self.stats = stats
        self.checker = checker
        self.max_attempts = max_attempts
        self.wants_extras = extras
        self.wants_same = updater is not None
        self.updater = updater
        self.listed_since = time.time()  # copies finished after this may postdate the listings
        self.generation = self.db.begin_plan(self.run_id)

    def copies(self, pair: PairRuntime, batch: list[Decision]) -> None:
        planned = [
            PlannedCopy(pair.index, d.src, d.dst_key, d.reason, dst=d.dst, absent=d.dst is None)
            for d in batch
        ]
        counts = self._upsert(planned)
        if counts.to_look:  # rare: only finished copies missing from the listing
            self._upsert(list(self.checker.map(functools.partial(_look, pair), counts.to_look)))
        self.jobs.new_work.set()

    def same(self, pair: PairRuntime, batch: list[Decision]) -> None:
        if self.updater is not None:
            self.updater.submit(pair, [(d.src, d.dst) for d in batch if d.dst is not None])

    def extras(self, pair: PairRuntime, batch: list[ObjectInfo]) -> None:
        self.db.add_extras(self.run_id, pair.index, batch)

    def copied_version(self, pair: PairRuntime, key: str) -> str | None:
        return self.db.copied_version(self.run_id, pair.index, key)

    def finish(self) -> int:
        """Close the planning pass; returns how many earlier jobs are no longer needed."""
        return self.db.finish_plan(self.run_id, self.generation)

    def _upsert(self, planned: list[PlannedCopy]) -> UpsertCounts:
        counts = self.db.upsert_jobs(
            self.run_id,
            self.generation,
            planned,
            max_attempts=self.max_attempts,
            listed_since=self.listed_since,
        )
        self.stats.add_work(counts.new + counts.reopened, counts.queued_bytes)
        return counts


def _look(pair: PairRuntime, copy: PlannedCopy) -> PlannedCopy:
    """A finished copy the listing lacks: a store that still answers for its name keeps it
    under another one; one that does not lost it (deleted since)."""
    if answers_for(pair.dst_store, copy.dst_key):
        return dataclasses.replace(copy, unstorable=renamed_reason())
    return dataclasses.replace(copy, looked=True)


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
        PropertyUpdater(checker, copy_tags=t.copy_tags, storage_class=t.storage_class)
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
        )
        for pair in pairs:
            counts = plan_pair(
                pair,
                ignore,
                sink,
                stats=stats,
                should_stop=stop.is_set,
                listing_threads=t.listing_threads,
                compare=t.planning_compare,
                filters=filters,
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
