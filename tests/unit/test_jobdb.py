"""The SQLite job database: runs, planning upserts, leases and compare-and-set transitions."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from s3longbow.jobs.sqlite import (
    FINISH_BATCH,
    SCHEMA_VERSION,
    JobDatabase,
    Outcome,
    PlannedCopy,
    SqliteQueue,
    UpsertCounts,
    new_owner_id,
)
from s3longbow.model import JobResult, JobState, ObjectInfo, RestoreStatus, can_transition
from s3longbow.verdicts import renamed_reason


@pytest.fixture()
def db(tmp_path: Path) -> JobDatabase:
    database = JobDatabase(tmp_path / "jobs.db")
    yield database
    database.close()


def plan(db: JobDatabase, run_id: int, *objs: tuple[str, int, str]) -> int:
    gen = db.begin_plan(run_id)
    db.upsert_jobs(
        run_id,
        gen,
        [PlannedCopy(0, ObjectInfo(k, s, e), k, "missing") for k, s, e in objs],
        max_attempts=2,
    )
    return gen


def state(db: JobDatabase, run_id: int, key: str) -> str:
    job = db.job(run_id, key)
    assert job is not None
    return job.state.value


def test_state_machine_only_moves_forward() -> None:
    assert can_transition(JobState.PENDING, JobState.IN_PROGRESS)
    assert not can_transition(JobState.DONE, JobState.IN_PROGRESS)
    assert not can_transition(JobState.PENDING, JobState.DONE)


def test_same_signature_continues_the_run(db: JobDatabase) -> None:
    run, resumed = db.open_run("sig", {"pairs": []})
    again, resumed_again = db.open_run("sig", {"pairs": []})
    other, _ = db.open_run("other", {"pairs": []})
    assert (resumed, resumed_again) == (False, True)
    assert again.id == run.id != other.id


def test_claim_lease_and_finish(db: JobDatabase) -> None:
    run, _ = db.open_run("sig", {})
    plan(db, run.id, ("a", 1, "e1"), ("b", 2, "e2"))
    first = db.claim(run.id, "me", 1, lease_seconds=60)
    assert [j.src_key for j in first] == ["a"]
    # A leased job is invisible to other claimers until its lease runs out.
    second = db.claim(run.id, "other", 5, lease_seconds=60)
    assert [j.src_key for j in second] == ["b"]
    assert db.claim(run.id, "third", 5, lease_seconds=60) == []
    # Only the lease owner can record the outcome.
    stale = first[0]
    stale.lease_owner = "intruder"
    assert not db.finish(stale, JobState.DONE, None, JobResult(bytes_sent=1))
    stale.lease_owner = "me"
    assert db.finish(stale, JobState.DONE, None, JobResult(bytes_sent=1))
    # A duplicate delivery cannot finish it again or move it backwards.
    assert not db.finish(stale, JobState.FAILED, "late", None)
    assert db.totals(run.id)["done"] == (1, 1)


def test_expired_lease_is_claimable_again(db: JobDatabase) -> None:
    run, _ = db.open_run("sig", {})
    plan(db, run.id, ("a", 1, "e"))
    assert db.claim(run.id, "me", 1, lease_seconds=0.05)
    time.sleep(0.1)
    again = db.claim(run.id, "other", 1, lease_seconds=60)
    assert [j.lease_owner for j in again] == ["other"]


def test_heartbeat_keeps_the_lease(db: JobDatabase) -> None:
    run, _ = db.open_run("sig", {})
    plan(db, run.id, ("a", 1, "e"))
    (job,) = db.claim(run.id, "me", 1, lease_seconds=0.2)
    for _ in range(3):
        time.sleep(0.1)
        db.extend_leases([job.id], "me", 0.2)
    assert db.claim(run.id, "other", 1, lease_seconds=60) == []


def test_dead_owner_on_this_host_is_released(db: JobDatabase) -> None:
    run, _ = db.open_run("sig", {})
    plan(db, run.id, ("a", 1, "e"))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    owner = new_owner_id().replace(f":{os.getpid()}:", f":{child.pid}:")
    db.claim(run.id, owner, 1, lease_seconds=600)
    assert db.release_dead_leases(run.id) == 0  # still alive
    child.kill()
    child.wait()
    assert db.release_dead_leases(run.id) == 1
    assert [j.src_key for j in db.claim(run.id, "me", 1, 60)] == ["a"]


def test_retry_and_failure_limits_across_plans(db: JobDatabase) -> None:
    run, _ = db.open_run("sig", {})
    plan(db, run.id, ("a", 1, "e"))
    (job,) = db.claim(run.id, "me", 1, 60)
    assert db.retry_later(job, 0, "reset by peer")
    (job,) = db.claim(run.id, "me", 1, 60)
    assert job.attempts == 1 and job.reason == "reset by peer"
    db.finish(job, JobState.FAILED, "reset again", None)
    assert db.attempts(job.id) == 2
    # Planning again does not reopen a job that used all its attempts...
    plan(db, run.id, ("a", 1, "e"))
    assert db.totals(run.id)["failed"][0] == 1
    # ...unless the source changed, or the user asks for a retry.
    plan(db, run.id, ("a", 2, "e2"))
    assert db.totals(run.id)["pending"][0] == 1


def test_done_job_reopens_when_destination_no_longer_matches(db: JobDatabase) -> None:
    run, _ = db.open_run("sig", {})
    plan(db, run.id, ("a", 1, "e"))
    (job,) = db.claim(run.id, "me", 1, 60)
    db.finish(job, JobState.DONE, None, JobResult(bytes_sent=1))
    plan(db, run.id, ("a", 1, "e"))
    assert db.totals(run.id)["pending"][0] == 1


def test_jobs_no_longer_planned_are_skipped(db: JobDatabase) -> None:
    run, _ = db.open_run("sig", {})
    plan(db, run.id, ("a", 1, "e"), ("b", 1, "e"))
    gen = plan(db, run.id, ("a", 1, "e"))
    assert db.finish_plan(run.id, gen) == 1
    b = db.job(run.id, "b")
    assert b is not None and b.state is JobState.SKIPPED and "no longer needed" in (b.reason or "")


def test_parts_ledger(db: JobDatabase) -> None:
    run, _ = db.open_run("sig", {})
    plan(db, run.id, ("a", 1, "e"))
    (job,) = db.claim(run.id, "me", 1, 60)
    db.set_upload(job, "up1", 5, "e")
    db.record_part(job, "up1", 1, 5, "md5a")
    db.record_part(job, "up1", 2, 5, "md5b")
    assert db.recorded_parts(job, "up1") == {1: (5, "md5a"), 2: (5, "md5b")}
    assert db.recorded_parts(job, "other-upload") == {}
    db.set_upload(job, "up2", 5, "e")  # a new upload forgets the old parts
    assert db.recorded_parts(job, "up1") == {}


def test_finish_many_records_in_one_go_and_reports_lost_leases(db: JobDatabase) -> None:
    run, _ = db.open_run("sig", {})
    plan(db, run.id, ("a", 1, "e1"), ("b", 2, "e2"), ("c", 3, "e3"))
    a, b, c = db.claim(run.id, "me", 3, lease_seconds=60)
    db.record_part(a, "up", 1, 1, "p1")
    b.lease_owner = "intruder"  # its lease was taken over: its outcome must not land
    lost = db.finish_many(
        [
            Outcome(a, JobState.DONE, None, JobResult(bytes_sent=1)),
            Outcome(b, JobState.DONE, None, JobResult(bytes_sent=2)),
            Outcome(c, JobState.FAILED, "gone", None),
        ]
    )
    assert [o.job.src_key for o in lost] == ["b"]
    states = {k: state(db, run.id, k) for k in "abc"}
    assert states == {"a": "done", "b": "in_progress", "c": "failed"}
    assert db.recorded_parts(a, "up") == {}  # a done job forgets its parts


def test_queue_writes_outcomes_in_batches_and_on_flush(db: JobDatabase) -> None:
    run, _ = db.open_run("sig", {})
    plan(db, run.id, *((f"k{i:03}", 1, "e") for i in range(FINISH_BATCH + 2)))
    queue = SqliteQueue(db, run.id, "me", 60, threading.Event(), claim_ahead=8)
    jobs = queue.claim(FINISH_BATCH + 2)
    assert queue.claim_ahead == 8
    queue.finish(jobs[0], JobState.DONE, None, JobResult(bytes_sent=1))
    # Not written yet: the job stays leased, so a killed process would run it again.
    assert state(db, run.id, jobs[0].src_key) == "in_progress"
    for job in jobs[1:FINISH_BATCH]:
        queue.finish(job, JobState.DONE, None, JobResult(bytes_sent=1))
    # A full batch is written at once.
    assert {state(db, run.id, j.src_key) for j in jobs[:FINISH_BATCH]} == {"done"}
    queue.finish(jobs[FINISH_BATCH], JobState.FAILED, "bad", None)
    assert state(db, run.id, jobs[FINISH_BATCH].src_key) == "in_progress"
    queue.flush()
    assert state(db, run.id, jobs[FINISH_BATCH].src_key) == "failed"
    # Waiting for work writes pending outcomes first, so the run's end is seen.
    queue.finish(jobs[-1], JobState.DONE, None, JobResult(bytes_sent=1))
    queue.planning_done.set()
    assert queue.wait_for_work(0.01) is False


def finish_done(db: JobDatabase, run_id: int) -> None:
    for job in db.claim(run_id, "me", 100, 60):
        db.finish(job, JobState.DONE, None, JobResult(bytes_sent=job.size, verified=True))


def replan(db: JobDatabase, run_id: int, *copies: PlannedCopy) -> UpsertCounts:
    gen = db.begin_plan(run_id)
    counts = db.upsert_jobs(run_id, gen, copies, max_attempts=2)
    db.finish_plan(run_id, gen)
    return counts


def absent(key: str, size: int = 1, etag: str = "e", **looked: Any) -> PlannedCopy:
    return PlannedCopy(0, ObjectInfo(key, size, etag), key, "missing", absent=True, **looked)


def test_a_finished_copy_found_absent_is_handed_back_to_be_looked_up(db: JobDatabase) -> None:
    run, _ = db.open_run("sig", {})
    plan(db, run.id, ("a//b", 1, "e"), ("gone", 1, "e"))
    finish_done(db, run.id)
    counts = replan(db, run.id, absent("a//b"), absent("gone"))
    # Not reopened yet: whether the store renamed it or someone deleted it is for a HEAD.
    assert [c.src.key for c in counts.to_look] == ["a//b", "gone"]
    assert counts.new + counts.reopened == 0 and db.totals(run.id)["done"][0] == 2

    gen = db.begin_plan(run.id)
    counts = db.upsert_jobs(
        run.id,
        gen,
        [absent("a//b", unstorable=renamed_reason()), absent("gone", looked=True)],
        max_attempts=2,
    )
    db.finish_plan(run.id, gen)
    assert (counts.unstorable, counts.reopened, counts.to_look) == (1, 1, ())
    assert state(db, run.id, "a//b") == "skipped" and state(db, run.id, "gone") == "pending"
    assert db.unstorable_jobs(run.id) == [("a//b", "a//b", renamed_reason())]


def test_a_key_the_destination_cannot_store_is_recorded_once_until_the_source_changes(
    db: JobDatabase,
) -> None:
    run, _ = db.open_run("sig", {})
    plan(db, run.id, ("a//b", 1, "e"))
    finish_done(db, run.id)
    replan(db, run.id, absent("a//b", unstorable=renamed_reason()))
    # Later passes neither copy it nor look it up again...
    for _ in range(2):
        counts = replan(db, run.id, absent("a//b"))
        assert (counts.unchanged, counts.reopened, counts.to_look) == (1, 0, ())
        assert state(db, run.id, "a//b") == "skipped" and len(db.unstorable_jobs(run.id)) == 1
    # ...and a pass that no longer plans it (ignored now, or stored after all) drops it...
    replan(db, run.id)
    assert db.unstorable_jobs(run.id) == []
    # ...while a changed source is copied again.
    counts = replan(db, run.id, absent("a//b", size=2, etag="e2"))
    assert counts.reopened == 1 and state(db, run.id, "a//b") == "pending"


def test_a_destination_holding_the_source_etag_with_other_bytes_cannot_store_the_key(
    db: JobDatabase,
) -> None:
    run, _ = db.open_run("sig", {})
    plan(db, run.id, ("body/", 10, "md5"), ("other", 10, "md5b"))
    finish_done(db, run.id)
    emptied = ObjectInfo("body/", 0, "md5")  # the source's ETag, none of its bytes
    overwritten = ObjectInfo("other", 3, "md5c")  # someone else's object: copied again
    counts = replan(
        db,
        run.id,
        PlannedCopy(0, ObjectInfo("body/", 10, "md5"), "body/", "size differs", dst=emptied),
        PlannedCopy(0, ObjectInfo("other", 10, "md5b"), "other", "size differs", dst=overwritten),
    )
    assert (counts.unstorable, counts.reopened) == (1, 1)
    ((key, _, reason),) = db.unstorable_jobs(run.id)
    assert key == "body/" and "0 bytes" in reason and "folder/" in reason


def test_a_copy_finished_while_the_destination_was_listed_is_left_done(db: JobDatabase) -> None:
    # A job carried over from a stopped run is copied while the next plan lists the
    # destination: the listing may have passed its key before the copy landed.
    run, _ = db.open_run("sig", {})
    plan(db, run.id, ("carried", 1, "e"))
    listed_since = time.time()
    finish_done(db, run.id)
    gen = db.begin_plan(run.id)
    counts = db.upsert_jobs(
        run.id, gen, [absent("carried")], max_attempts=2, listed_since=listed_since
    )
    db.finish_plan(run.id, gen)
    assert (counts.unchanged, counts.reopened, counts.unstorable, counts.to_look) == (1, 0, 0, ())
    assert state(db, run.id, "carried") == "done"
    # Finished before the listing began, the same absence is for a HEAD to explain.
    gen = db.begin_plan(run.id)
    counts = db.upsert_jobs(
        run.id, gen, [absent("carried")], max_attempts=2, listed_since=time.time() + 1
    )
    assert [c.src.key for c in counts.to_look] == ["carried"]


def _plan_listed(db: JobDatabase, run_id: int, *objs: ObjectInfo) -> int:
    gen = db.begin_plan(run_id)
    db.upsert_jobs(run_id, gen, [PlannedCopy(0, o, o.key, "missing") for o in objs], max_attempts=2)
    return gen


def test_an_archived_source_is_its_own_outcome_looked_at_again_by_every_pass(
    db: JobDatabase,
) -> None:
    run, _ = db.open_run("sig", {})
    cold = ObjectInfo("cold", 4, "e1", storage_class="GLACIER")
    _plan_listed(db, run.id, cold, ObjectInfo("warm", 1, "e2"))
    jobs = {j.src_key: j for j in db.claim(run.id, "me", 5, lease_seconds=60)}
    assert jobs["cold"].storage_class == "GLACIER" and jobs["cold"].restore is None
    assert jobs["warm"].storage_class is None
    jobs["cold"].restore_requested = 1_700_000_000.0  # the engine asked for its restore
    assert db.finish(jobs["cold"], JobState.ARCHIVED, "archived (GLACIER): restore requested", None)
    assert db.finish(jobs["warm"], JobState.DONE, None, JobResult(bytes_sent=1))
    assert db.totals(run.id)["archived"] == (1, 4)
    assert db.archived_jobs(run.id) == [
        ("cold", "cold", "archived (GLACIER): restore requested", True)
    ]
    assert db.attempts(jobs["cold"].id) == 0  # waiting for a restore is no failed attempt

    # The next pass sees it restored: it is pending again, and remembers its restore.
    restored = ObjectInfo("cold", 4, "e1", storage_class="GLACIER", restore=RestoreStatus.RESTORED)
    gen = _plan_listed(db, run.id, restored)
    job = db.job(run.id, "cold")
    assert job is not None and job.state is JobState.PENDING
    assert job.restore is RestoreStatus.RESTORED and job.restore_requested == 1_700_000_000.0
    assert db.finish_plan(run.id, gen) == 0

    # A new version of the source needs a restore of its own.
    _plan_listed(db, run.id, ObjectInfo("cold", 5, "e9", storage_class="GLACIER"))
    job = db.job(run.id, "cold")
    assert job is not None and job.restore_requested is None


def test_an_archived_job_no_longer_planned_is_skipped(db: JobDatabase) -> None:
    run, _ = db.open_run("sig", {})
    _plan_listed(db, run.id, ObjectInfo("cold", 4, "e1", storage_class="DEEP_ARCHIVE"))
    [job] = db.claim(run.id, "me", 1, lease_seconds=60)
    assert db.finish(job, JobState.ARCHIVED, "archived (DEEP_ARCHIVE): needs a restore", None)
    assert db.archived_jobs(run.id) == [
        ("cold", "cold", "archived (DEEP_ARCHIVE): needs a restore", False)
    ]
    gen = db.begin_plan(run.id)  # the source is gone, or the destination matches now
    assert db.finish_plan(run.id, gen) == 1
    assert state(db, run.id, "cold") == "skipped"


_V1_JOBS = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema', '1');
CREATE TABLE runs (id INTEGER PRIMARY KEY, signature TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0, plan_complete INTEGER NOT NULL DEFAULT 0);
CREATE TABLE jobs (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, pair INTEGER NOT NULL,
    src_key TEXT NOT NULL, dst_key TEXT NOT NULL, size INTEGER NOT NULL, etag TEXT,
    last_modified REAL, version_id TEXT, state TEXT NOT NULL, reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, visible_at REAL NOT NULL DEFAULT 0, lease_owner TEXT,
    lease_expires REAL, upload_id TEXT, part_size INTEGER, upload_etag TEXT,
    bytes_sent INTEGER NOT NULL DEFAULT 0, bytes_reused INTEGER NOT NULL DEFAULT 0,
    verify TEXT, verified INTEGER, restarts INTEGER NOT NULL DEFAULT 0,
    seen_generation INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, started_at REAL,
    finished_at REAL, UNIQUE (run_id, pair, src_key));
INSERT INTO runs VALUES (1, 'sig', '{}', 0, 0, 1, 1);
INSERT INTO jobs (run_id, pair, src_key, dst_key, size, etag, state, created_at)
    VALUES (1, 0, 'old', 'old', 3, 'e', 'done', 0);
"""


def test_a_database_of_the_first_schema_is_brought_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(_V1_JOBS)
    db = JobDatabase(path)
    try:
        job = db.job(1, "old")
        assert job is not None and job.state is JobState.DONE and job.storage_class is None
        _plan_listed(db, 1, ObjectInfo("new", 2, "e2", storage_class="GLACIER"))
        new = db.job(1, "new")
        assert new is not None and new.storage_class == "GLACIER"
    finally:
        db.close()
    JobDatabase(path).close()  # opened again: already up to date


def test_a_copy_done_waits_for_no_restore(db: JobDatabase) -> None:
    run, _ = db.open_run("sig", {})
    _plan_listed(db, run.id, ObjectInfo("cold", 4, "e1", storage_class="GLACIER"))
    [job] = db.claim(run.id, "me", 1, lease_seconds=60)
    job.restore_requested = 1_700_000_000.0
    assert db.finish(job, JobState.DONE, None, JobResult(bytes_sent=4))
    done = db.job(run.id, "cold")
    assert done is not None and done.restore_requested is None


def test_a_database_of_the_first_schema_can_checkpoint_its_listing(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.executescript(_V1_JOBS)  # runs without plan_options
    db = JobDatabase(path)
    try:
        run = db.get_run(signature="sig")
        assert run is not None and run.generation == 1
        generation, resumed = db.resume_plan(run.id, "options")
        assert (generation, resumed) == (2, False)  # no ranges recorded: a new pass
        range_id = db.add_listed_range(run.id, generation, 0, None, None)
        assert db.resume_plan(run.id, "options") == (2, True)
        assert db.resume_plan(run.id, "other") == (3, False)
        assert db.listed_ranges(run.id, 2, 0) == []  # a new pass drops the old one's ranges
        assert range_id > 0
    finally:
        db.close()
    with sqlite3.connect(path) as again:
        assert again.execute("SELECT value FROM meta WHERE name='schema'").fetchone() == (
            str(SCHEMA_VERSION),
        )


def test_new_jobs_go_in_as_many_statements_as_the_database_allows(db: JobDatabase) -> None:
    # Four rows per statement at most: 10 new keys take three statements; a known key among
    # them is updated, not inserted again.
    db._conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 4 * 11 + 5)
    run, _ = db.open_run("sig", {})
    plan(db, run.id, ("k05", 5, "old"))
    gen = db.begin_plan(run.id)
    copies = [
        PlannedCopy(0, ObjectInfo(f"k{i:02d}", i, f"e{i}", 1.5, "v"), f"d{i:02d}", "missing")
        for i in range(11)
    ]
    counts = db.upsert_jobs(run.id, gen, copies, max_attempts=2)
    assert (counts.new, counts.unchanged) == (10, 1)
    assert counts.queued_bytes == sum(range(11)) - 5
    for i in range(11):
        job = db.job(run.id, f"k{i:02d}")
        assert job is not None and job.state.value == "pending"
        assert (job.dst_key, job.size, job.etag, job.last_modified, job.version_id) == (
            f"d{i:02d}",
            i,
            f"e{i}",
            1.5,
            "v",
        )
    # New jobs are claimed in the order they were planned.
    claimed = db.claim(run.id, "me", 20, lease_seconds=60)
    assert [j.src_key for j in claimed] == ["k05"] + [f"k{i:02d}" for i in range(11) if i != 5]
