"""Plan sinks: planning hands copies, objects already present and extras to one sink, which
writes the job database (sync), counts (dry run) or offers jobs to the queue (send)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from s3longbow.cluster.sender import QueueSink
from s3longbow.jobs.sqlite import JobDatabase, SqliteQueue
from s3longbow.model import JobResult, JobState, ObjectInfo
from s3longbow.pairs import PairRuntime
from s3longbow.plan.diff import Decision
from s3longbow.plan.ignore import IgnoreRules
from s3longbow.plan.ledger import LedgerSink
from s3longbow.plan.planner import CountingSink, PlanSink, plan_pair
from s3longbow.progress.stats import Stats
from s3longbow.stores.base import Capabilities
from s3longbow.stores.location import parse_location


class MemoryStore:
    """What planning reads of a store: its capabilities and a listing."""

    capabilities = Capabilities(delimited_listing=False)

    def __init__(self, *objects: ObjectInfo) -> None:
        self.objects = sorted(objects, key=lambda o: o.key)

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        return iter([o for o in self.objects if o.key.startswith(prefix)])

    def head(self, key: str) -> ObjectInfo | None:
        return next((o for o in self.objects if o.key == key), None)

    def close(self) -> None:
        pass


def obj(key: str, size: int = 1, version_id: str | None = None) -> ObjectInfo:
    return ObjectInfo(key, size, etag=f"e-{key}-{size}", version_id=version_id)


def make_pair(src: MemoryStore, dst: MemoryStore, index: int = 0) -> PairRuntime:
    return PairRuntime(
        index,
        parse_location("s3://src-bucket/p/"),
        parse_location("s3://dst-bucket/q/"),
        src,  # type: ignore[arg-type]
        dst,  # type: ignore[arg-type]
    )


SOURCE = MemoryStore(obj("p/a"), obj("p/b", 2), obj("p/c"), obj("p/d"), obj("p/x.tmp"))
DESTINATION = MemoryStore(obj("q/b", 5), obj("q/c"), obj("q/gone"), obj("q/x.tmp"))


class Recorder(PlanSink):
    """Records every hand-over."""

    def __init__(self, *, extras: bool = False, same: bool = False) -> None:
        self.wants_extras = extras
        self.wants_same = same
        self.calls: list[tuple[str, int, list[str]]] = []
        self.asked: list[tuple[int, str]] = []

    def copies(self, pair: PairRuntime, batch: list[Decision]) -> None:
        self.calls.append(("copies", pair.index, [d.src.key for d in batch]))

    def same(self, pair: PairRuntime, batch: list[Decision]) -> None:
        self.calls.append(("same", pair.index, [d.src.key for d in batch]))

    def extras(self, pair: PairRuntime, batch: list[ObjectInfo]) -> None:
        self.calls.append(("extras", pair.index, [o.key for o in batch]))

    def copied_version(self, pair: PairRuntime, key: str) -> str | None:
        self.asked.append((pair.index, key))
        return "v-old" if key == "p/c" else None


def test_planning_hands_copies_in_batches_and_nothing_unasked() -> None:
    sink = Recorder()
    pair = make_pair(SOURCE, DESTINATION, index=3)
    counts = plan_pair(pair, IgnoreRules(("*.tmp",)), sink, batch_size=2)
    # a and d are missing, b differs in size; c is present; gone has no source.
    assert sink.calls == [("copies", 3, ["p/a", "p/b"]), ("copies", 3, ["p/d"])]
    assert (counts.copy, counts.copy_bytes, counts.same, counts.ignored) == (3, 4, 1, 1)
    assert counts.extra == 0  # not looked for: the sink does not want extras


def test_planning_hands_extras_and_present_objects_when_asked() -> None:
    sink = Recorder(extras=True, same=True)
    counts = plan_pair(make_pair(SOURCE, DESTINATION), IgnoreRules(("*.tmp",)), sink)
    assert ("same", 0, ["p/c"]) in sink.calls
    # An extra whose source key is ignored is not an orphan.
    assert ("extras", 0, ["q/gone"]) in sink.calls
    assert counts.extra == 1 and counts.destination == 3  # b, c and gone


def test_planning_asks_the_sink_for_copied_versions() -> None:
    source = MemoryStore(obj("p/c", version_id="v-new"), obj("p/e", version_id="v-1"))
    destination = MemoryStore(obj("q/c"), obj("q/e"))
    sink = Recorder()
    counts = plan_pair(make_pair(source, destination, 1), IgnoreRules(()), sink, compare="version")
    assert sorted(sink.asked) == [(1, "p/c"), (1, "p/e")]
    assert sink.calls == [("copies", 1, ["p/c"])]  # the version copied is not current
    assert counts.same == 1


def test_the_default_sink_methods_drop_and_know_nothing() -> None:
    class CopiesOnly(PlanSink):
        def copies(self, pair: PairRuntime, batch: list[Decision]) -> None:
            pass

    sink = CopiesOnly()
    pair = make_pair(SOURCE, DESTINATION)
    assert (sink.wants_extras, sink.wants_same) == (False, False)
    assert sink.copied_version(pair, "p/a") is None
    sink.same(pair, [])
    sink.extras(pair, [])


@pytest.mark.parametrize("extras", [False, True])
def test_a_dry_run_counts_work_and_writes_nothing(extras: bool) -> None:
    stats = Stats()
    sink = CountingSink(stats, extras=extras)
    counts = plan_pair(make_pair(SOURCE, DESTINATION), IgnoreRules(()), sink, stats=stats)
    snap = stats.snapshot()
    assert (snap.objects_total, snap.bytes_total) == (3, 4)
    assert snap.objects_same == 2  # c and x.tmp
    assert counts.extra == (1 if extras else 0)


@pytest.fixture()
def jobs(tmp_path: Path) -> Iterator[SqliteQueue]:
    db = JobDatabase(tmp_path / "jobs.db")
    run, _ = db.open_run("sig", {})
    yield SqliteQueue(db, run.id, "me", 60, threading.Event())
    db.close()


def test_a_sync_writes_copies_as_jobs_and_records_extras(jobs: SqliteQueue) -> None:
    stats = Stats()
    with ThreadPoolExecutor(2) as checker:
        sink = LedgerSink(jobs, stats, checker, max_attempts=3, extras=True)
        pair = make_pair(SOURCE, DESTINATION, index=0)
        plan_pair(pair, IgnoreRules(("*.tmp",)), sink, batch_size=2)
    assert jobs.new_work.is_set()
    totals = jobs.db.totals(jobs.run_id)
    assert totals["pending"] == (3, 4)
    assert stats.snapshot().objects_total == 3
    assert list(jobs.db.extras(jobs.run_id, 0)) == [["q/gone"]]
    assert sink.finish() == 0


def test_a_sync_knows_the_version_it_copied(jobs: SqliteQueue) -> None:
    source = MemoryStore(obj("p/c", version_id="v-1"))
    with ThreadPoolExecutor(1) as checker:
        sink = LedgerSink(jobs, Stats(), checker, max_attempts=3)
        pair = make_pair(source, MemoryStore())
        plan_pair(pair, IgnoreRules(()), sink)
        assert sink.copied_version(pair, "p/c") is None  # not copied yet
        (job,) = jobs.db.claim(jobs.run_id, "me", 1, lease_seconds=60)
        assert jobs.db.finish(job, JobState.DONE, None, JobResult(bytes_sent=1))
        assert sink.copied_version(pair, "p/c") == "v-1"
        assert sink.copied_version(make_pair(source, MemoryStore(), 1), "p/c") is None


def test_a_sync_hands_present_objects_to_the_property_updater(jobs: SqliteQueue) -> None:
    submitted: list[tuple[int, list[tuple[str, str]]]] = []

    class Updater:
        def submit(self, pair: PairRuntime, present: list[tuple[ObjectInfo, ObjectInfo]]) -> None:
            submitted.append((pair.index, [(s.key, d.key) for s, d in present]))

    with ThreadPoolExecutor(1) as checker:
        updater: Any = Updater()
        sink = LedgerSink(jobs, Stats(), checker, max_attempts=3, updater=updater)
        assert sink.wants_same and not sink.wants_extras
        plan_pair(make_pair(SOURCE, DESTINATION, 2), IgnoreRules(()), sink)
    assert submitted == [(2, [("p/c", "q/c"), ("p/x.tmp", "q/x.tmp")])]


def test_a_send_offers_job_specs_with_their_buckets() -> None:
    offered: list[tuple[list[tuple[Any, str]], float]] = []

    class Outbox:
        def offer(
            self,
            copies: list[tuple[Any, str]],
            listed_at: float,
            pair: int,
            archived: frozenset[str] = frozenset(),
        ) -> None:
            assert pair == 0  # the pair's index, which the dry run's estimate counts by
            assert archived == frozenset()  # none waits for a restore
            offered.append((copies, listed_at))

    outbox: Any = Outbox()
    sink = QueueSink(outbox, listed_at=1234.5)
    assert not sink.wants_extras and not sink.wants_same
    plan_pair(make_pair(SOURCE, DESTINATION), IgnoreRules(()), sink, batch_size=10)
    ((copies, listed_at),) = offered
    assert listed_at == 1234.5
    specs = [spec for spec, _ in copies]
    assert [(s.src_bucket, s.src_key, s.dst_bucket, s.dst_key) for s in specs] == [
        ("src-bucket", "p/a", "dst-bucket", "q/a"),
        ("src-bucket", "p/b", "dst-bucket", "q/b"),
        ("src-bucket", "p/d", "dst-bucket", "q/d"),
    ]
    assert [s.size for s in specs] == [1, 2, 1] and specs[0].etag == "e-p/a-1"
    assert [why for _, why in copies][0]


def test_every_report_adds_and_writes_the_plan_totals_alike() -> None:
    from s3longbow.cluster.sender import SendReport
    from s3longbow.plan.planner import PlanCounts
    from s3longbow.sync import SyncReport

    counts = PlanCounts(
        copy=3, copy_bytes=30, same=2, same_bytes=20, ignored=1, unsupported=4, extra=5
    )
    counts.extra_samples.append("q/gone")
    sync, send = SyncReport(dry_run=True), SendReport(dry_run=True)
    for report in (sync, send):
        report.add_counts(counts)
        report.add_counts(counts)
    shared = {
        "to_copy": {"objects": 6, "bytes": 60},
        "already_present": {"objects": 4, "bytes": 40},
        "ignored": 2,
        "unsupported": 8,
    }
    for written in (sync.to_json(), send.to_json()):
        assert {k: written[k] for k in shared} == shared
    # A sync also keeps what only it shows: extras and their samples.
    assert sync.objects_extra == 10 and sync.extra_samples == ["q/gone", "q/gone"]
    assert sync.to_json()["extra"] == {"objects": 10, "deleted": 0}
