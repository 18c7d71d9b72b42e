"""One contract for every adapter of the job-queue port (`jobs/base.py`): the SQLite queue of
single-machine mode and the cluster queue (SQS + DynamoDB, on moto).

What the worker and the engine rely on, whatever holds the jobs:

- a claimed job is leased to one owner; nobody else gets it while the lease lives (heartbeats
  keep it alive), and once it runs out another owner takes the job over, with its open upload;
- a final state is a compare-and-set on the owner: a finish or a give-back from an owner whose
  lease was taken over changes nothing, so nothing undoes a finished job;
- a job given back comes back after the delay asked for, with the attempt counted (or not);
- parts are recorded per upload; a new upload, or a new source version, starts with none.

Each adapter is a fixture that builds a `Harness`: a fresh store of jobs, a way to put a job
in it as its producers do (planning for SQLite, a job message for the cluster), handles on it
as separate workers see them, and a look at what it recorded. A new adapter runs the same
suite by adding its fixture to `ADAPTERS`. Where adapters knowingly differ, the difference is
a fact of the harness, asserted like the rest (not skipped).
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from longbow_testkit.servers import LocalServer
from s3longbow.cluster.config import ClusterSettings
from s3longbow.cluster.dynamodb import JobTable
from s3longbow.cluster.jobqueue import ClusterJobQueue, SqsSource
from s3longbow.cluster.messages import JobSpec, encode_jobs, job_id
from s3longbow.cluster.metrics import ClusterCounters
from s3longbow.cluster.provision import create_table
from s3longbow.cluster.sqs import MessageQueue, ensure_queues
from s3longbow.cluster.stores import Copiers, StoreCache
from s3longbow.config import MiB, SideSettings, TransferSettings
from s3longbow.jobs.base import JobQueue
from s3longbow.jobs.sqlite import JobDatabase, PlannedCopy, SqliteQueue, new_owner_id
from s3longbow.model import Job, JobResult, JobState, ObjectInfo
from s3longbow.plan.ignore import IgnoreRules
from s3longbow.progress.stats import Stats
from s3longbow.transfer.budget import ByteBudget

# A lease that runs out within a test, and one that does not.
SHORT = 2
LONG = 60
PART = 5 * MiB


@dataclass(frozen=True)
class Recorded:
    """What the adapter's job table holds for a job."""

    state: JobState
    attempts: int
    reason: str | None


class Harness(Protocol):
    """One adapter under test.

    Attributes:
        finish_reports_loss: `finish` returns False when the lease was lost (the SQLite queue
            writes outcomes in batches and logs a lost lease when it writes them instead).
        carries_restarts: A job claimed again carries the source restarts made so far.
    """

    finish_reports_loss: bool
    carries_restarts: bool

    def add(self, key: str, *, size: int = 10, etag: str = "e1") -> None:
        """Queue a job copying `key`, as the adapter's producers do."""
        ...

    def worker(self, name: str, *, lease: int) -> JobQueue:
        """A handle on the queue as one worker sees it, leasing for `lease` seconds."""
        ...

    def recorded(self, key: str) -> Recorded | None:
        """The job of `key` as the adapter's table records it (None: not recorded)."""
        ...


# -- the adapters ---------------------------------------------------------------------------


class SqliteHarness:
    """The SQLite queue: jobs come from planning; each worker opens the file on its own, as
    the processes sharing one database do."""

    finish_reports_loss = False
    carries_restarts = True

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = JobDatabase(path)
        self.run, _ = self.db.open_run("contract", {})
        self.generation = self.db.begin_plan(self.run.id)
        self._databases = [self.db]

    def add(self, key: str, *, size: int = 10, etag: str = "e1") -> None:
        copy = PlannedCopy(0, ObjectInfo(key, size, etag, 100.0), key, "missing")
        self.db.upsert_jobs(self.run.id, self.generation, [copy], max_attempts=5)

    def worker(self, name: str, *, lease: int) -> JobQueue:
        db = JobDatabase(self.path)
        self._databases.append(db)
        owner = f"{name}:{new_owner_id()}"
        return SqliteQueue(db, self.run.id, owner, lease, threading.Event())

    def recorded(self, key: str) -> Recorded | None:
        job = self.db.job(self.run.id, key)
        return None if job is None else Recorded(job.state, job.attempts, job.reason)

    def close(self) -> None:
        for db in self._databases:
            db.close()


class _NoStores(Copiers):
    """Copiers that open no store: the contract's job messages name each object's size and
    ETag, so the queue asks no source, and no copy runs."""

    def index(self, src_bucket: str, dst_bucket: str, *, inventory: float | None = None) -> int:
        return 0


class ClusterHarness:
    """The cluster queue: an SQS queue with its dead-letter queue and a DynamoDB job table,
    made as `cluster-init` makes them; jobs come as job messages, as `longbow send` writes."""

    finish_reports_loss = True
    # The claim hands the worker the item's source identity, not its restart count.
    carries_restarts = False
    src, dst = "contract-src", "contract-dst"

    def __init__(self, moto: LocalServer) -> None:
        endpoint = moto.endpoint
        self.sqs: Any = endpoint.client("sqs")
        self.dynamodb: Any = endpoint.client("dynamodb")
        name = f"contract-{uuid.uuid4().hex[:10]}"
        settings = ClusterSettings(
            queue_name=name,
            table=name,
            region=endpoint.region,
            endpoint_url=endpoint.url,
            max_receive_count=10,
            receive_wait_seconds=0,
            retry_base_seconds=1.0,
            retry_max_seconds=1.0,
        )
        url, dead_letter_url = ensure_queues(self.sqs, settings)
        create_table(self.dynamodb, name, wait_seconds=30)
        self.settings = dataclasses.replace(
            settings, queue_url=url, dead_letter_queue_url=dead_letter_url
        )
        self.messages = MessageQueue.open(self.sqs, self.settings)
        self.table = JobTable(self.dynamodb, name)
        self._queues: list[ClusterJobQueue] = []
        self._pool = ThreadPoolExecutor(1)

    def add(self, key: str, *, size: int = 10, etag: str = "e1") -> None:
        spec = JobSpec(self.src, key, self.dst, key, size, etag, last_modified=100.0)
        self.messages.send_batch([encode_jobs(self.src, self.dst, [spec])])

    def worker(self, name: str, *, lease: int) -> JobQueue:
        cluster = dataclasses.replace(self.settings, visibility_timeout=lease)
        source = SqsSource(
            self.messages, wait_seconds=0, visibility_timeout=lease, exit_when_idle=False
        )
        stop = threading.Event()
        copiers = _NoStores(
            StoreCache(SideSettings(), SideSettings(), max_connections=1),
            settings=TransferSettings(),
            budget=ByteBudget(PART),
            part_pool=self._pool,
            stats=Stats(),
            stop=stop,
        )
        queue = ClusterJobQueue(
            source,
            self.table,
            copiers,
            routes=(),
            ignore=IgnoreRules(()),
            cluster=cluster,
            worker_id=f"{name}-{uuid.uuid4().hex[:6]}",
            stop=stop,
            counters=ClusterCounters(),
            max_receive_count=self.messages.max_receive_count,
        )
        self._queues.append(queue)
        return queue

    def recorded(self, key: str) -> Recorded | None:
        item = self.table.get(job_id(self.src, key, self.dst, key))
        return None if item is None else Recorded(item.state, item.attempts, item.reason)

    def close(self) -> None:
        for queue in self._queues:
            queue.close()
        self._pool.shutdown()
        for url in (self.messages.url, self.messages.dead_letter_url):
            self.sqs.delete_queue(QueueUrl=url)
        self.dynamodb.delete_table(TableName=self.table.name)
        self.sqs.close()
        self.dynamodb.close()


@pytest.fixture()
def sqlite_queue(tmp_path: Path) -> Iterator[Harness]:
    harness = SqliteHarness(tmp_path / "jobs.db")
    yield harness
    harness.close()


@pytest.fixture()
def cluster_queue(moto: LocalServer) -> Iterator[Harness]:
    harness = ClusterHarness(moto)
    yield harness
    harness.close()


# The fixtures of the adapters the contract runs on.
ADAPTERS = ("sqlite_queue", "cluster_queue")


@pytest.fixture(params=ADAPTERS)
def queues(request: pytest.FixtureRequest) -> Harness:
    harness: Harness = request.getfixturevalue(request.param)
    return harness


# -- steps the cases share -----------------------------------------------------------------


def claim_within(queue: JobQueue, n: int = 1, seconds: float = 15.0) -> list[Job]:
    """Claim until `n` jobs came (a lease may have to run out first)."""
    jobs: list[Job] = []
    deadline = time.monotonic() + seconds
    while True:
        jobs += queue.claim(n - len(jobs))
        if len(jobs) >= n:
            return jobs
        assert time.monotonic() < deadline, f"{len(jobs)} of {n} job(s) claimed in {seconds} s"
        time.sleep(0.1)


def finish(queue: JobQueue, job: Job, state: JobState, reason: str | None = None) -> bool:
    """Finish a job and make the outcome durable, as the worker does before it stops."""
    result = JobResult(bytes_sent=job.size, verified=True, verify="source-md5")
    ok = queue.finish(job, state, reason, result if state is JobState.DONE else None)
    queue.flush()
    return ok


def standing(queues: Harness, key: str) -> tuple[JobState, int]:
    """A recorded job's state and attempts (its reason before any outcome is the producer's)."""
    recorded = queues.recorded(key)
    assert recorded is not None, f"no job recorded for {key!r}"
    return recorded.state, recorded.attempts


def taken_over(queues: Harness, key: str) -> tuple[JobQueue, Job, JobQueue, Job]:
    """A job claimed by a first worker on a short lease, then, once the lease ran out, by a
    second one: (first queue, its now stale job, second queue, its job)."""
    first = queues.worker("first", lease=SHORT)
    (old,) = claim_within(first)
    second = queues.worker("second", lease=LONG)
    assert second.claim(1) == []  # leased
    time.sleep(SHORT + 0.5)
    (new,) = claim_within(second)
    assert new.src_key == key and new.lease_owner != old.lease_owner
    return first, old, second, new


# -- the contract ---------------------------------------------------------------------------


def test_each_job_is_leased_to_one_owner(queues: Harness) -> None:
    for key in ("a", "b", "c"):
        queues.add(key)
    one, other = queues.worker("one", lease=LONG), queues.worker("other", lease=LONG)
    claimed: dict[str, list[Job]] = {"one": [], "other": []}
    deadline = time.monotonic() + 15
    while sum(map(len, claimed.values())) < 3:
        assert time.monotonic() < deadline, claimed
        claimed["one"] += one.claim(1)
        claimed["other"] += other.claim(1)
    jobs = claimed["one"] + claimed["other"]
    assert sorted(j.src_key for j in jobs) == ["a", "b", "c"]
    assert all(j.state is JobState.IN_PROGRESS and j.lease_owner for j in jobs)
    owners = {name: {j.lease_owner for j in js} for name, js in claimed.items()}
    assert not owners["one"] & owners["other"]
    assert all(standing(queues, k) == (JobState.IN_PROGRESS, 0) for k in "abc")
    assert one.claim(10) == [] and other.claim(10) == []


def test_a_job_queued_again_while_leased_is_not_handed_out_twice(queues: Harness) -> None:
    queues.add("a")
    holder, other = queues.worker("holder", lease=LONG), queues.worker("other", lease=LONG)
    (job,) = claim_within(holder)
    queues.add("a")  # planned again, or a second message for the same object
    for _ in range(3):
        assert other.claim(10) == []
    assert finish(holder, job, JobState.DONE)
    recorded = queues.recorded("a")
    assert recorded is not None and recorded.state is JobState.DONE


def test_heartbeats_keep_the_lease(queues: Harness) -> None:
    queues.add("a")
    holder, other = queues.worker("holder", lease=SHORT + 1), queues.worker("other", lease=LONG)
    (job,) = claim_within(holder)
    until = time.monotonic() + SHORT + 3
    while time.monotonic() < until:
        holder.heartbeat([job])
        assert other.claim(1) == []
        time.sleep(0.3)
    assert finish(holder, job, JobState.DONE)
    recorded = queues.recorded("a")
    assert recorded is not None and recorded.state is JobState.DONE


def test_an_expired_lease_is_taken_over_by_another_owner(queues: Harness) -> None:
    queues.add("a")
    first, stale, second, job = taken_over(queues, "a")
    assert standing(queues, "a") == (JobState.IN_PROGRESS, 0)
    # The former owner's outcome no longer counts: the job stays with the new owner...
    late = finish(first, stale, JobState.FAILED, "late")
    assert late is not queues.finish_reports_loss
    assert standing(queues, "a") == (JobState.IN_PROGRESS, 0)
    # ...whose outcome does.
    assert finish(second, job, JobState.DONE)
    assert queues.recorded("a") == Recorded(JobState.DONE, 0, None)


def test_a_late_give_back_or_finish_cannot_undo_a_job(queues: Harness) -> None:
    queues.add("a")
    first = queues.worker("first", lease=SHORT)
    (stale,) = claim_within(first)
    time.sleep(SHORT + 0.5)
    second = queues.worker("second", lease=SHORT)
    (also_stale,) = claim_within(second)
    time.sleep(SHORT + 0.5)
    last = queues.worker("last", lease=LONG)
    (job,) = claim_within(last)

    # A give-back from a former owner while the job runs elsewhere: refused, nothing moves.
    assert not second.retry_later(also_stale, 0, "late")
    assert standing(queues, "a") == (JobState.IN_PROGRESS, 0)
    assert first.claim(10) == []
    assert finish(last, job, JobState.DONE)
    # A finish from a former owner once the job is done: refused, the job stays done.
    late = finish(first, stale, JobState.FAILED, "late")
    assert late is not queues.finish_reports_loss
    assert queues.recorded("a") == Recorded(JobState.DONE, 0, None)
    for queue in (first, second, last):
        assert queue.claim(10) == []


def test_a_final_state_is_recorded_and_ends_the_job(queues: Harness) -> None:
    queues.add("good")
    queues.add("bad")
    worker = queues.worker("worker", lease=LONG)
    jobs = {j.src_key: j for j in claim_within(worker, 2)}
    assert finish(worker, jobs["good"], JobState.DONE)
    assert finish(worker, jobs["bad"], JobState.FAILED, "refused for good")
    assert queues.recorded("good") == Recorded(JobState.DONE, 0, None)
    assert queues.recorded("bad") == Recorded(JobState.FAILED, 1, "refused for good")
    assert queues.worker("other", lease=LONG).claim(10) == []


def test_a_job_given_back_comes_back_after_its_delay_with_the_attempt_counted(
    queues: Harness,
) -> None:
    queues.add("a")
    worker, other = queues.worker("worker", lease=LONG), queues.worker("other", lease=LONG)
    (job,) = claim_within(worker)
    given_back = time.monotonic()
    assert worker.retry_later(job, 2, "connection reset")
    assert queues.recorded("a") == Recorded(JobState.PENDING, 1, "connection reset")
    assert other.claim(1) == []
    (again,) = claim_within(other)
    assert time.monotonic() - given_back >= 1.5
    assert (again.src_key, again.attempts, again.reason) == ("a", 1, "connection reset")


def test_a_job_given_back_uncounted_comes_back_at_once(queues: Harness) -> None:
    queues.add("a")
    worker, other = queues.worker("worker", lease=LONG), queues.worker("other", lease=LONG)
    (job,) = claim_within(worker)
    assert worker.retry_later(job, 0, "interrupted", counted=False)
    (again,) = claim_within(other, seconds=5)
    assert (again.src_key, again.attempts) == ("a", 0)


def test_parts_are_recorded_per_upload(queues: Harness) -> None:
    queues.add("a")
    worker = queues.worker("worker", lease=LONG)
    (job,) = claim_within(worker)
    worker.set_upload(job, "upload-1", PART, "e1")
    assert (job.upload_id, job.part_size, job.upload_etag) == ("upload-1", PART, "e1")
    worker.record_part(job, "upload-1", 1, PART, "p1")
    worker.record_part(job, "upload-1", 2, PART, "p2")
    worker.record_part(job, "upload-1", 2, PART, "p2, sent again")  # the later one counts
    assert worker.recorded_parts(job, "upload-1") == {1: (PART, "p1"), 2: (PART, "p2, sent again")}
    assert worker.recorded_parts(job, "another upload") == {}

    # A new upload starts with no parts of its own; clearing it forgets the upload.
    worker.set_upload(job, "upload-2", PART, "e1")
    assert worker.recorded_parts(job, "upload-2") == {}
    worker.record_part(job, "upload-2", 1, 7, "q1")
    assert worker.recorded_parts(job, "upload-2") == {1: (7, "q1")}
    worker.set_upload(job, None, None, None)
    assert job.upload_id is None
    assert finish(worker, job, JobState.DONE)


def test_a_job_taken_over_resumes_its_upload_and_parts(queues: Harness) -> None:
    queues.add("a")
    first = queues.worker("first", lease=SHORT)
    (job,) = claim_within(first)
    first.set_upload(job, "upload-1", PART, "e1")
    first.record_part(job, "upload-1", 1, PART, "p1")
    first.record_part(job, "upload-1", 2, PART, "p2")
    time.sleep(SHORT + 0.5)
    second = queues.worker("second", lease=LONG)
    (resumed,) = claim_within(second)
    assert (resumed.upload_id, resumed.part_size, resumed.upload_etag) == ("upload-1", PART, "e1")
    assert second.recorded_parts(resumed, "upload-1") == {1: (PART, "p1"), 2: (PART, "p2")}


def test_a_new_source_version_forgets_the_upload_and_survives_a_take_over(
    queues: Harness,
) -> None:
    queues.add("a", size=10, etag="e1")
    first = queues.worker("first", lease=SHORT)
    (job,) = claim_within(first)
    first.set_upload(job, "upload-1", PART, "e1")
    first.record_part(job, "upload-1", 1, PART, "p1")
    first.update_source(job, ObjectInfo("a", 20, "e2", 200.0))
    assert (job.size, job.etag, job.upload_id, job.restarts) == (20, "e2", None, 1)
    time.sleep(SHORT + 0.5)
    (again,) = claim_within(queues.worker("second", lease=LONG))
    assert (again.size, again.etag, again.last_modified) == (20, "e2", 200.0)
    assert again.upload_id is None and again.part_size is None
    assert again.restarts == (1 if queues.carries_restarts else 0)
