"""Key ranges listed on several threads, split while they run.

A pair's key space starts as the ranges its ledger holds (one, the whole space, on a first
run). Each listing thread takes a range and lists it; a thread with nothing left to take
cuts the widest running range in two at a real key found by probing past that range's
position (`keyspace.find_boundary`), and lists the upper part. So a prefix whose keys all sit
in one folder spreads over every thread within a few pages, and a range that turns out large
is split again while the others run. No locks or I/O here beyond the probe and the cut the
caller hands in.

A range is cut only above every key either of its listings has handed out, under the range's
lock, which the listings take for each key they hand out: so no key is listed by two ranges,
and none by neither.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from .keyspace import Probe, find_boundary, gap, shared_length

SOURCE, DESTINATION = 0, 1
# Keys a range lists between two attempts to cut it: a range that ends within a page of keys
# is not worth the probes.
SPLIT_AFTER_KEYS = 1000
_IDLE_WAIT = 0.05  # seconds an idle thread waits before it looks for a range to cut again


@dataclass(eq=False)
class KeyRange:
    """One part of a pair's key space: the keys (after the pair's prefix) greater than
    `after` (every key when None) and at most `until` (no limit when None).

    `after` is where this process starts listing it: the range's lower bound, or where a
    stopped run had got to. `upper` is the highest its keys are known to go (probes found
    nothing above it), None when unknown. The rest is what its listings have handed out.
    """

    id: int
    after: str | None
    until: str | None
    upper: str | None = None
    position: str | None = None  # the last source key handed out
    listed: int = 0  # source keys handed out by this process
    split_mark: int = 0  # `listed` when a cut was last tried
    closed: bool = False  # the source listing passed `until` or ended
    _furthest: list[str | None] = field(default_factory=lambda: [None, None])
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def admit(self, side: int, key: str) -> bool:
        """Whether `key` (a suffix listed on `side`) belongs to the range; False once the
        listing has passed its end, which the range keeps as closed for the source."""
        with self.lock:
            if self.until is not None and key > self.until:
                if side == SOURCE:
                    self.closed = True
                return False
            self._furthest[side] = key
            if side == SOURCE:
                self.position = key
                self.listed += 1
            return True

    def source_ended(self) -> None:
        """The source listing has no more keys: the range cannot be cut any more."""
        with self.lock:
            self.closed = True

    def can_cut_at(self, boundary: str) -> bool:
        """Whether the range may end at `boundary` (call under `lock`): above every key its
        listings handed out, below its end, and still listing."""
        if self.closed or (self.until is not None and boundary >= self.until):
            return False
        return all(key is None or key < boundary for key in self._furthest)


# Persists a cut: the range now ends at the boundary, and a new range (boundary, old end]
# follows it; returns the new range. Called under the range's lock.
Cut = Callable[[KeyRange, str], KeyRange]


class RangeBoard:
    """The ranges of one pair: handed to listing threads, cut when a thread runs out.

    Args:
        ranges: The ranges still to list.
        probe: Up to `count` keys (suffixes) greater than a string, from the source.
        cut: Records a cut (see `Cut`).
        split_after: Keys a range lists between two attempts to cut it (None: the module's
            SPLIT_AFTER_KEYS).
    """

    def __init__(
        self,
        ranges: list[KeyRange],
        *,
        probe: Probe,
        cut: Cut,
        split_after: int | None = None,
    ) -> None:
        self._pending = list(ranges)
        self._running: list[KeyRange] = []
        self._probe = probe
        self._cut = cut
        self._split_after = SPLIT_AFTER_KEYS if split_after is None else split_after
        self._cond = threading.Condition()
        self._cutting = threading.Lock()
        self._closed = False
        self.cuts = 0

    def take(self, stop: Callable[[], bool]) -> KeyRange | None:
        """The next range to list, cutting one when none waits; None when every range is
        taken and none can be cut before the others end, or when `stop` says so."""
        while True:
            with self._cond:
                if self._closed or stop():
                    return None
                if self._pending:
                    taken = self._pending.pop(0)
                    self._running.append(taken)
                    return taken
                if not self._running:
                    return None
            new = self._cut_widest()
            if new is not None:
                with self._cond:
                    self._running.append(new)
                return new
            with self._cond:
                if self._running and not self._pending and not self._closed:
                    self._cond.wait(_IDLE_WAIT)

    def finished(self, taken: KeyRange) -> None:
        """A range is listed to its end (or its thread stopped)."""
        with self._cond:
            self._running.remove(taken)
            self._cond.notify_all()

    def close(self) -> None:
        """Hand out no more ranges (a thread failed, or the run stops)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _cut_widest(self) -> KeyRange | None:
        if not self._cutting.acquire(blocking=False):
            return None  # another thread is cutting; wait for what it finds
        try:
            with self._cond:
                running = list(self._running)
            candidates: list[tuple[KeyRange, str, str | None, str | None]] = []
            for each in running:
                with each.lock:
                    ready = each.listed - each.split_mark >= self._split_after
                    if each.closed or each.position is None or not ready:
                        continue
                    end = each.upper if each.upper is not None else each.until
                    candidates.append((each, each.position, each.until, end))
            if not candidates:
                return None
            start = shared_length(
                [c[1] for c in candidates] + [c[3] for c in candidates if c[3] is not None]
            )
            widest, position, until, end = max(candidates, key=lambda c: gap(c[1], c[3], start))
            with widest.lock:
                widest.split_mark = widest.listed
            boundary, upper = find_boundary(self._probe, position, until, end)
            with widest.lock:
                if upper is not None:
                    widest.upper = upper
                if boundary is None or not widest.can_cut_at(boundary):
                    return None
                new = self._cut(widest, boundary)
                new.upper = widest.upper
                widest.until = boundary
                if widest.upper is not None and widest.upper > boundary:
                    widest.upper = None  # its keys now end at the boundary: `until` says it
            self.cuts += 1
            return new
        finally:
            self._cutting.release()


__all__ = ["DESTINATION", "SOURCE", "SPLIT_AFTER_KEYS", "Cut", "KeyRange", "RangeBoard"]
