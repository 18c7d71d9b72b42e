"""A bandwidth limit shared by every thread of a process: bytes are paced, not dropped."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class BandwidthLimit:
    """Paces transfers to at most `rate` bytes per second on average.

    Each transfer pays for its bytes before it starts: n bytes wait until the bytes reserved
    before them, and their own, have had their time at `rate`. So by any time T after the
    first transfer at most rate × T bytes have started, however many threads send at once,
    and the average over a copy never exceeds the limit.

    Args:
        rate: Bytes per second.
        clock, sleep: Injectable for tests.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("a bandwidth limit must be positive")
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._next = clock()
        self._lock = threading.Lock()

    def take(self, nbytes: int, stop: threading.Event | None = None) -> None:
        """Wait until `nbytes` may go, or until `stop` is set (a run that stops does not wait
        for the turns its objects in flight have reserved: at a low limit, minutes)."""
        with self._lock:
            now = self._clock()
            self._next = max(now, self._next) + nbytes / self.rate
            until = self._next
        if until > now:
            if stop is None:
                self._sleep(until - now)
            else:
                stop.wait(until - now)
