"""What the servers' replies say about the path while a run goes: how long each request waited
for its reply once it was sent, and how often a server asked to slow down.

Stores record into a :class:`RequestMeter` the run shares; the concurrency controller reads it
a few times a second (:mod:`s3longbow.worker.concurrency`), and the metrics exposition reads
its running totals. Recording costs one lock and one append per request.
"""

from __future__ import annotations

import statistics
import threading
from dataclasses import dataclass

# Samples kept between two readings, at most: enough for a median, bounded in memory.
_MOST_SAMPLES = 4096


@dataclass(frozen=True, slots=True)
class Reading:
    """The requests since the last reading.

    Attributes:
        requests: How many replies came.
        latency: The median wait for a reply once its request was sent (seconds; 0 with no
            reply): the round trip and the server's own time, not the bytes' transfer.
        throttled: Replies that asked to slow down (503 SlowDown, 429).
        paced: Requests that waited for their key prefix's turn (a rate cap per prefix, see
            :mod:`s3longbow.ratelimit`): more objects in flight would only wait too.
        queueing: How many times its quickest reply ever the median reply took, at the
            endpoint where that is least (1.0: the waits are the path's own; well above: the
            replies queue, in the servers or for this process's CPU, and more objects in
            flight would queue more). 0.0 (not known) unless every endpoint that ever replied
            replied in the interval: the far side of a long path may send no reply for a
            while (its parts take seconds), and the near side's waits alone would not say
            what more objects in flight would do there.
    """

    requests: int = 0
    latency: float = 0.0
    throttled: int = 0
    paced: int = 0
    queueing: float = 0.0


@dataclass(frozen=True, slots=True)
class MeterTotals:
    """Everything recorded since the meter was made (readings do not reset these).

    Attributes:
        requests: Replies that came.
        throttled: Replies that asked to slow down.
    """

    requests: int = 0
    throttled: int = 0


class RequestMeter:
    """Request latencies and throttling replies, recorded from many threads (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._throttled = 0
        self._paced = 0
        self._requests_total = 0
        self._throttled_total = 0
        # Per endpoint ("": not named): this interval's waits, and the quickest reply so far
        # (the path's own time).
        self._waits: dict[str, list[float]] = {}
        self._fastest: dict[str, float] = {}

    def record(self, seconds: float, endpoint: str = "") -> None:
        """A reply came `seconds` after its request was sent whole (from `endpoint`)."""
        with self._lock:
            self._count += 1
            self._requests_total += 1
            waits = self._waits.setdefault(endpoint, [])
            if len(waits) < _MOST_SAMPLES:
                waits.append(seconds)
            if endpoint and seconds < self._fastest.get(endpoint, float("inf")):
                self._fastest[endpoint] = seconds

    def throttle(self) -> None:
        """A server asked to slow down."""
        with self._lock:
            self._throttled += 1
            self._throttled_total += 1

    def paced(self) -> None:
        """A request waited for its prefix's turn."""
        with self._lock:
            self._paced += 1

    def take(self) -> Reading:
        """What came since the last reading (and start counting anew)."""
        with self._lock:
            count, self._count = self._count, 0
            throttled, self._throttled = self._throttled, 0
            paced, self._paced = self._paced, 0
            by_endpoint, self._waits = self._waits, {}
            fastest = dict(self._fastest)
        samples = [wait for waits in by_endpoint.values() for wait in waits]
        latency = statistics.median(samples) if samples else 0.0
        queueing = 0.0
        if fastest and all(by_endpoint.get(endpoint) for endpoint in fastest):
            queueing = min(
                statistics.median(by_endpoint[endpoint]) / max(quickest, 1e-4)
                for endpoint, quickest in fastest.items()
            )
        return Reading(count, latency, throttled, paced, queueing)

    def round_trip(self) -> float | None:
        """The slowest endpoint's quickest reply so far (its path's own round trip, near
        enough), or None before any named endpoint replied."""
        with self._lock:
            return max(self._fastest.values(), default=None)

    def totals(self) -> MeterTotals:
        """What came since the meter was made."""
        with self._lock:
            return MeterTotals(self._requests_total, self._throttled_total)


__all__ = ["MeterTotals", "Reading", "RequestMeter"]
