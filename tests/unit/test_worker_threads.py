"""The worker's job threads: made as queued jobs need them, never more than the limit.

The jobs live in a real job database; the copier is a stand-in that only notes which thread
ran each job and how many ran at once (the worker's own logic is what is under test).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from s3longbow.config import TransferSettings
from s3longbow.jobs.sqlite import JobDatabase, PlannedCopy, SqliteQueue
from s3longbow.model import Job, JobResult, JobState, ObjectInfo
from s3longbow.progress.stats import Stats
from s3longbow.transfer.engine import Attempt
from s3longbow.worker.loop import Worker


class _Copier:
    """Holds each job a moment, counting the jobs in its hands at once."""

    def __init__(self, hold: float) -> None:
        self.hold = hold
        self.lock = threading.Lock()
        self.now = self.most = 0
        self.threads: set[str] = set()

    def copy(self, job: Job, attempt: Attempt) -> JobResult:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.threads.add(threading.current_thread().name)
        time.sleep(self.hold)
        with self.lock:
            self.now -= 1
        return JobResult(bytes_sent=job.size, verified=True, verify="source-md5")


def _run(
    tmp_path: Path, keys: int, workers: int, hold: float
) -> tuple[Worker, _Copier, dict[str, str]]:
    db = JobDatabase(tmp_path / "jobs.db")
    run, _ = db.open_run("threads", {})
    generation = db.begin_plan(run.id)
    copies = [
        PlannedCopy(0, ObjectInfo(f"k{i:03}", 1, "e"), f"k{i:03}", "missing") for i in range(keys)
    ]
    db.upsert_jobs(run.id, generation, copies, max_attempts=2)
    db.finish_plan(run.id, generation)
    done = threading.Event()
    done.set()  # planning is over: the worker ends once every job has
    queue = SqliteQueue(db, run.id, "me", 60, done)
    copier = _Copier(hold)
    settings = TransferSettings(workers=workers, autotune=False)
    worker = Worker(
        queue,
        lambda job: copier,
        settings,
        Stats(),
        threading.Event(),
        lane=False,
    )
    outcome = worker.run()
    assert outcome.fatal is None and not outcome.interrupted
    states = {}
    for copy in copies:
        recorded = db.job(run.id, copy.src.key)
        assert recorded is not None
        states[copy.src.key] = recorded.state.value
    db.close()
    return worker, copier, states


def test_a_few_jobs_start_a_few_threads_not_the_limit(tmp_path: Path) -> None:
    worker, copier, states = _run(tmp_path, keys=3, workers=64, hold=0.05)
    assert set(states.values()) == {JobState.DONE.value}
    # Three jobs at most in flight: no more than three threads, not 64 made at the start.
    assert 1 <= len(worker._threads) <= 3
    assert copier.threads <= {t.name for t in worker._threads}


def test_more_jobs_than_the_limit_use_the_limit_and_no_more(tmp_path: Path) -> None:
    worker, copier, states = _run(tmp_path, keys=20, workers=4, hold=0.1)
    assert set(states.values()) == {JobState.DONE.value}
    assert len(worker._threads) == 4
    assert copier.most == 4  # the limit is reached (the jobs overlap), never passed
