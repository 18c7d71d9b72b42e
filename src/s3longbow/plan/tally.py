"""What planning finds and where it goes: the counts of a pair (or of one range of it), the
sink that receives decisions, and the tally that counts one stream of decisions and hands
them to the sink in batches."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from s3longbow.jobs.base import RangeLedger
from s3longbow.model import ObjectInfo, needs_restore
from s3longbow.pairs import PairRuntime
from s3longbow.progress.stats import Stats

from .diff import Action, Decision

T = TypeVar("T")

# The counts a range's checkpoint keeps (all but the samples).
COUNT_FIELDS = (
    "copy",
    "copy_bytes",
    "copy_archived",
    "same",
    "same_bytes",
    "ignored",
    "filtered",
    "unsupported",
    "not_replaced",
    "extra",
    "extra_bytes",
    "destination",
)


@dataclass
class PlanCounts:
    """What planning found for one pair."""

    copy: int = 0
    copy_bytes: int = 0
    copy_archived: int = 0  # copies whose listing shows an archived source, not restored
    same: int = 0
    same_bytes: int = 0
    ignored: int = 0
    filtered: int = 0  # left out by the filters (--include, --min-size, ...)
    unsupported: int = 0
    not_replaced: int = 0  # present and different, left alone (--no-overwrite)
    extra: int = 0  # destination objects with no source object
    extra_bytes: int = 0
    destination: int = 0  # destination objects seen under the pair's prefix
    samples: list[Decision] = field(default_factory=list)
    extra_samples: list[str] = field(default_factory=list)

    def numbers(self) -> dict[str, int]:
        """The counts by name, as a checkpoint keeps them."""
        return {name: getattr(self, name) for name in COUNT_FIELDS}

    @classmethod
    def from_numbers(cls, numbers: dict[str, int]) -> PlanCounts:
        """Counts a checkpoint kept (names it does not know are left out)."""
        counts = cls()
        for name in COUNT_FIELDS:
            setattr(counts, name, int(numbers.get(name, 0)))
        return counts

    def add(self, other: PlanCounts, *, keep_samples: int = 0) -> None:
        """Add another part's counts; samples are kept in key order, `keep_samples` at most."""
        for name in COUNT_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.samples = sorted(self.samples + other.samples, key=lambda d: d.src.key)[:keep_samples]
        self.extra_samples = sorted(self.extra_samples + other.extra_samples)[:keep_samples]

    def replay(self, stats: Stats | None) -> None:
        """Show counts found by an earlier process (a resumed pass) in the run's counters."""
        if stats is None:
            return
        stats.add_same(self.same, self.same_bytes)
        if self.ignored:
            stats.add_ignored(self.ignored)
        if self.unsupported:
            stats.add_unsupported(self.unsupported)
        if self.not_replaced:
            stats.add_not_replaced(self.not_replaced)


class PlanSink(Protocol):
    """Where planning hands what it finds, batch by batch, for each pair.

    Subclass it to inherit the defaults: what a sink leaves out is dropped (`same`,
    `extras`) or unknown (`copied_version`, `range_ledger`). The planner calls `copies`,
    `same` and `extras` of one pair from one thread at a time (ranges of a pair are listed
    on several threads, but their batches are handed over in turn); `copied_version` may be
    called from several at once.

    Attributes:
        wants_extras: Look for destination objects no source object maps to (for --delete):
            they are counted and handed to `extras`. Without it they are not looked for.
        wants_same: Hand the objects already present to `same` (for --update-properties).
    """

    wants_extras: bool = False
    wants_same: bool = False

    def copies(self, pair: PairRuntime, batch: list[Decision]) -> None:
        """Objects to copy (absent from the destination, or different there)."""
        ...

    def same(self, pair: PairRuntime, batch: list[Decision]) -> None:
        """Objects already present at the destination (only when `wants_same`)."""
        return None

    def extras(self, pair: PairRuntime, batch: list[ObjectInfo]) -> None:
        """Destination objects no source object maps to (only when `wants_extras`)."""
        return None

    def copied_version(self, pair: PairRuntime, key: str) -> str | None:
        """The version id of source key `key` last copied (--compare version), if known."""
        return None

    def range_ledger(self) -> RangeLedger | None:
        """Where the listing of each range is checkpointed, so a stopped pass resumes where
        each range stopped (None: nowhere; every pass lists everything). Everything handed to
        the sink before a checkpoint must be durable when the next call starts."""
        return None


class Tally:
    """Counts one stream of decisions (a pair, or one range of it) and hands them to the sink
    in batches, one sink call at a time under `lock`.

    Args:
        pair: The pair.
        sink: Where the batches go.
        lock: Shared by every tally of the pair: the sink sees one call at a time.
        counts: Where to count (a resumed range's counts go on from a checkpoint).
        batch_size: Decisions per batch.
        keep_samples: Copies and extras kept as samples (for a dry run).
        stats: The run's counters.
    """

    def __init__(
        self,
        pair: PairRuntime,
        sink: PlanSink,
        lock: threading.Lock,
        *,
        counts: PlanCounts | None = None,
        batch_size: int = 500,
        keep_samples: int = 0,
        stats: Stats | None = None,
    ) -> None:
        self.pair = pair
        self.sink = sink
        self.lock = lock
        self.counts = counts if counts is not None else PlanCounts()
        self.batch_size = batch_size
        self.keep_samples = keep_samples
        self.stats = stats
        self._copies: list[Decision] = []
        self._same: list[Decision] = []
        self._extras: list[ObjectInfo] = []

    def extra(self, obj: ObjectInfo) -> None:
        """A destination object no source object maps to."""
        counts = self.counts
        counts.extra += 1
        counts.extra_bytes += obj.size
        counts.destination += 1
        if len(counts.extra_samples) < self.keep_samples:
            counts.extra_samples.append(obj.key)
        self._extras.append(obj)
        if len(self._extras) >= self.batch_size:
            self._hand(self.sink.extras, self._extras)
            self._extras = []

    def add(self, decision: Decision) -> None:
        """One source object's decision."""
        counts = self.counts
        if decision.dst is not None:
            counts.destination += 1
        if decision.action is Action.COPY:
            counts.copy += 1
            counts.copy_bytes += decision.src.size
            if needs_restore(decision.src.storage_class, decision.src.restore):
                counts.copy_archived += 1
            self._copies.append(decision)
            if len(counts.samples) < self.keep_samples:
                counts.samples.append(decision)
            if len(self._copies) >= self.batch_size:
                self._hand(self.sink.copies, self._copies)
                self._copies = []
        elif decision.action is Action.SAME:
            counts.same += 1
            counts.same_bytes += decision.src.size
            if self.sink.wants_same:
                self._same.append(decision)
                if len(self._same) >= self.batch_size:
                    self._hand(self.sink.same, self._same)
                    self._same = []
            if self.stats:
                self.stats.add_same(1, decision.src.size)
        elif decision.action is Action.IGNORED:
            counts.ignored += 1
            if self.stats:
                self.stats.add_ignored()
        elif decision.action is Action.FILTERED:
            counts.filtered += 1
        elif decision.action is Action.NOT_REPLACED:
            counts.not_replaced += 1
            if self.stats:
                self.stats.add_not_replaced()
        else:
            counts.unsupported += 1
            if self.stats:
                self.stats.add_unsupported()

    def flush(self) -> None:
        """Hand over every batch still open."""
        if self._copies:
            self._hand(self.sink.copies, self._copies)
            self._copies = []
        if self._same:
            self._hand(self.sink.same, self._same)
            self._same = []
        if self._extras:
            self._hand(self.sink.extras, self._extras)
            self._extras = []

    def _hand(self, call: Callable[[PairRuntime, list[T]], None], batch: list[T]) -> None:
        with self.lock:
            call(self.pair, batch)


__all__ = ["COUNT_FIELDS", "PlanCounts", "PlanSink", "Tally"]
