"""The JobQueue port over one run of the job database (single-machine mode)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from s3longbow.model import Job, JobResult, JobState, ObjectInfo, outcome_fields

from .database import JobDatabase
from .leases import Outcome

log = logging.getLogger(__name__)

# Job outcomes written per transaction at most, and how long the first may wait for others.
FINISH_BATCH = 32
FINISH_DELAY = 0.25


class SqliteQueue:
    """The JobQueue port over one run of the embedded database.

    Args:
        db: The job database.
        run_id: The run whose jobs are served.
        owner: This process's lease owner id.
        lease_seconds: How long a claimed job stays invisible without a heartbeat.
        planning_done: Set once planning has written every job of this invocation.
        claim_ahead: Jobs a worker may lease beyond its free threads (claims in batches).
    """

    def __init__(
        self,
        db: JobDatabase,
        run_id: int,
        owner: str,
        lease_seconds: float,
        planning_done: threading.Event,
        *,
        claim_ahead: int = 0,
    ) -> None:
        self.db = db
        self.run_id = run_id
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.heartbeat_interval = lease_seconds / 4
        self.claim_ahead = claim_ahead
        self.planning_done = planning_done
        self.new_work = threading.Event()
        # Outcomes not yet written, and when the oldest of them came (see finish).
        self._outcomes: list[Outcome] = []
        self._oldest = 0.0
        self._outcomes_lock = threading.Lock()
        self._flush_lock = threading.Lock()

    def claim(self, limit: int) -> list[Job]:
        return self.db.claim(self.run_id, self.owner, limit, self.lease_seconds)

    def heartbeat(self, jobs: Sequence[Job]) -> None:
        self.flush()
        self.db.extend_leases([j.id for j in jobs], self.owner, self.lease_seconds)

    def finish(
        self, job: Job, state: JobState, reason: str | None, result: JobResult | None
    ) -> bool:
        """Record a final state, in a transaction shared with other jobs' outcomes.

        A transaction per job cost more CPU than copying a small object, so outcomes are
        written in batches: at most ``FINISH_BATCH`` of them or ``FINISH_DELAY`` seconds
        after the first. Until its batch is written the job stays leased (in progress), so a
        process killed in between runs it again; a lease found lost is logged when written.
        """
        if log.isEnabledFor(logging.INFO):
            log.info(
                "%s: %s",
                job.src_key,
                state.value if reason is None else f"{state.value}: {reason}",
                extra={
                    "fields": {
                        **outcome_fields(job, state, result),
                        "run_id": self.run_id,
                        "pair": job.pair,
                        "key": job.src_key,
                        "dst_key": job.dst_key,
                    }
                },
            )
        with self._outcomes_lock:
            if not self._outcomes:
                self._oldest = time.monotonic()
            self._outcomes.append(Outcome(job, state, reason, result))
            due = (
                len(self._outcomes) >= FINISH_BATCH
                or time.monotonic() - self._oldest >= FINISH_DELAY
            )
        if due:
            self.flush()
        return True

    def flush(self) -> None:
        """Write every outcome recorded so far."""
        with self._flush_lock:  # in order: a later batch never lands before an earlier one
            with self._outcomes_lock:
                outcomes, self._outcomes = self._outcomes, []
            if not outcomes:
                return
            for lost in self.db.finish_many(outcomes):
                log.warning(
                    "%s: lease lost before the result (%s) was recorded; it will run again",
                    lost.job.src_key,
                    lost.state.value,
                )

    def retry_later(self, job: Job, delay: float, reason: str, *, counted: bool = True) -> bool:
        return self.db.retry_later(job, delay, reason, counted=counted)

    def wait_for_work(self, timeout: float) -> bool:
        self.flush()
        claimable, in_progress, wait_for = self.db.pending_work(self.run_id)
        if claimable:
            return True
        if self.planning_done.is_set() and in_progress == 0 and wait_for is None:
            return False
        if wait_for is not None:
            timeout = min(timeout, max(wait_for, 0.01))
        self.new_work.wait(timeout)
        self.new_work.clear()
        return True

    def job_ended(self) -> None:
        self.new_work.set()

    # The upload ledger lives in the same database.
    def set_upload(
        self, job: Job, upload_id: str | None, part_size: int | None, upload_etag: str | None
    ) -> None:
        self.db.set_upload(job, upload_id, part_size, upload_etag)

    def record_part(
        self,
        job: Job,
        upload_id: str,
        number: int,
        size: int,
        etag: str,
        *,
        checksum: str | None = None,  # not kept: a resumed copy reads its parts again
    ) -> None:
        self.db.record_part(job, upload_id, number, size, etag)

    def recorded_parts(self, job: Job, upload_id: str) -> dict[int, tuple[int, str]]:
        return self.db.recorded_parts(job, upload_id)

    def update_source(self, job: Job, info: ObjectInfo) -> None:
        self.db.update_source(job, info)
