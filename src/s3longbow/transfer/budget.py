"""A byte budget shared by every thread that holds object data in memory."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ByteBudget:
    """Bounds the bytes held in buffers at once: a thread waits until its share is free.

    A request larger than the whole budget takes the whole budget, so it still makes progress
    (alone) instead of waiting forever.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._peak = 0
        self._cond = threading.Condition()
        # Part buffers given back, by size, kept for the next part of that size: a new one
        # costs zeroing its memory (as much CPU as a CRC of it). Buffers out and kept stay
        # within the limit: a new size drops kept buffers of other sizes first.
        self._kept: dict[int, list[bytearray]] = {}
        self._owned = 0
        self._buffers_lock = threading.Lock()

    def acquire(self, nbytes: int) -> int:
        """Wait until `nbytes` fit; returns the amount taken, to hand back to release()."""
        need = min(nbytes, self.limit)
        with self._cond:
            self._cond.wait_for(lambda: self._used + need <= self.limit)
            self._used += need
            self._peak = max(self._peak, self._used)
        return need

    def try_acquire(self, nbytes: int) -> int | None:
        """Take `nbytes` if they fit now (the amount taken, for release()), else None."""
        need = min(nbytes, self.limit)
        with self._cond:
            if self._used + need > self.limit:
                return None
            self._used += need
            self._peak = max(self._peak, self._used)
        return need

    def release(self, taken: int) -> None:
        with self._cond:
            self._used -= taken
            self._cond.notify_all()

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        taken = self.acquire(nbytes)
        try:
            yield
        finally:
            self.release(taken)

    def buffer(self, size: int) -> bytearray:
        """A buffer of `size` bytes for one part (its memory taken with acquire() first),
        to hand back with give_back() once the part's bytes are no longer used."""
        with self._buffers_lock:
            kept = self._kept.get(size)
            if kept:
                return kept.pop()
            for other in list(self._kept):
                while self._kept[other] and self._owned + size > self.limit:
                    self._owned -= len(self._kept[other].pop())
                if not self._kept[other]:
                    del self._kept[other]
            self._owned += size
        return bytearray(size)

    def give_back(self, buffer: bytearray) -> None:
        """Keep a buffer from buffer() for reuse; nothing may read or write it afterwards.
        Buffers beyond the limit (a part larger than the whole budget) are dropped."""
        with self._buffers_lock:
            if self._owned > self.limit:
                self._owned -= len(buffer)
                return
            self._kept.setdefault(len(buffer), []).append(buffer)

    @property
    def peak(self) -> int:
        """The most bytes held at once so far."""
        return self._peak
