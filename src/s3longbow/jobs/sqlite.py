"""The embedded job database: one SQLite file (WAL) holding runs, jobs and the parts of uploads.

It is both the queue and the job table of single-machine mode. Jobs are claimed with a lease,
as an SQS message is received with a visibility timeout: a claimed job is invisible to other
claimers until its lease expires, the owner extends the lease while it works, and every state
change is a compare-and-set on (state, lease owner), so a stale owner cannot overwrite the
result of a newer one. Several processes may share one file.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from s3longbow.errors import ConfigError
from s3longbow.model import Job, JobResult, JobState, ObjectInfo
from s3longbow.plan.unstorable import (
    UNSTORABLE,
    emptied_reason,
    is_unstorable,
    kept_without_bytes,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# Job outcomes written per transaction at most, and how long the first may wait for others.
FINISH_BATCH = 32
FINISH_DELAY = 0.25

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    signature TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0,
    plan_complete INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    pair INTEGER NOT NULL,
    src_key TEXT NOT NULL,
    dst_key TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT,
    last_modified REAL,
    version_id TEXT,
    state TEXT NOT NULL,
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    visible_at REAL NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_expires REAL,
    upload_id TEXT,
    part_size INTEGER,
    upload_etag TEXT,
    bytes_sent INTEGER NOT NULL DEFAULT 0,
    bytes_reused INTEGER NOT NULL DEFAULT 0,
    verify TEXT,
    verified INTEGER,
    restarts INTEGER NOT NULL DEFAULT 0,
    seen_generation INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    UNIQUE (run_id, pair, src_key)
);
-- Claims and counts walk one state of one run, in id order: never the whole table.
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (run_id, state, id);
CREATE TABLE IF NOT EXISTS extras (
    run_id INTEGER NOT NULL,
    pair INTEGER NOT NULL,
    key TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (run_id, pair, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS parts (
    job_id INTEGER NOT NULL,
    upload_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    PRIMARY KEY (job_id, number)
) WITHOUT ROWID;
"""

_JOB_COLUMNS = (
    "id, run_id, pair, src_key, dst_key, size, etag, last_modified, version_id, state, "
    "attempts, reason, upload_id, part_size, upload_etag, lease_owner, verify, restarts"
)

_SEEN = "UPDATE jobs SET seen_generation=? WHERE id=?"


@dataclass(frozen=True, slots=True)
class Run:
    """A run: every invocation of the same pairs continues it."""

    id: int
    signature: str
    description: dict[str, object]
    created_at: float
    generation: int
    plan_complete: bool


@dataclass(frozen=True, slots=True)
class PlannedCopy:
    """One object that planning says must be copied.

    `dst` is what the destination lists under `dst_key`; `absent` says it lists nothing
    there. A finished copy found absent is handed back to the planner to look up (see
    `UpsertCounts.to_look`), which plans it again with `unstorable` (the reason: the key is
    recorded as one the destination cannot store, and not copied) or `looked` (not found:
    plainly missing, so copied again).
    """

    pair: int
    src: ObjectInfo
    dst_key: str
    reason: str
    dst: ObjectInfo | None = None
    absent: bool = False
    unstorable: str | None = None
    looked: bool = False


@dataclass(frozen=True, slots=True)
class UpsertCounts:
    """What a batch of planned copies did to the job table."""

    new: int = 0
    reopened: int = 0
    unchanged: int = 0
    exhausted: int = 0
    queued_bytes: int = 0  # bytes of the new and reopened jobs
    unstorable: int = 0  # newly recorded as keys the destination cannot store
    to_look: tuple[PlannedCopy, ...] = ()  # finished copies now absent: left as they were


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


class JobDatabase:
    """The SQLite job database. Thread-safe: one connection, used under a lock.

    Args:
        path: The database file; its folder is created when missing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=30
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=30000")
            self._conn.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(
                f"cannot open the job database {path}: {exc}",
                hint="pass --db with a writable path, or delete a corrupt file",
            ) from None
        self._lock = threading.Lock()
        self._check_version()

    def _check_version(self) -> None:
        row = self._conn.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
        if row is None:
            self._conn.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
            )
        elif int(row[0]) != SCHEMA_VERSION:
            raise ConfigError(
                f"the job database {self.path} has schema {row[0]}, this version uses "
                f"{SCHEMA_VERSION}",
                hint="use another --db file for this version",
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # -- runs -------------------------------------------------------------------------------

    def open_run(self, signature: str, description: dict[str, object]) -> tuple[Run, bool]:
        """The run with this signature, created if new. Returns (run, resumed)."""
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT id FROM runs WHERE signature=?", (signature,)).fetchone()
            resumed = row is not None
            if not resumed:
                db.execute(
                    "INSERT INTO runs (signature, description, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?)",
                    (signature, json.dumps(description), now, now),
                )
        run = self.get_run(signature=signature)
        assert run is not None
        return run, resumed

    def get_run(self, *, signature: str | None = None, run_id: int | None = None) -> Run | None:
        """A run by signature or id; the latest run when neither is given."""
        query = "SELECT id, signature, description, created_at, generation, plan_complete FROM runs"
        if signature is not None:
            row = self._one(query + " WHERE signature=?", (signature,))
        elif run_id is not None:
            row = self._one(query + " WHERE id=?", (run_id,))
        else:
            row = self._one(query + " ORDER BY updated_at DESC LIMIT 1", ())
        if row is None:
            return None
        return Run(row[0], row[1], json.loads(row[2]), row[3], row[4], bool(row[5]))

    def list_runs(self) -> list[Run]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, signature, description, created_at, generation, plan_complete "
                "FROM runs ORDER BY id"
            ).fetchall()
        return [Run(r[0], r[1], json.loads(r[2]), r[3], r[4], bool(r[5])) for r in rows]

    def begin_plan(self, run_id: int) -> int:
        """Start a new planning pass; returns its generation number."""
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET generation = generation + 1, plan_complete = 0, updated_at = ? "
                "WHERE id = ?",
                (time.time(), run_id),
            )
            row = db.execute("SELECT generation FROM runs WHERE id=?", (run_id,)).fetchone()
            # Orphans are found afresh by every planning pass.
            db.execute("DELETE FROM extras WHERE run_id=?", (run_id,))
        return int(row[0])

    def add_extras(self, run_id: int, pair: int, objects: Sequence[ObjectInfo]) -> None:
        """Record destination objects that no source object maps to (for --delete)."""
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO extras (run_id, pair, key, size) VALUES (?, ?, ?, ?)",
                [(run_id, pair, obj.key, obj.size) for obj in objects],
            )

    def extras(self, run_id: int, pair: int, batch: int = 1000) -> Iterator[list[str]]:
        """The recorded orphans of a pair, in batches of keys (read page by page)."""
        last = ""
        while True:
            with self._lock:
                rows = self._conn.execute(
                    "SELECT key FROM extras WHERE run_id=? AND pair=? AND key>? ORDER BY key "
                    "LIMIT ?",
                    (run_id, pair, last, batch),
                ).fetchall()
            if not rows:
                return
            yield [r[0] for r in rows]
            last = rows[-1][0]

    def finish_plan(self, run_id: int, generation: int) -> int:
        """Close a planning pass. Unfinished jobs that this pass no longer asked for (the source
        is gone, or the destination matches now) are skipped. Returns how many."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET state = 'skipped', lease_owner = NULL, finished_at = ?, "
                "reason = 'no longer needed: the source is gone or the destination matches' "
                "WHERE run_id = ? AND seen_generation < ? AND state IN ('pending', 'failed')",
                (time.time(), run_id, generation),
            )
            db.execute("UPDATE runs SET plan_complete = 1 WHERE id = ?", (run_id,))
        return cur.rowcount

    def retry_failed(self, run_id: int) -> int:
        """Give every failed job of the run a fresh set of attempts."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET state='pending', attempts=0, visible_at=0 "
                "WHERE run_id=? AND state='failed'",
                (run_id,),
            )
        return cur.rowcount

    # -- planning ---------------------------------------------------------------------------

    def upsert_jobs(
        self,
        run_id: int,
        generation: int,
        copies: Sequence[PlannedCopy],
        *,
        max_attempts: int,
        listed_since: float | None = None,
    ) -> UpsertCounts:
        """Record a batch of planned copies.

        `listed_since`: when this plan began listing the destination; a job finished since
        may be missing from the listing only because the listing came first, and is left done.

        A new key becomes a pending job. A known key is reopened when it was done or skipped
        (the destination no longer matches), or failed with attempts left or a changed source;
        a job still pending or in progress keeps its state and any open upload.

        A done job of an unchanged source whose destination holds the source's ETag with
        other bytes, or that comes back with `unstorable`, is skipped with the reason, and
        stays skipped until the source changes: copying it again would change nothing. One
        that is now absent is left as it is and returned in `to_look`.
        """
        if not copies:
            return UpsertCounts()
        now = time.time()
        new = reopened = unchanged = exhausted = queued_bytes = stored_not = 0
        to_look: list[PlannedCopy] = []
        with self._tx() as db:
            for pair in sorted({c.pair for c in copies}):
                batch = [c for c in copies if c.pair == pair]
                existing = self._existing(db, run_id, pair, [c.src.key for c in batch])
                for copy in batch:
                    src = copy.src
                    old = existing.get(src.key)
                    if old is None:
                        db.execute(
                            "INSERT INTO jobs (run_id, pair, src_key, dst_key, size, etag, "
                            "last_modified, version_id, state, reason, seen_generation, "
                            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
                            (
                                run_id,
                                pair,
                                src.key,
                                copy.dst_key,
                                src.size,
                                src.etag,
                                src.last_modified,
                                src.version_id,
                                copy.reason,
                                generation,
                                now,
                            ),
                        )
                        new += 1
                        queued_bytes += src.size
                        continue
                    job_id, state, attempts, size, etag, reason, finished_at = old
                    changed = size != src.size or etag != src.etag
                    # A finished copy of an unchanged source that the destination does not
                    # show as written: copying it again would change nothing.
                    why: str | None = None
                    if (
                        state == "done"
                        and not changed
                        and listed_since is not None
                        and finished_at is not None
                        and finished_at >= listed_since
                    ):
                        # Copied while this plan listed the destination (a job carried over
                        # from a stopped run): the listing may predate the copy.
                        unchanged += 1
                        db.execute(_SEEN, (generation, job_id))
                        continue
                    if state == "done" and not changed:
                        if copy.unstorable:
                            why = copy.unstorable
                        elif copy.dst is not None and kept_without_bytes(src, copy.dst):
                            why = emptied_reason(src, copy.dst)
                        elif copy.absent and not copy.looked:
                            # Renamed by the store, or deleted since? Only a HEAD can tell.
                            to_look.append(copy)
                            db.execute(_SEEN, (generation, job_id))
                            continue
                    elif state == "skipped" and not changed and is_unstorable(reason):
                        unchanged += 1  # recorded once, and kept until the source changes
                        db.execute(_SEEN, (generation, job_id))
                        continue
                    if why is not None:
                        stored_not += 1
                        db.execute(
                            "UPDATE jobs SET seen_generation=?, dst_key=?, state='skipped', "
                            "reason=?, finished_at=? WHERE id=?",
                            (generation, copy.dst_key, why, now, job_id),
                        )
                        continue
                    reopen = state in ("done", "skipped") or (
                        state == "failed" and (changed or attempts < max_attempts)
                    )
                    if reopen:
                        reopened += 1
                        queued_bytes += src.size
                    elif state == "failed":
                        exhausted += 1
                    else:
                        unchanged += 1
                    db.execute(
                        "UPDATE jobs SET seen_generation=?, dst_key=?, size=?, etag=?, "
                        "last_modified=?, version_id=?, "
                        "state=CASE WHEN ? THEN 'pending' ELSE state END, "
                        "reason=CASE WHEN ? THEN ? ELSE reason END, "
                        "attempts=CASE WHEN ? OR state IN ('done','skipped') THEN 0 "
                        "ELSE attempts END, "
                        "visible_at=CASE WHEN ? THEN 0 ELSE visible_at END "
                        "WHERE id=?",
                        (
                            generation,
                            copy.dst_key,
                            src.size,
                            src.etag,
                            src.last_modified,
                            src.version_id,
                            reopen,
                            reopen,
                            copy.reason,
                            changed,
                            reopen,
                            job_id,
                        ),
                    )
        return UpsertCounts(
            new, reopened, unchanged, exhausted, queued_bytes, stored_not, tuple(to_look)
        )

    @staticmethod
    def _existing(
        db: sqlite3.Connection, run_id: int, pair: int, keys: list[str]
    ) -> dict[str, tuple[int, str, int, int, str | None, str | None, float | None]]:
        out: dict[str, tuple[int, str, int, int, str | None, str | None, float | None]] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in db.execute(
                f"SELECT src_key, id, state, attempts, size, etag, reason, finished_at FROM jobs "
                f"WHERE run_id=? AND pair=? AND src_key IN ({marks})",
                (run_id, pair, *chunk),
            ):
                out[row[0]] = (row[1], row[2], row[3], row[4], row[5], row[6], row[7])
        return out

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
            rows = db.execute(
                f"UPDATE jobs SET state='in_progress', lease_owner=?, lease_expires=?, "
                f"started_at=? WHERE id IN ({marks}) RETURNING {_JOB_COLUMNS}",
                (owner, now + lease_seconds, now, *ids),
            ).fetchall()
        jobs = [_job(row) for row in rows]
        jobs.sort(key=lambda j: j.id)
        return jobs

    def extend_leases(self, job_ids: Iterable[int], owner: str, lease_seconds: float) -> None:
        """Heartbeat: push the lease of jobs still held by `owner` into the future."""
        ids = list(job_ids)
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
                (upload_id, part_size, upload_etag, job.id, job.lease_owner),
            )
            db.execute("DELETE FROM parts WHERE job_id=?", (job.id,))
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
                    job.id,
                    job.lease_owner,
                ),
            )
            db.execute("DELETE FROM parts WHERE job_id=?", (job.id,))
        job.size, job.etag = info.size, info.etag
        job.last_modified, job.version_id = info.last_modified, info.version_id
        job.upload_id = job.part_size = job.upload_etag = None
        job.restarts += 1

    def record_part(self, job: Job, upload_id: str, number: int, size: int, etag: str) -> None:
        """Remember a part the destination accepted, with the checksum we sent."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO parts (job_id, upload_id, number, size, etag) "
                "VALUES (?, ?, ?, ?, ?)",
                (job.id, upload_id, number, size, etag),
            )

    def recorded_parts(self, job: Job, upload_id: str) -> dict[int, tuple[int, str]]:
        """Parts recorded for this job's upload: number -> (size, etag)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT number, size, etag FROM parts WHERE job_id=? AND upload_id=?",
                (job.id, upload_id),
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
                    "upload_id=CASE WHEN ? = 'done' THEN NULL ELSE upload_id END "
                    "WHERE id=? AND state='in_progress' AND lease_owner=?",
                    (
                        state.value,
                        outcome.reason,
                        now,
                        0 if state is JobState.DONE else 1,
                        result.bytes_sent if result else 0,
                        result.bytes_reused if result else 0,
                        _verify_text(result),
                        None if result is None else int(result.verified),
                        state.value,
                        job.id,
                        job.lease_owner,
                    ),
                )
                if cur.rowcount != 1:
                    lost.append(outcome)
                elif state is JobState.DONE:
                    db.execute("DELETE FROM parts WHERE job_id=?", (job.id,))
        return lost

    def retry_later(self, job: Job, delay: float, reason: str, *, counted: bool = True) -> bool:
        """Put a leased job back in the queue after `delay` seconds.

        `counted` is False when the job did not fail (shutdown), so it costs no attempt.
        """
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET state='pending', reason=?, attempts=attempts+?, visible_at=?, "
                "lease_owner=NULL WHERE id=? AND state='in_progress' AND lease_owner=?",
                (reason, 1 if counted else 0, time.time() + delay, job.id, job.lease_owner),
            )
        return cur.rowcount == 1

    def attempts(self, job_id: int) -> int:
        row = self._one("SELECT attempts FROM jobs WHERE id=?", (job_id,))
        return int(row[0]) if row else 0

    # -- reporting --------------------------------------------------------------------------

    def totals(self, run_id: int) -> dict[str, tuple[int, int]]:
        """Jobs and bytes by state: state -> (count, bytes)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT state, COUNT(*), COALESCE(SUM(size), 0) FROM jobs WHERE run_id=? "
                "GROUP BY state",
                (run_id,),
            ).fetchall()
        out = {state.value: (0, 0) for state in JobState}
        out.update({r[0]: (int(r[1]), int(r[2])) for r in rows})
        return out

    def verification(self, run_id: int) -> dict[str, int]:
        """Done jobs by verification method or reason: text -> count."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT CASE WHEN verified=1 THEN 'verified: ' ELSE 'unverified: ' END || "
                "COALESCE(verify, ''), COUNT(*) FROM jobs WHERE run_id=? AND state='done' "
                "GROUP BY 1",
                (run_id,),
            ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def failed_jobs(self, run_id: int, limit: int = 1000) -> list[tuple[str, str, str]]:
        """(source key, destination key, reason) of failed jobs."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT src_key, dst_key, COALESCE(reason, '') FROM jobs WHERE run_id=? "
                "AND state='failed' ORDER BY id LIMIT ?",
                (run_id, limit),
            ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def unstorable_jobs(self, run_id: int, limit: int = 100_000) -> list[tuple[str, str, str]]:
        """(source key, destination key, reason) of the keys the last planning pass found the
        destination unable to store (earlier findings of keys since ignored, deleted or
        stored after all are left out)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT src_key, dst_key, reason FROM jobs WHERE run_id=? AND state='skipped' "
                "AND seen_generation=(SELECT generation FROM runs WHERE id=?) "
                "AND substr(reason, 1, ?)=? ORDER BY id LIMIT ?",
                (run_id, run_id, len(UNSTORABLE), UNSTORABLE, limit),
            ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def copied_version(self, run_id: int, pair: int, src_key: str) -> str | None:
        """The source version id the run last copied for a key (None: no done job knows)."""
        row = self._one(
            "SELECT version_id FROM jobs WHERE run_id=? AND pair=? AND src_key=? AND state='done'",
            (run_id, pair, src_key),
        )
        return str(row[0]) if row and row[0] else None

    def job(self, run_id: int, src_key: str, pair: int = 0) -> Job | None:
        row = self._one(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE run_id=? AND pair=? AND src_key=?",
            (run_id, pair, src_key),
        )
        return _job(row) if row else None

    def _one(self, sql: str, params: tuple[object, ...]) -> tuple[object, ...] | None:
        with self._lock:
            return self._conn.execute(sql, params).fetchone()  # type: ignore[no-any-return]


def _job(row: Sequence[object]) -> Job:
    return Job(
        id=int(row[0]),  # type: ignore[arg-type]
        run_id=int(row[1]),  # type: ignore[arg-type]
        pair=int(row[2]),  # type: ignore[arg-type]
        src_key=str(row[3]),
        dst_key=str(row[4]),
        size=int(row[5]),  # type: ignore[arg-type]
        etag=row[6],  # type: ignore[arg-type]
        last_modified=row[7],  # type: ignore[arg-type]
        version_id=row[8],  # type: ignore[arg-type]
        state=JobState(row[9]),
        attempts=int(row[10]),  # type: ignore[arg-type]
        reason=row[11],  # type: ignore[arg-type]
        upload_id=row[12],  # type: ignore[arg-type]
        part_size=row[13],  # type: ignore[arg-type]
        upload_etag=row[14],  # type: ignore[arg-type]
        lease_owner=row[15],  # type: ignore[arg-type]
        verify=row[16],  # type: ignore[arg-type]
        restarts=int(row[17]),  # type: ignore[arg-type]
    )


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

    def record_part(self, job: Job, upload_id: str, number: int, size: int, etag: str) -> None:
        self.db.record_part(job, upload_id, number, size, etag)

    def recorded_parts(self, job: Job, upload_id: str) -> dict[int, tuple[int, str]]:
        return self.db.recorded_parts(job, upload_id)

    def update_source(self, job: Job, info: ObjectInfo) -> None:
        self.db.update_source(job, info)
