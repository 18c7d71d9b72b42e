"""The job database's schema, its version, and the typed decoding of its rows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TypeAlias

from s3longbow.model import Job, JobId, JobState, RestoreStatus

SCHEMA_VERSION = 4

# Each invocation of a run (one `longbow sync`), with its summary once it ended, and the
# counters it sampled as it went, for `longbow report`. New in version 4.
RUN_HISTORY = (
    """CREATE TABLE IF NOT EXISTS invocations (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    summary TEXT
)""",
    "CREATE INDEX IF NOT EXISTS invocations_by_run ON invocations (run_id, id)",
    """CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY,
    invocation INTEGER NOT NULL,
    at REAL NOT NULL,
    bytes_sent INTEGER NOT NULL,
    bytes_done INTEGER NOT NULL,
    objects_done INTEGER NOT NULL,
    objects_copied INTEGER NOT NULL,
    bytes_copied INTEGER NOT NULL,
    objects_failed INTEGER NOT NULL,
    in_flight INTEGER NOT NULL,
    concurrency INTEGER NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS samples_by_invocation ON samples (invocation, id)",
)

# What each version adds to the one before it, applied in order to an older file when it is
# opened (version 2: what the listing says of an archived source, and its restore; version 3:
# the planning options a listing pass was checkpointed under; version 4: the invocations of
# runs and their samples). SCHEMA creates the tables of every version too (IF NOT EXISTS), so
# a new file needs no migration.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (
        "ALTER TABLE jobs ADD COLUMN storage_class TEXT",
        "ALTER TABLE jobs ADD COLUMN restore TEXT",
        "ALTER TABLE jobs ADD COLUMN restore_requested REAL",
    ),
    3: ("ALTER TABLE runs ADD COLUMN plan_options TEXT",),
    4: RUN_HISTORY,
}


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    signature TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0,
    plan_complete INTEGER NOT NULL DEFAULT 0,
    plan_options TEXT
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
    storage_class TEXT,
    restore TEXT,
    restore_requested REAL,
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
-- How far each range of a pair's key space got in a planning pass (its generation): the
-- keys after the pair's prefix greater than `after` (NULL: from the first) and at most
-- `until` (NULL: to the last), planned up to `position`, with what was found so far.
CREATE TABLE IF NOT EXISTS listing_ranges (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    pair INTEGER NOT NULL,
    after TEXT,
    until TEXT,
    position TEXT,
    done INTEGER NOT NULL DEFAULT 0,
    counts TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS listing_ranges_by_pass ON listing_ranges (run_id, generation, pair);
CREATE TABLE IF NOT EXISTS parts (
    job_id INTEGER NOT NULL,
    upload_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    PRIMARY KEY (job_id, number)
) WITHOUT ROWID;
""" + "".join(statement + ";\n" for statement in RUN_HISTORY)

JOB_COLUMNS = (
    "id, run_id, pair, src_key, dst_key, size, etag, last_modified, version_id, state, "
    "attempts, reason, upload_id, part_size, upload_etag, lease_owner, verify, restarts, "
    "storage_class, restore, restore_requested"
)
# A job row as JOB_COLUMNS selects it. SQLite's rows carry no types: each query states the
# shape of its rows where it reads them, and these aliases name the shapes read in several.
JobRow: TypeAlias = tuple[
    int,  # id
    int,  # run_id
    int,  # pair
    str,  # src_key
    str,  # dst_key
    int,  # size
    str | None,  # etag
    float | None,  # last_modified
    str | None,  # version_id
    str,  # state
    int,  # attempts
    str | None,  # reason
    str | None,  # upload_id
    int | None,  # part_size
    str | None,  # upload_etag
    str | None,  # lease_owner
    str | None,  # verify
    int,  # restarts
    str | None,  # storage_class
    str | None,  # restore
    float | None,  # restore_requested
]

RUN_COLUMNS = "id, signature, description, created_at, generation, plan_complete"
# A run row as RUN_COLUMNS selects it (description: JSON text; plan_complete: 0 or 1).
RunRow: TypeAlias = tuple[int, str, str, float, int, int]


@dataclass(frozen=True, slots=True)
class Run:
    """A run: every invocation of the same pairs continues it."""

    id: int
    signature: str
    description: dict[str, object]
    created_at: float
    generation: int
    plan_complete: bool


def job_id_of(row_id: int) -> JobId:
    """The JobId of a job row: its row number, as text."""
    return JobId(str(row_id))


def row_id(job_id: JobId) -> int:
    """The row number a JobId of this database names."""
    return int(job_id)


def job_from_row(row: JobRow) -> Job:
    """A job as `JOB_COLUMNS` selects it."""
    (
        job_id,
        run_id,
        pair,
        src_key,
        dst_key,
        size,
        etag,
        last_modified,
        version_id,
        state,
        attempts,
        reason,
        upload_id,
        part_size,
        upload_etag,
        lease_owner,
        verify,
        restarts,
        storage_class,
        restore,
        restore_requested,
    ) = row
    return Job(
        id=job_id_of(job_id),
        run_id=run_id,
        pair=pair,
        src_key=src_key,
        dst_key=dst_key,
        size=size,
        etag=etag,
        last_modified=last_modified,
        version_id=version_id,
        state=JobState(state),
        attempts=attempts,
        reason=reason,
        upload_id=upload_id,
        part_size=part_size,
        upload_etag=upload_etag,
        lease_owner=lease_owner,
        verify=verify,
        restarts=restarts,
        storage_class=storage_class,
        restore=RestoreStatus(restore) if restore else None,
        restore_requested=restore_requested,
    )


def run_from_row(row: RunRow) -> Run:
    """A run as `RUN_COLUMNS` selects it."""
    run_id, signature, description, created_at, generation, plan_complete = row
    return Run(
        run_id, signature, json.loads(description), created_at, generation, bool(plan_complete)
    )
