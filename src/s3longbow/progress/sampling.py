"""Samples of a sync's counters taken as it runs, kept for its report.

One sample a second costs one small write; a long run would pile them up, so their number is
bounded: when an invocation holds `max_samples`, every other one is dropped and samples are
taken half as often from then on. The counters are cumulative, so a rate between two kept
samples stays exact: a long run keeps its whole timeline at a coarser grain.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, Self

from s3longbow.model import RunSample
from s3longbow.periodic import Every
from s3longbow.progress.stats import Snapshot, Stats

log = logging.getLogger(__name__)

SAMPLE_INTERVAL = 1.0  # seconds between samples at first
MAX_SAMPLES = 2001  # samples an invocation keeps at most (a few hundred KiB)


class SampleStore(Protocol):
    """Where an invocation's samples are kept (the job database, for one invocation)."""

    def add_sample(self, sample: RunSample) -> None:
        """Keep one more sample."""

    def thin_samples(self) -> int:
        """Drop every other sample kept, the first kept; return how many remain."""


def sample_of(snap: Snapshot, at: float) -> RunSample:
    """The sample of a snapshot of the counters, taken at `at` (seconds since the epoch)."""
    return RunSample(
        at=at,
        bytes_sent=snap.bytes_sent,
        bytes_done=snap.bytes_done,
        objects_done=snap.objects_done,
        objects_copied=snap.objects_copied,
        bytes_copied=snap.bytes_copied,
        objects_failed=snap.objects_failed,
        in_flight=snap.in_flight,
        concurrency=snap.concurrency,
    )


class Sampler:
    """Samples the counters every `interval` on a thread of its own while it is open, and
    once more when it opens and when it closes (so the last sample holds the final counts).

    Args:
        stats: The run's counters.
        store: Where the samples go.
        interval: Seconds between samples at first.
        max_samples: The most samples the store keeps; reaching it halves them, and doubles
            the interval. Odd, so that halving keeps the first and the last samples and the
            ones kept stay evenly spaced. None: no cap (a store whose samples expire).
        clock: The wall clock (seconds since the epoch).
    """

    def __init__(
        self,
        stats: Stats,
        store: SampleStore,
        *,
        interval: float = SAMPLE_INTERVAL,
        max_samples: int | None = MAX_SAMPLES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_samples is not None and (max_samples < 3 or max_samples % 2 == 0):
            raise ValueError("max_samples must be odd and at least 3")
        self.stats = stats
        self.store = store
        self.interval = interval
        self.max_samples = max_samples
        self.clock = clock
        self.kept = 0
        self._every = Every(self._take_safely, lambda: self.interval, "sampler")

    def take(self) -> None:
        """Take one sample now; thin the samples kept when they reach the most allowed."""
        self.store.add_sample(sample_of(self.stats.snapshot(), self.clock()))
        self.kept += 1
        if self.max_samples is not None and self.kept >= self.max_samples:
            self.kept = self.store.thin_samples()
            self.interval *= 2

    def _take_safely(self) -> None:
        # A sample that cannot be written costs the report a point, never the run.
        try:
            self.take()
        except Exception as exc:  # noqa: BLE001 - logged; the next sample may be written
            log.warning("could not record a sample of the run's progress: %s", exc)

    def __enter__(self) -> Self:
        self._take_safely()
        self._every.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._every.stop()
        self._take_safely()
