"""Planning by key range: a pair whose stores list in byte order is cut into ranges listed on
several threads, cut again while they run, with the same decisions as one listing; each
range's position is checkpointed, and a stopped pass resumes without listing finished ranges
again. Stores in memory; the ledger is the real SQLite job database."""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from s3longbow.cluster.sender import QueueSink
from s3longbow.jobs.sqlite import JobDatabase, SqliteQueue
from s3longbow.model import ObjectInfo
from s3longbow.pairs import PairRuntime
from s3longbow.plan import ranges as range_module
from s3longbow.plan.diff import Decision
from s3longbow.plan.ignore import IgnoreRules
from s3longbow.plan.ledger import LedgerSink
from s3longbow.plan.planner import PlanSink, plan_pair, ranged
from s3longbow.plan.ranges import SOURCE, KeyRange, RangeBoard
from s3longbow.progress.stats import Stats
from s3longbow.stores.base import Capabilities
from s3longbow.stores.location import parse_location


class RangedStore:
    """A bucket in memory that lists in byte order and can start after any key, counting the
    keys it lists and the probes it answers."""

    capabilities = Capabilities(delimited_listing=False, ranged_listing=True)

    def __init__(self, objects: list[ObjectInfo]) -> None:
        self.objects = sorted(objects, key=lambda o: o.key)
        self.keys = [o.key for o in self.objects]
        self.listed = 0
        self.probes = 0
        self._lock = threading.Lock()

    def _from(self, index: int, prefix: str) -> Iterator[ObjectInfo]:
        for n, obj in enumerate(self.objects[index:]):
            if not obj.key.startswith(prefix):
                if obj.key > prefix:
                    return
                continue
            with self._lock:
                self.listed += 1
            if n % 50 == 49:
                time.sleep(0.001)  # a page's round trip: lets the other threads run
            yield obj

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        return self._from(bisect.bisect_left(self.keys, prefix), prefix)

    def list_level(self, prefix: str) -> Iterator[ObjectInfo | str]:
        return iter(self.list_objects(prefix))

    def list_after(self, prefix: str, start_after: str) -> Iterator[ObjectInfo]:
        return self._from(bisect.bisect_right(self.keys, max(start_after, prefix)), prefix)

    def keys_after(self, prefix: str, start_after: str, count: int) -> list[str]:
        with self._lock:
            self.probes += 1
        start = bisect.bisect_right(self.keys, start_after)
        return [k for k in self.keys[start : start + count] if k.startswith(prefix)]

    def head(self, key: str) -> ObjectInfo | None:
        index = bisect.bisect_left(self.keys, key)
        found = index < len(self.keys) and self.keys[index] == key
        return self.objects[index] if found else None

    def close(self) -> None:
        pass


class FolderStore(RangedStore):
    """A store that lists folder by folder: it cannot list ranges."""

    capabilities = Capabilities(delimited_listing=False, listing_order="segments")


def obj(key: str, size: int = 1) -> ObjectInfo:
    return ObjectInfo(key, size, etag=f"e-{key}-{size}")


def make_pair(src: RangedStore, dst: RangedStore) -> PairRuntime:
    return PairRuntime(
        0,
        parse_location("s3://src-bucket/p/"),
        parse_location("s3://dst-bucket/q/"),
        src,  # type: ignore[arg-type]
        dst,  # type: ignore[arg-type]
    )


KEYS = 6000  # all in one folder


def source_objects() -> list[ObjectInfo]:
    return [obj(f"p/f/{n:05d}.bin") for n in range(KEYS)] + [obj("q/outside")]


def destination_objects() -> list[ObjectInfo]:
    # Every 7th object missing, every 11th of another size, and a few the source lacks.
    present = [obj(f"q/f/{n:05d}.bin", 2 if n % 11 == 0 else 1) for n in range(KEYS) if n % 7]
    return present + [obj(f"q/f/{n:05d}.old") for n in range(0, KEYS, 500)]


EXPECTED_COPIES = {f"p/f/{n:05d}.bin" for n in range(KEYS) if n % 7 == 0 or n % 11 == 0}
EXPECTED_EXTRAS = {f"q/f/{n:05d}.old" for n in range(0, KEYS, 500)}


class Recorder(PlanSink):
    """Records every copy and extra handed over, and that no two calls overlap."""

    def __init__(self) -> None:
        self.wants_extras = True
        self.copied: list[str] = []
        self.extra: list[str] = []
        self._busy = threading.Lock()

    def copies(self, pair: PairRuntime, batch: list[Decision]) -> None:
        assert self._busy.acquire(blocking=False), "two sink calls at once"
        try:
            self.copied += [d.src.key for d in batch]
        finally:
            self._busy.release()

    def extras(self, pair: PairRuntime, batch: list[ObjectInfo]) -> None:
        self.extra += [o.key for o in batch]


@pytest.fixture(autouse=True)
def _small_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    # Cut after a few hundred keys, so a few thousand keys spread over the threads.
    monkeypatch.setattr(range_module, "SPLIT_AFTER_KEYS", 200)


def test_ranges_hand_out_every_key_once_while_they_are_cut() -> None:
    keys = sorted(f"k/{n:06d}" for n in range(20_000))
    seen: list[str] = []
    seen_lock = threading.Lock()

    def probe(after: str, count: int) -> list[str]:
        start = bisect.bisect_right(keys, after)
        return keys[start : start + count]

    ids = iter(range(2, 1000))
    board = RangeBoard(
        [KeyRange(1, None, None)],
        probe=probe,
        cut=lambda taken, boundary: KeyRange(next(ids), boundary, taken.until),
    )

    def work() -> None:
        while (taken := board.take(lambda: False)) is not None:
            start = 0 if taken.after is None else bisect.bisect_right(keys, taken.after)
            for n, key in enumerate(keys[start:]):
                if not taken.admit(SOURCE, key):
                    break
                with seen_lock:
                    seen.append(key)
                if n % 100 == 99:
                    time.sleep(0.001)
            else:
                taken.source_ended()
            board.finished(taken)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(seen) == keys  # each key once: none twice, none left out
    assert board.cuts >= 3


def test_a_prefix_in_one_folder_lists_on_several_threads_as_one_listing_would() -> None:
    src, dst = RangedStore(source_objects()), RangedStore(destination_objects())
    pair = make_pair(src, dst)
    assert ranged(pair)
    single = Recorder()
    plan_pair(pair, IgnoreRules(()), single, listing_threads=1)
    assert src.probes == 0  # one thread: nobody idle to cut a range

    parallel = Recorder()
    counts = plan_pair(pair, IgnoreRules(()), parallel, listing_threads=4)
    assert src.probes > 0
    assert set(parallel.copied) == set(single.copied) == EXPECTED_COPIES
    assert len(parallel.copied) == len(EXPECTED_COPIES)  # none twice
    assert sorted(parallel.extra) == sorted(single.extra) == sorted(EXPECTED_EXTRAS)
    assert counts.copy == len(EXPECTED_COPIES)
    assert counts.extra == len(EXPECTED_EXTRAS)
    assert counts.destination == len(destination_objects())


def test_a_folder_order_store_keeps_the_whole_listing() -> None:
    src = FolderStore(source_objects())
    pair = make_pair(src, RangedStore(destination_objects()))
    assert not ranged(pair)
    sink = Recorder()
    plan_pair(pair, IgnoreRules(()), sink, listing_threads=4)
    assert set(sink.copied) == EXPECTED_COPIES and src.probes == 0


@pytest.fixture()
def jobs(tmp_path: Path) -> Iterator[SqliteQueue]:
    db = JobDatabase(tmp_path / "jobs.db")
    run, _ = db.open_run("sig", {})
    yield SqliteQueue(db, run.id, "me", 60, threading.Event())
    db.close()


class Killed(Exception):
    """The process dies: nothing after this point is written."""


def test_a_pass_killed_while_listing_resumes_where_each_range_stopped(
    jobs: SqliteQueue,
) -> None:
    src, dst = RangedStore(source_objects()), RangedStore(destination_objects())
    pair = make_pair(src, dst)
    handed = 0

    def killing_upsert(original: object) -> object:
        def upsert(*args: object, **kwargs: object) -> object:
            nonlocal handed
            handed += 1
            if handed > 15:
                raise Killed  # dies half way through the listing
            return original(*args, **kwargs)  # type: ignore[operator]

        return upsert

    with ThreadPoolExecutor(1) as checker:
        first = LedgerSink(jobs, Stats(), checker, max_attempts=3, extras=True, options="o")
        first.db.upsert_jobs = killing_upsert(first.db.upsert_jobs)  # type: ignore[method-assign]
        with pytest.raises(Killed):
            plan_pair(pair, IgnoreRules(()), first, listing_threads=4, batch_size=50)
        del first.db.upsert_jobs
        rows = jobs.db.listed_ranges(jobs.run_id, first.generation, 0)
        assert len(rows) >= 2 and any(r.position is not None for r in rows)
        planned_before = sum(r.counts.get("copy", 0) + r.counts.get("same", 0) for r in rows)
        assert planned_before > 0

        second = LedgerSink(jobs, Stats(), checker, max_attempts=3, extras=True, options="o")
        assert second.resumed and second.generation == first.generation
        counts = plan_pair(pair, IgnoreRules(()), second, listing_threads=4, batch_size=50)
        assert second.finish() == 0

    # Every key is counted once over both processes: the rerun planned only the keys after
    # each range's checkpoint, and the checkpoints' counts stand for the rest.
    assert counts.copy + counts.same == KEYS
    assert counts.copy == len(EXPECTED_COPIES)
    pending = {
        key for (key,) in jobs.db._conn.execute("SELECT src_key FROM jobs WHERE state='pending'")
    }
    assert pending == EXPECTED_COPIES  # none lost (and UNIQUE: none twice)
    extras = {key for batch in jobs.db.extras(jobs.run_id, 0) for key in batch}
    assert extras == EXPECTED_EXTRAS
    assert counts.extra == len(EXPECTED_EXTRAS)
    assert all(r.done for r in jobs.db.listed_ranges(jobs.run_id, second.generation, 0))


def test_a_pass_with_other_options_starts_over(jobs: SqliteQueue) -> None:
    src, dst = RangedStore(source_objects()), RangedStore(destination_objects())
    with ThreadPoolExecutor(1) as checker:
        first = LedgerSink(jobs, Stats(), checker, max_attempts=3, options="a")
        asked = itertools.count()
        plan_pair(make_pair(src, dst), IgnoreRules(()), first, should_stop=lambda: next(asked) > 20)
        # Stopped after a few decisions: the same options would go on with it.
        (row,) = jobs.db.listed_ranges(jobs.run_id, first.generation, 0)
        assert row.position is not None and row.position < "f/00030" and not row.done
        assert jobs.db.resume_plan(jobs.run_id, "a") == (first.generation, True)
        again = LedgerSink(jobs, Stats(), checker, max_attempts=3, options="b")
        assert not again.resumed and again.generation == first.generation + 1
        # A finished pass is never resumed either.
        plan_pair(make_pair(src, dst), IgnoreRules(()), again)
        again.finish()
        third = LedgerSink(jobs, Stats(), checker, max_attempts=3, options="b")
        assert not third.resumed


def test_a_finished_pair_of_a_folder_store_is_not_listed_again(jobs: SqliteQueue) -> None:
    src = FolderStore(source_objects())
    pair = make_pair(src, RangedStore(destination_objects()))
    with ThreadPoolExecutor(1) as checker:
        first = LedgerSink(jobs, Stats(), checker, max_attempts=3, options="o")
        counts = plan_pair(pair, IgnoreRules(()), first)
        listed = src.listed
        second = LedgerSink(jobs, Stats(), checker, max_attempts=3, options="o")
        assert second.resumed
        again = plan_pair(pair, IgnoreRules(()), second)
    assert src.listed == listed  # not listed again
    assert again.copy == counts.copy == len(EXPECTED_COPIES)


def test_a_send_offers_each_copy_once_from_ranges_listed_at_once() -> None:
    offered: list[str] = []

    class Outbox:
        def offer(
            self,
            copies: list[tuple[Any, str]],
            listed_at: float,
            pair: int,
            archived: frozenset[str] = frozenset(),
        ) -> None:
            offered.extend(spec.src_key for spec, _ in copies)

    src, dst = RangedStore(source_objects()), RangedStore(destination_objects())
    outbox: Any = Outbox()
    plan_pair(
        make_pair(src, dst),
        IgnoreRules(()),
        QueueSink(outbox, listed_at=0.0),
        listing_threads=4,
        batch_size=100,
    )
    assert src.probes > 0  # cut into ranges
    assert sorted(offered) == sorted(EXPECTED_COPIES)  # each once
