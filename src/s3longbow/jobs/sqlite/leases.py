"""The queue inside the job database: claims with a lease, heartbeats, released leases of dead
owners, the upload ledger, and final states written as a compare-and-set on the lease owner."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from s3longbow.model import Job, JobId, JobResult, JobState, ObjectInfo

from .file import SqliteFile
from .schema import JOB_COLUMNS, JobRow, job_from_row, row_id


def new_owner_id() -> str:
    """A lease owner id: host and pid let a later process on this host spot a dead owner."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """A job's final state, waiting to be recorded."""

    job: Job
    state: JobState
    reason: str | None
    result: JobResult | None


class Leases(SqliteFile):
    """Claims, leases, the upload ledger and final states."""

    # -- the queue --------------------------------------------------------------------------

    def release_dead_leases(self, run_id: int) -> int:
        """Make claimable at once the jobs leased by processes of this host that have died."""
        host = socket.gethostname()
        with self._lock:
            rows = self._conn.execute(
                "SELECT DISTINCT lease_owner FROM jobs WHERE run_id=? AND state='in_progress'",
                (run_id,),
            ).fetchall()
        dead = [owner for (owner,) in rows if owner and _owner_is_dead(owner, host)]
        released = 0
        for owner in dead:
            with self._tx() as db:
                released += db.execute(
                    "UPDATE jobs SET state='pending', lease_owner=NULL, visible_at=0 "
                    "WHERE run_id=? AND state='in_progress' AND lease_owner=?",
                    (run_id, owner),
                ).rowcount
        return released

    def claim(self, run_id: int, owner: str, limit: int, lease_seconds: float) -> list[Job]:
        """Lease up to `limit` jobs that are pending and visible, or whose lease expired."""
        now = time.time()
        with self._tx() as db:
            # Two index walks (pending, then expired leases) rather than one OR over the run,
            # which would scan every job of the run at every claim.
            ids = [
                row[0]
                for row in db.execute(
                    "SELECT id FROM jobs WHERE run_id=? AND state='pending' AND visible_at<=? "
                    "ORDER BY id LIMIT ?",
                    (run_id, now, limit),
                )
            ]
            if len(ids) < limit:
                ids += [
                    row[0]
                    for row in db.execute(
                        "SELECT id FROM jobs WHERE run_id=? AND state='in_progress' "
                        "AND lease_expires<? ORDER BY id LIMIT ?",
                        (run_id, now, limit - len(ids)),
                    )
                ]
            if not ids:
                return []
            marks = ",".join("?" * len(ids))
            rows: list[JobRow] = db.execute(
                f"UPDATE jobs SET state='in_progress', lease_owner=?, lease_expires=?, "
                f"started_at=? WHERE id IN ({marks}) RETURNING {JOB_COLUMNS}",
                (owner, now + lease_seconds, now, *ids),
            ).fetchall()
        rows.sort(key=lambda row: row[0])  # in id order
        return [job_from_row(row) for row in rows]

    def extend_leases(self, job_ids: Iterable[JobId], owner: str, lease_seconds: float) -> None:
        """Heartbeat: push the lease of jobs still held by `owner` into the future."""
        ids = [row_id(job_id) for job_id in job_ids]
        if not ids:
            return
        with self._tx() as db:
            db.executemany(
                "UPDATE jobs SET lease_expires=? WHERE id=? AND lease_owner=? "
                "AND state='in_progress'",
                [(time.time() + lease_seconds, job_id, owner) for job_id in ids],
            )

    def pending_work(self, run_id: int) -> tuple[int, int, float | None]:
        """(claimable now, in progress, seconds until the next delayed job is visible)."""
        now = time.time()
        with self._lock:
            pending = self._conn.execute(
                "SELECT SUM(visible_at<=?), MIN(CASE WHEN visible_at>? THEN visible_at END) "
                "FROM jobs WHERE run_id=? AND state='pending'",
                (now, now, run_id),
            ).fetchone()
            leased = self._conn.execute(
                "SELECT SUM(lease_expires<?), SUM(lease_expires>=?) "
                "FROM jobs WHERE run_id=? AND state='in_progress'",
                (now, now, run_id),
            ).fetchone()
        wait = None if pending[1] is None else max(0.0, pending[1] - now)
        return int(pending[0] or 0) + int(leased[0] or 0), int(leased[1] or 0), wait

    # -- job progress -----------------------------------------------------------------------

    def set_upload(
        self, job: Job, upload_id: str | None, part_size: int | None, upload_etag: str | None
    ) -> None:
        """Record (or clear) the open multipart upload of a job, before any part is sent."""
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET upload_id=?, part_size=?, upload_etag=? "
                "WHERE id=? AND lease_owner=?",
                (upload_id, part_size, upload_etag, row_id(job.id), job.lease_owner),
            )
            db.execute("DELETE FROM parts WHERE job_id=?", (row_id(job.id),))
        job.upload_id, job.part_size, job.upload_etag = upload_id, part_size, upload_etag

    def update_source(self, job: Job, info: ObjectInfo) -> None:
        """Pin the job to a new source identity (the source changed); forget its upload."""
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET size=?, etag=?, last_modified=?, version_id=?, upload_id=NULL, "
                "part_size=NULL, upload_etag=NULL, restarts=restarts+1 "
                "WHERE id=? AND lease_owner=?",
                (
                    info.size,
                    info.etag,
                    info.last_modified,
                    info.version_id,
                    row_id(job.id),
                    job.lease_owner,
                ),
            )
            db.execute("DELETE FROM parts WHERE job_id=?", (row_id(job.id),))
        job.size, job.etag = info.size, info.etag
        job.last_modified, job.version_id = info.last_modified, info.version_id
        job.upload_id = job.part_size = job.upload_etag = None
        job.restarts += 1

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
        """Remember a part the destination accepted, with the checksum we sent."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO parts (job_id, upload_id, number, size, etag) "
                "VALUES (?, ?, ?, ?, ?)",
                (row_id(job.id), upload_id, number, size, etag),
            )

    def recorded_parts(self, job: Job, upload_id: str) -> dict[int, tuple[int, str]]:
        """Parts recorded for this job's upload: number -> (size, etag)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT number, size, etag FROM parts WHERE job_id=? AND upload_id=?",
                (row_id(job.id), upload_id),
            ).fetchall()
        return {n: (s, e) for n, s, e in rows}

    def finish(
        self, job: Job, state: JobState, reason: str | None, result: JobResult | None
    ) -> bool:
        """Move a leased job to a final state (compare-and-set on its lease owner)."""
        return self.finish_many([Outcome(job, state, reason, result)]) == []

    def finish_many(self, outcomes: Sequence[Outcome]) -> list[Outcome]:
        """Record final states in one transaction; return those whose lease was lost."""
        now = time.time()
        lost: list[Outcome] = []
        with self._tx() as db:
            for outcome in outcomes:
                job, state, result = outcome.job, outcome.state, outcome.result
                cur = db.execute(
                    "UPDATE jobs SET state=?, reason=?, finished_at=?, lease_owner=NULL, "
                    "attempts = attempts + ?, bytes_sent = bytes_sent + ?, bytes_reused=?, "
                    "verify=?, verified=?, "
                    # A restore is waited for until the copy is done.
                    "restore_requested=CASE WHEN ? = 'done' THEN NULL "
                    "ELSE COALESCE(?, restore_requested) END, "
                    "upload_id=CASE WHEN ? = 'done' THEN NULL ELSE upload_id END "
                    "WHERE id=? AND state='in_progress' AND lease_owner=?",
                    (
                        state.value,
                        outcome.reason,
                        now,
                        0 if state in (JobState.DONE, JobState.ARCHIVED) else 1,
                        result.bytes_sent if result else 0,
                        result.bytes_reused if result else 0,
                        _verify_text(result),
                        None if result is None else int(result.verified),
                        state.value,
                        job.restore_requested,
                        state.value,
                        row_id(job.id),
                        job.lease_owner,
                    ),
                )
                if cur.rowcount != 1:
                    lost.append(outcome)
                elif state is JobState.DONE:
                    db.execute("DELETE FROM parts WHERE job_id=?", (row_id(job.id),))
        return lost

    def retry_later(self, job: Job, delay: float, reason: str, *, counted: bool = True) -> bool:
        """Put a leased job back in the queue after `delay` seconds.

        `counted` is False when the job did not fail (shutdown), so it costs no attempt.
        """
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET state='pending', reason=?, attempts=attempts+?, visible_at=?, "
                "lease_owner=NULL WHERE id=? AND state='in_progress' AND lease_owner=?",
                (reason, 1 if counted else 0, time.time() + delay, row_id(job.id), job.lease_owner),
            )
        return cur.rowcount == 1

    def attempts(self, job_id: JobId) -> int:
        row: tuple[int] | None = self._one(
            "SELECT attempts FROM jobs WHERE id=?", (row_id(job_id),)
        )
        return row[0] if row else 0


def _verify_text(result: JobResult | None) -> str | None:
    if result is None:
        return None
    text = result.verify
    if result.notes:
        text += "; " + "; ".join(result.notes)
    return text


def _owner_is_dead(owner: str, host: str) -> bool:
    owner_host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if owner_host != host or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
