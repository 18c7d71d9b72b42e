"""Claim → heartbeat → execute → record loop over the embedded job database.

A dispatcher thread claims jobs (with a lease) as job threads free up; a heartbeat thread
extends the leases of jobs in flight; each job thread runs the transfer and writes the final
state before it takes the next job, so a job is never released before its outcome is durable.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from s3longbow.config import TransferSettings
from s3longbow.errors import FatalError, PermanentError, TransientError
from s3longbow.jobs.sqlite import JobDatabase
from s3longbow.model import Job, JobState
from s3longbow.progress.stats import Stats
from s3longbow.transfer.engine import Attempt, Copier, Interrupted
from s3longbow.transfer.retry import backoff_delay

log = logging.getLogger(__name__)


@dataclass
class WorkerOutcome:
    """How the worker pool ended."""

    fatal: FatalError | None = None
    interrupted: bool = False


class Worker:
    """Runs the jobs of one run until none are left (and planning is over) or it is stopped.

    Args:
        db: The job database (queue and job table).
        run_id: The run whose jobs to execute.
        owner: This process's lease owner id.
        copiers: The copier of each pair, by pair index.
        settings: Transfer settings (workers, attempts, lease length).
        stats: Progress counters.
        stop: Set to stop claiming and release jobs in flight.
        planning_done: Set once planning has written every job.
        new_work: Set by the planner when it has written jobs.
    """

    def __init__(
        self,
        db: JobDatabase,
        run_id: int,
        owner: str,
        copiers: Mapping[int, Copier],
        settings: TransferSettings,
        stats: Stats,
        stop: threading.Event,
        planning_done: threading.Event,
        new_work: threading.Event,
    ) -> None:
        self.db = db
        self.run_id = run_id
        self.owner = owner
        self.copiers = copiers
        self.settings = settings
        self.stats = stats
        self.stop = stop
        self.planning_done = planning_done
        self.new_work = new_work
        self.outcome = WorkerOutcome()
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._held: dict[int, Job] = {}
        self._held_lock = threading.Lock()
        self._idle = threading.Semaphore(settings.workers)

    def run(self) -> WorkerOutcome:
        """Execute jobs until the run's queue is drained; returns how it ended."""
        threads = [
            threading.Thread(target=self._job_thread, name=f"job-{i}", daemon=True)
            for i in range(self.settings.workers)
        ]
        heartbeat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        for t in threads:
            t.start()
        heartbeat.start()
        try:
            self._dispatch()
        finally:
            for _ in threads:
                self._jobs.put(None)
            for t in threads:
                t.join()
        self.outcome.interrupted = self.stop.is_set() and self.outcome.fatal is None
        return self.outcome

    # -- dispatcher -------------------------------------------------------------------------

    def _dispatch(self) -> None:
        while not self.stop.is_set():
            # Wait for a free job thread before claiming, so no job sits leased in a queue.
            if not self._idle.acquire(timeout=0.2):
                continue
            self._idle.release()
            free = self._free_threads()
            jobs = self.db.claim(self.run_id, self.owner, free, self.settings.lease_seconds)
            if jobs:
                for job in jobs:
                    self._idle.acquire()
                    with self._held_lock:
                        self._held[job.id] = job
                    self.stats.started()
                    self._jobs.put(job)
                continue
            claimable, in_progress, wait_for = self.db.pending_work(self.run_id)
            if claimable:
                continue
            planning_over = self.planning_done.is_set()
            if planning_over and in_progress == 0 and wait_for is None:
                return
            # Sleep until new jobs are planned, a delayed retry comes due, or a job ends.
            timeout = 0.5 if wait_for is None else min(0.5, max(wait_for, 0.01))
            self.new_work.wait(timeout)
            self.new_work.clear()

    def _free_threads(self) -> int:
        with self._held_lock:
            return max(1, self.settings.workers - len(self._held))

    # -- job threads ------------------------------------------------------------------------

    def _job_thread(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                self._execute(job)
            finally:
                with self._held_lock:
                    self._held.pop(job.id, None)
                self._idle.release()
                self.new_work.set()

    def _execute(self, job: Job) -> None:
        copier = self.copiers[job.pair]
        attempt = Attempt()
        try:
            result = copier.copy(job, attempt)
        except Interrupted:
            self.db.retry_later(job, 0, "interrupted", counted=False)
            self.stats.released(attempt.progressed)
            return
        except TransientError as exc:
            self._failed_attempt(job, str(exc), attempt, copier)
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
            self.db.retry_later(job, 0, str(exc), counted=False)
            self.stats.released(attempt.progressed)
            return
        except Exception as exc:  # a bug must still leave the job with a reason
            log.exception("unexpected error copying %s", job.src_key)
            self._final(job, JobState.FAILED, f"internal error: {exc!r}", attempt)
            return
        if self.db.finish(job, JobState.DONE, None, result):
            self.stats.finished(job.size, ok=True, progressed=attempt.progressed)
        else:
            log.warning("%s: lease lost before the result was recorded", job.src_key)
            self.stats.released(attempt.progressed)

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
        self.db.retry_later(job, delay, reason)
        self.stats.released(attempt.progressed)

    def _final(self, job: Job, state: JobState, reason: str, attempt: Attempt) -> None:
        log.warning("%s: %s: %s", job.src_key, state.value, reason)
        self.db.finish(job, state, reason, None)
        self.stats.finished(job.size, ok=False, progressed=attempt.progressed)

    def _abandon_upload(self, job: Job, copier: Copier) -> None:
        # An upload that cannot be finished would cost storage forever: abort it.
        if not job.upload_id:
            return
        try:
            copier.dst.abort_upload(job.dst_key, job.upload_id)
            self.db.set_upload(job, None, None, None)
        except Exception as exc:  # noqa: BLE001 - best effort; the failure is already recorded
            log.warning("%s: could not abort upload %s: %s", job.dst_key, job.upload_id, exc)

    # -- heartbeat --------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        interval = max(1.0, self.settings.lease_seconds / 4)
        while True:
            time.sleep(interval)
            with self._held_lock:
                ids = list(self._held)
            try:
                self.db.extend_leases(ids, self.owner, self.settings.lease_seconds)
            except Exception as exc:  # noqa: BLE001 - keep beating; the next try may work
                log.warning("could not extend leases: %s", exc)
