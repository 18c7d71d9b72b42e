"""The run's own limits, --max-duration and --max-transfer: reaching one stops the run as
Ctrl-C does."""

from __future__ import annotations

import logging
import threading
import time

from s3longbow.config import Settings
from s3longbow.periodic import Every
from s3longbow.progress.stats import Stats

log = logging.getLogger(__name__)


class RunLimits:
    """--max-duration and --max-transfer: once the run has gone on that long, or sent that
    many bytes, it stops as Ctrl-C stops it (jobs in flight go back; the same command goes
    on). Checked a few times a second, so a little more than the limit may be sent."""

    def __init__(
        self, settings: Settings, stats: Stats, stop: threading.Event, started: float
    ) -> None:
        self.duration = settings.max_duration
        self.transfer = settings.max_transfer
        self.stats = stats
        self.stop = stop
        self.started = started
        self.reached: str | None = None
        self._every = Every(self._check, lambda: _LIMIT_CHECK, "run-limits")

    def __enter__(self) -> RunLimits:
        if self.duration is not None or self.transfer is not None:
            self._every.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._every.stop()

    def _check(self) -> None:
        if self.reached is not None or self.stop.is_set():
            return
        if self.duration is not None and time.monotonic() - self.started >= self.duration:
            self.reached, why = "max-duration", f"it has gone on {self.duration:g} s"
        elif self.transfer is not None and self.stats.bytes_sent >= self.transfer:
            self.reached, why = "max-transfer", f"it has sent {self.stats.bytes_sent} bytes"
        else:
            return
        log.warning(
            "stopping the run at --%s: %s; jobs in flight go back to the queue, and the same "
            "command goes on from there",
            self.reached,
            why,
        )
        self.stop.set()


# Seconds between two checks of the run's limits.
_LIMIT_CHECK = 0.25


__all__ = ["RunLimits"]
