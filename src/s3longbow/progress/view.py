"""Views of a sync's progress: a rich bar on a terminal, periodic log lines elsewhere."""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from s3longbow.config import format_size
from s3longbow.progress.stats import Snapshot, Stats

log = logging.getLogger("s3longbow.progress")


class RichView:
    """A live progress display: objects done of total, bytes done of total, rate and ETA."""

    def __init__(self, stats: Stats, console: Console) -> None:
        self.stats = stats
        self.progress = Progress(
            TextColumn("[bold]{task.description:<8}"),
            BarColumn(),
            MofNCompleteColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            console=console,
            refresh_per_second=4,
        )
        self._objects: TaskID | None = None
        self._bytes: TaskID | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)

    def __enter__(self) -> RichView:
        self.progress.start()
        self._objects = self.progress.add_task("objects", total=None)
        self._bytes = self.progress.add_task("bytes", total=None)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._update(self.stats.snapshot())
        self.progress.stop()

    def _loop(self) -> None:
        while not self._stop.wait(0.25):
            self._update(self.stats.snapshot())

    def _update(self, snap: Snapshot) -> None:
        assert self._objects is not None and self._bytes is not None
        label = "listing" if snap.planning else "objects"
        self.progress.update(
            self._objects,
            description=label,
            total=None if snap.planning and not snap.objects_total else snap.objects_total,
            completed=snap.objects_done,
        )
        self.progress.update(
            self._bytes,
            total=None if snap.planning and not snap.bytes_total else snap.bytes_total,
            completed=max(0, snap.bytes_done),
        )


class LogView:
    """Plain progress lines every `interval` seconds, for logs and pipes."""

    def __init__(self, stats: Stats, interval: float = 10.0) -> None:
        self.stats = stats
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)

    def __enter__(self) -> LogView:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            log.warning("%s", describe(self.stats.snapshot()))


def describe(snap: Snapshot) -> str:
    """One line of progress for people."""
    phase = "listing, " if snap.planning else ""
    return (
        f"{phase}{snap.objects_done}/{snap.objects_total} objects, "
        f"{format_size(max(0, snap.bytes_done))}/{format_size(snap.bytes_total)}, "
        f"{format_size(snap.rate)}/s, {snap.objects_failed} failed, "
        f"{snap.objects_same} already present"
    )
