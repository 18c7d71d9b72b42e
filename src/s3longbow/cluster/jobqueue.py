"""The JobQueue port over a message source (SQS for `longbow worker`, one event's records for
Lambda) and the DynamoDB job table, so the single-machine `Worker` runs cluster jobs unchanged.

A message may carry many jobs. It is settled only when every job in it has settled:

- all jobs final (done, failed, skipped) and recorded: the message is deleted;
- a job given back (transient failure, shutdown): the message becomes visible again after the
  longest delay asked for (exponential backoff per delivery; 0 on shutdown); on its last
  allowed delivery the failure is recorded as failed, and the queue's redrive policy moves the
  message to the dead-letter queue;
- the message had problems (a record that matches no pair, a malformed entry): once its good
  jobs are settled it is moved to the dead-letter queue with the reason, which is also recorded
  in the job table.

While any of its jobs waits or runs, the message's visibility is extended on every heartbeat.
Messages come from a `MessageSource` (defined in `sources`, with the SQS and Lambda ones);
removal events are applied by `removals`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from s3longbow.cluster.config import ClusterSettings
from s3longbow.errors import LongbowError, PermanentError
from s3longbow.model import Job, JobId, JobResult, JobState
from s3longbow.plan.filters import Filters
from s3longbow.plan.ignore import IgnoreRules
from s3longbow.plan.inventory import snapshot_name
from s3longbow.verdicts import gone_reason

from .dynamodb import JobTable, persist
from .fanout import EventFanout, ObjectRecords
from .inbound import Shape, parse_message
from .jobitems import ClaimOutcome, ItemKind, JobItem
from .ledger import TableLedger
from .messages import JobSpec, Route
from .metrics import ClusterCounters, job_fields, object_fields
from .removals import apply_removal
from .sources import BatchSource, MessageSource, SqsSource
from .sqs import Received
from .stores import Copiers

log = logging.getLogger(__name__)

_BODY_EXCERPT = 1000


@dataclass(eq=False)
class _Held:
    """A received message and how far its jobs are."""

    message: Received
    pending: int = 0  # jobs waiting or running
    delay: float | None = None  # set when the message must come back
    problems: list[str] = field(default_factory=list)
    dead_letter: str | None = None  # a last failure to move aside ourselves (no redrive)
    lost: bool = False  # another delivery owns a job of it now
    settled: bool = False
    # Job id -> why it cannot be copied, learned before its claim (the source's answer to
    # the HEAD that completes a job without an ETag), and the state the claimed job is
    # recorded in: failed, or skipped for a source gone since the report that listed it.
    doomed: dict[JobId, tuple[str, JobState]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(eq=False)
class _Running:
    held: _Held
    spec: JobSpec
    job: Job | None = None
    lease_until: float = 0.0


class ClusterJobQueue(TableLedger):
    """The JobQueue port (and UploadLedger) of a cluster worker.

    Args:
        source: Where messages come from.
        table: The job table.
        copiers: Copiers and stores, by bucket pair.
        routes: The configured pairs, for S3 events.
        ignore: Ignore patterns for S3 events.
        filters: Filters for S3 events (their ages measured when each arrives).
        cluster: Cluster settings (visibility, retry backoff, delete_removed).
        worker_id: This worker's name in the job table.
        stop: Set to stop taking messages.
        counters: Message and job counters.
        max_receive_count: Deliveries before the queue's redrive policy moves a message to
            the dead-letter queue; None when the queue has none (a message's last delivery
            then moves it aside here).
        fanout: Fans out the giant objects of S3 events (None: events are copied whole).
    """

    def __init__(
        self,
        source: MessageSource,
        table: JobTable,
        copiers: Copiers,
        *,
        routes: Sequence[Route],
        ignore: IgnoreRules,
        filters: Filters | None = None,
        cluster: ClusterSettings,
        worker_id: str,
        stop: threading.Event,
        counters: ClusterCounters,
        max_receive_count: int | None,
        claim_threads: int = 8,
        fanout: EventFanout | None = None,
    ) -> None:
        self.source = source
        self.table = table
        self.copiers = copiers
        self.routes = tuple(routes)
        self.ignore = ignore
        self.filters = filters
        self.cluster = cluster
        self.worker_id = worker_id
        self.stop = stop
        self.counters = counters
        self.redrive = max_receive_count is not None
        self.max_receive_count = max_receive_count or cluster.max_receive_count
        self.visibility = cluster.visibility_timeout
        self.heartbeat_interval = cluster.visibility_timeout / 3
        # Messages left in the queue go to whichever worker is free first.
        self.claim_ahead = 0
        self._lock = threading.Lock()
        self._ended = threading.Condition(self._lock)
        self._held: dict[str, _Held] = {}
        self._waiting: deque[tuple[_Held, JobSpec]] = deque()
        self._running: dict[JobId, _Running] = {}
        self._claims = 0
        self._pool = ThreadPoolExecutor(claim_threads, thread_name_prefix="claim")
        self.fanout = fanout
        self.objects = ObjectRecords(table)  # where the ranges of giant objects meet
        copiers.use_ledger(self, shared=self.objects)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # -- JobQueue: claiming -----------------------------------------------------------------

    def claim(self, limit: int) -> list[Job]:
        if self.stop.is_set():
            return []
        batch = self._take(limit)
        if not batch:
            try:
                messages = self.source.receive(limit)
            except LongbowError as exc:
                log.warning("could not receive messages: %s", exc)
                self.stop.wait(1.0)
                return []
            for message in messages:
                try:
                    self._accept(message)
                except Exception:  # a bug must not stop the worker: the message comes back
                    log.exception("could not take message %s", message.message_id)
                    self._settle(_Held(message, delay=self._backoff(_Held(message))))
            batch = self._take(limit)
        if not batch:
            return []
        try:
            items = self.table.get_many(spec.id for _, spec in batch)
        except LongbowError as exc:
            log.warning("could not read %d job(s): %s; their messages come back", len(batch), exc)
            for held, _ in batch:
                self._give_back(held, None, self._backoff(held))
            return []
        futures = [
            self._pool.submit(self._claim_one, held, spec, items.get(spec.id))
            for held, spec in batch
        ]
        return [job for f in futures if (job := f.result()) is not None]

    def _take(self, limit: int) -> list[tuple[_Held, JobSpec]]:
        with self._lock:
            return [self._waiting.popleft() for _ in range(min(limit, len(self._waiting)))]

    def _claim_one(self, held: _Held, spec: JobSpec, item: JobItem | None) -> Job | None:
        with self._lock:
            if spec.id in self._running:
                duplicate = True
            else:
                duplicate = False
                self._running[spec.id] = _Running(held, spec)
                self._claims += 1
                owner = f"{self.worker_id}:{self._claims}"
        if duplicate:
            # The same object twice in this worker's messages: the running one covers both.
            self.counters.add(jobs_duplicate=1)
            self._settled(held, None)
            return None
        try:
            pair = self.copiers.index(spec.src_bucket, spec.dst_bucket, inventory=spec.inventory)
            outcome, item = self.table.claim(
                spec,
                item,
                message_id=held.message.message_id,
                owner=owner,
                worker=self.worker_id,
                lease_seconds=self.visibility,
            )
        except Exception as exc:  # noqa: BLE001 - the message comes back; nothing is lost
            if not isinstance(exc, LongbowError):
                log.exception("claiming %s failed", spec.src_key)
            else:
                log.warning("could not claim %s: %s; its message comes back", spec.src_key, exc)
            self.counters.add(errors=1)
            if held.message.receive_count >= self.max_receive_count:
                # The queue moves the message aside next: say why where status shows it.
                self._record_problem(held, f"{spec.src_key}: {exc}")
            self._give_back(held, spec.id, self._backoff(held))
            return None
        if outcome is not ClaimOutcome.RUN or item is None:
            log.info(
                "%s: %s",
                spec.src_key,
                "already copied" if outcome is ClaimOutcome.DONE_ALREADY else "running elsewhere",
                extra={
                    "fields": {
                        "event": "duplicate",
                        "outcome": outcome.value,
                        **object_fields(spec),
                    }
                },
            )
            self.counters.add(jobs_duplicate=1)
            with self._lock:
                self._running.pop(spec.id, None)
            self._settled(held, None)
            return None
        job = item.as_job(pair=pair, owner=owner)
        with self._lock:
            running = self._running[spec.id]
            running.job = job
            running.lease_until = item.lease_until or 0.0
        doomed = held.doomed.get(spec.id)
        if doomed is not None:
            self._fail_claimed(job, *doomed)
            return None
        if spec.part_range is not None:
            try:  # a range runs while its object is open: pending or in progress
                closed = self.objects.start_range(spec, self.visibility)
            except LongbowError as exc:
                log.warning("could not start %s: %s; its message comes back", spec.src_key, exc)
                self._give_back(held, spec.id, self._backoff(held))
                return None
            if closed is not None:
                self._fail_claimed(job, closed, JobState.SKIPPED)
                return None
        return job

    def _fail_claimed(self, job: Job, reason: str, state: JobState = JobState.FAILED) -> None:
        """End a claimed job that cannot be copied as the worker ends one whose copy met the
        same answer: failed (or skipped) with the reason, then its message is settled."""
        stats = self.copiers.stats
        stats.started()
        log.warning("%s: %s: %s", job.src_key, state.value, reason)
        self.finish(job, state, reason, None)
        size = job.size if job.part_range is None else 0
        stats.finished(size, ok=False, progressed=0, skipped=state is JobState.SKIPPED)

    # -- accepting messages -----------------------------------------------------------------

    def _accept(self, message: Received) -> None:
        self.counters.add(messages_received=1)
        inbound = parse_message(message.body, self.routes, self.ignore, self.filters)
        held = _Held(message, problems=list(inbound.problems))
        if inbound.ignored:
            self.counters.add(events_ignored=inbound.ignored)
        if inbound.shape is Shape.MALFORMED:
            self._poison(held, inbound.reason)
            return
        if inbound.shape is Shape.TEST_EVENT:
            log.info("S3 test event %s deleted", message.message_id)
            self.counters.add(test_events=1)
            self._settle(held)
            return
        if inbound.problems:
            self._record_problem(held, inbound.reason)
        for removal in inbound.removals:
            applied = apply_removal(
                removal,
                message_id=message.message_id,
                table=self.table,
                stores=self.copiers.stores,
                delete_removed=self.cluster.delete_removed,
                counters=self.counters,
            )
            if not applied:  # it comes back with the message
                held.delay = max(held.delay or 0.0, self._backoff(held))
        specs = [s for s in (self._complete(held, spec) for spec in inbound.jobs) if s]
        if self.fanout is not None:
            specs = [s for s in specs if not self._spread(held, s)]
        held.pending = len(specs)
        if not specs:
            self._settle(held)
            return
        with self._lock:
            self._held[message.message_id] = held
            self._waiting.extend((held, spec) for spec in specs)

    def _spread(self, held: _Held, spec: JobSpec) -> bool:
        """Fan out a giant object an event announced; True when its ranges are queued (or
        it already was), or when it comes back with the event (queueing them failed)."""
        if self.fanout is None or spec.origin != "event" or spec.id in held.doomed:
            return False
        try:
            return self.fanout.spread(spec, held.message.message_id)
        except LongbowError as exc:
            log.warning("could not fan out %s: %s; the event comes back", spec.src_key, exc)
            held.delay = max(held.delay or 0.0, self._backoff(held))
            return True

    def _poison(self, held: _Held, reason: str) -> None:
        """A message nothing can be done with: record it, move it to the dead-letter queue."""
        self._record_problem(held, reason)
        self.counters.add(errors=1)
        self._settle(held)

    def _record_problem(self, held: _Held, reason: str) -> None:
        message = held.message
        log.warning(
            "message %s goes to the dead-letter queue: %s",
            message.message_id,
            reason,
            extra={"fields": {"event": "poison", "message_id": message.message_id}},
        )
        try:
            self.table.record(
                "msg-" + message.message_id,
                ItemKind.MESSAGE,
                JobState.FAILED,
                reason,
                message_id=message.message_id,
                receive_count=message.receive_count,
                body=message.body[:_BODY_EXCERPT],
                worker=self.worker_id,
            )
        except LongbowError as exc:
            log.warning("could not record message %s: %s", message.message_id, exc)

    def _complete(self, held: _Held, spec: JobSpec) -> JobSpec | None:
        """A job whose message did not say the object's size or ETag (an event, or a job
        message without "etag"): ask the source.

        A source that is gone or refuses the HEAD for good does not end the job here: the
        job is claimed and recorded failed with the reason, exactly as when its message
        named an ETag and the copy met the same answer, and only then is the message
        deleted. None means the source could not be asked now: the message comes back.
        """
        if spec.size is not None and spec.etag is not None:
            return spec
        try:
            store = self.copiers.stores.source(spec.src_bucket)
            info = store.head(spec.src_key)
        except PermanentError as exc:
            held.doomed[spec.id] = (str(exc), JobState.FAILED)
            return spec
        except LongbowError as exc:
            log.warning("could not read %s: %s; the message comes back", spec.src_key, exc)
            if held.message.receive_count >= self.max_receive_count:
                # The queue moves the message aside next: say why where status shows it.
                self._record_problem(held, f"{spec.src_key}: {exc}")
            held.delay = max(held.delay or 0.0, self._backoff(held))
            return None
        if info is None:
            # The copier's words for the same answer, so both cases read alike in status: a
            # job from an inventory report (which may lack the ETag column) is skipped, its
            # source deleted since the report.
            where = store.describe(spec.src_key)
            held.doomed[spec.id] = (
                (gone_reason(snapshot_name(spec.inventory), where), JobState.SKIPPED)
                if spec.inventory is not None
                else (f"{where}: the source object no longer exists", JobState.FAILED)
            )
            return spec
        return replace(
            spec,
            size=info.size,
            etag=info.etag,
            version_id=spec.version_id or info.version_id,
            last_modified=info.last_modified or spec.last_modified,
        )

    # -- JobQueue: outcomes -----------------------------------------------------------------

    def finish(
        self, job: Job, state: JobState, reason: str | None, result: JobResult | None
    ) -> bool:
        running = self._running_of(job)
        try:
            ok = persist(lambda: self.table.finish(job, state, reason, result))
        except LongbowError as exc:
            log.error(
                "could not record the end of %s: %s; its message comes back", job.src_key, exc
            )
            self._give_back(running.held, job.id, self._backoff(running.held))
            return False
        if not ok:
            log.warning("%s: another delivery took the job over; result not recorded", job.src_key)
            running.held.lost = True
        else:
            if state is JobState.FAILED:
                self.counters.add(jobs_failed=1)
            log.info(
                "%s: %s",
                job.src_key,
                state.value if reason is None else f"{state.value}: {reason}",
                extra={"fields": job_fields(running.spec, job, state, result, self.worker_id)},
            )
        self._settled(running.held, job.id)
        return ok

    def flush(self) -> None:
        """Nothing waits: finish writes each outcome before it acknowledges the message."""

    def retry_later(self, job: Job, delay: float, reason: str, *, counted: bool = True) -> bool:
        running = self._running_of(job)
        held = running.held
        last = counted and held.message.receive_count >= self.max_receive_count
        if last:
            reason = (
                f"{reason} (delivery {held.message.receive_count} of {self.max_receive_count}; "
                "the message goes to the dead-letter queue)"
            )
        try:
            ok = persist(lambda: self.table.release(job, reason, counted=counted, failed=last))
        except LongbowError as exc:
            log.error("could not record %s as given back: %s", job.src_key, exc)
            ok = False
        if last and job.part_range is not None:  # the object cannot be completed now
            try:
                dst = self.copiers.stores.destination(running.spec.dst_bucket)
                self.objects.close(job, reason, dst)
            except LongbowError as exc:
                log.warning("could not fail %s: %s", job.src_key, exc)
        if counted:
            self.counters.add(attempts_failed=1, jobs_failed=int(last))
            log.warning(
                "%s: %s",
                job.src_key,
                reason,
                extra={
                    "fields": job_fields(
                        running.spec,
                        job,
                        JobState.FAILED if last else JobState.PENDING,
                        None,
                        self.worker_id,
                    )
                },
            )
        if ok or not counted:
            wait = max(delay, self._backoff(held)) if counted else delay
            self._give_back(
                held, job.id, wait, dead_letter=reason if last and not self.redrive else None
            )
        else:
            held.lost = True
            self._settled(held, job.id)
        return ok

    def _give_back(
        self, held: _Held, job_id: JobId | None, delay: float, *, dead_letter: str | None = None
    ) -> None:
        with held.lock:
            if dead_letter:
                held.dead_letter = dead_letter
            else:
                held.delay = max(held.delay or 0.0, delay)
        self._settled(held, job_id)

    def _settled(self, held: _Held, job_id: JobId | None) -> None:
        with self._lock:
            if job_id is not None:
                running = self._running.get(job_id)
                if running is not None and running.held is held:
                    del self._running[job_id]
            held.pending -= 1
            done = held.pending <= 0
            self._ended.notify_all()
        if done:
            self._settle(held)

    def _settle(self, held: _Held) -> None:
        with held.lock:
            if held.settled:
                return
            held.settled = True
        message = held.message
        with self._lock:
            self._held.pop(message.message_id, None)
        try:
            if held.delay is not None:
                self.source.release(message, held.delay)
                self.counters.add(messages_released=1)
            elif held.lost:
                pass  # the delivery that took a job over settles the message
            elif held.problems or held.dead_letter:
                reason = "; ".join(
                    [*held.problems, *([held.dead_letter] if held.dead_letter else [])]
                )
                self.source.move_aside(message, reason[:1000])
                self.counters.add(messages_moved_aside=1)
            else:
                self.source.delete(message)
                self.counters.add(messages_deleted=1)
        except LongbowError as exc:
            log.warning("could not settle message %s: %s; it comes back", message.message_id, exc)

    def _running_of(self, job: Job) -> _Running:
        with self._lock:
            return self._running[job.id]

    def _backoff(self, held: _Held) -> float:
        """Exponential per delivery, with jitter: base, 2 x base, 4 x base, ... up to the cap."""
        count = max(1, held.message.receive_count)
        delay = min(
            self.cluster.retry_max_seconds, self.cluster.retry_base_seconds * 2.0 ** (count - 1)
        )
        return delay * random.uniform(0.5, 1.0)

    # -- JobQueue: heartbeat and waiting ----------------------------------------------------

    def heartbeat(self, jobs: Sequence[Job]) -> None:
        """Extend every held message; renew the table lease of jobs whose lease runs low."""
        with self._lock:
            helds = list(self._held.values())
            running = [r for r in self._running.values() if r.job is not None]
        for held in helds:
            with held.lock:
                if held.settled:
                    continue
                try:
                    if not self.source.extend(held.message, self.visibility):
                        log.warning("message %s is no longer ours", held.message.message_id)
                except LongbowError as exc:
                    log.warning("could not extend message %s: %s", held.message.message_id, exc)
        now = time.time()
        for r in running:
            if r.job is not None and r.lease_until - now < self.visibility / 2:
                try:
                    if self.table.extend_lease(r.job, now + self.visibility):
                        r.lease_until = now + self.visibility
                    if r.job.part_range is not None:
                        self.objects.extend(r.job, now + self.visibility)
                except LongbowError as exc:
                    log.warning("could not extend the lease of %s: %s", r.job.src_key, exc)

    def wait_for_work(self, timeout: float) -> bool:
        with self._lock:
            if self._waiting or self.stop.is_set():
                return True
            busy = bool(self._held)
            if busy:
                self._ended.wait(timeout)
                return True
        try:
            return not self.source.exhausted()
        except LongbowError as exc:
            log.warning("could not read the queue's depth: %s", exc)
            return True

    def job_ended(self) -> None:
        with self._lock:
            self._ended.notify_all()

    def release_all(self) -> None:
        """Give back every message still held (shutdown): visible again at once."""
        with self._lock:
            waiting = list(self._waiting)
            self._waiting.clear()
            helds = list(self._held.values())
        for held, _ in waiting:
            with self._lock:
                held.pending -= 1
        for held in helds:
            with held.lock:
                if held.delay is None:
                    held.delay = 0.0
            self._settle(held)

    @property
    def held_messages(self) -> int:
        with self._lock:
            return len(self._held)


__all__ = ["BatchSource", "ClusterJobQueue", "MessageSource", "SqsSource"]
