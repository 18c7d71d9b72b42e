"""Views of a sync's progress: a rich bar on a terminal, periodic log lines elsewhere."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import TYPE_CHECKING, Self

from s3longbow.config import format_size
from s3longbow.periodic import Every
from s3longbow.progress.stats import Snapshot, Stats

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import TaskID

log = logging.getLogger("s3longbow.progress")


class _PeriodicView:
    """Renders snapshots of the counters on a thread of its own, every `interval` seconds,
    and once more when it closes."""

    def __init__(self, stats: Stats, interval: float) -> None:
        self.stats = stats
        self.interval = interval
        self._every = Every(self._render_now, lambda: self.interval, "progress")

    def __enter__(self) -> Self:
        self.open()
        self._every.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._every.stop()
        self.close(self.stats.snapshot())

    def _render_now(self) -> None:
        self.render(self.stats.snapshot())

    def open(self) -> None:
        """Called once before the first snapshot."""

    def render(self, snap: Snapshot) -> None:
        """Show one snapshot."""

    def close(self, snap: Snapshot) -> None:
        """Called once with the last snapshot."""


class RichView(_PeriodicView):
    """A live progress display: objects done of total, bytes done of total, rate and ETA."""

    def __init__(self, stats: Stats, console: Console) -> None:
        super().__init__(stats, interval=0.25)
        # Imported here: only a terminal shows this view, and rich is slow to import.
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        # One row for objects, one for bytes; each row's amounts and rate are its own text.
        self.progress = Progress(
            TextColumn("[bold]{task.description:<8}"),
            BarColumn(),
            TextColumn("{task.fields[amount]:>21}"),
            TextColumn("{task.fields[rate]:>12}"),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            console=console,
            refresh_per_second=4,
        )
        self._objects: TaskID | None = None
        self._bytes: TaskID | None = None

    def open(self) -> None:
        self.progress.start()
        self._objects = self.progress.add_task("objects", total=None, amount="", rate="")
        self._bytes = self.progress.add_task("bytes", total=None, amount="", rate="")

    def close(self, snap: Snapshot) -> None:
        self.render(snap)
        self.progress.stop()

    def render(self, snap: Snapshot) -> None:
        assert self._objects is not None and self._bytes is not None
        label = "listing" if snap.planning else "objects"
        elapsed = max(snap.elapsed, 1e-9)
        done = max(0, snap.bytes_done)
        self.progress.update(
            self._objects,
            description=label,
            total=None if snap.planning and not snap.objects_total else snap.objects_total,
            completed=snap.objects_done,
            amount=f"{snap.objects_done:,}/{snap.objects_total:,}",
            rate=f"{snap.objects_done / elapsed:,.0f} obj/s, {snap.in_flight} in flight "
            f"(up to {snap.concurrency})",
        )
        self.progress.update(
            self._bytes,
            total=None if snap.planning and not snap.bytes_total else snap.bytes_total,
            completed=done,
            amount=f"{format_size(done)}/{format_size(snap.bytes_total)}",
            rate=f"{format_size(snap.rate)}/s",
        )


class LogView(_PeriodicView):
    """Plain progress lines every `interval` seconds, for logs and pipes."""

    def __init__(self, stats: Stats, interval: float = 10.0) -> None:
        super().__init__(stats, interval)

    def render(self, snap: Snapshot) -> None:
        log.warning("%s", describe(snap), extra={"fields": progress_fields(snap)})


def progress_fields(snap: Snapshot) -> dict[str, object]:
    """The counts of a progress line, as the fields of a JSON log line."""
    return {
        "event": "progress",
        "listing": snap.planning,
        "objects_done": snap.objects_done,
        "objects_total": snap.objects_total,
        "bytes_done": max(0, snap.bytes_done),
        "bytes_total": snap.bytes_total,
        "objects_copied": snap.objects_copied,
        "objects_failed": snap.objects_failed,
        "objects_already_present": snap.objects_same,
        "bytes_sent": snap.bytes_sent,
        "in_flight": snap.in_flight,
        "concurrency": snap.concurrency,
    }


def describe(snap: Snapshot) -> str:
    """One line of progress for people."""
    phase = "listing, " if snap.planning else ""
    archived = f"{snap.objects_archived} archived, " if snap.objects_archived else ""
    return (
        f"{phase}{snap.objects_done}/{snap.objects_total} objects, "
        f"{format_size(max(0, snap.bytes_done))}/{format_size(snap.bytes_total)}, "
        f"{format_size(snap.rate)}/s, {snap.objects_failed} failed, {archived}"
        f"{snap.objects_same} already present, {snap.in_flight} in flight "
        f"(up to {snap.concurrency})"
    )
