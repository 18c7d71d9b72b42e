"""Thread-safe counters of a sync, and immutable snapshots of them for views and summaries."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state of a sync at one moment."""

    elapsed: float
    planning: bool
    objects_total: int
    bytes_total: int
    objects_done: int
    bytes_done: int
    objects_copied: int
    bytes_copied: int
    objects_failed: int
    bytes_sent: int
    bytes_reused: int
    objects_same: int
    bytes_same: int
    objects_ignored: int
    objects_unsupported: int
    in_flight: int
    concurrency: int = 0  # how many objects may be in flight now (the controller's number)
    concurrency_highest: int = 0
    objects_archived: int = 0  # archived sources, left until a restore makes them readable
    objects_skipped: int = 0  # jobs that found nothing left to copy (the source deleted since)
    # Objects copied without their Object Lock, by destination bucket without Object Lock.
    locks_not_kept: tuple[tuple[str, int], ...] = ()
    objects_not_replaced: int = 0  # present at the destination, left as they are

    @property
    def rate(self) -> float:
        """Bytes per second sent to the destination so far."""
        return self.bytes_sent / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class Stats:
    """Counters updated by planner and workers from many threads; read with snapshot()."""

    clock: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    planning: bool = True
    objects_total: int = 0
    bytes_total: int = 0
    objects_done: int = 0
    bytes_done: int = 0
    objects_copied: int = 0
    bytes_copied: int = 0
    objects_failed: int = 0
    bytes_sent: int = 0
    bytes_reused: int = 0
    objects_same: int = 0
    bytes_same: int = 0
    objects_ignored: int = 0
    objects_unsupported: int = 0
    in_flight: int = 0
    concurrency: int = 0
    concurrency_highest: int = 0
    objects_archived: int = 0
    objects_skipped: int = 0
    locks_not_kept: dict[str, int] = field(default_factory=dict)
    objects_not_replaced: int = 0

    def lock_not_kept(self, where: str) -> bool:
        """An object's Object Lock could not be kept at `where`; True the first time there."""
        with self._lock:
            first = where not in self.locks_not_kept
            self.locks_not_kept[where] = self.locks_not_kept.get(where, 0) + 1
            return first

    def add_not_replaced(self, objects: int = 1) -> None:
        """Objects the destination has (and that differ) left as they are (--no-overwrite)."""
        with self._lock:
            self.objects_not_replaced += objects

    def set_concurrency(self, limit: int) -> None:
        with self._lock:
            self.concurrency = limit
            self.concurrency_highest = max(self.concurrency_highest, limit)

    def add_work(self, objects: int, nbytes: int) -> None:
        with self._lock:
            self.objects_total += objects
            self.bytes_total += nbytes

    def add_same(self, objects: int, nbytes: int) -> None:
        with self._lock:
            self.objects_same += objects
            self.bytes_same += nbytes

    def add_ignored(self, objects: int = 1) -> None:
        with self._lock:
            self.objects_ignored += objects

    def add_unsupported(self, objects: int = 1) -> None:
        with self._lock:
            self.objects_unsupported += objects

    def planning_done(self) -> None:
        with self._lock:
            self.planning = False

    def started(self) -> None:
        with self._lock:
            self.in_flight += 1

    def sent(self, nbytes: int) -> None:
        """Bytes accepted by the destination (parts or whole objects)."""
        with self._lock:
            self.bytes_sent += nbytes
            self.bytes_done += nbytes

    def reused(self, nbytes: int) -> None:
        """Bytes found already uploaded by an earlier attempt."""
        with self._lock:
            self.bytes_reused += nbytes
            self.bytes_done += nbytes

    def unsend(self, nbytes: int) -> None:
        """Take back progress of an attempt that will be redone."""
        with self._lock:
            self.bytes_done -= nbytes

    def finished(
        self,
        size: int,
        *,
        ok: bool,
        progressed: int,
        skipped: bool = False,
        archived: bool = False,
    ) -> None:
        """A job ended: `progressed` is what sent()/reused() already counted for it. A job
        `skipped` (nothing was left to copy) is neither copied nor failed; nor is one
        `archived` (its source awaits a restore)."""
        with self._lock:
            self.in_flight -= 1
            self.objects_done += 1
            self.bytes_done += size - progressed
            if ok:
                self.objects_copied += 1
                self.bytes_copied += size
            elif archived:
                self.objects_archived += 1
            elif skipped:
                self.objects_skipped += 1
            else:
                self.objects_failed += 1

    def released(self, progressed: int) -> None:
        """A job went back to the queue (retry later, or shutdown)."""
        with self._lock:
            self.in_flight -= 1
            self.bytes_done -= progressed

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                elapsed=time.monotonic() - self.clock,
                planning=self.planning,
                objects_total=self.objects_total,
                bytes_total=self.bytes_total,
                objects_done=self.objects_done,
                bytes_done=self.bytes_done,
                objects_copied=self.objects_copied,
                bytes_copied=self.bytes_copied,
                objects_failed=self.objects_failed,
                bytes_sent=self.bytes_sent,
                bytes_reused=self.bytes_reused,
                objects_same=self.objects_same,
                bytes_same=self.bytes_same,
                objects_ignored=self.objects_ignored,
                objects_unsupported=self.objects_unsupported,
                in_flight=self.in_flight,
                concurrency=self.concurrency,
                concurrency_highest=self.concurrency_highest,
                objects_archived=self.objects_archived,
                objects_skipped=self.objects_skipped,
                locks_not_kept=tuple(sorted(self.locks_not_kept.items())),
                objects_not_replaced=self.objects_not_replaced,
            )
