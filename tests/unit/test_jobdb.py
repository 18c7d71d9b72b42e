"""The SQLite job database: runs, planning upserts, leases and compare-and-set transitions."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from s3longbow.jobs.sqlite import JobDatabase, PlannedCopy, new_owner_id
from s3longbow.model import JobResult, JobState, ObjectInfo, can_transition


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
