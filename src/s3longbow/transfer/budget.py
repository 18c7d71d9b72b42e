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

    def acquire(self, nbytes: int) -> int:
        """Wait until `nbytes` fit; returns the amount taken, to hand back to release()."""
        need = min(nbytes, self.limit)
        with self._cond:
            self._cond.wait_for(lambda: self._used + need <= self.limit)
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

    @property
    def peak(self) -> int:
        """The most bytes held at once so far."""
        return self._peak
