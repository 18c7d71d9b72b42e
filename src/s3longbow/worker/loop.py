"""Claim → heartbeat → execute → record loop, over any job queue (SQLite, or SQS + DynamoDB).

A dispatcher thread claims jobs (with a lease) as job threads free up, or a batch ahead of
them where the queue makes claims cheap; a heartbeat thread extends the leases of jobs claimed
and not yet ended; each job thread runs the transfer and hands the final state to the queue
before it takes the next job. The queue may write states in batches, but a job stays leased
until its state is written, so it is never released before its outcome is durable.

How many jobs run at once is the concurrency controller's (:mod:`concurrency`): once a
second it weighs the work done against the objects in flight and sets the next number; job
threads are started as the number grows, and left idle when it shrinks.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from s3longbow.config import TransferSettings
from s3longbow.errors import (
    ArchivedError,
    FatalError,
    NotReplacedError,
    PermanentError,
    SourceGoneError,
    TransientError,
)
from s3longbow.jobs.base import JobQueue
from s3longbow.meter import RequestMeter
from s3longbow.model import Job, JobId, JobResult, JobState
from s3longbow.progress.stats import Stats
from s3longbow.retry import backoff_delay
from s3longbow.transfer.engine import Attempt, Copier, Interrupted
from s3longbow.worker.concurrency import Controller, controller_for, work_done
from s3longbow.worker.lane import Finished, Lane

log = logging.getLogger(__name__)


@dataclass
class WorkerOutcome:
    """How the worker pool ended."""

    fatal: FatalError | None = None
    interrupted: bool = False


class Worker:
    """Runs jobs from a queue until the queue says no more will come, or it is stopped.

    Args:
        jobs: The job queue (with its job table and upload ledger).
        copier_for: The copier that moves a given job's object.
        settings: Transfer settings (workers, attempts).
        stats: Progress counters.
        stop: Set to stop claiming and release jobs in flight.
        controller: Sets how many jobs run at once (by default: up to the settings'
            workers, tuned unless they say not to).
        meter: What the stores' requests measure, which the controller weighs.
        lane: Small objects that fit run on one thread's non-blocking loop (see
            :mod:`s3longbow.worker.lane`) rather than a job thread each.
    """

    def __init__(
        self,
        jobs: JobQueue,
        copier_for: Callable[[Job], Copier],
        settings: TransferSettings,
        stats: Stats,
        stop: threading.Event,
        *,
        controller: Controller | None = None,
        meter: RequestMeter | None = None,
        lane: bool = True,
    ) -> None:
        self.job_queue = jobs
        self.copier_for = copier_for
        self.settings = settings
        self.stats = stats
        self.stop = stop
        self.controller = controller or controller_for(settings)
        self.meter = meter
        self.outcome = WorkerOutcome()
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        # Copies the lane finished, for the recorder thread to record.
        self._finished: queue.Queue[Finished | None] = queue.Queue()
        # Jobs running now (on job threads and on the lane): at most the controller's limit.
        self._running = 0
        self._refusals: dict[JobId, Exception] = {}  # the source refused the lane's read
        self._lane_wanted = lane
        self._lane: Lane | None = None  # started by run()
        self._held: dict[JobId, Job] = {}  # claimed and not yet ended: queued or running
        self._held_lock = threading.Lock()
        self._room = threading.Condition(self._held_lock)  # notified when a job ends
        # A queue whose claims are cheap to lease ahead (claim_ahead > 0) is claimed in
        # batches (as many as run at once, at most claim_ahead), each claimed once the jobs
        # leased ahead have all started (a claim takes well under a job's time): one claim
        # per batch, not one per job.
        self._ahead = max(0, jobs.claim_ahead)
        # Job threads are made as queued jobs need them, up to the limit: a run whose objects
        # all go to the lane makes none (making 64 and ending them cost ~12 ms of CPU).
        self._threads: list[threading.Thread] = []
        self._staffing = threading.Lock()
        self._most_threads = self.controller.limit
        self._idle = 0  # job threads waiting for a job
        self._queued = 0  # jobs put for the job threads and not yet taken
        self._done = threading.Event()
        self._set_capacity(self.controller.limit)

    def _set_capacity(self, limit: int) -> None:
        """Run `limit` jobs at once (called with or without the lock: one assignment each)."""
        ahead = min(self._ahead, limit)
        self._batch = max(1, ahead)
        self._capacity = limit + ahead
        self.stats.set_concurrency(limit)

    def run(self) -> WorkerOutcome:
        """Execute jobs until the run's queue is drained; returns how it ended."""
        recorder = threading.Thread(target=self._recorder, name="recorder", daemon=True)
        if self._lane_wanted:
            self._lane = Lane(self._finished.put, self._handed_back)
            recorder.start()
        heartbeat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        heartbeat.start()
        tuner = threading.Thread(target=self._tune, name="tuner", daemon=True)
        if self.controller.tuned:
            tuner.start()
        try:
            self._dispatch()
        finally:
            self._done.set()
            if tuner.is_alive():
                tuner.join()
            if self._lane is not None:
                self._lane.close()  # what it still holds goes to the job threads first
                self._finished.put(None)
                recorder.join()
            for _ in self._threads:
                self._jobs.put(None)
            for t in self._threads:
                t.join()
            self.job_queue.flush()
        self.outcome.interrupted = self.stop.is_set() and self.outcome.fatal is None
        return self.outcome

    def _to_threads(self, job: Job) -> None:
        """Queue a job for the job threads, starting one if none is free to take it."""
        with self._staffing:
            self._queued += 1
            self._staff()
        self._jobs.put(job)

    def _allow_threads(self, limit: int) -> None:
        """Job threads may be made up to `limit` (never fewer than made so far)."""
        with self._staffing:
            self._most_threads = max(self._most_threads, limit)
            self._staff()

    def _staff(self) -> None:
        # Called with _staffing held: a thread for every queued job no idle thread will take.
        while self._queued > self._idle and len(self._threads) < self._most_threads:
            thread = threading.Thread(
                target=self._job_thread, name=f"job-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            self._idle += 1
            thread.start()

    # -- concurrency ------------------------------------------------------------------------

    def _tune(self) -> None:
        """Once an interval: weigh the work done, set how many jobs run at once."""
        moved = self.stats.snapshot().bytes_sent
        since = time.monotonic()
        while not self._done.wait(self.controller.interval):
            snapshot = self.stats.snapshot()
            reading = self.meter.take() if self.meter is not None else None
            now = time.monotonic()
            requests = reading.requests if reading is not None else 0
            throttled = reading.throttled if reading is not None else 0
            # Per second: a wait that overran its interval is not more work.
            work = work_done(requests, snapshot.bytes_sent - moved) / max(now - since, 1e-3)
            moved, since = snapshot.bytes_sent, now
            # Most requests waited for their key prefix's rate: the cap is the ceiling now.
            capped = reading is not None and reading.paced * 2 > max(reading.requests, 1)
            queueing = reading.queueing if reading is not None else 0.0
            limit = self.controller.step(
                work,
                throttled=throttled,
                busy=snapshot.in_flight,
                capped=capped,
                queueing=queueing,
            )
            log.debug(
                "concurrency: %d in flight, work %.0f/s, reply wait %.0f ms (x%.1f the "
                "quickest), %d throttled, %d paced -> %d",
                snapshot.in_flight,
                work,
                (reading.latency if reading is not None else 0.0) * 1000,
                queueing,
                throttled,
                reading.paced if reading is not None else 0,
                limit,
            )
            self._allow_threads(limit)
            with self._room:
                self._set_capacity(limit)
                self._room.notify_all()

    # -- dispatcher -------------------------------------------------------------------------

    def _dispatch(self) -> None:
        while not self.stop.is_set():
            room = self._wait_for_room()
            if not room:
                continue
            jobs = self.job_queue.claim(room)
            if jobs:
                with self._held_lock:
                    for job in jobs:
                        self._held[job.id] = job
                for job in jobs:
                    if not self._to_lane(job):
                        self._to_threads(job)
                continue
            # Sleep until new jobs are queued, a delayed retry comes due, or a job ends.
            if not self.job_queue.wait_for_work(0.5):
                return

    def _to_lane(self, job: Job) -> bool:
        """Start the job on the lane if it fits there (once fewer jobs than the limit run)."""
        lane = self._lane
        if lane is None or self.stop.is_set():
            return False
        try:
            copier = self.copier_for(job)
            planned = lane.plan(job, copier) if copier is not None else None
            if planned is None or not self._admit():
                return False
            if lane.start(job, planned):
                return True
            self._leave()
        except Exception:  # a fault of the lane's must not lose the job: a thread runs it
            log.exception("%s: could not start on the small-object lane", job.src_key)
        return False

    def _admit(self) -> bool:
        """Wait until fewer jobs than the limit run, and count one more; False if the run
        stops meanwhile."""
        with self._room:
            while self._running >= self.controller.limit:
                if self.stop.is_set():
                    return False
                self._room.wait(0.2)
            self._running += 1
        return True

    def _leave(self) -> None:
        """A running job ended (or went back to wait)."""
        with self._room:
            self._running -= 1
            self._room.notify_all()

    def _handed_back(self, job: Job, refused: Exception | None) -> None:
        """The lane could not finish the job: a job thread runs it (taking the source's
        refusal of the lane's read as its own, where that is why)."""
        if refused is not None:
            with self._held_lock:
                self._refusals[job.id] = refused
        self._leave()
        self._to_threads(job)

    def _recorder(self) -> None:
        """Record the copies the lane finished (off the lane's thread: it never waits)."""
        while True:
            item = self._finished.get()
            if item is None:
                return
            job = item.job
            try:
                self._record(job, item.result, Attempt(progressed=job.size))
            except Exception:  # the job stays leased: a later claim runs it again
                log.exception("%s: could not record the lane's copy", job.src_key)
            finally:
                self._leave()
                self._job_ended(job)

    def _wait_for_room(self) -> int:
        """How many jobs to claim now: 0 after a short wait without room (to look at stop).

        Claims wait for a free job thread, or, on a queue that leases ahead, for room for a
        whole batch, so that no job waits long in the local queue with its lease running."""
        with self._room:
            if self._room_for_claim():
                return self._capacity - len(self._held)
            self._room.wait(0.2)
        return 0

    def _room_for_claim(self) -> bool:
        # Called with the lock held: room for a whole batch (without leasing ahead, a batch is
        # one job: a job thread has nothing to do).
        return len(self._held) <= self._capacity - self._batch

    # -- job threads ------------------------------------------------------------------------

    def _job_thread(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            with self._staffing:
                self._idle -= 1
                self._queued -= 1
            try:
                if self.stop.is_set() or not self._admit():
                    # Claimed ahead, never started: give it back as is.
                    self.job_queue.retry_later(job, 0, "interrupted", counted=False)
                else:
                    try:
                        self.stats.started()
                        self._execute(job)
                    finally:
                        self._leave()
            finally:
                self._job_ended(job)
                with self._staffing:
                    self._idle += 1

    def _job_ended(self, job: Job) -> None:
        with self._room:
            self._held.pop(job.id, None)
            if self._room_for_claim():
                self._room.notify_all()
        self.job_queue.job_ended()

    def _execute(self, job: Job) -> None:
        copier = self.copier_for(job)
        with self._held_lock:
            attempt = Attempt(refused=self._refusals.pop(job.id, None))
        try:
            result = copier.copy(job, attempt)
        except Interrupted:
            self.job_queue.retry_later(job, 0, "interrupted", counted=False)
            self.stats.released(attempt.progressed)
            return
        except TransientError as exc:
            self._failed_attempt(job, str(exc), attempt, copier)
            return
        except SourceGoneError as exc:
            # Listed by a past snapshot and deleted since: nothing is left to copy.
            self._not_copied(job, JobState.SKIPPED, str(exc), attempt, copier)
            return
        except NotReplacedError as exc:
            # --no-overwrite: the key appeared at the destination meanwhile; it stays as is.
            self._abandon_upload(job, copier)
            log.info("%s: skipped: %s", job.src_key, exc)
            self.job_queue.finish(job, JobState.SKIPPED, str(exc), None)
            self.stats.finished(job.size, ok=False, progressed=attempt.progressed, skipped=True)
            self.stats.add_not_replaced()
            return
        except ArchivedError as exc:
            # Not a failure: recorded as archived (with its restore, if one was asked for),
            # and copied by a later run once it can be read.
            self._not_copied(job, JobState.ARCHIVED, str(exc), attempt, copier)
            return
        except PermanentError as exc:
            self._abandon_upload(job, copier)
            self._final(job, JobState.FAILED, str(exc), attempt)
            return
        except FatalError as exc:
            # Every job would fail the same way: stop the run, keep this job for the next one.
            if self.outcome.fatal is None:
                self.outcome.fatal = exc
            self.stop.set()
            self.job_queue.retry_later(job, 0, str(exc), counted=False)
            self.stats.released(attempt.progressed)
            return
        except Exception as exc:  # a bug must still leave the job with a reason
            log.exception("unexpected error copying %s", job.src_key)
            self._final(job, JobState.FAILED, f"internal error: {exc!r}", attempt)
            return
        self._record(job, result, attempt)

    def _record(self, job: Job, result: JobResult, attempt: Attempt) -> None:
        """A copy is done: its job's outcome goes to the queue."""
        if self.job_queue.finish(job, JobState.DONE, None, result):
            self.stats.finished(_counted(job, attempt), ok=True, progressed=attempt.progressed)
        else:
            log.warning("%s: lease lost before the result was recorded", job.src_key)
            self.stats.released(attempt.progressed)

    def _not_copied(
        self, job: Job, state: JobState, reason: str, attempt: Attempt, copier: Copier
    ) -> None:
        """A job that ends without a copy and without a failure (skipped, archived)."""
        self._abandon_upload(job, copier)
        log.info("%s: %s: %s", job.src_key, state.value, reason)
        self.job_queue.finish(job, state, reason, None)
        archived = state is JobState.ARCHIVED
        self.stats.finished(
            job.size,
            ok=False,
            progressed=attempt.progressed,
            skipped=not archived,
            archived=archived,
        )

    def _failed_attempt(self, job: Job, reason: str, attempt: Attempt, copier: Copier) -> None:
        attempts = job.attempts + 1
        if attempts >= self.settings.max_attempts:
            self._abandon_upload(job, copier)
            self._final(job, JobState.FAILED, f"{reason} (after {attempts} attempts)", attempt)
            return
        delay = backoff_delay(attempts, base=1.0, cap=30.0)
        log.info(
            "%s: attempt %d failed (%s); retrying in %.1fs", job.src_key, attempts, reason, delay
        )
        self.job_queue.retry_later(job, delay, reason)
        self.stats.released(attempt.progressed)

    def _final(self, job: Job, state: JobState, reason: str, attempt: Attempt) -> None:
        log.warning("%s: %s: %s", job.src_key, state.value, reason)
        self.job_queue.finish(job, state, reason, None)
        self.stats.finished(_counted(job, attempt), ok=False, progressed=attempt.progressed)

    def _abandon_upload(self, job: Job, copier: Copier) -> None:
        # An upload that cannot be finished would cost storage forever: abort it.
        if not job.upload_id:
            return
        try:
            copier.dst.abort_upload(job.dst_key, job.upload_id)
            self.job_queue.set_upload(job, None, None, None)
        except Exception as exc:  # noqa: BLE001 - best effort; the failure is already recorded
            log.warning("%s: could not abort upload %s: %s", job.dst_key, job.upload_id, exc)

    # -- heartbeat --------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        interval = max(1.0, self.job_queue.heartbeat_interval)
        while True:
            time.sleep(interval)
            with self._held_lock:
                held = list(self._held.values())
            try:
                self.job_queue.heartbeat(held)
            except Exception as exc:  # noqa: BLE001 - keep beating; the next try may work
                log.warning("could not extend leases: %s", exc)


def _counted(job: Job, attempt: Attempt) -> int:
    """The bytes a finished job accounts for: its object's, or for a range of a fanned-out
    object's parts, what the range moved (the other ranges account for the rest)."""
    return job.size if job.part_range is None else attempt.progressed
