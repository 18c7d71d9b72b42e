"""The job database's schema, its version, and the decoding of its rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from s3longbow.model import Job, JobState

SCHEMA_VERSION = 1


SCHEMA = """
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

JOB_COLUMNS = (
    "id, run_id, pair, src_key, dst_key, size, etag, last_modified, version_id, state, "
    "attempts, reason, upload_id, part_size, upload_etag, lease_owner, verify, restarts"
)


@dataclass(frozen=True, slots=True)
class Run:
    """A run: every invocation of the same pairs continues it."""

    id: int
    signature: str
    description: dict[str, object]
    created_at: float
    generation: int
    plan_complete: bool


def job_from_row(row: Sequence[object]) -> Job:
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
