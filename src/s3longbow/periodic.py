"""A task repeated on a thread of its own while a block of work runs: the progress views, the
report's samples, the metrics lines and the metrics file all tick this way."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Every:
    """Calls `task` every `interval()` seconds (read anew before each wait, so it may change)
    on a daemon thread named `name`, from :meth:`start` until :meth:`stop`.

    The task's own errors are the task's to handle: one that escapes ends the repetition.
    """

    def __init__(self, task: Callable[[], object], interval: Callable[[], float], name: str):
        self._task = task
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop repeating; returns once a call under way has ended (none comes after)."""
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval()):
            self._task()


__all__ = ["Every"]
